#include "controller/config/compose.h"

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/subprocess.h"
#include "controller/config/interpolation.h"
#include "controller/config/loader.h"
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

// ---------------------------------------------------------------------------------------------
// Merging compared with OmegaConf 2.2 itself (Debian's python3-omegaconf), the way
// InterpolationTest.AgreesWithOmegaConf compares interpolation: each case is a list of YAML
// documents merged in order (OmegaConf.merge / MergeInto), then resolved (OmegaConf.to_container
// with resolve=True / ResolveAll) with the case's environment, and flattened to `key=value` lines.

struct MergeCase {
  std::string name;
  std::vector<std::string> docs;
  std::map<std::string, std::string> env;
};

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      out += absl::StrFormat("\\u%04x", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// `<case>|<key>=<value>` lines, sorted by key within a case; `<case>|!error` when merging or
// resolving fails. An empty map or list is `<map>` / `<list>`, null is `<null>`.
constexpr char kOmegaConfMerge[] = R"PY(
import json, os, sys, warnings
warnings.simplefilter("ignore")
from omegaconf import OmegaConf
def select_not_null(key, default, *, _root_):
    v = OmegaConf.select(_root_, key, default=None)
    return default if v is None else v
OmegaConf.register_new_resolver("select_not_null", select_not_null)
def flat(prefix, v, out):
    if isinstance(v, dict):
        if not v and prefix: out[".".join(prefix)] = "<map>"
        for k, x in v.items(): flat(prefix + [str(k)], x, out)
    elif isinstance(v, list):
        if not v: out[".".join(prefix)] = "<list>"
        for i, x in enumerate(v): flat(prefix + [str(i)], x, out)
    else:
        out[".".join(prefix)] = "<null>" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
for case in json.load(sys.stdin):
    for k in [k for k in os.environ if k.startswith("EVALCTL_T_")]: del os.environ[k]
    os.environ.update(case["env"])
    try:
        cfg = OmegaConf.merge(*[OmegaConf.create(d) for d in case["docs"]])
        out = {}
        flat([], OmegaConf.to_container(cfg, resolve=True), out)
        for k in sorted(out): print(case["name"] + "|" + k + "=" + out[k])
    except Exception as e:
        print(case["name"] + "|!error")
)PY";

std::string OursFlat(const MergeCase& c) {
  auto fail = [&] { return absl::StrCat(c.name, "|!error\n"); };
  Node merged;
  for (size_t i = 0; i < c.docs.size(); ++i) {
    auto doc = LoadYaml(c.docs[i], absl::StrCat("doc", i, ".yaml"));
    if (!doc.ok()) return fail();
    if (i == 0) {
      merged = *std::move(doc);
    } else {
      MergeInto(merged, *doc);
    }
  }
  if (!ResolveAll(merged, Environment(c.env.begin(), c.env.end())).ok()) return fail();
  std::map<std::string, std::string> flat;
  std::function<void(const std::string&, const Node&)> walk = [&](const std::string& p,
                                                                   const Node& n) {
    if (n.IsMap()) {
      if (n.size() == 0 && !p.empty()) flat[p] = "<map>";
      for (const auto& [k, v] : n.entries()) walk(JoinPath(p, k), v);
    } else if (n.IsList()) {
      if (n.size() == 0) flat[p] = "<list>";
      for (size_t i = 0; i < n.items().size(); ++i) walk(JoinPath(p, std::to_string(i)), n.items()[i]);
    } else {
      flat[p] = n.IsNull() ? "<null>" : n.text();
    }
  };
  walk("", merged);
  std::string out;
  for (const auto& [k, v] : flat) absl::StrAppend(&out, c.name, "|", k, "=", v, "\n");
  return out;
}

