#include "runner/dataset.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace evalctl::runner {
namespace {

std::string WriteTemp(const std::string& name, const std::string& content) {
  std::filesystem::path dir = std::filesystem::path(testing::TempDir()) / "dataset_test";
  std::filesystem::create_directories(dir);
  std::filesystem::path path = dir / name;
  std::ofstream(path) << content;
  return path.string();
}

TEST(ParseItemTest, MultipleChoiceWithIndexOrLetter) {
  auto by_index = ParseItem(R"({"id":"q1","question":"2+2?","choices":["3","4"],"answer":1})",
                            std::nullopt, 1);
  ASSERT_TRUE(by_index.ok()) << by_index.status();
  EXPECT_EQ(by_index->answer, "B");
  EXPECT_EQ(by_index->answer_index, 1);
  auto by_letter = ParseItem(R"j({"id":"q1","question":"2+2?","choices":["3","4"],"answer":"(b)"})j",
                             Format::kMultipleChoice, 1);
  ASSERT_TRUE(by_letter.ok()) << by_letter.status();
  EXPECT_EQ(by_letter->answer_index, 1);
  auto by_digit_string = ParseItem(
      R"({"id":"q1","question":"2+2?","choices":["3","4", 5],"answer":"2"})", std::nullopt, 1);
  ASSERT_TRUE(by_digit_string.ok());
  EXPECT_EQ(by_digit_string->answer, "C");
  EXPECT_EQ(by_digit_string->choices[2], "5");
}

TEST(ParseItemTest, ExactMatch) {
  Format detected = Format::kMultipleChoice;
  auto item = ParseItem(R"({"id":7,"question":"6*7?","answer":42})", std::nullopt, 3, &detected);
  ASSERT_TRUE(item.ok()) << item.status();
  EXPECT_EQ(detected, Format::kExactMatch);
  EXPECT_EQ(item->id, "7");
  EXPECT_EQ(item->answer, "42");
  auto no_id = ParseItem(R"({"question":"6*7?","answer":"42"})", std::nullopt, 3);
  ASSERT_TRUE(no_id.ok());
  EXPECT_EQ(no_id->id, "line-3");
}

TEST(ParseItemTest, ErrorsNameTheLineAndTheProblem) {
  auto not_json = ParseItem("{nope", std::nullopt, 4);
  EXPECT_EQ(not_json.status().message(), "line 4: not valid JSON");
  auto out_of_range =
      ParseItem(R"({"question":"q","choices":["a","b"],"answer":2})", std::nullopt, 5);
  EXPECT_FALSE(out_of_range.ok());
  EXPECT_NE(out_of_range.status().message().find("line 5"), std::string::npos);
  EXPECT_NE(out_of_range.status().message().find("not one of the 2 choices"), std::string::npos);
  EXPECT_FALSE(ParseItem(R"({"question":"q"})", std::nullopt, 1).ok());
  EXPECT_FALSE(ParseItem(R"({"answer":"a"})", std::nullopt, 1).ok());
  EXPECT_FALSE(ParseItem(R"({"question":"q","answer":"a"})", Format::kMultipleChoice, 1).ok());
  EXPECT_FALSE(ParseItem(R"({"question":"q","choices":["a"],"answer":0})", std::nullopt, 1).ok());
  EXPECT_FALSE(ParseItem(R"({"question":"q","answer":"  "})", std::nullopt, 1).ok());
}

TEST(LoadDatasetTest, LoadsAndDetects) {
  std::string path = WriteTemp("mc.jsonl",
                               "{\"id\":\"a\",\"question\":\"q1\",\"choices\":[\"x\",\"y\"],\"answer\":0}\n"
                               "\n"
                               "{\"id\":\"b\",\"question\":\"q2\",\"choices\":[\"x\",\"y\"],\"answer\":\"B\"}\n");
  auto dataset = LoadDataset(path, std::nullopt);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->format, Format::kMultipleChoice);
  ASSERT_EQ(dataset->items.size(), 2u);
  EXPECT_EQ(dataset->items[1].answer, "B");
}

TEST(LoadDatasetTest, RejectsDuplicatesMixedAndEmpty) {
  auto duplicate = LoadDataset(WriteTemp("dup.jsonl",
                                         "{\"id\":\"a\",\"question\":\"q\",\"answer\":\"1\"}\n"
                                         "{\"id\":\"a\",\"question\":\"r\",\"answer\":\"2\"}\n"),
                               std::nullopt);
  EXPECT_FALSE(duplicate.ok());
  EXPECT_NE(duplicate.status().message().find("duplicate id \"a\""), std::string::npos);
  // The first item fixes the format: a later multiple-choice line is read as exact match, and an
  // exact-match line in a multiple-choice file is an error.
  auto mixed = LoadDataset(WriteTemp("mixed.jsonl",
                                     "{\"question\":\"q\",\"choices\":[\"a\",\"b\"],\"answer\":0}\n"
                                     "{\"question\":\"r\",\"answer\":\"2\"}\n"),
                           std::nullopt);
  EXPECT_FALSE(mixed.ok());
  EXPECT_FALSE(LoadDataset(WriteTemp("empty.jsonl", "\n\n"), std::nullopt).ok());
  EXPECT_EQ(LoadDataset("/nonexistent/x.jsonl", std::nullopt).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(LoadDatasetTest, BundledDatasetsLoad) {
  std::vector<std::string> dirs = DatasetSearchDirs("");
  ASSERT_FALSE(dirs.empty());
  struct Expected {
    const char* name;
    Format format;
    size_t items;
  };
  for (const Expected& e : {Expected{"arithmetic", Format::kExactMatch, 200},
                            Expected{"unit_conversion", Format::kExactMatch, 150},
                            Expected{"arithmetic_mc", Format::kMultipleChoice, 150}}) {
    auto path = ResolveDatasetPath(e.name, dirs);
    ASSERT_TRUE(path.ok()) << path.status();
    auto dataset = LoadDataset(*path, std::nullopt);
    ASSERT_TRUE(dataset.ok()) << dataset.status();
    EXPECT_EQ(dataset->format, e.format) << e.name;
    EXPECT_EQ(dataset->items.size(), e.items) << e.name;
  }
}

TEST(ResolveDatasetPathTest, PathsAndNames) {
  std::string path = WriteTemp("named.jsonl", "{\"question\":\"q\",\"answer\":\"1\"}\n");
  std::string dir = std::filesystem::path(path).parent_path().string();
  EXPECT_EQ(*ResolveDatasetPath(path, {}), path);
  EXPECT_EQ(*ResolveDatasetPath("named", {"/nonexistent", dir}), path);
  EXPECT_EQ(*ResolveDatasetPath("named.jsonl", {dir}), path);
  auto missing = ResolveDatasetPath("nothing", {dir});
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("not a bundled dataset"), std::string::npos);
  EXPECT_FALSE(ResolveDatasetPath("/no/such/file.jsonl", {dir}).ok());
}

}  // namespace
}  // namespace evalctl::runner
