#!/usr/bin/python3
"""Checks evalctl's built-in config groups and task catalog with OmegaConf itself.

Run with Debian's interpreter and python3-omegaconf (the `python3` of a virtualenv or pyenv may not
have OmegaConf):

    /usr/bin/python3 controller/config/data/check_groups.py [--seed path/to/slurm-executor.md]...

ctest runs it as `check_groups` (label unit) with --seed on the repository's copy of the seed,
controller/config/testdata/seed/slurm-executor.md, and also on ../shared/seed/slurm-executor.md
when that exists next to the checkout.

What it proves:
  * every file under groups/ loads with OmegaConf, and the only environment variable the groups
    read is USER (the regex the controller uses to decide which variables a client must send);
  * the configuration examples of NEL's Slurm executor documentation (embedded below, verbatim;
    with --seed, also every YAML block of that markdown file) compose with the groups the way
    evalctl composes them (root values, then the defaults list, then the user's file), use only
    keys the groups declare, and resolve completely with OmegaConf (NEL's `select_not_null`
    resolver registered as NEL registers it), with the values NEL would produce;
  * each deployment group resolves to the server command NEL would run;
  * catalog.yaml follows the schema documented at its top, and every command is valid bash that
    passes the expected arguments to nemo-evaluator; evalctl's own container-less tasks (harness
    evalctl) instead run evalctl-runner on one of the datasets in runner/datasets.

Exits 0 when everything holds, 1 otherwise (after printing every failure).
"""

import argparse
import copy
import os
import pathlib
import re
import subprocess
import sys

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

HERE = pathlib.Path(__file__).resolve().parent
GROUPS = HERE / "groups"
CATALOG = HERE / "catalog.yaml"
RUNNER_DATASETS = HERE.parents[2] / "runner" / "datasets"

# The controller's pattern for environment references (controller/config/loader.cc,
# ReferencedEnvironment): what a client sends along with a configuration.
ENV_REFERENCE = re.compile(r"(?:oc\.env:\s*|host:\s*)([A-Za-z_][A-Za-z0-9_]*)")

# Keys whose values are free-form maps or lists: any key may appear below them.
FREE_FORM = {
    ("env_vars",),
    ("execution", "env_vars", "deployment"),
    ("execution", "env_vars", "evaluation"),
    ("execution", "mounts", "deployment"),
    ("execution", "mounts", "evaluation"),
    ("execution", "mounts", "auxiliary"),
    ("execution", "sbatch_extra_flags"),
    ("execution", "auto_export"),
    ("deployment", "env_vars"),
    ("deployment", "endpoints"),
    ("evaluation", "env_vars"),
    ("evaluation", "nemo_evaluator_config"),
}
# Keys of one evaluation.tasks[] entry (NEL's Pydantic model, plus evalctl's `command`).
TASK_KEYS = {"name", "container", "command", "endpoint_type", "env_vars", "nemo_evaluator_config",
             "dataset_dir", "dataset_mount_path", "pre_cmd", "post_cmd"}

TEST_ENV = {
    "USER": "alice",
    "HF_TOKEN": "hf_secret_token_value",
    "YOUR_CUSTOM_ENV_VAR_NAME": "custom-value",
}

# ---- NEL's Slurm executor documentation (seed/slurm-executor.md), YAML blocks verbatim ----------

SEED_CONNECT = """\
execution:
  hostname: your-cluster-headnode      # Slurm headnode (login node)
  username: your_username            # Cluster username (defaults to $USER env var)
  account: your_allocation           # Slurm account or project name
  output_dir: /shared/scratch/your_username/eval_results  # Absolute, shared path
"""

SEED_HF = """\
deployment:
  checkpoint_path: null  # Set to null when using hf_model_handle
  hf_model_handle: meta-llama/Llama-3.1-8B-Instruct  # HuggingFace model ID
"""

SEED_CHECKPOINT = """\
deployment:
  checkpoint_path: /shared/models/llama-3.1-8b-instruct  # model directory accessible to compute nodes
  # Do NOT set hf_model_handle when using checkpoint_path
"""

