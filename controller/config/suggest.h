// "Did you mean ...?" for misspelled names (config keys, task names, group options).
//
//   if (auto near = NearestName("walltme", known_keys)) {
//     message += absl::StrCat("; did you mean ", *near, "?");          // → walltime
//   }
//
// Distance is optimal string alignment (Damerau–Levenshtein where each substring is edited at most
// once): insert, delete, substitute, or swap two adjacent characters, each costing 1. Letters are
// compared ASCII-case-insensitively, so `WallTime` is at distance 0 from `walltime`. Bytes, not
// Unicode characters, are compared. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace evalctl::config {

// Optimal-string-alignment distance between `a` and `b` (ASCII-case-insensitive).
size_t OsaDistance(absl::string_view a, absl::string_view b);

// The candidate closest to `word`, if it is close enough to be a plausible typo:
// distance <= max(2, word.size() / 3), and smaller than both lengths (so that `ab` is never
// "corrected" to an unrelated `cd`). Ties go to the earlier candidate. nullopt for an empty word,
// no candidates, or nothing close enough.
std::optional<std::string> NearestName(absl::string_view word,
                                       const std::vector<std::string>& candidates);

}  // namespace evalctl::config
