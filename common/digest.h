// SHA-256 (OpenSSL's libcrypto).
//
//   std::string raw = Sha256(bytes);         // 32 bytes
//   std::string hex = Sha256Hex(bytes);      // 64 lowercase hex digits
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace evalctl {

std::string Sha256(absl::string_view data);
std::string Sha256Hex(absl::string_view data);

}  // namespace evalctl
