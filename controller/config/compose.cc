#include "controller/config/compose.h"

#include <algorithm>
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace evalctl::config {
namespace {

constexpr char kBuiltinPrefix[] = "<built-in>/";
constexpr int kMaxDefaultsDepth = 8;

// A group selected for composition: `deployment` → `vllm`.
struct Choice {
  std::string group;
  // Empty or "null": the group contributes nothing.
  std::string option;
  Mark mark;
};

struct Source {
  std::string path;
  std::string content;
  bool builtin = false;
};

const Source* FindGroupFile(const GroupFiles& user, const GroupFiles& builtin,
                            const std::string& path, Source* storage) {
  if (auto it = user.find(path); it != user.end()) {
    *storage = {path, it->second, false};
    return storage;
  }
  if (auto it = builtin.find(path); it != builtin.end()) {
    *storage = {path, it->second, true};
    return storage;
  }
  return nullptr;
}

std::vector<std::string> OptionsOf(const GroupFiles& user, const GroupFiles& builtin,
                                   absl::string_view group) {
  std::vector<std::string> out;
  std::string prefix = absl::StrCat(group, "/");
  for (const GroupFiles* files : {&builtin, &user}) {
    for (const auto& [path, content] : *files) {
      absl::string_view p = path;
      if (!absl::ConsumePrefix(&p, prefix) || !absl::ConsumeSuffix(&p, ".yaml")) continue;
      std::string option(p);
      if (std::find(out.begin(), out.end(), option) == out.end()) out.push_back(option);
    }
  }
  return out;
}

// Reads a `defaults:` list. Entries: `_self_`, `group: option`, `override group: option`, or a
// bare `option` (same group, inside a group file).
absl::StatusOr<std::vector<Choice>> ReadDefaults(const Node& list, absl::string_view own_group,
                                                 bool* has_self) {
  std::vector<Choice> out;
  *has_self = false;
  if (!list.IsList()) {
    return absl::InvalidArgumentError(
        absl::StrCat(list.mark().ToString(), ": defaults must be a list, e.g.\n",
                     "defaults:\n  - execution: slurm/default\n  - deployment: vllm\n  - _self_"));
  }
  for (const Node& item : list.items()) {
    if (item.IsScalar() && item.text() == "_self_") {
      *has_self = true;
      out.push_back({"_self_", "", item.mark()});
    } else if (item.IsScalar() && !own_group.empty()) {
      out.push_back({std::string(own_group), item.text(), item.mark()});
    } else if (item.IsMap() && item.entries().size() == 1) {
      absl::string_view g = item.entries()[0].first;
      absl::ConsumePrefix(&g, "override ");
      g = absl::StripAsciiWhitespace(g);
      const Node& option = item.entries()[0].second;
      if (!option.IsScalar() && !option.IsNull()) {
        return absl::InvalidArgumentError(absl::StrCat(
            option.mark().ToString(), ": defaults entry for group ", g,
            " must name one option, e.g. `- ", g, ": vllm`"));
      }
      out.push_back({std::string(g), option.IsNull() ? "" : option.text(), item.mark()});
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          item.mark().ToString(),
          ": a defaults entry is `_self_` or `group: option` (e.g. `- deployment: vllm`)"));
    }
  }
  return out;
}

class Composer {
 public:
  Composer(const ComposeInput& input, const GroupFiles& builtin)
      : input_(input), builtin_(builtin) {}

