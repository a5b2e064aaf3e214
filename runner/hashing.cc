#include "runner/hashing.h"

#include <openssl/evp.h>

#include "absl/strings/str_format.h"

namespace evalctl::runner {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  // EVP_Digest with SHA-256 cannot fail for in-memory input short of memory exhaustion.
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) absl::StrAppendFormat(&hex, "%02x", digest[i]);
  return hex;
}

uint64_t StableHash64(absl::string_view data, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return SplitMix64(h ^ SplitMix64(seed));
}

double UnitInterval(absl::string_view data, uint64_t seed) {
  // 53 random bits -> a double in [0, 1).
  return static_cast<double>(StableHash64(data, seed) >> 11) * 0x1.0p-53;
}

std::string ShortHashHex(absl::string_view data, uint64_t seed) {
  return absl::StrFormat("%016x", StableHash64(data, seed));
}

}  // namespace evalctl::runner
