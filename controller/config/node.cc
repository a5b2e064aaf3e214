#include "controller/config/node.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace evalctl::config {
namespace {

bool IsBoolTrue(absl::string_view s) {
  return s == "true" || s == "True" || s == "TRUE" || s == "yes" || s == "Yes" || s == "YES" ||
         s == "on" || s == "On" || s == "ON";
}
bool IsBoolFalse(absl::string_view s) {
  return s == "false" || s == "False" || s == "FALSE" || s == "no" || s == "No" || s == "NO" ||
         s == "off" || s == "Off" || s == "OFF";
}
bool IsNullWord(absl::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

// [-+]?[0-9][0-9_]* (YAML 1.1 allows '_' separators).
bool ParseInt(absl::string_view s, int64_t* out) {
  std::string digits = absl::StrReplaceAll(s, {{"_", ""}});
  if (digits.empty()) return false;
  size_t i = (digits[0] == '-' || digits[0] == '+') ? 1 : 0;
  if (i == digits.size()) return false;
  for (size_t j = i; j < digits.size(); ++j) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(digits[j]))) return false;
  }
  return absl::SimpleAtoi(digits, out);
}

bool ParseDouble(absl::string_view s, double* out) {
  if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "+.inf") {
    *out = HUGE_VAL;
    return true;
  }
  if (s == "-.inf" || s == "-.Inf" || s == "-.INF") {
    *out = -HUGE_VAL;
    return true;
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    *out = std::nan("");
    return true;
  }
  std::string text = absl::StrReplaceAll(s, {{"_", ""}});
  if (text.empty()) return false;
  // Must look like a number: digits, one optional '.', optional exponent.
  bool digit = false;
  for (char c : text) {
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) digit = true;
    else if (c != '.' && c != 'e' && c != 'E' && c != '-' && c != '+') return false;
  }
  if (!digit) return false;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || errno == ERANGE) return false;
  *out = v;
  return true;
}

struct Converter {
  const LoadLimits& limits;
  std::string file;
  size_t nodes = 0;

  Mark MarkOf(const YAML::Node& n) const {
    YAML::Mark m = n.Mark();
    return Mark{file, m.line >= 0 ? m.line + 1 : 0, m.column >= 0 ? m.column + 1 : 0};
  }

  absl::StatusOr<Node> Convert(const YAML::Node& n, int depth, const std::string& path) {
    if (++nodes > limits.max_nodes) {
      return absl::InvalidArgumentError(absl::StrCat(
          MarkOf(n).ToString(), ": the document expands to more than ", limits.max_nodes,
          " values (YAML aliases repeating each other?); a configuration is never this large"));
    }
    if (depth > limits.max_depth) {
      return absl::InvalidArgumentError(absl::StrCat(MarkOf(n).ToString(), ": ",
                                                     path.empty() ? "the document" : path,
                                                     " is nested deeper than ", limits.max_depth,
                                                     " levels"));
    }
    switch (n.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return Node::Null(MarkOf(n));
      case YAML::NodeType::Scalar: {
        const std::string& tag = n.Tag();
        bool quoted = tag == "!" || tag == "tag:yaml.org,2002:str";
        return Node::Scalar(n.Scalar(), quoted, MarkOf(n));
      }
      case YAML::NodeType::Sequence: {
        Node out = Node::List(MarkOf(n));
        int i = 0;
        for (const YAML::Node& item : n) {
          ASSIGN_OR_RETURN(Node child, Convert(item, depth + 1, JoinPath(path, std::to_string(i))));
          out.Append(std::move(child));
          ++i;
        }
        return out;
      }
      case YAML::NodeType::Map: {
        Node out = Node::Map(MarkOf(n));
        for (const auto& kv : n) {
          if (!kv.first.IsScalar()) {
            return absl::InvalidArgumentError(absl::StrCat(
                MarkOf(kv.first).ToString(), ": keys must be plain strings",
                path.empty() ? "" : absl::StrCat(" (in ", path, ")")));
          }
          std::string key = kv.first.Scalar();
          std::string child_path = JoinPath(path, key);
          if (out.Find(key) != nullptr) {
            return absl::InvalidArgumentError(
                absl::StrCat(MarkOf(kv.first).ToString(), ": duplicate key ", child_path,
                             " (first defined at line ", out.Find(key)->mark().line, ")"));
          }
          ASSIGN_OR_RETURN(Node child, Convert(kv.second, depth + 1, child_path));
          if (child.mark().line == 0) child.set_mark(MarkOf(kv.first));
          out.Set(std::move(key), std::move(child));
        }
        return out;
      }
    }
    return absl::InternalError("unknown YAML node type");
  }
};

