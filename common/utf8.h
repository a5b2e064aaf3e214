// UTF-8 checks for text that ends up in protobuf string fields, which must hold valid UTF-8: a
// message with anything else cannot be parsed by its receiver.
//
//   if (size_t bad = FirstInvalidUtf8(text); bad != std::string::npos) { ... text[bad] ... }
//   score.set_task(ValidUtf8(name));   // invalid bytes become U+FFFD
//
// Invalid: a byte that starts no sequence, a truncated sequence, an overlong form, a surrogate
// (U+D800..U+DFFF) or a code point past U+10FFFF. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace evalctl {

// Offset of the first byte that is not part of a valid UTF-8 sequence; std::string::npos when
// `text` is valid UTF-8.
size_t FirstInvalidUtf8(absl::string_view text);

// `text` with each invalid byte replaced by U+FFFD.
std::string ValidUtf8(absl::string_view text);

}  // namespace evalctl