std::vector<MergeCase> MergeCases() {
  const std::map<std::string, std::string> env = {{"EVALCTL_T_SET", "from-env"},
                                                   {"EVALCTL_T_USER", "alice"}};
  return {
      // Maps merge, key by key and at every depth.
      {"maps_merge", {"a: {x: 1, y: 2}\n", "a: {y: 3, z: 4}\n"}},
      {"deep_maps_merge",
       {"a: {b: {c: 1, d: [1, 2]}, e: f}\n", "a: {b: {d: [3], g: {h: 1}}}\n", "a: {b: {c: 9}}\n"}},
      {"empty_map_merges_nothing", {"a: {x: 1}\n", "a: {}\n"}},
      {"new_keys_are_added", {"a: 1\n", "b: {c: 2}\nd: [x]\n"}},
      // Lists replace, whatever they hold.
      {"lists_replace", {"a: [1, 2, 3]\n", "a: [4]\n"}},
      {"list_of_maps_replaces", {"a: [{x: 1}, {y: 2}]\n", "a: [{z: 3}]\n"}},
      {"empty_list_replaces", {"a: [1, 2]\n", "a: []\n"}},
      {"scalar_over_list", {"a: [1, 2]\n", "a: s\n"}},
      {"list_over_scalar", {"a: s\n", "a: [1]\n"}},
      // null over a map and a map over null; scalars and maps replace each other.
      {"null_over_map", {"a: {x: 1, y: {z: 2}}\n", "a: null\n"}},
      {"map_over_null", {"a: null\n", "a: {x: 1}\n"}},
      {"null_over_list", {"a: [1]\n", "a: null\n"}},
      {"null_over_scalar", {"a: 1\n", "a: null\n"}},
      {"scalar_over_null", {"a: null\n", "a: 1\n"}},
      {"scalar_over_map", {"a: {x: 1}\n", "a: 5\n"}},
      {"map_over_scalar", {"a: 5\n", "a: {x: 1}\n"}},
      {"null_then_map_then_null", {"a: {x: 1}\n", "a: null\n", "a: {y: 2}\n"}},
      // ??? (MISSING) over a value, and a value over ???.
      {"missing_over_value", {"a: 1\nb: s\n", "a: ???\nb: ???\n"}},
      {"value_over_missing", {"a: ???\nb: ???\n", "a: 1\nb: {x: 1}\n"}},
      {"missing_over_map", {"a: {x: 1}\n", "a: ???\n"}},
      {"missing_over_list", {"a: [1]\n", "a: ???\n"}},
      {"missing_over_null", {"a: null\n", "a: ???\n"}},
      {"missing_over_empty_map", {"a: {}\n", "a: ???\n"}},
      {"missing_over_missing", {"a: ???\n", "a: ???\n"}},
      {"missing_added", {"b: 1\n", "a: ???\n"}},
      {"missing_survives_merges", {"a: ???\nb: 1\n", "b: 2\n", "c: 3\n"}},
      {"nested_missing_filled", {"d:\n  path: ???\n  port: 8000\n", "d: {path: /ckpt}\n"}},
      // Interpolations resolve after merging, against the merged values.
      {"interpolation_sees_later_value", {"a: ${b}\nb: 1\n", "b: 2\n"}},
      {"interpolation_in_string_after_merge",
       {"url: http://${host}:${port}/v1\nhost: h\nport: 80\n", "port: 8000\n", "host: node7\n"}},
      {"interpolation_replaced_by_value", {"a: ${b}\nb: 1\n", "a: 3\n"}},
      {"value_replaced_by_interpolation", {"a: 1\nb: 2\n", "a: ${b}\n"}},
      {"interpolation_of_added_key", {"a: x\n", "b: ${c.d}\nc: {d: deep}\n"}},
      {"interpolation_fills_missing", {"a: ${b}\nb: ???\n", "b: 7\n"}},
      {"interpolation_of_merged_map", {"a: {x: 1}\nb: ${a}\n", "a: {y: 2}\n"}},
      {"relative_interpolation_after_merge", {"d: {x: 1, y: '${.x}-${..top}'}\ntop: t\n",
                                              "d: {x: 5}\ntop: u\n"}},
      {"select_not_null_after_merge",
       {"m: {h: org/model}\nc: ${select_not_null:m.h,/checkpoint}\n", "m: {h: null}\n"}},
      {"select_not_null_keeps_merged_value",
       {"m: {h: null}\nc: ${select_not_null:m.h,/checkpoint}\n", "m: {h: org/model}\n"}},
      {"nel_n_tasks",
       {"execution: {num_nodes: 1, deployment: {n_tasks: '${execution.num_nodes}'}}\n",
        "execution: {num_nodes: 4}\n"}},
      {"interpolation_chain_across_documents",
       {"a: ${b}\n", "b: ${c}-x\n", "c: ${d.e}\nd: {e: deep}\n"}},
      {"escaped_interpolation_after_merge", {"a: x\n", "a: 'cost \\${HOME}'\n"}},
      {"missing_over_referenced_value", {"a: ${b}\nb: 1\n", "c: 2\n", "b: ???\nc: 3\n"}},
      {"interpolation_to_removed_value_is_null", {"a: 'v=${b}'\nb: 1\n", "b: null\n"}},
      // oc.env with a default, inside strings and after merging.
      {"env_default_inside_string", {"a: 'pre-${oc.env:EVALCTL_T_UNSET,dflt}-post'\n"}, env},
      {"env_set_inside_string", {"a: 'pre-${oc.env:EVALCTL_T_SET,dflt}-post'\n"}, env},
      {"env_quoted_default_with_space",
       {"a: \"pre-${oc.env:EVALCTL_T_UNSET,'a b'}-post\"\n"}, env},
      {"env_unquoted_default_with_space", {"a: 'pre-${oc.env:EVALCTL_T_UNSET,a b}-post'\n"}, env},
      {"env_default_with_comma", {"a: ${oc.env:EVALCTL_T_UNSET,'x,y'}\n"}, env},
      {"env_default_url", {"a: 'u=${oc.env:EVALCTL_T_UNSET,http://h:80/v1}'\n"}, env},
      {"env_default_with_colon", {"a: '${oc.env:EVALCTL_T_UNSET,a:b}'\n"}, env},
      {"env_default_interpolation_after_merge",
       {"a: 'pre-${oc.env:EVALCTL_T_UNSET,${b}}-post'\nb: 7\n", "b: 8\n"}, env},
      {"env_default_path_with_interpolation",
       {"a: '${oc.env:EVALCTL_T_UNSET,/path/${b}/x}'\nb: q\n", "b: r\n"}, env},
      {"env_default_null_inside_string", {"a: 'pre-${oc.env:EVALCTL_T_UNSET,null}-post'\n"}, env},
      {"env_default_null_whole_value", {"a: ${oc.env:EVALCTL_T_UNSET,null}\n"}, env},
      {"env_default_number_is_a_string", {"a: ${oc.env:EVALCTL_T_UNSET,5}\n"}, env},
      {"env_default_padded", {"a: ' ${oc.env:EVALCTL_T_UNSET, sp } '\n"}, env},
      {"env_two_in_one_string",
       {"a: ${oc.env:EVALCTL_T_USER}/${oc.env:EVALCTL_T_UNSET,d}\n"}, env},
      {"env_in_overlay_replaces_value",
       {"out: /scratch/x\n", "out: /scratch/${oc.env:EVALCTL_T_USER}/${oc.env:EVALCTL_T_UNSET,"
                             "runs}\n"},
       env},
      {"env_unset_without_default_fails", {"a: ${oc.env:EVALCTL_T_UNSET}\n"}, env},
      // NEL-shaped: root values, a group under its package, the user's file.
      {"nel_shaped",
       {"execution:\n  type: slurm\n  hostname: ???\n  walltime: '01:00:00'\n"
        "  mounts: {deployment: {}, mount_home: true}\n  env_vars: {deployment: {}}\n"
        "deployment: {type: none}\n",
        "deployment:\n  type: vllm\n  checkpoint_path: ???\n  hf_model_handle: null\n"
        "  port: 8000\n  served_model_name: ???\n  extra_args: ''\n"
        "  command: vllm serve ${select_not_null:deployment.hf_model_handle,/checkpoint} --port "
        "${deployment.port} --served-model-name ${deployment.served_model_name} "
        "${deployment.extra_args}\n",
        "execution: {hostname: login, mounts: {deployment: {/a: /b}}, env_vars: {deployment: "
        "{USER: '${oc.env:EVALCTL_T_USER}'}}}\n"
        "deployment: {checkpoint_path: null, hf_model_handle: org/m, served_model_name: m, "
        "extra_args: '--max-model-len 4096'}\n"},
       env},
  };
}