  // Loads a group option (and its own defaults, recursively) into `out` under `package`.
  absl::Status AddGroup(const Choice& choice, Node& out, int depth) {
    if (choice.option.empty() || choice.option == "null") return absl::OkStatus();
    if (depth > kMaxDefaultsDepth) {
      return absl::InvalidArgumentError(absl::StrCat(
          choice.mark.ToString(), ": config groups include each other more than ",
          kMaxDefaultsDepth, " levels deep (a cycle?) at ", choice.group, "/", choice.option));
    }
    std::string path = absl::StrCat(choice.group, "/", choice.option, ".yaml");
    Source storage;
    const Source* src = FindGroupFile(input_.user_groups, builtin_, path, &storage);
    if (src == nullptr) {
      std::vector<std::string> options = OptionsOf(input_.user_groups, builtin_, choice.group);
      return absl::InvalidArgumentError(absl::StrCat(
          choice.mark.ToString(), ": no config group option ", choice.group, "/", choice.option,
          options.empty() ? absl::StrCat("; there is no group named ", choice.group)
                          : absl::StrCat("; available: ", absl::StrJoin(options, ", "))));
    }
    ASSIGN_OR_RETURN(Node file,
                     LoadYaml(src->content, src->builtin ? absl::StrCat(kBuiltinPrefix, path)
                                                         : path));
    if (!file.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.mark().ToString(), ": a config group file must hold a map"));
    }
    // The group's package is its top-level group name: deployment/vllm.yaml goes under
    // `deployment`, execution/slurm/default.yaml under `execution`.
    std::string package = choice.group.substr(0, choice.group.find('/'));
    Node body = file;
    body.Erase("defaults");
    bool has_self = false;
    std::vector<Choice> nested;
    if (const Node* defaults = file.Find("defaults")) {
      ASSIGN_OR_RETURN(nested, ReadDefaults(*defaults, choice.group, &has_self));
    }
    if (!has_self) nested.push_back({"_self_", "", file.mark()});
    for (const Choice& c : nested) {
      if (c.group == "_self_") {
        Node wrapped = Node::Map(body.mark());
        wrapped.Set(package, body);
        MergeInto(out, wrapped);
      } else {
        RETURN_IF_ERROR(AddGroup(c, out, depth + 1));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Node> Run() {
    // Overrides that select a group (`deployment=vllm`) change the defaults list; the rest apply
    // to the composed tree.
    std::vector<Override> value_overrides;
    std::map<std::string, Choice> group_overrides;
    for (const std::string& text : input_.overrides) {
      ASSIGN_OR_RETURN(Override o, ParseOverride(text));
      if (IsGroupName(o.key) && o.op != Override::Op::kDelete && o.value.IsScalar() &&
          !IsNestedKeyOfTree(o.key)) {
        group_overrides[o.key] = {o.key, o.value.text(), Mark{absl::StrCat("-o ", text)}};
        continue;
      }
      value_overrides.push_back(std::move(o));
    }

    ASSIGN_OR_RETURN(Node user, LoadYaml(input_.yaml, input_.file_name));
    if (!user.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(
          input_.file_name, ": the configuration must be a YAML map (execution:, deployment:, "
                            "evaluation: ...)"));
    }
    ASSIGN_OR_RETURN(Node root_file, LoadYaml(RootDefaults(), absl::StrCat(kBuiltinPrefix,
                                                                           "default.yaml")));
    bool root_self = false, user_self = false;
    std::vector<Choice> root_defaults, user_defaults;
    if (const Node* d = root_file.Find("defaults")) {
      ASSIGN_OR_RETURN(root_defaults, ReadDefaults(*d, "", &root_self));
    }
    if (const Node* d = user.Find("defaults")) {
      ASSIGN_OR_RETURN(user_defaults, ReadDefaults(*d, "", &user_self));
    }
    root_file.Erase("defaults");
    user.Erase("defaults");

    // The user's choices replace the root's for the same group, in the user's order; root
    // groups the user does not mention come first.
    std::vector<Choice> order;
    for (const Choice& c : root_defaults) {
      if (c.group == "_self_") continue;
      bool mentioned = false;
      for (const Choice& u : user_defaults) mentioned |= (u.group == c.group);
      if (!mentioned) order.push_back(c);
    }
    for (const Choice& u : user_defaults) order.push_back(u);
    if (!user_self) order.push_back({"_self_", "", user.mark()});
    for (Choice& c : order) {
      if (auto it = group_overrides.find(c.group); it != group_overrides.end()) {
        c.option = it->second.option;
        c.mark = it->second.mark;
        group_overrides.erase(it);
      }
    }
    for (auto& [group, c] : group_overrides) {
      order.insert(order.end() - 1, c);
    }

    Node out = root_file;
    for (const Choice& c : order) {
      if (c.group == "_self_") {
        MergeInto(out, user);
      } else {
        RETURN_IF_ERROR(AddGroup(c, out, 0));
      }
    }
    for (const Override& o : value_overrides) RETURN_IF_ERROR(ApplyOverride(out, o));
    return out;
  }

 private:
  bool IsGroupName(const std::string& key) const {
    if (absl::StrContains(key, '.')) return false;
    return !OptionsOf(input_.user_groups, builtin_, key).empty();
  }
  // `execution=...` selects a group; never treat a key with dots as a group.
  bool IsNestedKeyOfTree(const std::string& key) const { return absl::StrContains(key, '.'); }

  std::string RootDefaults() const {
    auto it = builtin_.find("default.yaml");
    return it == builtin_.end() ? std::string("{}") : it->second;
  }

  const ComposeInput& input_;
  const GroupFiles& builtin_;
};

