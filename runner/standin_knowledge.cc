#include "runner/standin_knowledge.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "runner/answer.h"

namespace evalctl::runner {
namespace {


bool IsDigitChar(char c) { return c >= '0' && c <= '9'; }

// Reads an integer at text[*i] (optional '-'), advancing *i.
std::optional<int64_t> ReadInt(absl::string_view text, size_t* i) {
  size_t j = *i;
  bool negative = false;
  if (j < text.size() && text[j] == '-') {
    negative = true;
    ++j;
  }
  size_t start = j;
  while (j < text.size() && IsDigitChar(text[j]) && j - start < 12) ++j;
  if (j == start) return std::nullopt;
  int64_t value = 0;
  if (!absl::SimpleAtoi(text.substr(start, j - start), &value)) return std::nullopt;
  *i = j;
  return negative ? -value : value;
}

void SkipSpaces(absl::string_view text, size_t* i) {
  while (*i < text.size() && text[*i] == ' ') ++*i;
}

// The operator at text[*i]: + - * x × ÷ /, advancing *i.
std::optional<char> ReadOperator(absl::string_view text, size_t* i) {
  absl::string_view rest = text.substr(*i);
  if (absl::StartsWith(rest, "\xC3\x97")) {  // ×
    *i += 2;
    return '*';
  }
  if (absl::StartsWith(rest, "\xC3\xB7")) {  // ÷
    *i += 2;
    return '/';
  }
  if (rest.empty()) return std::nullopt;
  char c = rest[0];
  if (c == '+' || c == '-' || c == '*' || c == '/' || c == 'x') {
    *i += 1;
    return c == 'x' ? '*' : c;
  }
  return std::nullopt;
}

// The last "<int> <op> <int>" in the text whose value is an integer.
std::optional<int64_t> ParseArithmetic(absl::string_view text) {
  std::optional<int64_t> found;
  for (size_t start = 0; start < text.size(); ++start) {
    if (!IsDigitChar(text[start]) && text[start] != '-') continue;
    if (start > 0 && (IsDigitChar(text[start - 1]) || absl::ascii_isalpha(text[start - 1]))) continue;
    size_t i = start;
    std::optional<int64_t> a = ReadInt(text, &i);
    if (!a) continue;
    SkipSpaces(text, &i);
    std::optional<char> op = ReadOperator(text, &i);
    if (!op) continue;
    SkipSpaces(text, &i);
    std::optional<int64_t> b = ReadInt(text, &i);
    if (!b) continue;
    switch (*op) {
      case '+': found = *a + *b; break;
      case '-': found = *a - *b; break;
      case '*': found = *a * *b; break;
      case '/':
        if (*b != 0 && *a % *b == 0) found = *a / *b;
        break;
    }
  }
  return found;
}

// Lettered choice lines ("A. 12", "B) 14") in a prompt, in order, if they run A, B, C, ...
std::vector<std::string> ParseChoiceLines(absl::string_view prompt) {
  std::vector<std::string> choices;
  for (absl::string_view line : absl::StrSplit(prompt, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.size() >= 3 && line[0] == static_cast<char>('A' + choices.size()) &&
        (line[1] == '.' || line[1] == ')') && line[2] == ' ') {
      choices.emplace_back(absl::StripAsciiWhitespace(line.substr(3)));
    }
  }
  return choices;
}

std::string ChatStyle(const KnownAnswer& answer, const std::string& value, uint64_t variant) {
  if (answer.format == Format::kMultipleChoice) {
    int index = value[0] - 'A';
    const std::string& text =
        index >= 0 && static_cast<size_t>(index) < answer.choices.size() ? answer.choices[index] : "";
    switch (variant % 4) {
      case 0: return absl::StrCat("Answer: ", value);
      case 1: return absl::StrCat("The correct option is (", value, ").");
      case 2: return absl::StrCat(value, ". ", text);
      default:
        return absl::StrCat("Let me check each option.\nOption ", value, " gives ", text,
                            ", which matches.\n\nAnswer: ", value);
    }
  }
  switch (variant % 4) {
    case 0: return absl::StrCat("Answer: ", value);
    case 1: return absl::StrCat("The answer is ", value, ".");
    case 2:
      return absl::StrCat("Let me work this out step by step.\nThe result is ", value,
                          ".\n\n**Final answer:** ", value);
    default: return absl::StrCat("**", value, "**");
  }
}

}  // namespace

absl::Status Knowledge::AddDataset(const std::string& path) {
  ASSIGN_OR_RETURN(Dataset dataset, LoadDataset(path, std::nullopt));
  for (Item& item : dataset.items) {
    std::string question = std::string(absl::StripAsciiWhitespace(item.question));
    by_question_[question].push_back(entries_.size());
    entries_.push_back({dataset.format, std::move(item)});
  }
  return absl::OkStatus();
}

absl::Status Knowledge::AddDirectory(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".jsonl") {
      files.push_back(entry.path().string());
    }
  }
  if (ec) return absl::NotFoundError(absl::StrCat("datasets directory ", dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  for (const std::string& file : files) RETURN_IF_ERROR(AddDataset(file));
  return absl::OkStatus();
}

KnownAnswer Knowledge::Lookup(absl::string_view prompt) const {
  std::vector<std::string> prompt_choices = ParseChoiceLines(prompt);
  auto to_answer = [&](const Entry& entry) {
    KnownAnswer answer;
    answer.known = true;
    answer.format = entry.format;
    answer.answer = entry.item.answer;
    answer.choices = entry.item.choices;
    answer.answer_index = entry.item.answer_index;
    answer.source = absl::StrCat("dataset:", entry.item.id);
    return answer;
  };
  // Several items may share a question: prefer the one whose format matches the prompt.
  auto pick = [&](const std::vector<size_t>& candidates) -> const Entry& {
    for (size_t index : candidates) {
      const Entry& entry = entries_[index];
      if ((entry.format == Format::kMultipleChoice) == !prompt_choices.empty()) return entry;
    }
    return entries_[candidates.front()];
  };
  // 1. A line of the prompt is a known question ("Question: <q>" or "<q>").
  for (absl::string_view line : absl::StrSplit(prompt, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumePrefix(&line, "Question:");
    line = absl::StripAsciiWhitespace(line);
    auto it = by_question_.find(line);
    if (it != by_question_.end()) return to_answer(pick(it->second));
  }
  // 2. The prompt contains a known question (the longest one wins).
  const std::vector<size_t>* best = nullptr;
  size_t best_length = 0;
  for (const auto& [question, candidates] : by_question_) {
    if (question.size() > best_length && absl::StrContains(prompt, question)) {
      best = &candidates;
      best_length = question.size();
    }
  }
  if (best != nullptr) return to_answer(pick(*best));
  // 3. Arithmetic it can compute.
  std::string question_part(prompt);
  if (!prompt_choices.empty()) {
    // Only the text before the first choice line holds the question.
    size_t pos = question_part.find("\nA");
    if (pos != std::string::npos) question_part.resize(pos);
  }
  if (std::optional<int64_t> value = ParseArithmetic(question_part)) {
    KnownAnswer answer;
    answer.known = true;
    answer.source = "arithmetic";
    std::string text = absl::StrCat(*value);
    if (prompt_choices.empty()) {
      answer.format = Format::kExactMatch;
      answer.answer = text;
      return answer;
    }
    for (size_t i = 0; i < prompt_choices.size(); ++i) {
      if (CanonicalNumber(prompt_choices[i]) == CanonicalNumber(text)) {
        answer.format = Format::kMultipleChoice;
        answer.choices = prompt_choices;
        answer.answer_index = static_cast<int>(i);
        answer.answer = ChoiceLetter(static_cast<int>(i));
        return answer;
      }
    }
  }
  return KnownAnswer{};
}

std::string WrongAnswer(const KnownAnswer& answer, uint64_t variant) {
  if (answer.format == Format::kMultipleChoice) {
    int n = static_cast<int>(answer.choices.size());
    if (n < 2) return "Z";
    int wrong = (answer.answer_index + 1 + static_cast<int>(variant % static_cast<uint64_t>(n - 1))) % n;
    return ChoiceLetter(wrong);
  }
  std::optional<std::string> number = CanonicalNumber(answer.answer);
  if (number.has_value()) {
    int64_t delta = 1 + static_cast<int64_t>(variant % 9);
    if ((variant >> 8) & 1) delta = -delta;
    int64_t value = 0;
    if (absl::SimpleAtoi(*number, &value)) return absl::StrCat(value + delta);
    double real = 0;
    if (absl::SimpleAtod(*number, &real)) return absl::StrCat(real + static_cast<double>(delta));
  }
  return absl::StrCat("not ", answer.answer);
}

std::string ComposeReply(const KnownAnswer& answer, bool correct, EndpointType type,
                         uint64_t variant) {
  if (!answer.known) {
    return type == EndpointType::kChat ? "I don't know." : " I don't know.";
  }
  std::string value = correct ? answer.answer : WrongAnswer(answer, variant);
  if (type == EndpointType::kCompletions) {
    // A base model carries on with an invented next question; the request's stop sequences
    // should cut it off.
    return absl::StrCat(" ", value, "\n\nQuestion: What is 2 + 2?\nAnswer: 4");
  }
  return ChatStyle(answer, value, variant >> 16);
}

}  // namespace evalctl::runner
