#!/usr/bin/env python3
"""End-to-end test of evalctl_client: the real evalctl-controller and evalctl-agent on the local
Slurm cluster (deploy/dev/cluster.sh), driven only through the Python client.

    eval "$(deploy/dev/cluster.sh env)"          # SLURM_CONF; tests/run.sh does this
    PYTHONPATH=build/clients/python /usr/bin/python3 clients/python/tests/e2e_test.py \\
        --controller-bin build/controller/service/evalctl-controller \\
        --agent-bin build/agent/runtime/evalctl-agent

ctest runs it as `python_client_e2e` (label e2e). A cluster that is not up is a failure, never a
skip. Everything runs below a fresh directory in /tmp (removed when the test passed, kept and
named when it failed); the controller and the agent are stopped at the end, also on failure (and
die with this process: PR_SET_PDEATHSIG), and Slurm jobs left by the test are cancelled by their
job-name prefix. The jobs run on node1 (partition debug) without --exclusive, as tests/e2e does.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import uuid
from typing import List, Optional

from evalctl_client import (Client, ControllerUnreachableError, EventKind,
                            InvalidArgumentError, Invocation, NotFoundError, TaskState,
                            UnavailableError)

CLUSTER = "pyclient-e2e"
ACCOUNT = "root"
HOW_TO_START = ("start the local cluster with `deploy/dev/cluster.sh start` and run "
                "`eval \"$(deploy/dev/cluster.sh env)\"` (tests/run.sh does both)")


def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child: SIGKILL when the thread that started it ends (so start children from
    the main thread)."""
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def require_cluster() -> None:
    """Fails (never skips) when the local Slurm cluster is not reachable."""
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        raise AssertionError(f"SLURM_CONF is not set: {HOW_TO_START}")
    try:
        r = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AssertionError(f"`scontrol ping` failed ({e}); {HOW_TO_START}") from None
    if r.returncode != 0 or "UP" not in r.stdout:
        raise AssertionError(f"slurmctld does not answer (SLURM_CONF={conf}): "
                             f"{(r.stdout + r.stderr).strip()}; {HOW_TO_START}")


