#include "common/sqlite.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "gtest/gtest.h"

namespace evalctl {
namespace {

std::string TempPath(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/sqlite_test_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::filesystem::remove(dir + "/" + name);
  return dir + "/" + name;
}

TEST(SqliteTest, CreatesWithModeAndRoundTrips) {
  std::string path = TempPath("a.db");
  auto db = SqliteDb::Open(path);
  ASSERT_TRUE(db.ok()) << db.status();
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_TRUE((*db)->Exec("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB, n INTEGER)").ok());
  auto ins = (*db)->Prepare("INSERT INTO t VALUES (?, ?, ?)");
  ASSERT_TRUE(ins.ok());
  std::string blob("a\0b", 3);
  ASSERT_TRUE(ins->Bind(1, "k1").BindBlob(2, blob).Bind(3, int64_t{42}).Run().ok());
  EXPECT_EQ(ins->Bind(1, "k1").BindBlob(2, "x").Bind(3, 1).Run().code(),
            absl::StatusCode::kAlreadyExists);
  auto sel = (*db)->Prepare("SELECT v, n FROM t WHERE k = ?");
  ASSERT_TRUE(sel.ok());
  sel->Bind(1, "k1");
  auto row = sel->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(sel->Text(0), blob);
  EXPECT_EQ(sel->Int(1), 42);
}

TEST(SqliteTest, TransactionRollsBackOnError) {
  auto db = SqliteDb::Open(TempPath("b.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE((*db)->Exec("CREATE TABLE t (k INTEGER)").ok());
  absl::Status s = (*db)->Transaction([&]() -> absl::Status {
    if (auto e = (*db)->Exec("INSERT INTO t VALUES (1)"); !e.ok()) return e;
    return absl::InternalError("boom");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  auto count = (*db)->Prepare("SELECT COUNT(*) FROM t");
  ASSERT_TRUE(count.ok());
  ASSERT_TRUE(*count->Step());
  EXPECT_EQ(count->Int(0), 0);
}

TEST(SqliteTest, UnopenablePathIsAClearError) {
  auto db = SqliteDb::Open("/nonexistent-dir/x.db");
  ASSERT_FALSE(db.ok());
  EXPECT_NE(db.status().message().find("/nonexistent-dir/x.db"), std::string::npos);
}

}  // namespace
}  // namespace evalctl
