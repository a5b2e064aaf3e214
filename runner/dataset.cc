#include "runner/dataset.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

#ifndef EVALCTL_RUNNER_DATASETS_DIR
#define EVALCTL_RUNNER_DATASETS_DIR ""
#endif

namespace evalctl::runner {
namespace {

using json = nlohmann::json;

std::string Where(int line_number) { return absl::StrCat("line ", line_number, ": "); }

// Answer of a multiple-choice item: index (number or digit string) or letter.
absl::StatusOr<int> ParseChoiceAnswer(const json& answer, size_t num_choices, int line_number) {
  int index = -1;
  if (answer.is_number_integer()) {
    index = answer.get<int>();
  } else if (answer.is_string()) {
    std::string text(absl::StripAsciiWhitespace(answer.get<std::string>()));
    absl::string_view view(text);
    if (absl::ConsumePrefix(&view, "(")) absl::ConsumeSuffix(&view, ")");
    if (!view.empty() && std::all_of(view.begin(), view.end(), absl::ascii_isdigit)) {
      index = std::atoi(std::string(view).c_str());
    } else if (view.size() == 1 && absl::ascii_isalpha(view[0])) {
      index = absl::ascii_toupper(view[0]) - 'A';
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          Where(line_number), "\"answer\" must be a 0-based index or a letter, got \"", text, "\""));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(line_number), "\"answer\" must be a 0-based index or a letter"));
  }
  if (index < 0 || static_cast<size_t>(index) >= num_choices) {
    return absl::InvalidArgumentError(absl::StrCat(Where(line_number), "\"answer\" ", answer.dump(),
                                                   " is not one of the ", num_choices, " choices"));
  }
  return index;
}

}  // namespace

absl::StatusOr<Format> ParseFormat(absl::string_view text) {
  std::string lower = absl::AsciiStrToLower(text);
  if (lower == "mc" || lower == "multiple_choice") return Format::kMultipleChoice;
  if (lower == "exact" || lower == "exact_match") return Format::kExactMatch;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dataset format \"", text, "\" (expected mc or exact)"));
}

const char* FormatName(Format format) {
  return format == Format::kMultipleChoice ? "mc" : "exact";
}

std::string ChoiceLetter(int index) { return std::string(1, static_cast<char>('A' + index)); }

absl::StatusOr<Item> ParseItem(absl::string_view line, std::optional<Format> format,
                               int line_number, Format* detected) {
  json object = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(Where(line_number), "not valid JSON"));
  }
  if (!object.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(Where(line_number), "not a JSON object"));
  }
  Item item;
  if (auto it = object.find("id"); it != object.end() && !it->is_null()) {
    item.id = it->is_string() ? it->get<std::string>() : it->dump();
  } else {
    item.id = absl::StrCat("line-", line_number);
  }
  auto question = object.find("question");
  if (question == object.end() || !question->is_string() || question->get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(line_number), "\"question\" must be a non-empty string"));
  }
  item.question = question->get<std::string>();
  auto answer = object.find("answer");
  if (answer == object.end() || answer->is_null()) {
    return absl::InvalidArgumentError(absl::StrCat(Where(line_number), "\"answer\" is missing"));
  }
  Format item_format = object.contains("choices") ? Format::kMultipleChoice : Format::kExactMatch;
  if (format.has_value()) item_format = *format;
  if (detected != nullptr) *detected = item_format;

  if (item_format == Format::kMultipleChoice) {
    auto choices = object.find("choices");
    if (choices == object.end() || !choices->is_array() || choices->size() < 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          Where(line_number), "multiple choice needs \"choices\": an array of at least 2"));
    }
    if (choices->size() > static_cast<size_t>(kMaxChoices)) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(line_number), "more than ", kMaxChoices, " choices"));
    }
    for (const json& choice : *choices) {
      if (choice.is_string()) {
        item.choices.push_back(choice.get<std::string>());
      } else if (choice.is_number()) {
        item.choices.push_back(choice.dump());
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(line_number), "each choice must be a string or a number"));
      }
    }
    auto index = ParseChoiceAnswer(*answer, item.choices.size(), line_number);
    if (!index.ok()) return index.status();
    item.answer_index = *index;
    item.answer = ChoiceLetter(*index);
  } else {
    if (answer->is_string()) {
      item.answer = answer->get<std::string>();
    } else if (answer->is_number()) {
      item.answer = answer->dump();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(line_number), "\"answer\" must be a string or a number"));
    }
    if (absl::StripAsciiWhitespace(item.answer).empty()) {
      return absl::InvalidArgumentError(absl::StrCat(Where(line_number), "\"answer\" is empty"));
    }
  }
  return item;
}

absl::StatusOr<Dataset> LoadDataset(const std::string& path, std::optional<Format> format) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("dataset ", path, ": cannot open"));
  }
  Dataset dataset;
  dataset.path = path;
  std::set<std::string> ids;
  std::optional<Format> first_format = format;
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    Format detected = Format::kExactMatch;
    auto item = ParseItem(line, first_format, line_number, &detected);
    if (!item.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("dataset ", path, ": ", item.status().message()));
    }
    if (!first_format.has_value()) first_format = detected;
    if (!ids.insert(item->id).second) {
      return absl::InvalidArgumentError(absl::StrCat("dataset ", path, ": line ", line_number,
                                                     ": duplicate id \"", item->id, "\""));
    }
    dataset.items.push_back(*std::move(item));
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("dataset ", path, ": read error"));
  if (dataset.items.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("dataset ", path, ": no items"));
  }
  dataset.format = first_format.value_or(Format::kExactMatch);
  return dataset;
}

absl::StatusOr<std::string> ResolveDatasetPath(const std::string& path_or_name,
                                               const std::vector<std::string>& search_dirs) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(path_or_name, ec)) return path_or_name;
  if (path_or_name.find('/') == std::string::npos && !path_or_name.empty()) {
    std::string file = absl::EndsWith(path_or_name, ".jsonl") ? path_or_name
                                                             : absl::StrCat(path_or_name, ".jsonl");
    for (const std::string& dir : search_dirs) {
      std::filesystem::path candidate = std::filesystem::path(dir) / file;
      if (std::filesystem::is_regular_file(candidate, ec)) return candidate.string();
    }
    return absl::NotFoundError(absl::StrCat("dataset \"", path_or_name,
                                            "\": no such file, and not a bundled dataset (looked in ",
                                            search_dirs.empty() ? "no directories"
                                                                : absl::StrJoin(search_dirs, ", "),
                                            ")"));
  }
  return absl::NotFoundError(absl::StrCat("dataset ", path_or_name, ": no such file"));
}

std::vector<std::string> DatasetSearchDirs(const std::string& explicit_dir) {
  std::vector<std::string> candidates;
  if (!explicit_dir.empty()) candidates.push_back(explicit_dir);
  if (const char* env = std::getenv("EVALCTL_DATASETS_DIR"); env != nullptr && *env != '\0') {
    candidates.push_back(env);
  }
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back((exe.parent_path().parent_path() / "share/evalctl/datasets").string());
  }
  if (std::string(EVALCTL_RUNNER_DATASETS_DIR).size() > 0) {
    candidates.push_back(EVALCTL_RUNNER_DATASETS_DIR);
  }
  std::vector<std::string> dirs;
  for (const std::string& dir : candidates) {
    if (std::filesystem::is_directory(dir, ec)) dirs.push_back(dir);
  }
  return dirs;
}

}  // namespace evalctl::runner
