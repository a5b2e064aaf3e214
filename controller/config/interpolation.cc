#include "controller/config/interpolation.h"

#include <set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace evalctl::config {
namespace {

constexpr int kMaxNesting = 32;
// What interpolation may produce: one value, and everything together. A few references that each
// double what they read make gigabytes out of a short file; these limits stop that in
// milliseconds, naming the key, instead of exhausting the controller.
constexpr size_t kMaxValueBytes = 1 << 20;
constexpr size_t kMaxResolvedBytes = 16 << 20;

// The bytes of a subtree's scalars, and a little per node.
size_t Weight(const Node& node) {
  if (node.IsScalar()) return node.text().size() + 16;
  size_t total = 16;
  if (node.IsMap()) {
    for (const auto& [key, value] : node.entries()) total += key.size() + Weight(value);
  } else if (node.IsList()) {
    for (const Node& item : node.items()) total += Weight(item);
  }
  return total;
}


std::string Parent(absl::string_view path) {
  size_t dot = path.rfind('.');
  return dot == absl::string_view::npos ? "" : std::string(path.substr(0, dot));
}

void Taint(Node& target, const Node& source) {
  if (!source.secret()) return;
  target.set_secret(true);
  for (const std::string& name : source.env_sources()) target.add_env_source(name);
}

// Splits resolver arguments at top-level commas (not inside ${...}, quotes or brackets).
std::vector<std::string> SplitArgs(absl::string_view args) {
  std::vector<std::string> out;
  std::string current;
  int depth = 0;
  char quote = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    char c = args[i];
    if (quote != 0) {
      current.push_back(c);
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') quote = c;
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    if (c == ',' && depth == 0) {
      out.push_back(std::string(absl::StripAsciiWhitespace(current)));
      current.clear();
      continue;
    }
    current.push_back(c);
  }
  out.push_back(std::string(absl::StripAsciiWhitespace(current)));
  return out;
}

// Finds the `}` that closes the `${` at `open` (nested interpolations and quotes respected).
size_t MatchingBrace(absl::string_view text, size_t open) {
  int depth = 0;
  char quote = 0;
  for (size_t i = open; i < text.size(); ++i) {
    char c = text[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
      continue;
    }
    if (i > open + 1 && (c == '\'' || c == '"')) {
      quote = c;
      continue;
    }
    if (c == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      ++depth;
      ++i;
      continue;
    }
    if (c == '}' && --depth == 0) return i;
  }
  return absl::string_view::npos;
}

class Resolver {
 public:
  Resolver(Node& root, const Environment& env) : root_(root), env_(env) {}

  absl::Status ResolveSubtree(const std::string& path) {
    Node* node = Get(path);
    if (node == nullptr) return absl::OkStatus();
    if (node->IsScalar()) {
      if (in_progress_.count(path) > 0) {
        return Error(*node, path, "interpolation cycle: the value refers back to itself");
      }
      // A resolved value may hold a literal "${" (from "\${"); never evaluate it twice.
      if (!done_.insert(path).second) return absl::OkStatus();
      if (!node->HasInterpolation()) {
        UnescapeInPlace(*node);
        return absl::OkStatus();
      }
      in_progress_.insert(path);
      std::string text = node->text();
      Mark mark = node->mark();
      auto value = Evaluate(text, path, mark, 0);
      in_progress_.erase(path);
      if (!value.ok()) {
        done_.erase(path);
        return value.status();
      }
      RETURN_IF_ERROR(Produced(*node, path, Weight(*value)));
      node = Get(path);  // evaluation may have replaced other nodes, not this one
      value->set_mark(mark);
      *node = std::move(*value);
      return absl::OkStatus();
    }
    if (in_progress_.count(path) > 0) {
      return Error(*node, path, "interpolation cycle: a value refers to a map that contains it");
    }
    in_progress_.insert(path);
    std::vector<std::string> children;
    if (node->IsMap()) {
      for (const auto& [key, value] : node->entries()) children.push_back(JoinPath(path, key));
    } else if (node->IsList()) {
      for (size_t i = 0; i < node->items().size(); ++i) {
        children.push_back(JoinPath(path, std::to_string(i)));
      }
    }
    for (const std::string& child : children) {
      absl::Status s = ResolveSubtree(child);
      if (!s.ok()) {
        in_progress_.erase(path);
        return s;
      }
    }
    in_progress_.erase(path);
    return absl::OkStatus();
  }

