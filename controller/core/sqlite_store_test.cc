#include "controller/core/sqlite_store.h"

#include <unistd.h>

#include <filesystem>

#include "gtest/gtest.h"

namespace evalctl::controller {
namespace {

TEST(SqliteStoreTest, MigratesAndRefusesNewerSchemas) {
  std::string path = ::testing::TempDir() + "/store_test_" + std::to_string(::getpid()) + ".db";
  std::filesystem::remove(path);
  {
    auto s = SqliteStore::Open(path);
    ASSERT_TRUE(s.ok()) << s.status();
  }
  {
    auto db = SqliteDb::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec("UPDATE meta SET value = '99' WHERE key = 'schema_version'").ok());
  }
  auto s = SqliteStore::Open(path);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("schema version 99"), std::string::npos);
}

TEST(SqliteStoreTest, RequestIdsAreUniquePerOwner) {
  std::string path = ::testing::TempDir() + "/store_req_" + std::to_string(::getpid()) + ".db";
  std::filesystem::remove(path);
  auto s = SqliteStore::Open(path);
  ASSERT_TRUE(s.ok());
  NewInvocation inv;
  inv.owner = "alice";
  inv.request_id = "r1";
  inv.invocation.set_id("0123456789abcdef");
  ASSERT_TRUE((*s)->CreateInvocation(inv).ok());
  inv.invocation.set_id("1123456789abcdef");
  EXPECT_EQ((*s)->CreateInvocation(inv).code(), absl::StatusCode::kAlreadyExists);
  inv.owner = "bob";
  EXPECT_TRUE((*s)->CreateInvocation(inv).ok());
  EXPECT_EQ(*(*s)->FindRequest("alice", "r1"), std::optional<std::string>("0123456789abcdef"));
  auto m = (*s)->MatchInvocations("01", 10);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->size(), 1u);
}

}  // namespace
}  // namespace evalctl::controller
