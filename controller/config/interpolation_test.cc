#include "controller/config/interpolation.h"

#include <functional>

#include "absl/strings/str_cat.h"
#include "common/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::config {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<Node> Resolve(const std::string& yaml, const Environment& env = {}) {
  auto n = LoadYaml(yaml, "t.yaml");
  if (!n.ok()) return n.status();
  absl::Status s = ResolveAll(*n, env);
  if (!s.ok()) return s;
  return *n;
}

std::string At(const Node& n, const std::string& path) {
  const Node* v = Lookup(n, path);
  return v == nullptr ? "<absent>" : v->IsNull() ? "<null>" : v->text();
}

TEST(InterpolationTest, AbsoluteRelativeAndEmbedded) {
  auto n = Resolve(
      "a: {port: 8000, host: h}\n"
      "b: ${a.port}\n"
      "c: http://${a.host}:${a.port}/v1\n"
      "d: {x: 1, y: '${.x}', z: '${..a.host}'}\n"
      "e: ${a}\n"
      "f: [p, q]\n"
      "g: ${f[1]}\n"
      "h: '\\${not.a.ref}'\n");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "b"), "8000");
  EXPECT_FALSE(Lookup(*n, "b")->quoted());
  EXPECT_EQ(At(*n, "c"), "http://h:8000/v1");
  EXPECT_EQ(At(*n, "d.y"), "1");
  EXPECT_EQ(At(*n, "d.z"), "h");
  EXPECT_TRUE(Lookup(*n, "e")->IsMap());
  EXPECT_EQ(At(*n, "e.port"), "8000");
  EXPECT_EQ(At(*n, "g"), "q");
  EXPECT_EQ(At(*n, "h"), "${not.a.ref}");
}

TEST(InterpolationTest, ChainsResolveInAnyOrder) {
  auto n = Resolve("a: ${b}\nb: ${c}\nc: deep\n");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "a"), "deep");
}

TEST(InterpolationTest, EnvIsSecretAndPropagates) {
  auto n = Resolve("tok: ${oc.env:HF_TOKEN}\nhdr: 'Bearer ${tok}'\nd: ${oc.env:NOPE,fallback}\n"
                   "nul: ${oc.env:NOPE,null}\n",
                   {{"HF_TOKEN", "hf_x"}});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "tok"), "hf_x");
  EXPECT_TRUE(Lookup(*n, "tok")->secret());
  EXPECT_TRUE(Lookup(*n, "hdr")->secret());
  EXPECT_EQ(Lookup(*n, "hdr")->env_sources(), std::vector<std::string>{"HF_TOKEN"});
  EXPECT_EQ(At(*n, "d"), "fallback");
  EXPECT_FALSE(Lookup(*n, "d")->secret());
  EXPECT_EQ(At(*n, "nul"), "<null>");
}

TEST(InterpolationTest, SelectNotNull) {
  auto n = Resolve(
      "deployment: {hf_model_handle: null, checkpoint_path: /c, other: m}\n"
      "a: ${select_not_null:deployment.hf_model_handle,/checkpoint}\n"
      "b: ${select_not_null:deployment.other,/checkpoint}\n"
      "c: ${oc.select:deployment.hf_model_handle,/checkpoint}\n"
      "d: ${select_not_null:deployment.absent,${deployment.checkpoint_path}}\n"
      "e: vllm serve ${select_not_null:deployment.hf_model_handle,/checkpoint} --port 1\n");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(At(*n, "a"), "/checkpoint");
  EXPECT_EQ(At(*n, "b"), "m");
  EXPECT_EQ(At(*n, "c"), "<null>");
  EXPECT_EQ(At(*n, "d"), "/c");
  EXPECT_EQ(At(*n, "e"), "vllm serve /checkpoint --port 1");
}

// A short file whose references double what they read at every step: refused in milliseconds,
// naming the key and the limit, for strings (one value's limit) and for maps (the total).
TEST(InterpolationTest, DoublingReferencesHitALimitNotTheMachine) {
  std::string strings = "v0: 'xxxxxxxxxxxxxxxx'\n";
  std::string maps = "m0: {a: 'xxxxxxxxxxxxxxxx', b: 'yyyyyyyyyyyyyyyy'}\n";
  for (int i = 1; i <= 40; ++i) {
    absl::StrAppend(&strings, "v", i, ": '${v", i - 1, "}${v", i - 1, "}'\n");
    absl::StrAppend(&maps, "m", i, ": {l: '${m", i - 1, "}', r: '${m", i - 1, "}'}\n");
  }
  auto s = Resolve(strings);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(),
              HasSubstr(": interpolation makes this value longer than 1 MiB (the limit of one "
                        "value)"));
  EXPECT_THAT(s.status().message(), HasSubstr("t.yaml:"));
  auto m = Resolve(maps);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(),
              HasSubstr("interpolation has produced more than 16 MiB of values in this "
                        "configuration (the limit)"));
}

