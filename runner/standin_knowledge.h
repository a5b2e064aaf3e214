// What the stand-in model server "knows": the right answer to the questions of the bundled
// datasets (looked up by the question text found in the prompt), and to simple arithmetic it can
// parse out of any prompt ("What is 12 × 7?", optionally with lettered choices).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "runner/dataset.h"
#include "runner/prompt.h"

namespace evalctl::runner {

struct KnownAnswer {
  bool known = false;
  Format format = Format::kExactMatch;
  // Exact match: the answer text. Multiple choice: the letter.
  std::string answer;
  std::vector<std::string> choices;  // multiple choice
  int answer_index = -1;             // multiple choice
  // "dataset:<item id>" or "arithmetic" (parsed), for logs and /stats.
  std::string source;
};

class Knowledge {
 public:
  absl::Status AddDataset(const std::string& path);
  // Every *.jsonl file in `dir`.
  absl::Status AddDirectory(const std::string& dir);
  size_t size() const { return entries_.size(); }

  KnownAnswer Lookup(absl::string_view prompt) const;

 private:
  struct Entry {
    Format format;
    Item item;
  };
  std::vector<Entry> entries_;
  absl::flat_hash_map<std::string, std::vector<size_t>> by_question_;
};

// The reply the stand-in gives: the right answer or a deterministic wrong one (chosen with
// `variant`), phrased in one of a few styles for chat, or as a bare continuation (plus an invented
// next question, as a base model does) for completions.
std::string ComposeReply(const KnownAnswer& answer, bool correct, EndpointType type,
                         uint64_t variant);

// A wrong answer that cannot be mistaken for the right one.
std::string WrongAnswer(const KnownAnswer& answer, uint64_t variant);

}  // namespace evalctl::runner
