#include "runner/answer.h"

#include <algorithm>
#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace evalctl::runner {
namespace {

constexpr absl::string_view kUnicodeMinus = "\xE2\x88\x92";  // U+2212

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsWordByte(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || static_cast<unsigned char>(c) >= 0x80;
}

// Replaces the Unicode minus with '-', so that every later step sees ASCII signs.
std::string AsciiMinus(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text.substr(i, kUnicodeMinus.size()) == kUnicodeMinus) {
      out.push_back('-');
      i += kUnicodeMinus.size() - 1;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

// If a number starts at text[i], returns its length; 0 otherwise. Grammar:
// [sign] (digits (',' ddd)* ['.' digits] | '.' digits). A number cannot start inside a word
// ("b12") or another number; a sign needs no letter, digit, ')' or '.' right before it ("12-5" is
// 12 and 5); '.' and ',' only count when digits follow.
size_t NumberLengthAt(absl::string_view text, size_t i) {
  const char prev = i > 0 ? text[i - 1] : ' ';
  const bool prev_alnum = absl::ascii_isalnum(static_cast<unsigned char>(prev));
  size_t j = i;
  if (text[j] == '-' || text[j] == '+') {
    if (prev_alnum || prev == ')' || prev == '.') return 0;
    ++j;
  } else if (prev_alnum || (text[j] == '.' && prev == '.')) {
    return 0;
  }
  const size_t digits_start = j;
  while (j < text.size() && IsDigit(text[j])) ++j;
  const bool has_int = j > digits_start;
  if (has_int) {
    // Thousands groups: ",ddd" not followed by another digit.
    while (j + 3 < text.size() && text[j] == ',' && IsDigit(text[j + 1]) && IsDigit(text[j + 2]) &&
           IsDigit(text[j + 3]) && (j + 4 >= text.size() || !IsDigit(text[j + 4]))) {
      j += 4;
    }
  }
  if (j + 1 < text.size() && text[j] == '.' && IsDigit(text[j + 1])) {
    ++j;
    while (j < text.size() && IsDigit(text[j])) ++j;
  } else if (!has_int) {
    return 0;
  }
  return j - i;
}

// Phrases after which a model states its answer (matched in lower case).
constexpr std::array<absl::string_view, 8> kMarkers = {
    "final answer:", "final answer is", "final answer", "answer:", "answer is",
    "answer would be", "option is", "####"};

// The last marker in `lower`: position just after it, or npos.
size_t EndOfLastMarker(absl::string_view lower) {
  size_t best_start = absl::string_view::npos;
  size_t best_end = absl::string_view::npos;
  for (absl::string_view marker : kMarkers) {
    size_t pos = lower.rfind(marker);
    if (pos == absl::string_view::npos) continue;
    size_t end = pos + marker.size();
    // Prefer the occurrence that starts last; on a tie the longer marker ("final answer:").
    if (best_start == absl::string_view::npos || pos > best_start ||
        (pos == best_start && end > best_end)) {
      best_start = pos;
      best_end = end;
    }
  }
  return best_end;
}

// Content of the last \boxed{...}, if any.
std::optional<std::string> LastBoxed(absl::string_view text) {
  size_t pos = text.rfind("\\boxed{");
  if (pos == absl::string_view::npos) return std::nullopt;
  size_t start = pos + 7;
  int depth = 1;
  for (size_t i = start; i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    if (text[i] == '}' && --depth == 0) return std::string(text.substr(start, i - start));
  }
  return std::nullopt;
}

// From `pos`, the rest of the line; when that is blank, the next non-blank line.
std::string RestOfLine(absl::string_view text, size_t pos) {
  absl::string_view rest = text.substr(pos);
  for (absl::string_view line : absl::StrSplit(rest, '\n')) {
    absl::string_view stripped = absl::StripAsciiWhitespace(line);
    // Markdown leftovers such as "**" right after "**Answer:**" do not count as content.
    if (!absl::StripAsciiWhitespace(absl::StripPrefix(stripped, "**")).empty()) {
      return std::string(stripped);
    }
  }
  return "";
}

std::string LastNonEmptyLine(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    absl::string_view stripped = absl::StripAsciiWhitespace(*it);
    if (!stripped.empty()) return std::string(stripped);
  }
  return "";
}

// A letter naming choice `index` < `n`?
std::optional<int> LetterIndex(char c, size_t n, bool allow_lower) {
  if (allow_lower) c = absl::ascii_toupper(static_cast<unsigned char>(c));
  if (c < 'A' || c > 'Z') return std::nullopt;
  int index = c - 'A';
  if (static_cast<size_t>(index) >= n) return std::nullopt;
  return index;
}

// A letter right after a marker ("Answer: (B)", "option is **C**"), trying the markers from the
// last one back: any capital letter, so that an out-of-range "E" is still read (and judged wrong).
std::optional<char> LetterAfterMarker(absl::string_view text) {
  std::string lower = absl::AsciiStrToLower(text);
  std::vector<size_t> ends;
  for (absl::string_view marker : kMarkers) {
    for (size_t pos = lower.find(marker.data(), 0, marker.size()); pos != std::string::npos;
         pos = lower.find(marker.data(), pos + 1, marker.size())) {
      ends.push_back(pos + marker.size());
    }
  }
  std::sort(ends.rbegin(), ends.rend());
  for (size_t end : ends) {
    size_t i = end;
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' ||
                               text[i] == '*' || text[i] == '(' || text[i] == '[' ||
                               text[i] == '"' || text[i] == '\'' || text[i] == ':')) {
      ++i;
    }
    if (i >= text.size() || text[i] < 'A' || text[i] > 'Z') continue;
    if (i + 1 < text.size() && absl::ascii_isalnum(static_cast<unsigned char>(text[i + 1]))) {
      continue;  // a word ("Answer: Because ...")
    }
    return text[i];
  }
  return std::nullopt;
}

