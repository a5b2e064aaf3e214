#include "controller/config/compose.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::config {
namespace {

using ::testing::HasSubstr;

const GroupFiles& Groups() {
  static const GroupFiles* g = new GroupFiles{
      {"default.yaml", "defaults:\n  - execution: slurm/default\n  - deployment: none\n  - _self_\n"
                       "env_vars: {}\n"},
      {"execution/slurm/default.yaml", "type: slurm\nwalltime: '01:00:00'\nnum_nodes: 1\n"
                                       "mounts: {deployment: {}, mount_home: true}\n"},
      {"deployment/none.yaml", "type: none\n"},
      {"deployment/vllm.yaml", "type: vllm\nport: 8000\nimage: vllm/vllm-openai:latest\n"
                               "checkpoint_path: ???\nextra_args: [a, b]\n"},
      {"deployment/vllm_ray.yaml", "defaults:\n  - vllm\n  - _self_\ntype: vllm_ray\n"},
  };
  return *g;
}

absl::StatusOr<Node> ComposeText(const std::string& yaml, std::vector<std::string> overrides = {}) {
  return Compose({.yaml = yaml, .file_name = "user.yaml", .overrides = overrides}, Groups());
}

std::string At(const Node& n, const std::string& path) {
  const Node* v = Lookup(n, path);
  return v == nullptr ? "<absent>" : v->IsNull() ? "<null>" : v->text();
}

TEST(ComposeTest, RootDefaultsApplyWithoutUserDefaults) {
  auto n = ComposeText("execution:\n  hostname: h\n");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "execution.type"), "slurm");
  EXPECT_EQ(At(*n, "execution.hostname"), "h");
  EXPECT_EQ(At(*n, "deployment.type"), "none");
}

TEST(ComposeTest, UserChoosesGroupsAndSelfWins) {
  auto n = ComposeText(
      "defaults:\n  - execution: slurm/default\n  - deployment: vllm\n  - _self_\n"
      "deployment:\n  checkpoint_path: /ckpt\n  port: 9000\n  extra_args: [c]\n");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "deployment.type"), "vllm");
  EXPECT_EQ(At(*n, "deployment.port"), "9000");
  EXPECT_EQ(At(*n, "deployment.checkpoint_path"), "/ckpt");
  // Lists replace, they do not concatenate.
  EXPECT_EQ(Lookup(*n, "deployment.extra_args")->items().size(), 1u);
  EXPECT_EQ(n->Find("defaults"), nullptr);
}

TEST(ComposeTest, SelfFirstLetsGroupsOverride) {
  auto n = ComposeText("defaults:\n  - _self_\n  - deployment: vllm\n"
                       "deployment:\n  port: 9000\n");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "deployment.port"), "8000");
}

TEST(ComposeTest, MissingDoesNotReplaceAValue) {
  auto n = ComposeText("defaults:\n  - deployment: vllm\ndeployment:\n  checkpoint_path: /c\n");
  ASSERT_TRUE(n.ok());
  Node base = *n;
  auto overlay = LoadYaml("deployment:\n  checkpoint_path: ???\n", "o.yaml");
  ASSERT_TRUE(overlay.ok()) << overlay.status();
  MergeInto(base, *overlay);
  EXPECT_EQ(At(base, "deployment.checkpoint_path"), "/c");
}

TEST(ComposeTest, GroupFileDefaultsInherit) {
  auto n = ComposeText("defaults:\n  - deployment: vllm_ray\n");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "deployment.type"), "vllm_ray");
  EXPECT_EQ(At(*n, "deployment.port"), "8000");
}

TEST(ComposeTest, UnknownGroupOptionListsAvailable) {
  auto n = ComposeText("defaults:\n  - deployment: vlm\n");
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("user.yaml:2:5: no config group option deployment/vlm"));
  EXPECT_THAT(n.status().message(), HasSubstr("available: none, vllm, vllm_ray"));
}

TEST(ComposeTest, UserGroupsShadowBuiltins) {
  auto n = Compose({.yaml = "defaults:\n  - deployment: mine\n",
                    .file_name = "user.yaml",
                    .user_groups = {{"deployment/mine.yaml", "type: generic\nport: 1234\n"}}},
                   Groups());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "deployment.port"), "1234");
}

TEST(OverrideTest, HydraGrammar) {
  auto n = ComposeText("execution: {hostname: h}\n",
                       {"execution.hostname=other", "+execution.account=acct",
                        "++execution.partition=gpu", "++execution.num_nodes=4",
                        "~execution.mounts.mount_home", "execution.walltime="});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "execution.hostname"), "other");
  EXPECT_EQ(At(*n, "execution.account"), "acct");
  EXPECT_EQ(At(*n, "execution.partition"), "gpu");
  EXPECT_EQ(At(*n, "execution.num_nodes"), "4");
  EXPECT_EQ(At(*n, "execution.mounts.mount_home"), "<absent>");
  EXPECT_EQ(At(*n, "execution.walltime"), "");
}

TEST(OverrideTest, ValuesAreYaml) {
  auto n = ComposeText("execution: {hostname: h}\n",
                       {"+execution.list=[a, b]", "+execution.map={x: 1}", "+execution.n=null",
                        "+execution.q='01'"});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(Lookup(*n, "execution.list")->items().size(), 2u);
  EXPECT_EQ(At(*n, "execution.map.x"), "1");
  EXPECT_EQ(At(*n, "execution.n"), "<null>");
  EXPECT_TRUE(Lookup(*n, "execution.q")->quoted());
}

TEST(OverrideTest, SetOfUnknownKeySuggestsPlus) {
  auto n = ComposeText("execution: {hostname: h}\n", {"execution.acount=x"});
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("no such key execution.acount"));
  EXPECT_THAT(n.status().message(), HasSubstr("+execution.acount=x"));
}

TEST(OverrideTest, AddOfExistingKeyIsAnError) {
  auto n = ComposeText("execution: {hostname: h}\n", {"+execution.hostname=x"});
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("already a value at execution.hostname"));
}

TEST(OverrideTest, GroupSelection) {
  auto n = ComposeText("deployment: {checkpoint_path: /c}\n", {"deployment=vllm"});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "deployment.type"), "vllm");
  EXPECT_EQ(At(*n, "deployment.checkpoint_path"), "/c");
}

TEST(OverrideTest, TaskNameSugar) {
  auto n = ComposeText("evaluation:\n  tasks:\n    - name: a\n    - name: b\n    - name: a\n",
                       {"evaluation.tasks.a.env_vars.X=1", "evaluation.tasks.1.name=c"});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "evaluation.tasks.0.env_vars.X"), "1");
  EXPECT_EQ(At(*n, "evaluation.tasks.2.env_vars.X"), "1");
  EXPECT_EQ(At(*n, "evaluation.tasks.1.name"), "c");
  EXPECT_EQ(At(*n, "evaluation.tasks.1.env_vars.X"), "<absent>");

  auto bad = ComposeText("evaluation:\n  tasks:\n    - name: a\n", {"evaluation.tasks.zz.x=1"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("no task named zz (tasks: a)"));
}

TEST(OverrideTest, MalformedOverrides) {
  for (const char* bad : {"=1", "novalue", "a..b=1", "a b=1", ".a=1"}) {
    EXPECT_FALSE(ParseOverride(bad).ok()) << bad;
  }
  auto del = ParseOverride("~a.b");
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->op, Override::Op::kDelete);
}

}  // namespace
}  // namespace evalctl::config