TEST(InterpolationTest, Errors) {
  struct Case {
    std::string yaml;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {"a: ${b.c}\nb: {}\n", "t.yaml:1:4: a: interpolation ${b.c} refers to b.c, which does "
                                  "not exist"},
           {"a: ${b}\nb: ???\n", "needs b, which is required (\?\?\?) but not set"},
           {"a: ${b}\nb: ${a}\n", "interpolation cycle"},
           {"a: {b: '${a}'}\n", "interpolation cycle"},
           {"a: ${oc.env:NOT_SET_ANYWHERE}\n", "environment variable NOT_SET_ANYWHERE is not set"},
           {"a: ${oc.decode:x}\n", "unknown resolver oc.decode"},
           {"a: 'x${b'\n", "unterminated interpolation"},
           {"b: {c: 1}\na: 'x ${b}'\n", "is a map and cannot be part of a string"},
       }) {
    auto n = Resolve(c.yaml);
    ASSERT_FALSE(n.ok()) << c.yaml;
    EXPECT_THAT(n.status().message(), HasSubstr(c.expected)) << c.yaml;
  }
}

// Compares with OmegaConf 2.2 itself (Debian's python3-omegaconf) on documents where both
// implementations must agree.
TEST(InterpolationTest, AgreesWithOmegaConf) {
  const std::string doc =
      "deployment:\n"
      "  port: 8000\n"
      "  hf_model_handle: null\n"
      "  name: m\n"
      "  command: vllm serve ${select_not_null:deployment.hf_model_handle,/checkpoint} "
      "--port ${deployment.port} --served-model-name ${deployment.name}\n"
      "execution:\n"
      "  num_nodes: 2\n"
      "  deployment: {n_tasks: '${execution.num_nodes}'}\n"
      "  user: ${oc.env:EVALCTL_TEST_USER}\n"
      "  out: /scratch/${execution.user}/${oc.env:EVALCTL_UNSET_VAR,default}\n"
      "  rel: {a: x, b: '${.a}-${..num_nodes}'}\n"
      "  esc: 'cost \\${HOME}'\n"
      "  lst: [1, '${execution.num_nodes}', '${deployment.port}']\n"
      "  none_in_string: 'v=${deployment.hf_model_handle}'\n";
  const std::string script = R"PY(
import sys, json
from omegaconf import OmegaConf
def select_not_null(key, default, *, _root_):
    v = OmegaConf.select(_root_, key, default=None)
    return default if v is None else v
OmegaConf.register_new_resolver("select_not_null", select_not_null)
cfg = OmegaConf.create(sys.stdin.read())
def flat(prefix, v, out):
    if isinstance(v, dict):
        for k, x in v.items(): flat(prefix + [str(k)], x, out)
    elif isinstance(v, list):
        for i, x in enumerate(v): flat(prefix + [str(i)], x, out)
    else:
        out[".".join(prefix)] = "<null>" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
out = {}
flat([], OmegaConf.to_container(cfg, resolve=True), out)
for k in sorted(out): print(k + "=" + out[k])
)PY";
  auto py = RunSubprocess({.argv = {"/usr/bin/python3", "-c", script},
                           .env = {{"EVALCTL_TEST_USER", "alice"}},
                           .stdin_data = doc,
                           .timeout = absl::Seconds(60)});
  ASSERT_TRUE(py.ok()) << py.status();
  ASSERT_TRUE(py->ok()) << py->Check("python3 omegaconf");

  auto ours = Resolve(doc, {{"EVALCTL_TEST_USER", "alice"}});
  ASSERT_TRUE(ours.ok()) << ours.status();
  std::map<std::string, std::string> flat;
  std::function<void(const std::string&, const Node&)> walk = [&](const std::string& p,
                                                                   const Node& n) {
    if (n.IsMap()) {
      for (const auto& [k, v] : n.entries()) walk(JoinPath(p, k), v);
    } else if (n.IsList()) {
      for (size_t i = 0; i < n.items().size(); ++i) walk(JoinPath(p, std::to_string(i)), n.items()[i]);
    } else {
      flat[p] = n.IsNull() ? "<null>" : n.text();
    }
  };
  walk("", *ours);
  std::string ours_text;
  for (const auto& [k, v] : flat) absl::StrAppend(&ours_text, k, "=", v, "\n");
  EXPECT_EQ(ours_text, py->stdout_data);
}

}  // namespace
}  // namespace evalctl::config