// The choice whose normalised text equals `text`'s, when exactly one does.
std::optional<int> MatchChoiceText(absl::string_view text, const std::vector<std::string>& choices) {
  std::string normalized = NormalizeAnswer(text);
  if (normalized.empty()) return std::nullopt;
  std::optional<int> found;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (NormalizeAnswer(choices[i]) == normalized) {
      if (found.has_value()) return std::nullopt;
      found = static_cast<int>(i);
    }
  }
  return found;
}

// "B", "(B)", "B.", "**B**", "B)" — the whole text is one letter.
std::optional<int> BareLetter(absl::string_view text, size_t n) {
  std::string core;
  for (char c : text) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '*' || c == '(' || c == ')' ||
        c == '.' || c == ':' || c == '[' || c == ']' || c == '"' || c == '\'') {
      continue;
    }
    core.push_back(c);
  }
  if (core.size() != 1) return std::nullopt;
  return LetterIndex(core[0], n, /*allow_lower=*/true);
}

// "B. 230", "(B) 230", "B) 230", "B: 230" at the start of the text.
std::optional<int> LeadingLetter(absl::string_view text, size_t n) {
  absl::string_view t = absl::StripLeadingAsciiWhitespace(text);
  while (absl::ConsumePrefix(&t, "*")) {
  }
  bool paren = absl::ConsumePrefix(&t, "(");
  if (t.size() < 2) return std::nullopt;
  char letter = t[0];
  char next = t[1];
  if (paren ? next != ')' : (next != '.' && next != ')' && next != ':')) return std::nullopt;
  return LetterIndex(letter, n, /*allow_lower=*/false);
}

