#include "runner/response_store.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace evalctl::runner {
namespace {

std::string FreshDir(const std::string& name) {
  std::filesystem::path dir = std::filesystem::path(testing::TempDir()) / "store_test" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

CacheEntry Entry(const std::string& key) {
  CacheEntry entry;
  entry.key = key;
  entry.item_id = "item-" + key;
  entry.text = "Answer: " + key + "\n\"quoted\"";
  entry.finish_reason = "stop";
  entry.latency_ms = 12.5;
  entry.attempts = 2;
  entry.prompt_tokens = 10;
  entry.completion_tokens = 3;
  return entry;
}

TEST(ResponseStoreTest, RecordsSyncsInBatchesAndReopens) {
  std::string dir = FreshDir("batches");
  {
    auto store = ResponseStore::Open(dir, {"k1", "k2", "k3", "k4"},
                                     {.sync_every = 2, .sync_interval = absl::Hours(1)});
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ(*ReadProgressFile(dir + "/progress"), 0);
    ASSERT_TRUE((*store)->Record(Entry("k1")).ok());
    EXPECT_EQ((*store)->progress(), 0);  // not synced yet
    EXPECT_EQ(*ReadProgressFile(dir + "/progress"), 0);
    ASSERT_TRUE((*store)->Record(Entry("k2")).ok());
    EXPECT_EQ((*store)->progress(), 2);  // batch of 2 synced
    EXPECT_EQ(*ReadProgressFile(dir + "/progress"), 2);
    ASSERT_TRUE((*store)->Record(Entry("k2")).ok());  // same key again: ignored
    ASSERT_TRUE((*store)->Record(Entry("unplanned")).ok());
    ASSERT_TRUE((*store)->Flush().ok());
    EXPECT_EQ((*store)->progress(), 2);  // "unplanned" is not counted
  }
  auto reopened = ResponseStore::Open(dir, {"k1", "k2", "k3", "unplanned"});
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->loaded_entries(), 3);
  EXPECT_EQ((*reopened)->progress(), 3);
  EXPECT_EQ(*ReadProgressFile(dir + "/progress"), 3);
  std::optional<CacheEntry> k1 = (*reopened)->Find("k1");
  ASSERT_TRUE(k1.has_value());
  EXPECT_EQ(k1->text, Entry("k1").text);
  EXPECT_EQ(k1->item_id, "item-k1");
  EXPECT_EQ(k1->attempts, 2);
  EXPECT_DOUBLE_EQ(k1->latency_ms, 12.5);
  EXPECT_FALSE((*reopened)->Find("k4").has_value());
}

TEST(ResponseStoreTest, CutsATornLastLineAndSkipsGarbage) {
  std::string dir = FreshDir("torn");
  {
    auto store = ResponseStore::Open(dir, {"a", "b"});
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Record(Entry("a")).ok());
  }
  std::string cache = dir + "/cache/responses.jsonl";
  {
    std::ofstream out(cache, std::ios::app);
    out << "not json at all\n{\"key\":\"b\",\"text\":\"half";  // garbage line + torn write
  }
  auto store = ResponseStore::Open(dir, {"a", "b"});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->loaded_entries(), 1);
  EXPECT_EQ((*store)->skipped_lines(), 2);
  EXPECT_EQ((*store)->progress(), 1);
  std::string content = ReadFile(cache);
  EXPECT_EQ(content.back(), '\n');  // torn tail cut off, so appends start on a fresh line
  ASSERT_TRUE((*store)->Record(Entry("b")).ok());
  ASSERT_TRUE((*store)->Flush().ok());
  EXPECT_EQ((*store)->progress(), 2);
  store->reset();
  auto again = ResponseStore::Open(dir, {"a", "b"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->loaded_entries(), 2);
  EXPECT_TRUE((*again)->Find("b").has_value());
}

TEST(ResponseStoreTest, SecondOpenOfTheSameDirectoryIsRefused) {
  std::string dir = FreshDir("locked");
  auto first = ResponseStore::Open(dir, {});
  ASSERT_TRUE(first.ok());
  auto second = ResponseStore::Open(dir, {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("another evalctl-runner"), std::string::npos);
  first->reset();
  EXPECT_TRUE(ResponseStore::Open(dir, {}).ok());
}

TEST(WriteFileAtomicallyTest, ReplacesContent) {
  std::string dir = FreshDir("atomic");
  std::string path = dir + "/progress";
  ASSERT_TRUE(WriteFileAtomically(path, "1\n").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "22\n").ok());
  EXPECT_EQ(ReadFile(path), "22\n");
  EXPECT_EQ(*ReadProgressFile(path), 22);
  int files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1);  // no temporary left behind
  EXPECT_EQ(ReadProgressFile(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace evalctl::runner