SEED_ENV_VARS = """\
execution:
  env_vars:
    deployment:
      CUDA_VISIBLE_DEVICES: "0,1,2,3,4,5,6,7"
      USER: ${oc.env:USER}  # References host environment variable
    evaluation:
      CUSTOM_VAR: YOUR_CUSTOM_ENV_VAR_VALUE  # set the value directly
evaluation:
  env_vars:
    CUSTOM_VAR: ${oc.env:YOUR_CUSTOM_ENV_VAR_NAME}  # use YOUR_CUSTOM_ENV_VAR_NAME to populate CUSTOM_VAR
  tasks:
    - name: my_task
      env_vars:
        TASK_SPECIFIC_VAR: TASK_ENV_VAR_VALUE
"""

SEED_MOUNTS = """\
execution:
  mounts:
    deployment:
      /path/to/checkpoints: /checkpoint
      /path/to/cache: /cache
    evaluation:
      /path/to/data: /data
      /path/to/results: /results
    mount_home: true  # Mount user home directory
"""

SEED_COMPLETE = """\
# examples/slurm_llama_3_1_8b_instruct.yaml
defaults:
  - execution: slurm/default
  - deployment: vllm
  - _self_

execution:
  hostname: your-cluster-headnode
  account: your_account
  output_dir: /shared/scratch/your_username/eval_results
  partition: gpu
  walltime: "04:00:00"
  gpus_per_node: 8
  env_vars:
    deployment:
      HF_TOKEN: ${oc.env:HF_TOKEN}   # Needed to access meta-llama/Llama-3.1-8B-Instruct gated model

deployment:
  hf_model_handle: meta-llama/Llama-3.1-8B-Instruct
  checkpoint_path: null
  served_model_name: meta-llama/Llama-3.1-8B-Instruct
  tensor_parallel_size: 1
  data_parallel_size: 8
    
evaluation:
  tasks:
    - name: hellaswag
    - name: arc_challenge  
    - name: winogrande
"""

# Completes a partial snippet into a runnable configuration (the snippet is merged after it).
SNIPPET_BASE = """\
defaults:
  - execution: slurm/default
  - deployment: vllm
  - _self_
execution:
  hostname: headnode
  account: acct
  output_dir: /shared/out
deployment:
  checkpoint_path: null
  hf_model_handle: org/model
  served_model_name: org/model
evaluation:
  tasks:
    - name: hellaswag
"""


class Checker:
    def __init__(self):
        self.failures = []

    def check(self, condition, message):
        if not condition:
            self.failures.append(message)
        return condition

    def equal(self, actual, expected, what):
        return self.check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def register_resolvers():
    # As NEL's nemo_evaluator_launcher/configs/__init__.py does.
    def select_not_null(key, default, *, _root_):
        value = OmegaConf.select(_root_, key, default=None, throw_on_resolution_failure=False)
        return default if value is None else value

    if not OmegaConf.has_resolver("select_not_null"):
        OmegaConf.register_new_resolver("select_not_null", select_not_null, use_cache=False)


def load_group(path):
    return OmegaConf.load(str(GROUPS / path))


def read_defaults(cfg):
    """The `defaults:` list of a config as [(group, option) or ('_self_', None)]."""
    out = []
    for item in cfg.get("defaults", []) or []:
        if item == "_self_":
            out.append(("_self_", None))
        else:
            ((group, option),) = dict(item).items()
            out.append((group.replace("override ", "").strip(), option))
    return out


def compose(user_text):
    """evalctl's composition (controller/config/compose.h), with OmegaConf merges."""
    root = load_group("default.yaml")
    user = OmegaConf.create(user_text)
    root_defaults = read_defaults(root)
    user_defaults = read_defaults(user)
    user_groups = {g for g, _ in user_defaults}
    order = [(g, o) for g, o in root_defaults if g != "_self_" and g not in user_groups]
    order += user_defaults
    if ("_self_", None) not in user_defaults:
        order.append(("_self_", None))
    root_body = {k: v for k, v in OmegaConf.to_container(root).items() if k != "defaults"}
    user_body = {k: v for k, v in OmegaConf.to_container(user).items() if k != "defaults"}
    out = OmegaConf.create(root_body)
    for group, option in order:
        if group == "_self_":
            out = OmegaConf.merge(out, user_body)
        else:
            package = group.split("/")[0]
            body = load_group(f"{group}/{option}.yaml")
            out = OmegaConf.merge(out, {package: body})
    return out, user_body