TEST(MergeTest, AgreesWithOmegaConf) {
  const std::vector<MergeCase> cases = MergeCases();
  std::string json = "[";
  std::string ours;
  for (size_t i = 0; i < cases.size(); ++i) {
    const MergeCase& c = cases[i];
    absl::StrAppend(&json, i ? "," : "", "{\"name\":", JsonString(c.name), ",\"docs\":[");
    for (size_t d = 0; d < c.docs.size(); ++d) {
      absl::StrAppend(&json, d ? "," : "", JsonString(c.docs[d]));
    }
    absl::StrAppend(&json, "],\"env\":{");
    bool first = true;
    for (const auto& [k, v] : c.env) {
      absl::StrAppend(&json, first ? "" : ",", JsonString(k), ":", JsonString(v));
      first = false;
    }
    absl::StrAppend(&json, "}}");
    absl::StrAppend(&ours, OursFlat(c));
  }
  json += "]";
  auto py = RunSubprocess({.argv = {"/usr/bin/python3", "-c", kOmegaConfMerge},
                           .stdin_data = json,
                           .timeout = absl::Seconds(60)});
  ASSERT_TRUE(py.ok()) << py.status();
  ASSERT_TRUE(py->ok()) << py->Check("python3 omegaconf");
  EXPECT_EQ(ours, py->stdout_data);
  // Only the cases meant to fail fail (not, say, on YAML both parsers refuse).
  for (absl::string_view line : absl::StrSplit(py->stdout_data, '\n', absl::SkipEmpty())) {
    if (absl::EndsWith(line, "|!error")) {
      EXPECT_TRUE(absl::StrContains(line, "_fails|")) << line;
    }
  }
  // Each case, so that a difference names it.
  for (const MergeCase& c : cases) {
    std::string theirs;
    for (absl::string_view line : absl::StrSplit(py->stdout_data, '\n', absl::SkipEmpty())) {
      if (absl::StartsWith(line, c.name + "|")) absl::StrAppend(&theirs, line, "\n");
    }
    EXPECT_EQ(OursFlat(c), theirs) << c.name;
  }
}

