#include "controller/config/suggest.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace evalctl::config {
namespace {

const std::vector<std::string>& ExecutionKeys() {
  // clang-format off
  static const auto* keys = new std::vector<std::string>{
      "type",          "hostname",        "username",       "account",
      "output_dir",    "partition",       "cpu_partition",  "num_nodes",
      "num_instances", "ntasks_per_node", "gres",           "gpus_per_node",
      "walltime",      "max_walltime",    "subproject",     "sbatch_comment",
      "mounts",        "env_vars",        "proxy",          "container_runtime",
      "mpi",           "max_attempts",    "shared_deployment"};
  // clang-format on
  return *keys;
}

TEST(OsaDistanceTest, CountsEditsAndAdjacentSwaps) {
  EXPECT_EQ(OsaDistance("", ""), 0u);
  EXPECT_EQ(OsaDistance("abc", ""), 3u);
  EXPECT_EQ(OsaDistance("", "abc"), 3u);
  EXPECT_EQ(OsaDistance("walltime", "walltime"), 0u);
  EXPECT_EQ(OsaDistance("walltme", "walltime"), 1u);    // deletion
  EXPECT_EQ(OsaDistance("wallltime", "walltime"), 1u);  // insertion
  EXPECT_EQ(OsaDistance("walltine", "walltime"), 1u);   // substitution
  EXPECT_EQ(OsaDistance("wlaltime", "walltime"), 1u);   // adjacent swap
  EXPECT_EQ(OsaDistance("kitten", "sitting"), 3u);
  // Optimal string alignment edits each substring once: "ca" → "abc" is 3, not 2.
  EXPECT_EQ(OsaDistance("ca", "abc"), 3u);
  EXPECT_EQ(OsaDistance("abc", "ca"), 3u);
}

TEST(OsaDistanceTest, IgnoresAsciiCase) {
  EXPECT_EQ(OsaDistance("WallTime", "walltime"), 0u);
  EXPECT_EQ(OsaDistance("HOSTNME", "hostname"), 1u);
}

TEST(NearestNameTest, SuggestsTheKeyATypoWasMeantFor) {
  struct Case {
    const char* typo;
    const char* expected;
  };
  for (const Case& c : {
           Case{"walltme", "walltime"},
           Case{"wall_time", "walltime"},
           Case{"maxwalltime", "max_walltime"},
           Case{"partiton", "partition"},
           Case{"hostnmae", "hostname"},
           Case{"num_node", "num_nodes"},
           Case{"gpus_per_nodes", "gpus_per_node"},
           Case{"ntask_per_node", "ntasks_per_node"},
           Case{"acount", "account"},
           Case{"outputdir", "output_dir"},
           Case{"container-runtime", "container_runtime"},
           Case{"WALLTIME", "walltime"},
           Case{"gers", "gres"},
       }) {
    auto near = NearestName(c.typo, ExecutionKeys());
    ASSERT_TRUE(near.has_value()) << c.typo;
    EXPECT_EQ(*near, c.expected) << c.typo;
  }
}

TEST(NearestNameTest, StaysQuietWhenNothingIsClose) {
  for (const char* word : {"nodes", "time_limit", "qos", "exclusive", "x", "constraint"}) {
    auto near = NearestName(word, ExecutionKeys());
    EXPECT_FALSE(near.has_value()) << word << " → " << *near;
  }
  // Two letters that share nothing with a two-letter key are not a typo of it.
  EXPECT_FALSE(NearestName("ab", {"cd"}).has_value());
  EXPECT_EQ(NearestName("ab", {"cd", "ac"}), "ac");
}

TEST(NearestNameTest, ThresholdGrowsWithTheWord) {
  // 15 letters: up to 5 edits.
  EXPECT_EQ(NearestName("servedmodelname", {"served_model_name"}), "served_model_name");
  EXPECT_EQ(NearestName("hf-model-handle", {"hf_model_handle"}), "hf_model_handle");
  // 5 letters: up to 2 edits, and `walltime` is 3 away.
  EXPECT_FALSE(NearestName("wltme", {"walltime"}).has_value());
}

TEST(NearestNameTest, TiesGoToTheEarlierCandidate) {
  EXPECT_EQ(NearestName("abcx", {"abcd", "abce"}), "abcd");
  EXPECT_EQ(NearestName("abcx", {"abce", "abcd"}), "abce");
  // A closer candidate later in the list still wins.
  EXPECT_EQ(NearestName("abcdx", {"abcyz", "abcdy"}), "abcdy");
}

TEST(NearestNameTest, ExactMatchReturnsItself) {
  EXPECT_EQ(NearestName("max_walltime", ExecutionKeys()), "max_walltime");
}

TEST(NearestNameTest, HandlesEmptyAndHugeInput) {
  EXPECT_FALSE(NearestName("", ExecutionKeys()).has_value());
  EXPECT_FALSE(NearestName("walltme", {}).has_value());
  EXPECT_EQ(NearestName("walltme", {"", "walltime"}), "walltime");
  std::string huge(1 << 20, 'a');
  EXPECT_FALSE(NearestName(huge, ExecutionKeys()).has_value());
}

}  // namespace
}  // namespace evalctl::config