def defaults_tree(user_text):
    """The composed tree without the user's own values: what the groups declare."""
    user = OmegaConf.create(user_text)
    only_defaults = OmegaConf.to_yaml(OmegaConf.create({"defaults": user.get("defaults", [])}))
    composed, _ = compose(only_defaults)
    return OmegaConf.to_container(composed)


def unknown_keys(declared, given, path=()):
    """Keys of `given` that the groups do not declare (evalctl reports them as errors)."""
    out = []
    if not isinstance(given, dict):
        return out
    for key, value in given.items():
        here = path + (key,)
        if here in FREE_FORM:
            continue
        if here == ("evaluation", "tasks"):
            for i, task in enumerate(value or []):
                for task_key in (task or {}):
                    if task_key not in TASK_KEYS:
                        out.append(".".join(map(str, here + (i, task_key))))
            continue
        if not isinstance(declared, dict) or key not in declared:
            out.append(".".join(map(str, here)))
            continue
        out.extend(unknown_keys(declared[key], value, here))
    return out


def resolve(cfg):
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def check_group_files(c):
    files = sorted(p.relative_to(GROUPS).as_posix() for p in GROUPS.rglob("*.yaml"))
    expected = {"default.yaml", "execution/slurm/default.yaml"} | {
        f"deployment/{t}.yaml" for t in ("vllm", "sglang", "nim", "trtllm", "generic", "none")}
    c.check(expected <= set(files), f"group files missing: {sorted(expected - set(files))}")
    for f in files:
        try:
            cfg = load_group(f)
        except Exception as e:  # noqa: BLE001 - report any loader error
            c.check(False, f"{f}: OmegaConf cannot load it: {e}")
            continue
        c.check(isinstance(cfg, DictConfig), f"{f}: must hold a map")
        text = (GROUPS / f).read_text()
        refs = set(ENV_REFERENCE.findall(text))
        c.check(refs <= {"USER"},
                f"{f}: reads environment variables {sorted(refs - {'USER'})} (also in comments: "
                f"the controller's scan would make clients send them)")
        if f.startswith("deployment/"):
            c.equal(cfg.get("type"), pathlib.Path(f).stem, f"{f}: type")


def check_execution_defaults(c):
    e = load_group("execution/slurm/default.yaml")
    expected = {
        "type": "slurm", "hostname": "???", "account": "???", "output_dir": "???",
        "partition": "batch", "cpu_partition": None, "num_nodes": 1, "num_instances": 1,
        "ntasks_per_node": 1, "gres": "gpu:8", "walltime": "01:00:00",
        "max_walltime": "120:00:00", "endpoint_readiness_timeout": None,
        "subproject": "nemo-evaluator-launcher", "sbatch_comment": None,
        "sbatch_extra_flags": {"exclusive": True},
        "mounts": {"deployment": {}, "evaluation": {}, "auxiliary": {}, "mount_home": True},
        "env_vars": {"deployment": {}, "evaluation": {}},
        "proxy": {"type": "haproxy", "image": "haproxy:latest",
                  "config": {"haproxy_port": 5009, "health_check_path": "/health",
                             "health_check_status": 200}},
        "evaluation_gpu_visible": False,
        "eval_ray_cluster": False, "eval_ray_port": 6379, "eval_ray_dashboard_port": 8265,
        "eval_ray_ready_timeout": 600, "eval_per_node_pre_cmd": None,
        "eval_ray_pre_start_cmd": None, "eval_ray_head_workload_cmd": None,
        # evalctl's own
        "container_runtime": "pyxis", "max_attempts": 20, "pre_timeout_signal_seconds": 120,
        "mpi": None, "shared_deployment": False, "gpus_per_node": None,
    }
    raw = OmegaConf.to_container(e, resolve=False)
    for key, value in expected.items():
        c.equal(raw.get(key), value, f"execution/slurm/default.yaml: {key}")
    c.equal(raw.get("username"), "${oc.env:USER}", "execution/slurm/default.yaml: username")
    c.equal(raw.get("deployment"), {"n_tasks": "${execution.num_nodes}"},
            "execution/slurm/default.yaml: deployment")
    c.check(isinstance(raw.get("auto_export"), dict) and "destinations" in raw["auto_export"],
            "execution/slurm/default.yaml: auto_export.destinations")