// yaml-cpp may write text with a control character (NUL, ESC, ...) as a plain scalar, where a
// reader does not accept it; in double quotes it is escaped.
bool NeedsEscapes(absl::string_view text) {
  return std::any_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 && c != '\n'; });
}

void Emit(YAML::Emitter& out, const Node& node, absl::string_view redaction) {
  switch (node.kind()) {
    case Node::Kind::kNull:
      out << YAML::Null;
      return;
    case Node::Kind::kScalar:
      if (node.secret() && !redaction.empty()) {
        out << (node.env_sources().empty()
                    ? std::string(redaction)
                    : absl::StrCat(redaction, " from $", absl::StrJoin(node.env_sources(), ", $")));
      } else if ((node.quoted() &&
                  (node.LooksNonString() || node.IsMissing() || node.text().empty())) ||
                 NeedsEscapes(node.text())) {
        out << YAML::DoubleQuoted << node.text();
      } else {
        out << node.text();
      }
      return;
    case Node::Kind::kList:
      if (node.items().empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      out << YAML::BeginSeq;
      for (const Node& item : node.items()) Emit(out, item, redaction);
      out << YAML::EndSeq;
      return;
    case Node::Kind::kMap:
      if (node.entries().empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      out << YAML::BeginMap;
      for (const auto& [key, value] : node.entries()) {
        // YAML allows 1024 characters in an implicit key, as written. yaml-cpp switches to an
        // explicit key (`? key`) above 1024 bytes only, but escapes (up to 4 characters a byte)
        // can make a shorter key too long to read back.
        if (key.size() > 250) out << YAML::LongKey;
        out << YAML::Key;
        if (NeedsEscapes(key)) out << YAML::DoubleQuoted;
        out << key << YAML::Value;
        Emit(out, value, redaction);
      }
      out << YAML::EndMap;
      return;
  }
}

}  // namespace

std::string Mark::ToString() const {
  if (file.empty() && line == 0) return "";
  if (line == 0) return file;
  return absl::StrCat(file, ":", line, column > 0 ? absl::StrCat(":", column) : "");
}

Node Node::Null(Mark mark) {
  Node n;
  n.kind_ = Kind::kNull;
  n.mark_ = std::move(mark);
  return n;
}

Node Node::Scalar(std::string text, bool quoted, Mark mark) {
  Node n;
  n.kind_ = Kind::kScalar;
  n.text_ = std::move(text);
  n.quoted_ = quoted;
  n.mark_ = std::move(mark);
  return n;
}

Node Node::Map(Mark mark) {
  Node n;
  n.kind_ = Kind::kMap;
  n.mark_ = std::move(mark);
  return n;
}

Node Node::List(Mark mark) {
  Node n;
  n.kind_ = Kind::kList;
  n.mark_ = std::move(mark);
  return n;
}

bool Node::HasInterpolation() const {
  if (kind_ != Kind::kScalar) return false;
  for (size_t i = text_.find("${"); i != std::string::npos; i = text_.find("${", i + 2)) {
    if (i == 0 || text_[i - 1] != '\\') return true;
  }
  return false;
}

void Node::add_env_source(std::string name) {
  for (const auto& n : env_sources_) {
    if (n == name) return;
  }
  env_sources_.push_back(std::move(name));
}

const Node* Node::Find(absl::string_view key) const {
  for (const auto& [k, v] : entries_) {
    if (k == key) return &v;
  }
  return nullptr;
}

Node* Node::FindMutable(absl::string_view key) {
  for (auto& [k, v] : entries_) {
    if (k == key) return &v;
  }
  return nullptr;
}

Node& Node::Set(std::string key, Node value) {
  kind_ = Kind::kMap;
  if (Node* existing = FindMutable(key)) {
    *existing = std::move(value);
    return *existing;
  }
  entries_.emplace_back(std::move(key), std::move(value));
  return entries_.back().second;
}

bool Node::Erase(absl::string_view key) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first == key) {
      entries_.erase(it);
      return true;
    }
  }
  return false;
}