class Process:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: List[str], log_path: str) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def tail(self, limit: int = 6000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        text = data.decode(errors="replace")
        return text if len(text) <= limit else "..." + text[-limit:]


class Env:
    """The controller, the agent and the directories of one test run."""

    def __init__(self, controller_bin: str, agent_bin: str) -> None:
        self.controller_bin = controller_bin
        self.agent_bin = agent_bin
        self.root = tempfile.mkdtemp(prefix="evalctl-pyclient-e2e-")
        self.tag = uuid.uuid4().hex[:8]
        self.subproject = f"pyclient-e2e-{self.tag}"
        self.processes: List[Process] = []
        self.address = ""
        self.client: Optional[Client] = None
        for sub in ("logs", "out", "configs", "controller", "agent"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)

    @property
    def job_name_prefix(self) -> str:
        return f"{ACCOUNT}-{self.subproject}."

    def start(self) -> None:
        for path in (self.controller_bin, self.agent_bin):
            if not os.access(path, os.X_OK):
                raise AssertionError(f"{path} is not an executable; build evalctl-controller and "
                                     "evalctl-agent first")
        # A free port may be taken between the check and the bind: try a few.
        for attempt in range(3):
            self.address = f"127.0.0.1:{free_port()}"
            self.client = Client(self.address, timeout=5)
            if self.start_controller(must_work=attempt == 2):
                break
            self.client.close()
        self.processes.append(Process("agent", [
            self.agent_bin, "--insecure", "--controller", self.address,
            "--state-dir", os.path.join(self.root, "agent"), "--cluster", CLUSTER,
            # A short longest interval: the tests watch for RUNNING, which a job that starts and
            # ends between two backed-off cycles would skip.
            "--min-interval", "0.5", "--max-interval", "1"],
            os.path.join(self.root, "logs", "agent.log")))
        self.wait_agent_connected()

    def start_controller(self, must_work: bool = True) -> bool:
        """Starts the controller on self.address with its state dir; True once it answers."""
        n = sum(p.name == "controller" for p in self.processes)
        controller = Process("controller", [
            self.controller_bin, "--insecure", "--listen", self.address,
            "--state-dir", os.path.join(self.root, "controller")],
            os.path.join(self.root, "logs", f"controller-{n}.log"))
        self.processes.append(controller)
        if self._wait(self._answers, 20, controller):
            return True
        controller.stop()
        if must_work:
            why = (f"exited with code {controller.proc.returncode}" if not controller.running()
                   else "does not answer after 20s")
            raise AssertionError(f"evalctl-controller on {self.address} {why}:\n"
                                 f"{controller.tail()}")
        return False

    def kill_controller(self) -> None:
        for p in self.processes:
            if p.name == "controller" and p.running():
                p.proc.kill()
                p.proc.wait()

    def wait_agent_connected(self, timeout: float = 30) -> None:
        agent = next(p for p in self.processes if p.name == "agent")

        def connected() -> bool:
            assert self.client is not None
            return any(c.name == CLUSTER and c.connected for c in self.client.clusters())
        if not self._wait(connected, timeout, agent):
            why = (f"exited with code {agent.proc.returncode}" if not agent.running()
                   else f"is not connected after {timeout:g}s")
            raise AssertionError(f"evalctl-agent of cluster {CLUSTER} {why}:\n{agent.tail()}")

    def _answers(self) -> bool:
        assert self.client is not None
        try:
            self.client.clusters()
            return True
        except ControllerUnreachableError:
            return False

    @staticmethod
    def _wait(predicate, timeout: float, process: Process) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not process.running():
                return False
            if predicate():
                return True
            time.sleep(0.2)
        return False

    def write_config(self, name: str, command: str) -> str:
        """A config with one task `name` running the bash `command` (no `${` in it)."""
        assert "${" not in command, "write $VAR, not ${VAR}: the loader interpolates ${...}"
        body = textwrap.indent(command.rstrip("\n") + "\n", " " * 10)
        text = textwrap.dedent(f"""\
            defaults:
              - execution: slurm/default
              - deployment: none
              - _self_
            execution:
              hostname: {CLUSTER}
              username: {current_user()}
              account: {ACCOUNT}
              subproject: {self.subproject}
              output_dir: {self.root}/out
              partition: debug
              gres: null
              container_runtime: none
              walltime: "00:05:00"
              sbatch_extra_flags:
                exclusive: false
                nodelist: node1
            target:
              api_endpoint:
                url: http://127.0.0.1:9/v1/chat/completions
                model_id: m
            evaluation:
              tasks:
                - name: {name}
                  command: |
            """) + body
        path = os.path.join(self.root, "configs", f"{name}.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def cancel_slurm_jobs(self) -> None:
        try:
            r = subprocess.run(["squeue", "-h", "-o", "%i|%j"], capture_output=True, text=True,
                               timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return
        ids = [line.split("|", 1)[0] for line in r.stdout.splitlines()
               if "|" in line and line.split("|", 1)[1].startswith(self.job_name_prefix)]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=30)

    def stop(self, keep: bool) -> None:
        if self.client is not None:
            self.client.close()
        for p in reversed(self.processes):
            p.stop()
        self.cancel_slurm_jobs()
        if keep:
            print(f"\ne2e: kept {self.root}", file=sys.stderr)
            for p in self.processes:
                print(f"---- tail of {p.log_path}\n{p.tail()}", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


ENV: Optional[Env] = None

RESULTS_COMMAND = """\
echo "pyclient e2e t1 says hello"
printf '%s\\n' 'results: {tasks: {t1: {metrics: {accuracy: {scores: {acc: {value: 0.9}}}}}}}' > "$EVALCTL_RESULTS_DIR/results.yml.tmp"
mv "$EVALCTL_RESULTS_DIR/results.yml.tmp" "$EVALCTL_RESULTS_DIR/results.yml"
echo "pyclient e2e t1 done"
"""


class PythonClientE2eTest(unittest.TestCase):
    maxDiff = None

    @property
    def env(self) -> Env:
        assert ENV is not None
        return ENV

    @property
    def client(self) -> Client:
        assert ENV is not None and ENV.client is not None
        return ENV.client

    def test_run_watch_status_results_logs(self):
        config = self.env.write_config("t1", RESULTS_COMMAND)
        inv = self.client.run(config)
        self.assertIsInstance(inv, Invocation)
        self.assertRegex(inv.id, r"^[0-9a-f]{16}$")
        self.assertEqual(inv.cluster, CLUSTER)
        self.assertEqual([t.name for t in inv.tasks], ["t1"])
        task_id = f"{inv.id}.0"

        # Watch until the controller ends the stream: every task terminal.
        events = []
        deadline = time.monotonic() + 180
        for event in self.client.watch(inv.id):
            events.append(event)
            self.assertLess(time.monotonic(), deadline, "the run did not finish within 180s")
        kinds = [e.kind for e in events]
        self.assertEqual([e.sequence for e in events], sorted(e.sequence for e in events))
        self.assertTrue(all(e.task_id == task_id for e in events if not e.overflowed), events)
        self.assertIn(EventKind.SUBMITTED, kinds)
        self.assertEqual(kinds[-1], EventKind.FINISHED, kinds)
        self.assertEqual(events[-1].state, TaskState.SUCCEEDED, events[-1].reason)
        submitted = next(e for e in events if e.kind == EventKind.SUBMITTED)
        job_id = submitted.attempt.slurm_job_id if submitted.attempt else ""
        self.assertRegex(job_id, r"^\d+$")

        # The store agrees; prefixes work.
        final = self.client.status(inv.id[:8])
        self.assertIsInstance(final, Invocation)
        self.assertTrue(final.finished)
        self.assertEqual(final.counts["succeeded"], 1)
        (task,) = final.tasks
        self.assertEqual(task.state, TaskState.SUCCEEDED)
        self.assertEqual(task.slurm_job_id, job_id)
        self.assertEqual(task.attempts[0].slurm_state, "COMPLETED")
        self.assertTrue(task.run_dir.startswith(f"{self.env.root}/out/"), task.run_dir)
        self.assertEqual(self.client.status(task_id).id, task_id)
        self.assertIs(self.client.wait(inv.id, timeout=10).finished, True)
        self.assertIn(inv.id, [i.id for i in self.client.list(limit=10)])

        # Results as dataclasses and as plain dicts.
        (result,) = self.client.results(inv.id)
        self.assertEqual((result.task_id, result.name, result.state),
                         (task_id, "t1", TaskState.SUCCEEDED))
        self.assertEqual(result.values, {"accuracy.acc": 0.9})
        self.assertEqual(result.to_dict()["scores"],
                         [{"task": "t1", "metric": "accuracy", "score": "acc", "value": 0.9,
                           "stats": {}}])
        self.assertTrue(result.results_path.endswith("results.yml"), result.results_path)

        # Logs, read on the cluster by the agent and streamed through the controller.
        eval_log = b"".join(self.client.logs(task_id, which="eval"))
        self.assertIn(b"pyclient e2e t1 says hello", eval_log)
        self.assertIn(b"pyclient e2e t1 done", eval_log)
        slurm_log = b"".join(self.client.logs(task_id, which="slurm"))
        self.assertIn(job_id.encode(), slurm_log)
        tail = b"".join(self.client.logs(task_id, which="eval", offset=-5))
        self.assertEqual(tail, eval_log[-5:])

    def test_cancel_a_running_task(self):
        config = self.env.write_config("sleeper", 'echo "sleeping"\nsleep 300\n')
        inv = self.client.run(config, request_id=f"sleeper-{self.env.tag}")
        again = self.client.run(config, request_id=f"sleeper-{self.env.tag}")
        self.assertEqual(again.id, inv.id)
        self.assertTrue(again.duplicate)
        task_id = f"{inv.id}.0"
        deadline = time.monotonic() + 120
        for event in self.client.watch(inv.id):
            if event.state == TaskState.RUNNING:
                break
            self.assertLess(time.monotonic(), deadline, "the task did not start within 120s")
        tasks = self.client.cancel(inv.id)
        self.assertEqual([t.id for t in tasks], [task_id])
        self.assertTrue(tasks[0].cancel_requested or tasks[0].state == TaskState.CANCELLED)
        final = self.client.wait(inv.id, timeout=120)
        self.assertEqual(final.tasks[0].state, TaskState.CANCELLED, final.tasks[0].reason)
        self.assertEqual(self.client.results(inv.id)[0].scores, [])

    def test_watch_resumes_across_a_controller_restart(self):
        config = self.env.write_config("t1", "sleep 10\n" + RESULTS_COMMAND)
        inv = self.client.run(config)
        events = []
        restarted = False
        with self.assertLogs("evalctl_client", "WARNING") as logs:
            for event in self.client.watch(inv.id):
                events.append(event)
                if event.state == TaskState.RUNNING and not restarted:
                    # The stream breaks; the same Client reconnects and resumes after the
                    # last sequence it saw.
                    restarted = True
                    self.env.kill_controller()
                    time.sleep(1)
                    self.env.start_controller()
        self.assertTrue(restarted, [e.kind for e in events])
        self.assertTrue(any("resuming after event" in line for line in logs.output), logs.output)
        seqs = [e.sequence for e in events]
        self.assertEqual(len(seqs), len(set(seqs)), "an event came twice")
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(events[-1].kind, EventKind.FINISHED)
        self.assertEqual(events[-1].state, TaskState.SUCCEEDED, events[-1].reason)
        self.assertEqual(self.client.results(inv.id)[0].values, {"accuracy.acc": 0.9})
        self.env.wait_agent_connected()

    def test_logs_follow_until_the_task_ends(self):
        command = "for i in 1 2 3; do echo tick $i; sleep 1; done\n" + RESULTS_COMMAND
        inv = self.client.run(self.env.write_config("ticker", command))
        task_id = f"{inv.id}.0"
        for event in self.client.watch(inv.id):
            if event.state == TaskState.RUNNING:
                break
        chunks = []
        start = time.monotonic()
        for chunk in self.client.logs(task_id, which="eval", follow=True):
            chunks.append((time.monotonic() - start, chunk))
            self.assertLess(time.monotonic() - start, 120, "logs(follow=True) did not end")
        data = b"".join(c for _, c in chunks)
        self.assertIn(b"tick 1\ntick 2\ntick 3\n", data)
        self.assertIn(b"pyclient e2e t1 done", data)
        self.assertGreater(len(chunks), 1, "the log came in one piece: not followed as it grew")
        self.assertTrue(self.client.status(task_id).terminal)
        self.assertEqual(data, b"".join(self.client.logs(task_id, which="eval")))

    def test_errors(self):
        with self.assertRaises(NotFoundError):
            self.client.status("0123456789abcdef")
        config = self.env.write_config("bad", "true")
        with self.assertRaises(InvalidArgumentError) as cm:
            self.client.run(config, overrides=["execution.walltime=soon"])
        self.assertIn("execution.walltime", str(cm.exception))
        with self.assertRaises(InvalidArgumentError):
            self.client.run(config, tasks=["no-such-task"])
        # The controller answers UNAVAILABLE itself: not the "cannot reach" kind.
        with self.assertRaises(UnavailableError) as cm:
            self.client.run(config, overrides=["execution.hostname=elsewhere"])
        self.assertNotIsInstance(cm.exception, ControllerUnreachableError)
        self.assertIn('no evalctl-agent serves cluster "elsewhere"', str(cm.exception))


def main() -> int:
    global ENV
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--controller-bin", default=os.environ.get("EVALCTL_CONTROLLER_BIN"),
                   help="evalctl-controller binary ($EVALCTL_CONTROLLER_BIN)")
    p.add_argument("--agent-bin", default=os.environ.get("EVALCTL_AGENT_BIN"),
                   help="evalctl-agent binary ($EVALCTL_AGENT_BIN)")
    args, rest = p.parse_known_args()
    if not args.controller_bin or not args.agent_bin:
        p.error("give --controller-bin and --agent-bin")
    # ctest's timeout sends SIGTERM: clean up as for a failure.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("e2e: terminated"))
    for name in ("EVALCTL_CONTROLLER", "EVALCTL_TOKEN"):
        os.environ.pop(name, None)

    try:
        require_cluster()
    except AssertionError as e:
        print(f"e2e: FAILED: {e}", file=sys.stderr)
        return 1
    ENV = Env(args.controller_bin, args.agent_bin)
    ok = False
    try:
        ENV.start()
        program = unittest.main(argv=[sys.argv[0], *rest], exit=False)
        ok = program.result.wasSuccessful()
    except AssertionError as e:
        print(f"e2e: FAILED: {e}", file=sys.stderr)
    finally:
        ENV.stop(keep=not ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