def check_seed_examples(c, extra_snippets):
    # The complete example, alone.
    cfg, user = compose(SEED_COMPLETE)
    c.equal(unknown_keys(defaults_tree(SEED_COMPLETE), user), [], "complete example: unknown keys")
    try:
        r = resolve(cfg)
    except Exception as e:  # noqa: BLE001
        c.check(False, f"complete example does not resolve: {e}")
        return
    ex, dep = r["execution"], r["deployment"]
    c.equal(ex["username"], "alice", "complete example: execution.username from $USER")
    c.equal(ex["walltime"], "04:00:00", "complete example: execution.walltime")
    c.equal(ex["max_walltime"], "120:00:00", "complete example: execution.max_walltime")
    c.equal(ex["partition"], "gpu", "complete example: execution.partition")
    c.equal(ex["gpus_per_node"], 8, "complete example: execution.gpus_per_node")
    c.equal(ex["deployment"]["n_tasks"], 1, "complete example: execution.deployment.n_tasks")
    c.equal(ex["sbatch_extra_flags"], {"exclusive": True}, "complete example: sbatch_extra_flags")
    c.equal(ex["env_vars"]["deployment"]["HF_TOKEN"], "hf_secret_token_value",
            "complete example: HF_TOKEN")
    c.equal(dep["type"], "vllm", "complete example: deployment.type")
    c.equal(dep["image"], "vllm/vllm-openai:latest", "complete example: deployment.image")
    c.equal(dep["command"],
            "vllm serve meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size=1 "
            "--pipeline-parallel-size=1 --data-parallel-size=8 --port 8000 --trust-remote-code "
            "--served-model-name meta-llama/Llama-3.1-8B-Instruct --gpu-memory-utilization 0.95 ",
            "complete example: deployment.command")
    c.equal(dep["endpoints"]["health"], "/health", "complete example: health endpoint")
    c.equal([t["name"] for t in r["evaluation"]["tasks"]],
            ["hellaswag", "arc_challenge", "winogrande"], "complete example: tasks")
    c.equal(r["target"]["api_endpoint"], {"url": None, "model_id": None, "api_key_name": None},
            "complete example: target.api_endpoint (filled per task by evalctl)")

    # The partial snippets, each merged over a minimal complete configuration.
    snippets = [("connect", SEED_CONNECT), ("hf", SEED_HF), ("checkpoint", SEED_CHECKPOINT),
                ("env_vars", SEED_ENV_VARS), ("mounts", SEED_MOUNTS)] + extra_snippets
    for name, text in snippets:
        parsed = yaml.safe_load(text) or {}
        if not isinstance(parsed, dict):
            continue
        if "defaults" in parsed:
            user_text = text
        else:
            merged = OmegaConf.merge(OmegaConf.create(SNIPPET_BASE), OmegaConf.create(text))
            user_text = OmegaConf.to_yaml(merged)
        cfg, _ = compose(user_text)
        given = {k: v for k, v in parsed.items() if k != "defaults"}
        c.equal(unknown_keys(defaults_tree(user_text), given), [],
                f"seed snippet {name}: unknown keys")
        try:
            r = resolve(cfg)
        except Exception as e:  # noqa: BLE001
            c.check(False, f"seed snippet {name} does not resolve: {e}")
            continue
        if name == "checkpoint":
            c.check(r["deployment"]["command"].startswith("vllm serve org/model "),
                    "checkpoint snippet: hf_model_handle of the base still wins (NEL's rule)")
        if name == "env_vars":
            c.equal(r["evaluation"]["env_vars"]["CUSTOM_VAR"], "custom-value",
                    "env_vars snippet: ${oc.env:...}")
            c.equal(r["execution"]["env_vars"]["deployment"]["USER"], "alice",
                    "env_vars snippet: USER")


