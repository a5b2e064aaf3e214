// Stable hashes for evalctl-runner and evalctl-standin.
//
// Both programs need hashes that are the same in every process, on every machine and in every
// version (absl::Hash and std::hash are not): the runner keys its response cache with them and the
// stand-in server derives its deterministic "random" decisions from them.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace evalctl::runner {

// Lower-case hex SHA-256 of `data` (64 characters). Used for cache keys.
std::string Sha256Hex(absl::string_view data);

// 64-bit FNV-1a of `data`, mixed with `seed` through a splitmix64 finaliser.
uint64_t StableHash64(absl::string_view data, uint64_t seed = 0);

// A number in [0, 1) determined by (seed, data): the stand-in's per-prompt coin.
double UnitInterval(absl::string_view data, uint64_t seed);

// 16 lower-case hex digits of StableHash64(data, seed).
std::string ShortHashHex(absl::string_view data, uint64_t seed = 0);

}  // namespace evalctl::runner
