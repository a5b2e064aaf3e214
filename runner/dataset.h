// Benchmark datasets: JSON Lines files, one item per line.
//
//   multiple choice:  {"id": "q1", "question": "...", "choices": ["...", "..."], "answer": 1}
//                     answer: 0-based index (number or digit string) or letter ("B", "(B)")
//   exact match:      {"id": "q1", "question": "...", "answer": "42"}   (answer: string or number)
//
// Blank lines are skipped. A missing id becomes "line-<n>"; ids must be unique.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace evalctl::runner {

enum class Format { kMultipleChoice, kExactMatch };

// "mc" / "multiple_choice" / "exact" / "exact_match" (case-insensitive).
absl::StatusOr<Format> ParseFormat(absl::string_view text);
// "mc" or "exact".
const char* FormatName(Format format);

inline constexpr int kMaxChoices = 26;

struct Item {
  std::string id;
  std::string question;
  // Multiple choice only: the options, shown as A, B, C, ...
  std::vector<std::string> choices;
  // Exact match: the expected answer. Multiple choice: the correct letter ("A".."Z").
  std::string answer;
  // Multiple choice only: 0-based index of the correct option.
  int answer_index = -1;
};

struct Dataset {
  std::string path;
  Format format = Format::kExactMatch;
  std::vector<Item> items;
};

// "A" for 0, "B" for 1, ...
std::string ChoiceLetter(int index);

// Parses one line. `format` unset: multiple choice when the object has "choices".
// `line_number` (1-based) only appears in error messages.
absl::StatusOr<Item> ParseItem(absl::string_view line, std::optional<Format> format,
                               int line_number, Format* detected = nullptr);

// Reads a whole file. `format` unset: detected from the first item, and every item must agree.
absl::StatusOr<Dataset> LoadDataset(const std::string& path, std::optional<Format> format);

// Finds a dataset given as a path or as a bundled name ("arithmetic" or "arithmetic.jsonl"):
// an existing file wins; otherwise a name without '/' is looked up in `search_dirs` in order.
absl::StatusOr<std::string> ResolveDatasetPath(const std::string& path_or_name,
                                               const std::vector<std::string>& search_dirs);

// Directories that hold the bundled datasets, most specific first: `explicit_dir` (flag),
// $EVALCTL_DATASETS_DIR, <dir of this executable>/../share/evalctl/datasets, and the source
// tree's runner/datasets (compiled in). Only existing directories are returned.
std::vector<std::string> DatasetSearchDirs(const std::string& explicit_dir);

}  // namespace evalctl::runner