def check_deployments(c):
    base = """\
defaults:
  - execution: slurm/default
  - deployment: {dep}
  - _self_
execution: {{hostname: h, account: a, output_dir: /o}}
evaluation: {{tasks: [{{name: hellaswag}}]}}
deployment: {extra}
"""
    cases = {
        "vllm": ("{checkpoint_path: /ckpt, served_model_name: m}",
                 "vllm serve /checkpoint --tensor-parallel-size=8 --pipeline-parallel-size=1 "
                 "--data-parallel-size=1 --port 8000 --trust-remote-code --served-model-name m "
                 "--gpu-memory-utilization 0.95 ", "/health"),
        "sglang": ("{checkpoint_path: null, hf_model_handle: org/x, served_model_name: m, "
                   "extra_args: --foo}",
                   "python3 -m sglang.launch_server --model-path org/x --host 0.0.0.0 --port 8000 "
                   "--served-model-name m --tp-size 8 --dp-size 1 --pp-size 1 --foo", "/health"),
        "trtllm": ("{checkpoint_path: /ckpt, served_model_name: m, port: 9000}",
                   "mpirun --allow-run-as-root --oversubscribe trtllm-serve serve /checkpoint "
                   "--tp_size=4 --pp_size=1 --host 0.0.0.0 --port 9000 --backend pytorch "
                   "--trust_remote_code ", "/health"),
        "nim": ("{image: nvcr.io/nim/meta/llama-3.1-8b-instruct:1.8.6, served_model_name: m}",
                "/opt/nvidia/nvidia_entrypoint.sh /opt/nim/start_server.sh", "/v1/health/ready"),
        "generic": ("{image: img, served_model_name: m, "
                    "command: 'srv --port ${deployment.port} --model "
                    "${select_not_null:deployment.hf_model_handle,/checkpoint}'}",
                    "srv --port 8000 --model /checkpoint", "/health"),
    }
    for dep, (extra, command, health) in cases.items():
        text = base.format(dep=dep, extra=extra)
        cfg, user = compose(text)
        try:
            r = resolve(cfg)
        except Exception as e:  # noqa: BLE001
            c.check(False, f"deployment {dep} does not resolve: {e}")
            continue
        c.equal(r["deployment"]["type"], dep, f"deployment {dep}: type")
        c.equal(r["deployment"]["command"], command, f"deployment {dep}: command")
        c.equal(r["deployment"]["endpoints"]["health"], health, f"deployment {dep}: health")
        c.equal(r["deployment"]["port"], 9000 if dep == "trtllm" else 8000, f"{dep}: port")
    # The required values stay required.
    for dep, required in {"vllm": ["checkpoint_path", "served_model_name"],
                          "sglang": ["checkpoint_path", "served_model_name"],
                          "trtllm": ["checkpoint_path", "served_model_name"],
                          "nim": ["image", "served_model_name"],
                          "generic": ["image", "command", "served_model_name"]}.items():
        cfg = load_group(f"deployment/{dep}.yaml")
        missing = sorted(k for k in cfg if OmegaConf.is_missing(cfg, k))
        c.equal(missing, sorted(required), f"deployment {dep}: required (???) keys")
    # deployment: none with an external endpoint.
    text = """\
defaults: [{execution: slurm/default}, {deployment: none}, _self_]
execution: {hostname: h, account: a, output_dir: /o}
target: {api_endpoint: {url: 'https://api.example.com/v1/chat/completions', model_id: m,
                        api_key_name: MY_KEY}}
evaluation: {tasks: [{name: ifeval}]}
"""
    cfg, user = compose(text)
    c.equal(unknown_keys(defaults_tree(text), user), [], "deployment none: unknown keys")
    r = resolve(cfg)
    c.equal(r["deployment"], {"type": "none"}, "deployment none")
    c.equal(r["target"]["api_endpoint"]["model_id"], "m", "deployment none: model_id")
    # A misspelt key is caught by the key walk (the controller reports it with a suggestion).
    bad = SEED_COMPLETE.replace("  walltime:", "  walltme:")
    _, user = compose(bad)
    c.equal(unknown_keys(defaults_tree(bad), user), ["execution.walltme"], "misspelt key")