 private:
  Node* Get(const std::string& path) { return const_cast<Node*>(Lookup(root_, path)); }

  // Counts what interpolation produced for `path`; an error once the total passes its limit.
  absl::Status Produced(const Node& node, absl::string_view path, size_t bytes) {
    produced_ += bytes;
    if (produced_ <= kMaxResolvedBytes) return absl::OkStatus();
    return Error(node, path,
                 absl::StrCat("interpolation has produced more than ", kMaxResolvedBytes >> 20,
                              " MiB of values in this configuration (the limit); do references "
                              "copy large values many times over?"));
  }

  absl::Status Error(const Node& node, absl::string_view path, absl::string_view why) {
    std::string where = node.mark().ToString();
    return absl::InvalidArgumentError(
        absl::StrCat(where.empty() ? "" : absl::StrCat(where, ": "), path, ": ", why));
  }

  static void UnescapeInPlace(Node& node) {
    if (node.IsScalar() && absl::StrContains(node.text(), "\\${")) {
      Node copy = Node::Scalar(absl::StrReplaceAll(node.text(), {{"\\${", "${"}}), true,
                               node.mark());
      Taint(copy, node);
      node = std::move(copy);
    }
  }

  // Resolves the node at an absolute key path (resolving its own interpolations first).
  absl::StatusOr<Node> Reference(absl::string_view key, const std::string& from_path,
                                 const Mark& mark, bool allow_absent, bool* absent) {
    std::string target;
    absl::string_view k = key;
    if (absl::StartsWith(k, ".")) {
      // `.x` is relative to the map holding the node; each further dot goes one level up.
      std::string base = Parent(from_path);
      absl::ConsumePrefix(&k, ".");
      while (absl::ConsumePrefix(&k, ".")) base = Parent(base);
      target = JoinPath(base, k);
    } else {
      target = std::string(k);
    }
    // a[0].b → a.0.b
    target = absl::StrReplaceAll(target, {{"[", "."}, {"]", ""}});
    *absent = false;
    Node* node = Get(target);
    if (node == nullptr) {
      if (allow_absent) {
        *absent = true;
        return Node::Null();
      }
      // Name the deepest existing parent, to help with typos.
      return absl::InvalidArgumentError(absl::StrCat(
          mark.ToString(), mark.ToString().empty() ? "" : ": ", from_path,
          ": interpolation ${", key, "} refers to ", target, ", which does not exist"));
    }
    RETURN_IF_ERROR(ResolveSubtree(target));
    node = Get(target);
    if (node->IsMissing()) {
      if (allow_absent) {
        *absent = true;
        return Node::Null();
      }
      return absl::InvalidArgumentError(absl::StrCat(
          mark.ToString(), mark.ToString().empty() ? "" : ": ", from_path, ": interpolation ${",
          key, "} needs ", target, ", which is required (\?\?\?) but not set"));
    }
    return *node;
  }

