#include "controller/config/suggest.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"

namespace evalctl::config {

size_t OsaDistance(absl::string_view a, absl::string_view b) {
  std::string x = absl::AsciiStrToLower(a);
  std::string y = absl::AsciiStrToLower(b);
  const size_t n = x.size(), m = y.size();
  if (n == 0) return m;
  if (m == 0) return n;
  // Three rows of the (n+1) x (m+1) table: i-2, i-1 and i.
  std::vector<size_t> before(m + 1), prev(m + 1), cur(m + 1);
  for (size_t j = 0; j <= m; ++j) prev[j] = j;
  for (size_t i = 1; i <= n; ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= m; ++j) {
      size_t cost = x[i - 1] == y[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && x[i - 1] == y[j - 2] && x[i - 2] == y[j - 1]) {
        cur[j] = std::min(cur[j], before[j - 2] + 1);
      }
    }
    std::swap(before, prev);
    std::swap(prev, cur);
  }
  return prev[m];
}

std::optional<std::string> NearestName(absl::string_view word,
                                       const std::vector<std::string>& candidates) {
  if (word.empty()) return std::nullopt;
  const size_t threshold = std::max<size_t>(2, word.size() / 3);
  std::optional<std::string> best;
  size_t best_distance = threshold + 1;
  for (const std::string& candidate : candidates) {
    if (candidate.empty()) continue;
    // The distance is at least the difference in length: skip hopeless candidates (and a long
    // hostile `word`) without filling the table.
    size_t length_gap = word.size() > candidate.size() ? word.size() - candidate.size()
                                                       : candidate.size() - word.size();
    if (length_gap >= best_distance) continue;
    size_t distance = OsaDistance(word, candidate);
    if (distance >= best_distance) continue;
    if (distance >= word.size() || distance >= candidate.size()) continue;
    best_distance = distance;
    best = candidate;
  }
  return best;
}

}  // namespace evalctl::config