def check_catalog(c):
    data = yaml.safe_load(CATALOG.read_text())
    c.equal(data.get("schema_version"), 1, "catalog: schema_version")
    tasks = data.get("tasks")
    if not c.check(isinstance(tasks, list), "catalog: tasks must be a list"):
        return
    c.check(len(tasks) >= 15, f"catalog: only {len(tasks)} tasks")
    names = {}
    stub = ('nemo-evaluator() { printf "%s\\n" "$@"; }\n'
            'EVALCTL_ENDPOINT_URL=http://127.0.0.1:8000/v1/completions\n'
            'EVALCTL_MODEL_ID="org/model name"\nEVALCTL_RESULTS_DIR=/results\n')
    for i, t in enumerate(tasks):
        where = f"catalog: tasks[{i}] ({t.get('name')})"
        allowed = {"name", "aliases", "harness", "container", "runtimes", "endpoint_type",
                   "endpoint_types", "required_env_vars", "description", "command"}
        c.check(set(t) <= allowed, f"{where}: unknown fields {sorted(set(t) - allowed)}")
        for n in [t.get("name")] + list(t.get("aliases") or []):
            c.check(isinstance(n, str) and re.fullmatch(r"[A-Za-z0-9._-]+", n or ""),
                    f"{where}: bad name {n!r}")
            c.check(n not in names, f"{where}: name {n} also names tasks[{names.get(n)}]")
            names[n] = i
        runtimes = t.get("runtimes") or []
        c.check(runtimes and set(runtimes) <= {"pyxis", "none"}, f"{where}: runtimes {runtimes}")
        if "pyxis" in runtimes:
            c.check(re.fullmatch(r"nvcr\.io/nvidia/eval-factory/[a-z0-9-]+:[0-9.]+",
                                 t.get("container", "")), f"{where}: container")
        eps = t.get("endpoint_types") or []
        c.check(t.get("endpoint_type") == (eps[0] if eps else None),
                f"{where}: endpoint_type must be the first of endpoint_types (NEL's rule)")
        c.check(set(eps) <= {"chat", "completions", "vlm", "embedding"},
                f"{where}: endpoint_types {eps}")
        c.check(isinstance(t.get("description"), str) and t["description"], f"{where}: description")
        harness = t.get("harness")
        command = t.get("command", "")
        if harness == "evalctl" or str(t.get("name")).startswith("evalctl."):
            check_evalctl_task(c, t, where)
            continue
        m = re.search(r"--eval_type (\S+)", command)
        if not c.check(m, f"{where}: command has no --eval_type"):
            continue
        eval_type = m.group(1)
        qualified = f"{harness}.{eval_type}"
        c.check(qualified in [t["name"]] + list(t.get("aliases") or []),
                f"{where}: not reachable as {qualified}")
        # The command is bash: check its syntax and the arguments it passes.
        for api_key, run_config in ((None, None), ("MY_KEY", "/results/run_config.yaml")):
            env_lines = ""
            if api_key:
                env_lines += f"EVALCTL_API_KEY_NAME={api_key}\n"
            if run_config:
                env_lines += f"EVALCTL_RUN_CONFIG={run_config}\n"
            proc = subprocess.run(["/bin/bash", "-c", stub + env_lines + command],
                                  capture_output=True, text=True, check=False)
            if not c.check(proc.returncode == 0, f"{where}: command fails: {proc.stderr}"):
                break
            args = proc.stdout.splitlines()
            expected = ["run_eval", "--eval_type", eval_type, "--model_id", "org/model name",
                        "--model_url", "http://127.0.0.1:8000/v1/completions", "--model_type",
                        t["endpoint_type"], "--output_dir", "/results"]
            if api_key:
                expected += ["--api_key_name", api_key]
            if run_config:
                expected += ["--run_config", run_config]
            c.equal(args, expected, f"{where}: nemo-evaluator arguments")
        # EVALCTL_ENDPOINT_TYPE overrides the default.
        proc = subprocess.run(["/bin/bash", "-c", stub + "EVALCTL_ENDPOINT_TYPE=chat\n" + command],
                              capture_output=True, text=True, check=False)
        args = proc.stdout.splitlines()
        c.check("--model_type" in args and args[args.index("--model_type") + 1] == "chat",
                f"{where}: EVALCTL_ENDPOINT_TYPE is not honoured")
    for short in ("hellaswag", "arc_challenge", "winogrande", "gsm8k", "mmlu", "mmlu_pro",
                  "ifeval", "gpqa_diamond", "humaneval", "mbpp", "bbh", "piqa",
                  "lm-evaluation-harness.hellaswag"):
        c.check(short in names, f"catalog: {short} does not resolve")
    for short, qualified in (data.get("shared_short_names") or {}).items():
        c.check(len(qualified) >= 2, f"catalog: shared_short_names.{short} lists one entry")
        for q in qualified:
            c.check(q in names, f"catalog: shared_short_names.{short}: {q} is not a task")
        c.check(short in names and names[short] == names.get(qualified[0]),
                f"catalog: short name {short} must find {qualified[0]}")