  absl::StatusOr<Node> CallResolver(absl::string_view name, absl::string_view raw_args,
                                    const std::string& path, const Mark& mark, int nesting) {
    std::vector<std::string> args = SplitArgs(raw_args);
    auto arg_value = [&](const std::string& arg) -> absl::StatusOr<Node> {
      if (arg.size() >= 2 && (arg.front() == '\'' || arg.front() == '"') &&
          arg.back() == arg.front()) {
        return Node::Scalar(arg.substr(1, arg.size() - 2), true, mark);
      }
      if (arg == "null") return Node::Null(mark);
      return Evaluate(arg, path, mark, nesting + 1);
    };
    auto fail = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(mark.ToString(),
                                                     mark.ToString().empty() ? "" : ": ", path,
                                                     ": ${", name, ":", raw_args, "}: ", why));
    };
    if (name == "oc.env") {
      if (args.empty() || args.size() > 2 || args[0].empty()) {
        return fail("expected ${oc.env:VARIABLE} or ${oc.env:VARIABLE,default}");
      }
      const std::string& var = args[0];
      if (auto it = env_.find(var); it != env_.end()) {
        Node out = Node::Scalar(it->second, true, mark);
        out.set_secret(true);
        out.add_env_source(var);
        return out;
      }
      if (args.size() == 2) return arg_value(args[1]);
      return fail(absl::StrCat("environment variable ", var,
                               " is not set; set it before running evalctl, or give a default: "
                               "${oc.env:",
                               var, ",default}"));
    }
    if (name == "select_not_null" || name == "oc.select") {
      if (args.empty() || args.size() > 2 || args[0].empty()) {
        return fail(absl::StrCat("expected ${", name, ":key,default}"));
      }
      bool absent = false;
      ASSIGN_OR_RETURN(Node selected, Reference(args[0], path, mark, true, &absent));
      bool fallback = absent || (name == "select_not_null" && selected.IsNull());
      if (!fallback) return selected;
      if (args.size() == 2) return arg_value(args[1]);
      return Node::Null(mark);
    }
    return fail(absl::StrCat("unknown resolver ", name,
                             " (supported: oc.env, oc.select, select_not_null)"));
  }

  absl::StatusOr<Node> EvaluateOne(absl::string_view inner, const std::string& path,
                                   const Mark& mark, int nesting) {
    inner = absl::StripAsciiWhitespace(inner);
    // A resolver call: name:args, where the name is an identifier with dots.
    size_t colon = inner.find(':');
    if (colon != absl::string_view::npos) {
      absl::string_view name = inner.substr(0, colon);
      bool identifier = !name.empty();
      for (char c : name) {
        identifier &= absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
      }
      if (identifier) return CallResolver(name, inner.substr(colon + 1), path, mark, nesting);
    }
    if (inner.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(mark.ToString(), ": ", path, ": empty interpolation ${}"));
    }
    bool absent = false;
    return Reference(inner, path, mark, false, &absent);
  }

  absl::StatusOr<Node> Evaluate(absl::string_view text, const std::string& path, const Mark& mark,
                                int nesting) {
    if (nesting > kMaxNesting) {
      return absl::InvalidArgumentError(
          absl::StrCat(mark.ToString(), ": ", path, ": interpolations nested too deeply"));
    }
    // A whole-value interpolation keeps the referenced type.
    if (absl::StartsWith(text, "${") && MatchingBrace(text, 0) == text.size() - 1) {
      return EvaluateOne(text.substr(2, text.size() - 3), path, mark, nesting);
    }
    std::string out;
    Node taint = Node::Scalar("");
    size_t i = 0;
    while (i < text.size()) {
      if (text[i] == '\\' && absl::StartsWith(text.substr(i), "\\${")) {
        out += "${";
        i += 3;
        continue;
      }
      if (absl::StartsWith(text.substr(i), "${")) {
        size_t close = MatchingBrace(text, i);
        if (close == absl::string_view::npos) {
          return absl::InvalidArgumentError(absl::StrCat(
              mark.ToString(), ": ", path, ": unterminated interpolation in \"", text, "\""));
        }
        ASSIGN_OR_RETURN(Node piece, EvaluateOne(text.substr(i + 2, close - i - 2), path, mark,
                                                 nesting + 1));
        if (piece.IsMap() || piece.IsList()) {
          return absl::InvalidArgumentError(absl::StrCat(
              mark.ToString(), ": ", path, ": interpolation ", text.substr(i, close - i + 1),
              " is a ", piece.IsMap() ? "map" : "list", " and cannot be part of a string"));
        }
        out += piece.IsNull() ? "None" : piece.text();
        if (out.size() > kMaxValueBytes) {
          return absl::InvalidArgumentError(absl::StrCat(
              mark.ToString(), mark.ToString().empty() ? "" : ": ", path,
              ": interpolation makes this value longer than ", kMaxValueBytes >> 20,
              " MiB (the limit of one value); do references repeat a value that repeats others?"));
        }
        Taint(taint, piece);
        i = close + 1;
        continue;
      }
      out.push_back(text[i]);
      ++i;
    }
    Node result = Node::Scalar(std::move(out), true, mark);
    Taint(result, taint);
    return result;
  }

  Node& root_;
  const Environment& env_;
  std::set<std::string> in_progress_;
  std::set<std::string> done_;
  size_t produced_ = 0;  // bytes of resolved values so far (Weight)
};

}  // namespace

absl::Status ResolveAll(Node& root, const Environment& environment) {
  return Resolver(root, environment).ResolveSubtree("");
}

}  // namespace evalctl::config
