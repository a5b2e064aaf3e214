// The configuration tree: what YAML files, config groups and overrides are loaded into, merged,
// interpolated and validated.
//
// A Node is a value type (copying it copies the subtree). Every node remembers where it came from
// (`Mark`: file, line, column) so that errors can say where a bad value was written. Scalars keep
// their source text; whether they are numbers, booleans or strings is decided where they are read
// (by the schema), except that a quoted scalar is always a string.
//
// Not thread-safe; share only const trees.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace evalctl::config {

struct Mark {
  std::string file;
  // 1-based; 0 when unknown (a value built in code).
  int line = 0;
  int column = 0;

  // "my.yaml:12:5", "my.yaml", or "" when unknown.
  std::string ToString() const;
};

class Node {
 public:
  enum class Kind { kNull, kScalar, kMap, kList };

  Node() = default;
  static Node Null(Mark mark = {});
  static Node Scalar(std::string text, bool quoted = false, Mark mark = {});
  static Node Map(Mark mark = {});
  static Node List(Mark mark = {});

  Kind kind() const { return kind_; }
  bool IsNull() const { return kind_ == Kind::kNull; }
  bool IsScalar() const { return kind_ == Kind::kScalar; }
  bool IsMap() const { return kind_ == Kind::kMap; }
  bool IsList() const { return kind_ == Kind::kList; }
  // The OmegaConf MISSING marker: an unquoted `???`.
  bool IsMissing() const { return kind_ == Kind::kScalar && !quoted_ && text_ == "???"; }
  // A scalar that holds `${...}` somewhere (and is not escaped).
  bool HasInterpolation() const;

  const Mark& mark() const { return mark_; }
  void set_mark(Mark mark) { mark_ = std::move(mark); }

  // Scalars.
  const std::string& text() const { return text_; }
  bool quoted() const { return quoted_; }
  // Set when the value came from the user's environment (${oc.env:...}); see Secret rule in
  // DESIGN.md. Propagates through interpolation.
  bool secret() const { return secret_; }
  void set_secret(bool secret) { secret_ = secret; }
  // Names of the environment variables the value came from.
  const std::vector<std::string>& env_sources() const { return env_sources_; }
  void add_env_source(std::string name);

  // Maps keep insertion order.
  const std::vector<std::pair<std::string, Node>>& entries() const { return entries_; }
  std::vector<std::pair<std::string, Node>>& mutable_entries() { return entries_; }
  const Node* Find(absl::string_view key) const;
  Node* FindMutable(absl::string_view key);
  // Inserts or replaces.
  Node& Set(std::string key, Node value);
  bool Erase(absl::string_view key);

  // Lists.
  const std::vector<Node>& items() const { return items_; }
  std::vector<Node>& mutable_items() { return items_; }
  void Append(Node value) { items_.push_back(std::move(value)); }

  size_t size() const { return kind_ == Kind::kMap ? entries_.size() : items_.size(); }

  // Typed reads of a scalar, with YAML 1.1 core rules as OmegaConf applies them.
  absl::StatusOr<bool> AsBool() const;
  absl::StatusOr<int64_t> AsInt() const;
  absl::StatusOr<double> AsDouble() const;
  // True for a plain scalar that YAML would read as a number, bool or null.
  bool LooksNonString() const;

 private:
  Kind kind_ = Kind::kNull;
  Mark mark_;
  std::string text_;
  bool quoted_ = false;
  bool secret_ = false;
  std::vector<std::string> env_sources_;
  std::vector<std::pair<std::string, Node>> entries_;
  std::vector<Node> items_;
};

// A key path as users write it: `execution.mounts.deployment`, `evaluation.tasks.0.name`.
std::string JoinPath(absl::string_view parent, absl::string_view key);

// Limits on what a YAML document may hold, so that hostile input (alias bombs, huge files) fails
// with a clear error instead of exhausting memory.
struct LoadLimits {
  size_t max_bytes = 1 << 20;
  size_t max_nodes = 200000;
  int max_depth = 64;
};

// Parses one YAML document. An empty document is an empty map. Errors are INVALID_ARGUMENT and
// start with `file:line:column:`. Duplicate keys are an error, as in OmegaConf.
absl::StatusOr<Node> LoadYaml(absl::string_view text, absl::string_view file,
                              const LoadLimits& limits = {});

// Emits block-style YAML. Secret scalars are written as `redaction` when it is not empty.
std::string ToYaml(const Node& node, absl::string_view redaction = "");

// Map at `path` (dot-separated; list items by index), or nullptr.
const Node* Lookup(const Node& root, absl::string_view path);

}  // namespace evalctl::config