def check_evalctl_task(c, t, where):
    """One of evalctl's own container-less tasks (catalog.yaml, last section).

    They run evalctl-runner directly on the node. The runner reads the endpoint URL, model id,
    endpoint type, key name and results directory from the EVALCTL_* variables itself, so the
    command names only the task, the dataset and the answer format (and passes
    EVALCTL_RUN_CONFIG on when it is set): no --eval_type, no nemo-evaluator.
    """
    name = t.get("name", "")
    if not c.check(t.get("harness") == "evalctl" and name.startswith("evalctl."),
                   f"{where}: the evalctl.* names are for harness evalctl, and its tasks are "
                   f"named evalctl.<task>"):
        return
    short = name[len("evalctl."):]
    c.check(set(t.get("aliases") or []) <= {short}, f"{where}: aliases other than {short}")
    c.equal(t.get("runtimes"), ["none"], f"{where}: runtimes")
    c.check("container" not in t, f"{where}: a container-less task has a container")
    command = t.get("command", "")
    c.check(command.startswith("evalctl-runner "), f"{where}: command must run evalctl-runner")
    stub = 'evalctl-runner() { printf "%s\\n" "$@"; }\n'
    for run_config in (None, "/results/run config.yaml"):
        env_lines = f"EVALCTL_RUN_CONFIG='{run_config}'\n" if run_config else ""
        proc = subprocess.run(["/bin/bash", "-c", stub + env_lines + command],
                              capture_output=True, text=True, check=False)
        if not c.check(proc.returncode == 0, f"{where}: command fails: {proc.stderr}"):
            return
        args = proc.stdout.splitlines()
        if len(args) < 6:
            c.check(False, f"{where}: evalctl-runner arguments {args}")
            return
        c.equal(args[:2], ["--task", short], f"{where}: evalctl-runner --task")
        c.equal(args[2], "--dataset", f"{where}: evalctl-runner --dataset")
        c.check((RUNNER_DATASETS / f"{args[3]}.jsonl").is_file(),
                f"{where}: dataset {args[3]} is not in runner/datasets")
        c.check(args[4] == "--format" and args[5] in ("mc", "exact", "auto"),
                f"{where}: evalctl-runner --format mc|exact|auto, got {args[4:6]}")
        if run_config:
            c.equal(args[6:], ["--run-config", run_config], f"{where}: --run-config")
        else:
            c.equal(args[6:], [], f"{where}: arguments without EVALCTL_RUN_CONFIG")
        for flag in ("--eval_type", "--endpoint-url", "--model-id", "--results-dir",
                     "--api-key-name", "--endpoint-type"):
            c.check(flag not in args,
                    f"{where}: passes {flag}; evalctl-runner reads it from the EVALCTL_* variables")


def markdown_yaml_blocks(path):
    text = pathlib.Path(path).read_text()
    return [(f"{path}#{i}", block) for i, block in
            enumerate(re.findall(r"```yaml\n(.*?)```", text, flags=re.S))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", action="append", default=[],
                        help="also check every ```yaml block of this markdown file (repeatable)")
    args = parser.parse_args()

    os.environ.update(TEST_ENV)
    register_resolvers()
    c = Checker()
    extra = [block for seed in args.seed for block in markdown_yaml_blocks(seed)]
    for step in (check_group_files, check_execution_defaults,
                 lambda ch: check_seed_examples(ch, extra), check_deployments, check_catalog):
        try:
            step(c)
        except Exception as e:  # noqa: BLE001 - a crash is a failure too
            c.check(False, f"{getattr(step, '__name__', 'check')}: {type(e).__name__}: {e}")
    if c.failures:
        print(f"FAILED: {len(c.failures)} problem(s)")
        for f in c.failures:
            print("  - " + f)
        return 1
    print(f"ok: groups and catalog check out (OmegaConf {__import__('omegaconf').__version__}"
          f"{''.join(', seed ' + seed for seed in args.seed)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