// Resolves `path` for an override; `create` makes missing maps on the way.
Node* Walk(Node& root, const std::vector<std::string>& parts, size_t count, bool create) {
  Node* node = &root;
  for (size_t i = 0; i < count; ++i) {
    const std::string& part = parts[i];
    if (node->IsList()) {
      size_t index = 0;
      if (!absl::SimpleAtoi(part, &index) || index >= node->items().size()) return nullptr;
      node = &node->mutable_items()[index];
      continue;
    }
    if (!node->IsMap()) {
      if (!create || !node->IsNull()) return nullptr;
      *node = Node::Map(node->mark());
    }
    Node* child = node->FindMutable(part);
    if (child == nullptr) {
      if (!create) return nullptr;
      child = &node->Set(part, Node::Map());
    }
    node = child;
  }
  return node;
}

absl::Status ApplyAt(Node& root, const std::vector<std::string>& parts, const Override& o,
                     absl::string_view shown_key) {
  auto error = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("override '", o.text, "': ", why));
  };
  const std::string& last = parts.back();
  if (o.op == Override::Op::kDelete) {
    Node* parent = Walk(root, parts, parts.size() - 1, false);
    if (parent == nullptr || (parent->IsMap() && parent->Find(last) == nullptr)) {
      return error(absl::StrCat("cannot delete ", shown_key, ": there is no such key"));
    }
    if (parent->IsList()) {
      size_t index = 0;
      if (!absl::SimpleAtoi(last, &index) || index >= parent->items().size()) {
        return error(absl::StrCat("cannot delete ", shown_key, ": no such list item"));
      }
      parent->mutable_items().erase(parent->mutable_items().begin() + index);
      return absl::OkStatus();
    }
    if (o.has_value) {
      const Node* current = parent->Find(last);
      if (!current->IsScalar() || current->text() != o.value.text()) {
        return error(absl::StrCat("cannot delete ", shown_key, ": its value is not ",
                                  o.value.text()));
      }
    }
    parent->Erase(last);
    return absl::OkStatus();
  }
  const bool create = o.op != Override::Op::kSet;
  Node* parent = Walk(root, parts, parts.size() - 1, create);
  if (parent == nullptr) {
    return error(absl::StrCat(
        "no such key ", shown_key,
        o.op == Override::Op::kSet ? absl::StrCat("; to add it, write +", o.text) : ""));
  }
  if (parent->IsList()) {
    size_t index = 0;
    if (!absl::SimpleAtoi(last, &index) || index >= parent->items().size()) {
      return error(absl::StrCat("no list item ", shown_key));
    }
    if (o.op == Override::Op::kAdd) {
      return error(absl::StrCat("an item is already at ", shown_key, "; to replace it, write ",
                                o.text.substr(1)));
    }
    parent->mutable_items()[index] = o.value;
    return absl::OkStatus();
  }
  if (parent->IsNull()) *parent = Node::Map(parent->mark());
  if (!parent->IsMap()) {
    return error(absl::StrCat("cannot set ", shown_key, ": its parent is not a map"));
  }
  const Node* existing = parent->Find(last);
  if (o.op == Override::Op::kSet && existing == nullptr) {
    return error(absl::StrCat("no such key ", shown_key, "; to add it, write +", o.text));
  }
  if (o.op == Override::Op::kAdd && existing != nullptr) {
    return error(absl::StrCat("there is already a value at ", shown_key,
                              "; to replace it, write ", o.text.substr(1), " or +", o.text));
  }
  parent->Set(last, o.value);
  return absl::OkStatus();
}

}  // namespace

void MergeInto(Node& base, const Node& overlay) {
  if (overlay.IsMap() && base.IsMap()) {
    for (const auto& [key, value] : overlay.entries()) {
      Node* existing = base.FindMutable(key);
      if (existing == nullptr) {
        base.Set(key, value);
      } else {
        MergeInto(*existing, value);
      }
    }
    return;
  }
  // A `???` replaces nothing that is already there, not even null or `{}`: OmegaConf 2.2 keeps
  // the destination's value (so `defaults: [_self_, deployment: vllm]` with the user's
  // `checkpoint_path: null` keeps the null, as in Hydra).
  if (overlay.IsMissing()) return;
  base = overlay;
}