// The last "(X)" with X a valid letter.
std::optional<int> LastParenthesisedLetter(absl::string_view text, size_t n) {
  for (size_t i = text.size(); i >= 3; --i) {
    size_t start = i - 3;
    if (text[start] == '(' && text[start + 2] == ')') {
      if (auto index = LetterIndex(text[start + 1], n, /*allow_lower=*/false)) return index;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> CanonicalNumber(absl::string_view token) {
  std::string ascii = AsciiMinus(absl::StripAsciiWhitespace(token));
  absl::string_view t(ascii);
  if (t.empty() || NumberLengthAt(t, 0) != t.size()) return std::nullopt;
  bool negative = false;
  if (t[0] == '-' || t[0] == '+') {
    negative = t[0] == '-';
    t.remove_prefix(1);
  }
  std::string int_part;
  std::string frac_part;
  size_t dot = t.find('.');
  for (char c : t.substr(0, dot)) {
    if (c != ',') int_part.push_back(c);
  }
  if (dot != absl::string_view::npos) frac_part = std::string(t.substr(dot + 1));
  size_t first_nonzero = int_part.find_first_not_of('0');
  int_part = first_nonzero == std::string::npos ? "0" : int_part.substr(first_nonzero);
  while (!frac_part.empty() && frac_part.back() == '0') frac_part.pop_back();
  std::string out = int_part;
  if (!frac_part.empty()) out += "." + frac_part;
  if (negative && out != "0") out = "-" + out;
  return out;
}

std::vector<std::string> FindNumbers(absl::string_view text) {
  std::string ascii = AsciiMinus(text);
  absl::string_view t(ascii);
  std::vector<std::string> numbers;
  size_t i = 0;
  while (i < t.size()) {
    size_t length = NumberLengthAt(t, i);
    if (length == 0) {
      ++i;
      continue;
    }
    if (auto canonical = CanonicalNumber(t.substr(i, length))) numbers.push_back(*canonical);
    i += length;
  }
  return numbers;
}

std::string NormalizeAnswer(absl::string_view text) {
  std::string ascii = absl::AsciiStrToLower(AsciiMinus(text));
  absl::string_view t(ascii);
  std::vector<std::string> words;
  size_t i = 0;
  while (i < t.size()) {
    if (size_t length = NumberLengthAt(t, i); length > 0) {
      if (auto canonical = CanonicalNumber(t.substr(i, length))) words.push_back(*canonical);
      i += length;
      continue;
    }
    if (IsWordByte(t[i])) {
      size_t start = i;
      while (i < t.size() && IsWordByte(t[i])) ++i;
      std::string word(t.substr(start, i - start));
      if (word != "a" && word != "an" && word != "the") words.push_back(std::move(word));
      continue;
    }
    ++i;
  }
  return absl::StrJoin(words, " ");
}

std::string StripReasoning(absl::string_view response) {
  size_t pos = response.rfind("</think>");
  if (pos == absl::string_view::npos) return std::string(response);
  return std::string(response.substr(pos + 8));
}

std::string TrimContinuation(absl::string_view response) {
  size_t pos = response.find("\nQuestion:");
  if (pos == absl::string_view::npos) return std::string(response);
  return std::string(response.substr(0, pos));
}

FinalAnswer ExtractFinalAnswer(absl::string_view response) {
  if (auto boxed = LastBoxed(response)) return {*boxed, true};
  std::string lower = absl::AsciiStrToLower(response);
  size_t end = EndOfLastMarker(lower);
  if (end != absl::string_view::npos) return {RestOfLine(response, end), true};
  return {LastNonEmptyLine(response), false};
}

Judgement JudgeExact(absl::string_view response, absl::string_view expected) {
  FinalAnswer final_answer = ExtractFinalAnswer(response);
  Judgement judgement;
  std::optional<std::string> expected_number = CanonicalNumber(expected);
  if (expected_number.has_value()) {
    std::vector<std::string> numbers = FindNumbers(final_answer.text);
    if (numbers.empty()) numbers = FindNumbers(response);
    if (!numbers.empty()) judgement.extracted = numbers.back();
    judgement.correct = judgement.extracted == *expected_number;
    return judgement;
  }
  std::string want = NormalizeAnswer(expected);
  judgement.extracted = NormalizeAnswer(final_answer.text);
  judgement.correct = !want.empty() && judgement.extracted == want;
  if (!judgement.correct && !final_answer.from_marker && NormalizeAnswer(response) == want) {
    judgement.extracted = want;
    judgement.correct = !want.empty();
  }
  return judgement;
}

Judgement JudgeChoice(absl::string_view response, const std::vector<std::string>& choices,
                      int answer_index) {
  const size_t n = choices.size();
  std::optional<int> index;
  std::string extracted;
  if (auto letter = LetterAfterMarker(response)) {
    extracted = std::string(1, *letter);
  } else {
    FinalAnswer final_answer = ExtractFinalAnswer(response);
    if (final_answer.from_marker) index = MatchChoiceText(final_answer.text, choices);
    if (!index) index = BareLetter(response, n);
    if (!index) index = LeadingLetter(response, n);
    if (!index) index = MatchChoiceText(LastNonEmptyLine(response), choices);
    if (!index) index = MatchChoiceText(response, choices);
    if (!index) index = LastParenthesisedLetter(response, n);
    if (index) extracted = ChoiceLetter(*index);
  }
  Judgement judgement;
  judgement.extracted = extracted;
  judgement.correct = !extracted.empty() && extracted == ChoiceLetter(answer_index);
  return judgement;
}

Judgement Judge(absl::string_view response, const Item& item, Format format, bool completions) {
  std::string text = StripReasoning(response);
  if (completions) text = TrimContinuation(text);
  if (format == Format::kMultipleChoice) return JudgeChoice(text, item.choices, item.answer_index);
  return JudgeExact(text, item.answer);
}

}  // namespace evalctl::runner
