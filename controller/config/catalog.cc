#include "controller/config/catalog.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "controller/config/builtin_data.h"
#include "controller/config/node.h"

namespace evalctl::config {
namespace {

std::string Text(const Node& entry, absl::string_view key) {
  const Node* n = entry.Find(key);
  return n != nullptr && n->IsScalar() ? n->text() : "";
}

std::vector<std::string> Strings(const Node& entry, absl::string_view key) {
  std::vector<std::string> out;
  const Node* n = entry.Find(key);
  if (n == nullptr) return out;
  if (n->IsScalar()) out.push_back(n->text());
  for (const Node& item : n->items()) {
    if (item.IsScalar()) out.push_back(item.text());
  }
  return out;
}

}  // namespace

absl::StatusOr<Catalog> Catalog::Parse(absl::string_view yaml, absl::string_view file) {
  ASSIGN_OR_RETURN(Node root, LoadYaml(yaml, file));
  const Node* tasks = root.Find("tasks");
  if (tasks == nullptr || !tasks->IsList()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": the catalog needs a `tasks:` list"));
  }
  Catalog catalog;
  for (const Node& item : tasks->items()) {
    CatalogEntry entry;
    entry.name = Text(item, "name");
    if (entry.name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(item.mark().ToString(), ": catalog entry without a name"));
    }
    entry.container = Text(item, "container");
    entry.command = Text(item, "command");
    if (std::string t = Text(item, "endpoint_type"); !t.empty()) entry.endpoint_type = t;
    entry.runtimes = Strings(item, "runtimes");
    entry.description = Text(item, "description");
    size_t index = catalog.entries_.size();
    std::vector<std::string> names = Strings(item, "aliases");
    names.insert(names.begin(), entry.name);
    for (const std::string& name : names) {
      if (!catalog.index_.emplace(name, index).second) {
        return absl::InvalidArgumentError(absl::StrCat(item.mark().ToString(), ": task name ",
                                                       name, " appears twice in the catalog"));
      }
    }
    catalog.entries_.push_back(std::move(entry));
  }
  return catalog;
}

const Catalog& Catalog::Builtin() {
  static const Catalog* catalog = [] {
    auto parsed = Parse(BuiltinCatalogYaml(), "<built-in>/catalog.yaml");
    CHECK(parsed.ok()) << parsed.status();
    return new Catalog(*std::move(parsed));
  }();
  return *catalog;
}

const CatalogEntry* Catalog::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::vector<std::string> Catalog::Names() const {
  std::vector<std::string> out;
  for (const CatalogEntry& e : entries_) out.push_back(e.name);
  return out;
}

}  // namespace evalctl::config