absl::StatusOr<Override> ParseOverride(absl::string_view text) {
  Override o;
  o.text = std::string(text);
  absl::string_view rest = absl::StripAsciiWhitespace(text);
  if (absl::ConsumePrefix(&rest, "++")) {
    o.op = Override::Op::kForce;
  } else if (absl::ConsumePrefix(&rest, "+")) {
    o.op = Override::Op::kAdd;
  } else if (absl::ConsumePrefix(&rest, "~")) {
    o.op = Override::Op::kDelete;
  }
  size_t eq = rest.find('=');
  absl::string_view key = absl::StripAsciiWhitespace(rest.substr(0, eq));
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "override '", text, "': ", why,
        " (forms: key=value, +key=value to add, ++key=value to add or replace, ~key to delete)"));
  };
  if (key.empty()) return bad("missing key");
  for (char c : key) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
          c == '-' || c == '/' || c == '@')) {
      return bad(absl::StrCat("invalid character '", std::string(1, c), "' in key"));
    }
  }
  if (absl::StartsWith(key, ".") || absl::EndsWith(key, ".") || absl::StrContains(key, "..")) {
    return bad("empty key component");
  }
  o.key = std::string(key);
  if (eq == absl::string_view::npos) {
    if (o.op != Override::Op::kDelete) return bad("missing '='");
    return o;
  }
  o.has_value = true;
  absl::string_view value = absl::StripAsciiWhitespace(rest.substr(eq + 1));
  Mark mark{absl::StrCat("-o ", text)};
  if (value.empty()) {
    o.value = Node::Scalar("", true, mark);
    return o;
  }
  auto parsed = LoadYaml(absl::StrCat("v: ", value), mark.file);
  if (!parsed.ok() || parsed->Find("v") == nullptr) {
    // Not valid as a YAML value (e.g. an unbalanced quote): take it verbatim as a string.
    o.value = Node::Scalar(std::string(value), true, mark);
    return o;
  }
  o.value = *parsed->Find("v");
  // Errors in the value point at the override, not at a line of a synthetic document.
  std::function<void(Node&)> remark = [&](Node& n) {
    n.set_mark(mark);
    for (auto& [k, v] : n.mutable_entries()) remark(v);
    for (Node& item : n.mutable_items()) remark(item);
  };
  remark(o.value);
  return o;
}

absl::Status ApplyOverride(Node& root, const Override& o) {
  std::vector<std::string> parts = absl::StrSplit(o.key, '.');
  // NEL's sugar: evaluation.tasks.<name>.<path> with a non-integer <name>.
  if (parts.size() >= 4 && parts[0] == "evaluation" && parts[1] == "tasks") {
    size_t index = 0;
    if (!absl::SimpleAtoi(parts[2], &index)) {
      Node* tasks = Walk(root, parts, 2, false);
      if (tasks == nullptr || !tasks->IsList()) {
        return absl::InvalidArgumentError(
            absl::StrCat("override '", o.text, "': evaluation.tasks is not a list of tasks"));
      }
      std::vector<std::string> names;
      int matched = 0;
      for (size_t i = 0; i < tasks->items().size(); ++i) {
        const Node* name = tasks->items()[i].Find("name");
        if (name == nullptr || !name->IsScalar()) continue;
        names.push_back(name->text());
        if (name->text() != parts[2]) continue;
        std::vector<std::string> indexed = parts;
        indexed[2] = std::to_string(i);
        // A key the task does not set yet is added (the sugar targets task-level settings).
        Override adjusted = o;
        if (adjusted.op == Override::Op::kSet &&
            Walk(root, indexed, indexed.size(), false) == nullptr) {
          adjusted.op = Override::Op::kForce;
        }
        RETURN_IF_ERROR(ApplyAt(root, indexed, adjusted, o.key));
        ++matched;
      }
      if (matched == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "override '", o.text, "': no task named ", parts[2],
            names.empty() ? "" : absl::StrCat(" (tasks: ", absl::StrJoin(names, ", "), ")")));
      }
      return absl::OkStatus();
    }
  }
  return ApplyAt(root, parts, o, o.key);
}

absl::StatusOr<Node> Compose(const ComposeInput& input, const GroupFiles& builtin_groups) {
  return Composer(input, builtin_groups).Run();
}

}  // namespace evalctl::config