// Where evalctl merges differently from OmegaConf 2.2 on purpose (compose.h, MergeInto).
TEST(MergeTest, DeliberateDifferencesFromOmegaConf) {
  // A map over an interpolation that refers to a map replaces it. (OmegaConf: b = {x: 1, y: 2}.)
  {
    MergeCase c{"map_over_map_interpolation", {"a: {x: 1}\nb: ${a}\n", "b: {y: 2}\n"}};
    EXPECT_EQ(OursFlat(c), "map_over_map_interpolation|a.x=1\nmap_over_map_interpolation|b.y=2\n");
  }
  // A list over a map and a map over a list replace (OmegaConf raises ConfigTypeError)...
  {
    MergeCase c{"list_over_map", {"a: {x: 1}\n", "a: [1, 2]\n"}};
    EXPECT_EQ(OursFlat(c), "list_over_map|a.0=1\nlist_over_map|a.1=2\n");
    MergeCase d{"map_over_list", {"a: [1, 2]\n", "a: {x: 1}\n"}};
    EXPECT_EQ(OursFlat(d), "map_over_list|a.x=1\n");
  }
  // ... and the schema check names the key and the user's line.
  {
    LoadRequest req;
    req.file_name = "run.yaml";
    req.yaml =
        "defaults: [{execution: slurm/default}, {deployment: none}, _self_]\n"
        "execution:\n  hostname: h\n  account: a\n  output_dir: /o\n"
        "  mounts:\n    deployment: [/data:/data]\n"
        "target: {api_endpoint: {url: 'http://h/v1/chat/completions', model_id: m}}\n"
        "evaluation: {tasks: [{name: ifeval}]}\n";
    auto spec = LoadInvocation(req);
    ASSERT_FALSE(spec.ok());
    EXPECT_THAT(spec.status().message(),
                HasSubstr("run.yaml:7:17: execution.mounts.deployment: must be a map"));
  }
  // A quoted '???' is a string, not MISSING: it replaces a value and is no required value.
  {
    MergeCase c{"quoted_missing", {"a: 1\nb: ???\n", "a: '\?\?\?'\n"}};
    EXPECT_EQ(OursFlat(c), "quoted_missing|a=???\nquoted_missing|b=???\n");
    auto n = LoadYaml("a: '\?\?\?'\nb: ???\n", "t.yaml");
    ASSERT_TRUE(n.ok());
    EXPECT_FALSE(n->Find("a")->IsMissing());
    EXPECT_TRUE(n->Find("b")->IsMissing());
  }
}

}  // namespace
}  // namespace evalctl::config
