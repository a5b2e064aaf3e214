"""Unit tests of evalctl_client against the in-process fake EvalService (fake_controller.py).

    PYTHONPATH=<build>/clients/python /usr/bin/python3 -m unittest discover -s clients/python/tests
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import tempfile
import textwrap
import threading
import time
import unittest
import uuid
from pathlib import Path
from unittest import mock

import grpc

import evalctl_client
from evalctl_client import (Client, ControllerUnreachableError, DeadlineExceededError,
                            EvalctlError, Event, EventKind, FailedPreconditionError,
                            InvalidArgumentError, Invocation, NotFoundError,
                            UnauthenticatedError, UnavailableError, Task, TaskResult, TaskState)
from evalctl_client import config as config_mod
from evalctl_client.v1 import eval_service_pb2, types_pb2 as t

from fake_controller import FakeController, closed_port, wait_until

CONFIG = textwrap.dedent("""\
    defaults:
      - execution: slurm/default
      - deployment: none
      - _self_
    execution:
      hostname: fake-login
      username: alice
      account: root
      output_dir: /runs
    target:
      api_endpoint:
        url: http://127.0.0.1:9/v1/chat/completions
        model_id: m
        api_key_name: ${oc.env:MY_API_KEY}
    evaluation:
      tasks:
        - name: t1
          command: echo hi
          env_vars:
            OTHER: host:OTHER_SECRET
        - name: t2
          command: echo hi
    """)


class FakeTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeController.start()
        self.addCleanup(self.fake.stop)
        # No user settings leak into the tests.
        patcher = mock.patch.dict(os.environ, {"XDG_CONFIG_HOME": tempfile.mkdtemp()})
        patcher.start()
        self.addCleanup(patcher.stop)
        for name in ("EVALCTL_CONTROLLER", "EVALCTL_TOKEN"):
            os.environ.pop(name, None)
        self.client = Client(self.fake.address, timeout=5)
        self.addCleanup(self.client.close)

    def submit(self, **kwargs) -> Invocation:
        return self.client.run(CONFIG, **kwargs)


class RunTest(FakeTestCase):
    def test_run_sends_the_config_file_groups_overrides_and_only_referenced_environment(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "eval.yaml"
            path.write_text(CONFIG)
            (Path(d) / "deployment").mkdir()
            (Path(d) / "deployment" / "mine.yaml").write_text("command: serve ${oc.env:GROUP_VAR}\n")
            (Path(d) / "deployment" / "notes.txt").write_text("host:NOT_A_GROUP_FILE\n")
            env = {"MY_API_KEY": "k-123", "OTHER_SECRET": "o-456", "GROUP_VAR": "g",
                   "OVERRIDE_VAR": "ov", "UNRELATED": "must-not-be-sent", "USER": "alice",
                   "NOT_A_GROUP_FILE": "x"}
            with mock.patch.dict(os.environ, env):
                inv = self.client.run(str(path), overrides=["+target.x=${oc.env:OVERRIDE_VAR}"],
                                      tasks=["t1"])
        request, md = self.fake.last_call("SubmitInvocation")
        source = request.config
        self.assertEqual(source.yaml, CONFIG)
        self.assertEqual(source.file_name, str(path))
        self.assertEqual(list(source.overrides), ["+target.x=${oc.env:OVERRIDE_VAR}"])
        self.assertEqual(list(source.task_filter), ["t1"])
        self.assertEqual(dict(source.environment),
                         {"MY_API_KEY": "k-123", "OTHER_SECRET": "o-456", "GROUP_VAR": "g",
                          "OVERRIDE_VAR": "ov", "USER": "alice"})
        self.assertEqual([(f.path, f.content) for f in source.group_files],
                         [("deployment/mine.yaml", "command: serve ${oc.env:GROUP_VAR}\n")])
        self.assertEqual([x.name for x in inv.tasks], ["t1"])
        self.assertEqual(md["x-evalctl-user"], config_mod.local_user())
        self.assertNotIn("authorization", md)

    def test_user_comes_from_the_password_database_without_USER(self):
        env = dict(os.environ)
        env.pop("USER", None)
        with mock.patch.dict(os.environ, env, clear=True):
            self.submit()
        request, _ = self.fake.last_call("SubmitInvocation")
        self.assertEqual(request.config.environment["USER"], config_mod.local_user())

    def test_run_returns_the_invocation_with_its_tasks(self):
        inv = self.submit()
        self.assertIsInstance(inv, Invocation)
        self.assertRegex(inv.id, r"^[0-9a-f]{16}$")
        self.assertEqual([(x.id, x.name, x.state) for x in inv.tasks],
                         [(f"{inv.id}.0", "t1", TaskState.PENDING),
                          (f"{inv.id}.1", "t2", TaskState.PENDING)])
        self.assertEqual(inv.counts["pending"], 2)
        self.assertFalse(inv.finished)
        self.assertFalse(inv.duplicate)
        self.assertEqual(inv.task("t2").index, 1)

    def test_request_id_is_a_fresh_uuid4_and_a_retry_is_idempotent(self):
        self.submit()
        self.submit()
        first = self.fake.calls[0][1].request_id
        second = self.fake.calls[1][1].request_id
        self.assertNotEqual(first, second)
        self.assertEqual(uuid.UUID(first).version, 4)

        a = self.submit(request_id="req-1")
        b = self.submit(request_id="req-1")
        self.assertEqual(a.id, b.id)
        self.assertFalse(a.duplicate)
        self.assertTrue(b.duplicate)

    def test_config_as_dict(self):
        import yaml
        inv = self.client.run(yaml.safe_load(CONFIG))
        self.assertEqual(len(inv.tasks), 2)
        request, _ = self.fake.last_call("SubmitInvocation")
        self.assertEqual(request.config.file_name, "<dict>")

    def test_invalid_config_raises_InvalidArgumentError_with_the_servers_message(self):
        with self.assertRaises(InvalidArgumentError) as cm:
            self.client.run("execution: {}\nevaluation: {tasks: []}\n")
        self.assertEqual(str(cm.exception), "<string>: evaluation.tasks: required, at least one task")
        self.assertEqual(cm.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIsInstance(cm.exception, ValueError)
        self.assertIsInstance(cm.exception, EvalctlError)

    def test_missing_config_file_is_NotFoundError_without_a_call(self):
        with self.assertRaises(NotFoundError) as cm:
            self.client.run("/nonexistent/eval.yaml")
        self.assertIn("/nonexistent/eval.yaml: no such file", str(cm.exception))
        self.assertEqual(self.fake.call_names(), [])

    def test_no_agent_for_the_cluster_is_UnavailableError_with_the_controllers_message(self):
        with self.assertRaises(UnavailableError) as cm:
            self.client.run(CONFIG.replace("hostname: fake-login", "hostname: nowhere"))
        self.assertNotIsInstance(cm.exception, ControllerUnreachableError)
        self.assertIn('no evalctl-agent serves cluster "nowhere"', str(cm.exception))

    def test_plan(self):
        plan = self.client.plan(CONFIG, tasks=["t2"])
        self.assertEqual([p.name for p in plan.tasks], ["t2"])
        self.assertEqual(plan.tasks[0].env, {"MY_SECRET": "<redacted>"})
        self.assertEqual(plan.cluster, "fake")
        self.assertEqual(self.fake.call_names(), ["PlanInvocation"])


class StatusTest(FakeTestCase):
    def test_status_of_an_invocation_by_prefix_and_of_a_task(self):
        inv = self.submit()
        self.fake.advance(f"{inv.id}.0", t.TASK_STATE_RUNNING, phase=t.PHASE_EVALUATING,
                          job_id="1234")
        got = self.client.status(inv.id[:6])
        self.assertIsInstance(got, Invocation)
        self.assertEqual(got.id, inv.id)
        self.assertEqual(got.tasks[0].state, TaskState.RUNNING)
        self.assertEqual(got.tasks[0].state, "RUNNING")
        self.assertEqual(got.tasks[0].slurm_job_id, "1234")
        self.assertEqual(got.counts["running"], 1)

        task = self.client.status(f"{inv.id}.0")
        self.assertIsInstance(task, Task)
        self.assertEqual(task.phase.value, "EVALUATING")
        self.assertEqual(task.attempts[0].number, 1)
        self.assertIsInstance(task.created_time, dt.datetime)
        self.assertEqual(self.fake.call_names()[-2:], ["GetInvocation", "GetTask"])

    def test_views_and_pages(self):
        import evalctl_client.client as client_module
        inv = self.submit()
        self.fake.advance(f"{inv.id}.1", t.TASK_STATE_RUNNING, job_id="4321")
        summary = self.client.status(inv.id, view="summary")
        self.assertEqual(summary.tasks, [])
        self.assertEqual(summary.counts["running"], 1)
        self.assertEqual(summary.resolved_config, "")
        request, _ = self.fake.last_call("GetInvocation")
        self.assertEqual(request.view, eval_service_pb2.INVOCATION_VIEW_SUMMARY)

        # One task per page: every task arrives once, in order.
        old_page = client_module._TASK_PAGE
        client_module._TASK_PAGE = 1
        try:
            basic = self.client.status(inv.id[:6], view="basic")
        finally:
            client_module._TASK_PAGE = old_page
        self.assertEqual([x.index for x in basic.tasks], list(range(len(inv.tasks))))
        self.assertEqual(self.fake.call_names()[-len(inv.tasks):],
                         ["GetInvocation"] * len(inv.tasks))
        running = basic.tasks[1]
        self.assertEqual(running.attempts, [])
        self.assertEqual(running.attempt_count, 1)
        self.assertEqual(running.slurm_job_id, "4321")
        self.assertEqual(running.state, TaskState.RUNNING)

        full = self.client.status(inv.id)
        self.assertEqual(full.tasks[1].attempt_count, 1)
        self.assertEqual(len(full.tasks[1].attempts), 1)
        with self.assertRaises(InvalidArgumentError):
            self.client.status(inv.id, view="everything")

    def test_unknown_id_is_NotFoundError(self):
        with self.assertRaises(NotFoundError) as cm:
            self.client.status("ffffffffffffffff")
        self.assertIn("ffffffffffffffff", str(cm.exception))
        self.assertIsInstance(cm.exception, LookupError)

    def test_list_pages_and_limits(self):
        ids = [self.submit().id for _ in range(5)]
        listed = self.client.list(limit=3)
        self.assertEqual([i.id for i in listed], ids[::-1][:3])
        self.assertEqual(listed[0].tasks, [])
        self.assertEqual(listed[0].counts["pending"], 2)
        # page_size 2: three pages for five
        with mock.patch("evalctl_client.client._MAX_PAGE", 2):
            self.assertEqual(len(self.client.list(limit=10)), 5)
        self.assertEqual(len(self.client.list(since=dt.timedelta(hours=1))), 5)
        self.assertEqual(self.client.list(since=time.time() + 3600), [])
        with self.assertRaises(InvalidArgumentError):
            self.client.list(limit=0)

    def test_clusters(self):
        (c,) = self.client.clusters()
        self.assertEqual((c.name, c.connected, c.aliases), ("fake", True, ["fake-login"]))


class WatchTest(FakeTestCase):
    def finish_later(self, inv_id: str, delay: float = 0.2) -> threading.Thread:
        def run():
            time.sleep(delay)
            self.fake.advance(f"{inv_id}.0", t.TASK_STATE_QUEUED, job_id="77")
            self.fake.advance(f"{inv_id}.0", t.TASK_STATE_RUNNING, phase=t.PHASE_EVALUATING)
            self.fake.advance(f"{inv_id}.1", t.TASK_STATE_FAILED, reason="exit code 3")
            self.fake.advance(f"{inv_id}.0", t.TASK_STATE_SUCCEEDED,
                              scores={"accuracy.acc": 0.9})
        th = threading.Thread(target=run, daemon=True)
        th.start()
        self.addCleanup(th.join)
        return th

    def test_watch_yields_every_event_until_all_tasks_are_terminal(self):
        inv = self.submit()
        self.finish_later(inv.id)
        events = list(self.client.watch(inv.id))
        self.assertTrue(all(isinstance(e, Event) for e in events))
        self.assertEqual([e.sequence for e in events], sorted(e.sequence for e in events))
        self.assertEqual([(e.task_id[-2:], e.kind, e.state) for e in events], [
            (".0", EventKind.ACCEPTED, TaskState.PENDING),
            (".1", EventKind.ACCEPTED, TaskState.PENDING),
            (".0", EventKind.SUBMITTED, TaskState.QUEUED),
            (".0", EventKind.STATE_CHANGED, TaskState.RUNNING),
            (".1", EventKind.FINISHED, TaskState.FAILED),
            (".0", EventKind.FINISHED, TaskState.SUCCEEDED),
        ])
        self.assertEqual(events[2].attempt.slurm_job_id, "77")
        self.assertEqual(events[-1].scores[0].value, 0.9)
        self.assertEqual(events[4].reason, "exit code 3")

    def test_watch_resumes_after_a_dropped_stream_from_the_last_sequence(self):
        inv = self.submit()
        self.fake.service.drop_watch_after = 3
        self.finish_later(inv.id, delay=0.1)
        with self.assertLogs("evalctl_client", "WARNING") as logs:
            events = list(self.client.watch(inv.id, initial_backoff=0.05))
        seqs = [e.sequence for e in events]
        self.assertEqual(len(seqs), 6)
        self.assertEqual(len(set(seqs)), 6, "no event twice")
        self.assertEqual(self.fake.watch_after, [0, seqs[2]])
        self.assertIn(f"resuming after event {seqs[2]}", logs.output[0])

    def test_watch_after_sequence_replays_only_newer_events(self):
        inv = self.submit()
        self.fake.advance(f"{inv.id}.0", t.TASK_STATE_SUCCEEDED)
        self.fake.advance(f"{inv.id}.1", t.TASK_STATE_SUCCEEDED)
        all_events = list(self.client.watch(inv.id))
        later = list(self.client.watch(inv.id, after_sequence=all_events[1].sequence))
        self.assertEqual([e.sequence for e in later], [e.sequence for e in all_events[2:]])

    def test_overflow_marker_is_passed_on(self):
        inv = self.submit()
        self.fake.service.overflow_next_watch = True
        self.fake.advance(f"{inv.id}.0", t.TASK_STATE_SUCCEEDED)
        self.fake.advance(f"{inv.id}.1", t.TASK_STATE_SUCCEEDED)
        events = list(self.client.watch(inv.id))
        self.assertTrue(events[0].overflowed)
        self.assertFalse(any(e.overflowed for e in events[1:]))

    def test_stopping_the_iteration_cancels_the_stream(self):
        inv = self.submit()
        it = self.client.watch(inv.id)
        next(it)
        self.assertEqual(self.fake.active_watches, 1)
        it.close()  # the tasks are still pending; the stream would go on
        self.assertTrue(wait_until(lambda: self.fake.active_watches == 0))

    def test_wait_returns_the_final_invocation(self):
        inv = self.submit()
        self.finish_later(inv.id)
        final = self.client.wait(inv.id, timeout=10)
        self.assertTrue(final.finished)
        self.assertEqual([x.state for x in final.tasks], [TaskState.SUCCEEDED, TaskState.FAILED])

    def test_run_with_wait(self):
        def finish():
            wait_until(lambda: self.fake.order, 5)
            inv_id = self.fake.order[0]
            self.fake.advance(f"{inv_id}.0", t.TASK_STATE_SUCCEEDED)
        th = threading.Thread(target=finish, daemon=True)
        th.start()
        final = self.client.run(CONFIG, tasks=["t1"], wait=True, wait_timeout=10)
        th.join()
        self.assertTrue(final.finished)
        self.assertEqual(final.tasks[0].state, TaskState.SUCCEEDED)

    def test_wait_times_out_with_DeadlineExceededError(self):
        inv = self.submit()
        start = time.monotonic()
        with self.assertRaises(DeadlineExceededError) as cm:
            self.client.wait(inv.id, timeout=0.5)
        self.assertLess(time.monotonic() - start, 3)
        self.assertIn("did not finish within 0.5s", str(cm.exception))
        self.assertIsInstance(cm.exception, TimeoutError)

    def test_wait_for_a_task(self):
        inv = self.submit()
        self.fake.advance(f"{inv.id}.1", t.TASK_STATE_SUCCEEDED)
        task = self.client.wait(f"{inv.id}.1", timeout=5)
        self.assertIsInstance(task, Task)
        self.assertEqual(task.state, TaskState.SUCCEEDED)


class CancelResumeResultsLogsTest(FakeTestCase):
    def test_cancel_an_invocation(self):
        inv = self.submit()
        self.fake.advance(f"{inv.id}.1", t.TASK_STATE_SUCCEEDED)
        tasks = self.client.cancel(inv.id)
        self.assertEqual([(x.state, x.cancel_requested) for x in tasks],
                         [(TaskState.CANCELLED, True), (TaskState.SUCCEEDED, False)])
        self.assertTrue(self.client.status(inv.id).finished)

    def test_resume(self):
        inv = self.submit()
        self.client.cancel(f"{inv.id}.0")
        result = self.client.resume(inv.id)
        self.assertEqual([x.id for x in result.resumed], [f"{inv.id}.0"])
        self.assertEqual([s.task_id for s in result.skipped], [f"{inv.id}.1"])
        with self.assertRaises(FailedPreconditionError):
            self.client.resume(f"{inv.id}.1")

    def test_results_are_dataclasses_and_dicts(self):
        inv = self.submit()
        self.fake.advance(f"{inv.id}.0", t.TASK_STATE_SUCCEEDED,
                          scores={"accuracy.acc": 0.9, "accuracy.acc_norm": 0.8})
        results = self.client.results(inv.id)
        self.assertTrue(all(isinstance(r, TaskResult) for r in results))
        r0, r1 = results
        self.assertEqual((r0.task_id, r0.name, r0.state), (f"{inv.id}.0", "t1", TaskState.SUCCEEDED))
        self.assertEqual(r0.values, {"accuracy.acc": 0.9, "accuracy.acc_norm": 0.8})
        self.assertEqual(r1.scores, [])
        d = r0.to_dict()
        self.assertEqual(d["state"], "SUCCEEDED")
        self.assertEqual(d["scores"][0], {"task": "t1", "metric": "accuracy", "score": "acc",
                                          "value": 0.9, "stats": {}})
        json.dumps(d)  # plain data
        json.dumps(self.client.status(inv.id).to_dict())
        with self.assertRaises(dataclasses.FrozenInstanceError):
            r0.name = "x"  # type: ignore[misc]

    def test_logs_yield_bytes(self):
        inv = self.submit()
        self.fake.service.logs[f"{inv.id}.0/LOG_KIND_SLURM"] = b"line one\nline two\n\xff"
        chunks = list(self.client.logs(f"{inv.id}.0"))
        self.assertTrue(all(isinstance(c, bytes) for c in chunks))
        self.assertEqual(b"".join(chunks), b"line one\nline two\n\xff")
        self.assertEqual(b"".join(self.client.logs(f"{inv.id}.0", offset=-4)), b"wo\n\xff")
        request, _ = self.fake.last_call("StreamLogs")
        self.assertEqual(request.kind, t.LOG_KIND_SLURM)

    def test_logs_errors(self):
        inv = self.submit()
        with self.assertRaises(NotFoundError):
            list(self.client.logs(f"{inv.id}.0", which="server"))
        with self.assertRaises(InvalidArgumentError):
            self.client.logs(f"{inv.id}.0", which="nope")


class ConnectionTest(unittest.TestCase):
    def setUp(self) -> None:
        patcher = mock.patch.dict(os.environ, {"XDG_CONFIG_HOME": tempfile.mkdtemp()})
        patcher.start()
        self.addCleanup(patcher.stop)
        for name in ("EVALCTL_CONTROLLER", "EVALCTL_TOKEN"):
            os.environ.pop(name, None)

    def test_unreachable_controller_fails_quickly_naming_the_address(self):
        address = f"127.0.0.1:{closed_port()}"
        with Client(address, timeout=10) as client:
            for call in (lambda: client.status("abc"), lambda: client.run(CONFIG),
                         lambda: list(client.watch("abc")), lambda: list(client.logs("a.0"))):
                start = time.monotonic()
                with self.assertRaises(ControllerUnreachableError) as cm:
                    call()
                self.assertLess(time.monotonic() - start, 5)
                self.assertIn(f"cannot reach evalctl-controller at {address}", str(cm.exception))
                self.assertIn("connection refused", str(cm.exception))
                self.assertIsInstance(cm.exception, UnavailableError)
                self.assertIsInstance(cm.exception, EvalctlError)

    def test_a_server_that_never_answers_fails_within_the_timeout(self):
        # Accepts TCP connections but never speaks HTTP/2: the channel stays CONNECTING.
        import socket
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        accepted = []
        threading.Thread(target=lambda: [accepted.append(listener.accept()) for _ in range(16)],
                         daemon=True).start()
        self.addCleanup(lambda: [c.close() for c, _ in accepted])
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        with Client(address, timeout=0.5) as client:
            for call, cause in ((lambda: client.status("abc"), "no answer within 0.5s"),
                                (lambda: list(client.watch("abc")), "no answer within 0.5s")):
                start = time.monotonic()
                with self.assertRaises(ControllerUnreachableError) as cm:
                    call()
                self.assertLess(time.monotonic() - start, 3)
                self.assertIn(f"cannot reach evalctl-controller at {address} ({cause})",
                              str(cm.exception))

    def test_target_defaults(self):
        with mock.patch.dict(os.environ, {"EVALCTL_CONTROLLER": "ctl.example:6000"}):
            self.assertEqual(Client().target, "ctl.example:6000")
            self.assertEqual(Client("explicit:1").target, "explicit:1")
        self.assertEqual(Client().target, "127.0.0.1:50051")
        cfg = Path(os.environ["XDG_CONFIG_HOME"]) / "evalctl" / "config.yaml"
        cfg.parent.mkdir(parents=True)
        cfg.write_text("controller: from-file:7000\n")
        self.assertEqual(Client().target, "from-file:7000")
        cfg.write_text("controller: [bad\n")
        with self.assertRaises(InvalidArgumentError) as cm:
            Client()
        self.assertIn(str(cfg), str(cm.exception))

    def test_token_is_sent_as_bearer_and_never_shown(self):
        fake = FakeController.start()
        self.addCleanup(fake.stop)
        fake.service.require_token = "s3cr3t"
        with mock.patch.dict(os.environ, {"EVALCTL_TOKEN": "s3cr3t"}):
            client = Client(fake.address)
        self.addCleanup(client.close)
        client.clusters()
        _, md = fake.last_call("ListClusters")
        self.assertEqual(md["authorization"], "Bearer s3cr3t")
        self.assertNotIn("s3cr3t", repr(client))

        with Client(fake.address, token="wrong") as bad:
            with self.assertRaises(UnauthenticatedError) as cm:
                bad.clusters()
        self.assertIn(f"evalctl-controller at {fake.address} rejected the credentials",
                      str(cm.exception))
        self.assertNotIn("wrong", str(cm.exception))

    def test_token_file_and_its_environment_variable(self):
        fake = FakeController.start()
        self.addCleanup(fake.stop)
        fake.service.require_token = "from-file"
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(tmp, "token")
        with open(path, "w", encoding="utf-8") as f:
            f.write("from-file\n")
        os.chmod(path, 0o600)
        # The file wins over $EVALCTL_TOKEN; an explicit token wins over the file.
        with mock.patch.dict(os.environ, {"EVALCTL_TOKEN_FILE": path, "EVALCTL_TOKEN": "env"}):
            with Client(fake.address) as client:
                client.clusters()
            with Client(fake.address, token="explicit") as client:
                with self.assertRaises(UnauthenticatedError):
                    client.clusters()
        with Client(fake.address, token_file=path) as client:
            client.clusters()
        _, md = fake.last_call("ListClusters")
        self.assertEqual(md["authorization"], "Bearer from-file")

        os.chmod(path, 0o644)
        with self.assertRaises(InvalidArgumentError) as cm:
            Client(fake.address, token_file=path)
        self.assertIn(f"the token file {path} is readable by other users (mode 0644)",
                      str(cm.exception))
        with self.assertRaises(InvalidArgumentError) as cm:
            Client(fake.address, token_file=os.path.join(tmp, "none"))
        self.assertIn("cannot read the token file", str(cm.exception))

    def test_close_and_garbage_collection_release_the_channel(self):
        import gc
        import weakref
        fake = FakeController.start()
        self.addCleanup(fake.stop)
        client = Client(fake.address)
        client.clusters()
        client.close()
        client.close()
        with self.assertRaisesRegex(EvalctlError, "closed"):
            client.clusters()
        dropped = Client(fake.address)
        dropped.clusters()
        ref = weakref.ref(dropped)
        del dropped
        gc.collect()
        self.assertIsNone(ref(), "an unclosed Client is still referenced (by its subscription)")

    def test_user_header_can_be_set(self):
        fake = FakeController.start()
        self.addCleanup(fake.stop)
        with Client(fake.address, user="bob") as client:
            client.clusters()
        self.assertEqual(fake.last_call("ListClusters")[1]["x-evalctl-user"], "bob")

    def test_tls_client_sends_no_user_header_and_needs_a_key_pair(self):
        with self.assertRaises(InvalidArgumentError):
            Client("x:1", private_key=b"k")
        with Client("x:1", tls=True) as c:
            self.assertTrue(c.secure)
            self.assertNotIn("x-evalctl-user", dict(c.metadata))
        with self.assertRaises(NotFoundError):
            Client("x:1", root_certificates="/nonexistent/ca.pem")

    def test_unimplemented_server(self):
        # A gRPC server without EvalService.
        from concurrent import futures
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self.addCleanup(server.stop, None)
        with Client(f"127.0.0.1:{port}") as client:
            with self.assertRaises(evalctl_client.UnimplementedError) as cm:
                client.clusters()
        self.assertIn("does not implement this call", str(cm.exception))


class ConfigTest(unittest.TestCase):
    def test_referenced_environment_finds_every_form(self):
        names = config_mod.referenced_environment(
            ["a: ${oc.env:ONE}\nb: host:TWO\nc: '${oc.env: THREE,x}'\n", "+d=host:FOUR"])
        for n in ("ONE", "TWO", "THREE", "FOUR", "USER"):
            self.assertIn(n, names)

    def test_groups_are_searched_four_levels_deep_and_later_roots_win(self):
        with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as extra:
            root = Path(d)
            (root / "eval.yaml").write_text(CONFIG)
            deep = root / "a" / "b" / "c" / "d" / "e"
            deep.mkdir(parents=True)
            (root / "a" / "b" / "c" / "d" / "ok.yaml").write_text("x: 1\n")
            (deep / "deep.yaml").write_text("x: 1\n")
            (deep / "f").mkdir()
            (deep / "f" / "too-deep.yaml").write_text("x: 1\n")
            (root / "deployment").mkdir()
            (root / "deployment" / "mine.yaml").write_text("a: 1\n")
            (Path(extra) / "deployment").mkdir()
            (Path(extra) / "deployment" / "mine.yaml").write_text("a: 2\n")
            (root / "top.yaml").write_text("not a group: top level\n")
            source = config_mod.build_config_source(root / "eval.yaml", group_dirs=[extra])
        files = {f.path: f.content for f in source.group_files}
        self.assertEqual(sorted(files), ["a/b/c/d/e/deep.yaml", "a/b/c/d/ok.yaml",
                                         "deployment/mine.yaml"])
        self.assertEqual(files["deployment/mine.yaml"], "a: 2\n")

    def test_builtin_group_environment_matches_the_repository(self):
        src = os.environ.get("EVALCTL_SOURCE_DIR")
        if not src:
            self.skipTest("EVALCTL_SOURCE_DIR is not set (ctest sets it)")
        groups = Path(src) / "controller" / "config" / "data" / "groups"
        names = set()
        for f in groups.rglob("*.yaml"):
            names.update(config_mod._ENV_REFERENCE.findall(f.read_text()))
        self.assertEqual(sorted(names), sorted(config_mod.BUILTIN_GROUP_ENVIRONMENT),
                         "update BUILTIN_GROUP_ENVIRONMENT in evalctl_client/config.py")

    def test_strings_are_not_sequences_of_overrides(self):
        with self.assertRaises(TypeError):
            config_mod.build_config_source(CONFIG, overrides="a=b")


class PackageTest(unittest.TestCase):
    def test_stubs_are_a_subpackage_with_relative_imports(self):
        import evalctl_client.v1 as v1
        for name in ("eval_service_pb2.py", "eval_service_pb2_grpc.py", "agent_service_pb2.py"):
            text = (Path(v1.__file__).parent / name).read_text()
            self.assertNotRegex(text, re.compile(r"^from evalctl\.v1 import", re.M))
        self.assertEqual(eval_service_pb2.GetInvocationRequest.__module__,
                         "evalctl_client.v1.eval_service_pb2")

    def test_public_names(self):
        for name in evalctl_client.__all__:
            self.assertTrue(hasattr(evalctl_client, name), name)
        self.assertEqual(evalctl_client.__version__, "0.1.0")


if __name__ == "__main__":
    unittest.main()
