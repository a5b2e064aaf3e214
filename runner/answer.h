// Answer extraction and normalisation: turns a model's free text into the answer it gives and
// compares it with the expected one.
//
// Exact match: the final answer is the text after the last marker ("Answer:", "final answer is",
// "####", \boxed{...}) or else the last line; when the expected answer is a number, the last
// number in that part (or else in the whole text) is compared numerically ("42.0" == "42",
// "1,000" == "1000"); otherwise both sides are normalised (case-folded, punctuation and articles
// dropped, whitespace collapsed) and compared.
// Multiple choice: a letter after a marker ("Answer: B", "the correct option is (B)"), a bare
// letter ("B", "(B)", "B. 230"), the text of exactly one choice ("230"), or a lone "(B)".
// Reasoning blocks (<think>...</think>) are ignored.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "runner/dataset.h"

namespace evalctl::runner {

// Canonical form of one number token, or nullopt when `token` is not one:
// "42.0" -> "42", "1,000" -> "1000", "+5" -> "5", "-0" -> "0", ".50" -> "0.5", "007" -> "7".
std::optional<std::string> CanonicalNumber(absl::string_view token);

// The numbers in `text`, in order, in canonical form. "12-5" holds 12 and 5; "-5" is negative.
std::vector<std::string> FindNumbers(absl::string_view text);

// Lower-case; punctuation dropped (except inside numbers); "a", "an", "the" dropped; numbers in
// canonical form; words joined by single spaces. "The Answer: 42.0!" -> "answer 42".
std::string NormalizeAnswer(absl::string_view text);

// Drops everything up to the last "</think>".
std::string StripReasoning(absl::string_view response);

// Cuts a base model's continuation into a next question ("\nQuestion:" and what follows).
std::string TrimContinuation(absl::string_view response);

struct FinalAnswer {
  std::string text;
  bool from_marker = false;
};
FinalAnswer ExtractFinalAnswer(absl::string_view response);

struct Judgement {
  bool correct = false;
  // What was read as the model's answer (canonical number, normalised text or a letter); empty
  // when no answer could be found.
  std::string extracted;
};

Judgement JudgeExact(absl::string_view response, absl::string_view expected);
// `choices` and `answer_index` as in Item.
Judgement JudgeChoice(absl::string_view response, const std::vector<std::string>& choices,
                      int answer_index);
// Applies StripReasoning (and TrimContinuation for completions) and the judge for `format`.
Judgement Judge(absl::string_view response, const Item& item, Format format, bool completions);

}  // namespace evalctl::runner