absl::StatusOr<bool> Node::AsBool() const {
  if (kind_ == Kind::kScalar && !quoted_) {
    if (IsBoolTrue(text_)) return true;
    if (IsBoolFalse(text_)) return false;
  }
  return absl::InvalidArgumentError("expected true or false");
}

absl::StatusOr<int64_t> Node::AsInt() const {
  int64_t v = 0;
  if (kind_ == Kind::kScalar && ParseInt(text_, &v)) return v;
  return absl::InvalidArgumentError("expected an integer");
}

absl::StatusOr<double> Node::AsDouble() const {
  double v = 0;
  if (kind_ == Kind::kScalar && ParseDouble(text_, &v)) return v;
  return absl::InvalidArgumentError("expected a number");
}

bool Node::LooksNonString() const {
  if (kind_ != Kind::kScalar) return false;
  int64_t i;
  double d;
  return IsBoolTrue(text_) || IsBoolFalse(text_) || IsNullWord(text_) || ParseInt(text_, &i) ||
         ParseDouble(text_, &d);
}

std::string JoinPath(absl::string_view parent, absl::string_view key) {
  if (parent.empty()) return std::string(key);
  return absl::StrCat(parent, ".", key);
}

absl::StatusOr<Node> LoadYaml(absl::string_view text, absl::string_view file,
                              const LoadLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", text.size(),
                                                   " bytes is larger than the limit of ",
                                                   limits.max_bytes, " bytes for a YAML file"));
  }
  // Every string of a configuration ends up in protobuf string fields (the resolved config, the
  // job script), which must be valid UTF-8. YAML allows no control characters other than tab
  // and line breaks (escapes in double quotes write them), and yaml-cpp mangles a NUL.
  size_t bad = FirstInvalidUtf8(text);
  const auto control = std::find_if(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 && c != '\t' && c != '\n' && c != '\r';
  });
  const bool is_control = control != text.end() && static_cast<size_t>(control - text.begin()) < bad;
  if (is_control) bad = static_cast<size_t>(control - text.begin());
  if (bad != std::string::npos) {
    const absl::string_view before = text.substr(0, bad);
    const size_t line_start = before.rfind('\n');
    const size_t column = line_start == absl::string_view::npos ? bad + 1 : bad - line_start;
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s:%d:%d: %s (byte 0x%02X)", file, std::count(before.begin(), before.end(), '\n') + 1,
        column,
        is_control ? "control character; write it as an escape in double quotes"
                   : "invalid UTF-8; a YAML file must be UTF-8",
        static_cast<unsigned char>(text[bad])));
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": invalid YAML: ", e.msg));
  }
  Converter converter{limits, std::string(file)};
  absl::StatusOr<Node> node;
  try {
    node = converter.Convert(root, 0, "");
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ":", e.mark.line + 1, ": ", e.msg));
  }
  if (!node.ok()) return node.status();
  if (node->IsNull()) return Node::Map(Mark{std::string(file), 1, 1});
  return node;
}

std::string ToYaml(const Node& node, absl::string_view redaction) {
  YAML::Emitter out;
  out.SetIndent(2);
  Emit(out, node, redaction);
  std::string text = out.c_str();
  if (!text.empty() && text.back() != '\n') text.push_back('\n');
  return text;
}

const Node* Lookup(const Node& root, absl::string_view path) {
  const Node* node = &root;
  if (path.empty()) return node;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    if (node->IsMap()) {
      node = node->Find(part);
    } else if (node->IsList()) {
      size_t index = 0;
      if (!absl::SimpleAtoi(part, &index) || index >= node->items().size()) return nullptr;
      node = &node->items()[index];
    } else {
      return nullptr;
    }
    if (node == nullptr) return nullptr;
  }
  return node;
}

}  // namespace evalctl::config
