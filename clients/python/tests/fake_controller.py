"""An in-process fake of evalctl-controller's EvalService for the Python client's tests.

    fake = FakeController.start()          # gRPC server on 127.0.0.1:<free port>
    client = Client(fake.address)
    inv = client.run(yaml_text)
    fake.advance(f"{inv.id}.0", TASK_STATE_RUNNING, job_id="42")
    fake.advance(f"{inv.id}.0", TASK_STATE_SUCCEEDED, scores={"accuracy.acc": 0.9})
    fake.stop()

It keeps invocations, tasks and a sequence of events in memory and answers as the real controller
does where the client can tell: id prefixes, idempotent request ids, NOT_FOUND, INVALID_ARGUMENT
with a file name, watch streams that replay after `after_sequence` and end when every watched
task is terminal. Knobs for failures: `drop_watch_after` (abort the next watch stream with
UNAVAILABLE after that many events), `overflow_next_watch`, `require_token`.

Every call is recorded in `calls` as (method, request, metadata dict).
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent import futures
from typing import Dict, List, Optional, Tuple

import grpc
import yaml
from google.protobuf import timestamp_pb2

from evalctl_client.v1 import eval_service_pb2 as pb
from evalctl_client.v1 import eval_service_pb2_grpc as pb_grpc
from evalctl_client.v1 import types_pb2 as t

TERMINAL = {t.TASK_STATE_SUCCEEDED, t.TASK_STATE_FAILED, t.TASK_STATE_CANCELLED,
            t.TASK_STATE_BUDGET_EXHAUSTED}
_COUNT_FIELD = {
    t.TASK_STATE_PENDING: "pending", t.TASK_STATE_QUEUED: "queued",
    t.TASK_STATE_RUNNING: "running", t.TASK_STATE_RESUMING: "resuming",
    t.TASK_STATE_SUCCEEDED: "succeeded", t.TASK_STATE_FAILED: "failed",
    t.TASK_STATE_CANCELLED: "cancelled", t.TASK_STATE_BUDGET_EXHAUSTED: "budget_exhausted",
}


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


class FakeEvalService(pb_grpc.EvalServiceServicer):
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.invocations: Dict[str, t.Invocation] = {}
        self.order: List[str] = []
        self.by_request: Dict[str, str] = {}
        # (sequence, invocation id, event)
        self.events: List[Tuple[int, str, t.TaskEvent]] = []
        self.sequence = 0
        self.calls: List[Tuple[str, object, Dict[str, str]]] = []
        self.watch_after: List[int] = []
        self.active_watches = 0
        self.logs: Dict[str, bytes] = {}
        self.drop_watch_after: Optional[int] = None
        self.overflow_next_watch = False
        self.require_token: Optional[str] = None
        self.clusters = [t.Cluster(name="fake", aliases=["fake-login"], unix_user="alice",
                                   connected=True, slurm_reachable=True, agent_version="0.1.0")]

    # ------------------------------------------------------------------ test controls

    def advance(self, task_id: str, state: int, *, phase: int = t.PHASE_UNSPECIFIED,
                job_id: str = "", reason: str = "",
                scores: Optional[Dict[str, float]] = None) -> None:
        """Moves a task to `state` and records the event watchers see."""
        with self.cond:
            inv = self.invocations[task_id.split(".")[0]]
            task = next(x for x in inv.tasks if x.id == task_id)
            self._set_state(inv, task, state, phase=phase, job_id=job_id, reason=reason,
                            scores=scores)

    def call_names(self) -> List[str]:
        with self.cond:
            return [c[0] for c in self.calls]

    def last_call(self, method: str) -> Tuple[object, Dict[str, str]]:
        with self.cond:
            for name, request, md in reversed(self.calls):
                if name == method:
                    return request, md
        raise AssertionError(f"no {method} call")

    # ------------------------------------------------------------------ helpers (hold cond)

    def _event(self, inv: t.Invocation, task: t.Task, kind: int) -> None:
        self.sequence += 1
        e = t.TaskEvent(kind=kind, task_id=task.id, time=_now(), state=task.state,
                        phase=task.phase, reason=task.reason, progress=task.progress,
                        elapsed_seconds=task.elapsed_seconds)
        if task.attempts:
            e.attempt.CopyFrom(task.attempts[-1])
        if kind == t.TaskEvent.KIND_FINISHED:
            e.results.CopyFrom(task.results)
        self.events.append((self.sequence, inv.id, e))
        self.cond.notify_all()

    def _set_state(self, inv: t.Invocation, task: t.Task, state: int, *, phase: int = 0,
                   job_id: str = "", reason: str = "",
                   scores: Optional[Dict[str, float]] = None) -> None:
        kind = t.TaskEvent.KIND_STATE_CHANGED
        if job_id:
            if not task.attempts or task.attempts[-1].slurm_job_id:
                n = len(task.attempts) + 1
                task.attempts.add(number=n, attempt_id=f"{task.id}.{n}", submit_time=_now())
            task.attempts[-1].slurm_job_id = job_id
            kind = t.TaskEvent.KIND_SUBMITTED
        if task.attempts and (state == t.TASK_STATE_RUNNING or state in TERMINAL):
            task.attempts[-1].slurm_state = t.TaskState.Name(state)[len("TASK_STATE_"):]
        task.state = state
        task.phase = phase
        task.reason = reason
        task.updated_time.CopyFrom(_now())
        if scores:
            task.results.results_path = f"{task.run_dir}/artifacts/results.yml"
            for key, value in scores.items():
                metric, score = key.split(".", 1)
                task.results.scores.add(task=task.name, metric=metric, score=score, value=value)
        if state in TERMINAL:
            kind = t.TaskEvent.KIND_FINISHED
        self._event(inv, task, kind)

    def _view(self, inv: t.Invocation, with_tasks: bool = True) -> t.Invocation:
        out = t.Invocation()
        out.CopyFrom(inv)
        out.counts.Clear()
        for task in inv.tasks:
            field = _COUNT_FIELD.get(task.state)
            if field:
                setattr(out.counts, field, getattr(out.counts, field) + 1)
        out.finished = all(task.state in TERMINAL for task in inv.tasks)
        if not with_tasks:
            del out.tasks[:]
        return out

    def _resolve(self, id: str, context: grpc.ServicerContext) -> Tuple[t.Invocation, Optional[t.Task]]:
        inv_part, _, task_part = id.partition(".")
        matches = [i for i in self.order if i.startswith(inv_part)] if inv_part else []
        if not matches:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no invocation or task {id!r}")
        if len(matches) > 1:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{id!r} is ambiguous: it matches {', '.join(matches)}")
        inv = self.invocations[matches[0]]
        if "." not in id:
            return inv, None
        tasks = [x for x in inv.tasks if str(x.index).startswith(task_part)]
        if len(tasks) != 1:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no task {id!r}")
        return inv, tasks[0]

    def _enter(self, name: str, request: object, context: grpc.ServicerContext) -> None:
        md = {k: v for k, v in context.invocation_metadata()}
        with self.cond:
            self.calls.append((name, request, md))
        if self.require_token is not None and md.get("authorization") != f"Bearer {self.require_token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or missing bearer token")

    # ------------------------------------------------------------------ EvalService

    def _parse(self, source: pb.ConfigSource, context: grpc.ServicerContext) -> Tuple[dict, List[str]]:
        name = source.file_name or "<config>"
        try:
            config = yaml.safe_load(source.yaml)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = mark.line + 1 if mark else 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name}:{line}: not valid YAML")
        if not isinstance(config, dict):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name}:1: expected a mapping")
        tasks = ((config.get("evaluation") or {}).get("tasks")) or []
        names = [str(x.get("name")) for x in tasks if isinstance(x, dict)]
        if not names:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{name}: evaluation.tasks: required, at least one task")
        if source.task_filter:
            unknown = [f for f in source.task_filter if f not in names]
            if unknown:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"-t {unknown[0]}: no such task; tasks: {', '.join(names)}")
            names = [n for n in names if n in source.task_filter]
        return config, names

    def PlanInvocation(self, request, context):
        self._enter("PlanInvocation", request, context)
        config, names = self._parse(request.config, context)
        out = pb.PlanInvocationResponse(resolved_config=request.config.yaml, cluster="fake")
        for i, n in enumerate(names):
            p = out.tasks.add(index=i, name=n, dir_name=n)
            p.job.script = "#!/bin/bash\n#SBATCH --job-name=x\n"
            p.job.env.add(name="MY_SECRET", value="<redacted>", secret=True)
        return out

    def SubmitInvocation(self, request, context):
        self._enter("SubmitInvocation", request, context)
        if not request.request_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request_id is required")
        with self.cond:
            if request.request_id in self.by_request:
                inv = self.invocations[self.by_request[request.request_id]]
                return pb.SubmitInvocationResponse(invocation=self._view(inv), duplicate=True)
        config, names = self._parse(request.config, context)
        execution = config.get("execution") or {}
        hostname = str(execution.get("hostname", "fake"))
        if hostname == "nowhere":
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f'no evalctl-agent serves cluster "{hostname}" for user alice; '
                          "connected clusters: fake (user alice)")
        with self.cond:
            inv_id = uuid.uuid4().hex[:16]
            run_dir = f"/runs/20260101_000000-{inv_id}"
            inv = t.Invocation(id=inv_id, owner="alice", created_time=_now(), cluster="fake",
                               hostname=hostname, username=str(execution.get("username", "")),
                               run_dir=run_dir, resolved_config=request.config.yaml)
            for i, n in enumerate(names):
                inv.tasks.add(id=f"{inv_id}.{i}", invocation_id=inv_id, index=i, name=n,
                              dir_name=n, state=t.TASK_STATE_PENDING, run_dir=f"{run_dir}/{n}",
                              created_time=_now())
            self.invocations[inv_id] = inv
            self.order.insert(0, inv_id)
            self.by_request[request.request_id] = inv_id
            for task in inv.tasks:
                self._event(inv, task, t.TaskEvent.KIND_ACCEPTED)
            return pb.SubmitInvocationResponse(invocation=self._view(inv))

    def GetInvocation(self, request, context):
        self._enter("GetInvocation", request, context)
        with self.cond:
            inv, _ = self._resolve(request.id, context)
            out = self._view(inv)
            if request.view in (pb.INVOCATION_VIEW_SUMMARY, pb.INVOCATION_VIEW_BASIC):
                out.resolved_config = ""
            if request.view == pb.INVOCATION_VIEW_SUMMARY:
                del out.tasks[:]
                return out
            first = int(request.page_token or 0)
            last = first + request.page_size if request.page_size > 0 else len(out.tasks)
            if last < len(out.tasks):
                out.next_page_token = str(last)
            tasks = list(out.tasks)[first:last]
            del out.tasks[:]
            for task in tasks:
                task.attempt_count = len(task.attempts)
                jobs = [a.slurm_job_id for a in task.attempts if a.slurm_job_id]
                task.slurm_job_id = jobs[-1] if jobs else ""
                if request.view == pb.INVOCATION_VIEW_BASIC:
                    del task.attempts[:]
                    for name in ("results", "created_time", "updated_time", "resume_policy"):
                        task.ClearField(name)
                    task.run_dir = task.dir_name = ""
                out.tasks.append(task)
            return out

    def GetTask(self, request, context):
        self._enter("GetTask", request, context)
        with self.cond:
            _, task = self._resolve(request.id, context)
            if task is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{request.id!r} is not a task id")
            out = t.Task()
            out.CopyFrom(task)
            return out

    def ListInvocations(self, request, context):
        self._enter("ListInvocations", request, context)
        size = request.page_size or 50
        start = int(request.page_token or 0)
        with self.cond:
            ids = [i for i in self.order
                   if not request.HasField("since")
                   or self.invocations[i].created_time.seconds >= request.since.seconds]
            page = ids[start:start + size]
            out = pb.ListInvocationsResponse(
                invocations=[self._view(self.invocations[i], with_tasks=False) for i in page])
            if start + size < len(ids):
                out.next_page_token = str(start + size)
            return out

    def WatchInvocation(self, request, context):
        self._enter("WatchInvocation", request, context)
        with self.cond:
            if request.id:
                inv, task = self._resolve(request.id, context)
                inv_ids = {inv.id}
                task_ids = {task.id} if task else {x.id for x in inv.tasks}
            else:
                inv_ids = None
                task_ids = None
            self.watch_after.append(request.after_sequence)
            drop_after, self.drop_watch_after = self.drop_watch_after, None
            overflow, self.overflow_next_watch = self.overflow_next_watch, False
        with self.cond:
            self.active_watches += 1
        try:
            yield from self._watch(request, context, inv_ids, task_ids, drop_after, overflow)
        finally:
            with self.cond:
                self.active_watches -= 1

    def _watch(self, request, context, inv_ids, task_ids, drop_after, overflow):
        after = request.after_sequence
        sent = 0
        if overflow:
            with self.cond:
                marker = pb.WatchInvocationResponse(sequence=self.sequence, overflowed=True)
            yield marker
        while context.is_active():
            with self.cond:
                pending = [(s, i, e) for (s, i, e) in self.events
                           if s > after and (inv_ids is None or i in inv_ids)
                           and (task_ids is None or e.task_id in task_ids)]
                if not pending:
                    if inv_ids is not None and all(
                            x.state in TERMINAL for i in inv_ids
                            for x in self.invocations[i].tasks if x.id in task_ids):
                        return
                    self.cond.wait(0.1)
                    continue
            for s, i, e in pending:
                if drop_after is not None and sent >= drop_after:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "fake: the stream dropped")
                yield pb.WatchInvocationResponse(sequence=s, invocation_id=i, event=e)
                after = s
                sent += 1

    def CancelInvocation(self, request, context):
        self._enter("CancelInvocation", request, context)
        with self.cond:
            inv, task = self._resolve(request.id, context)
            out = pb.CancelInvocationResponse()
            for x in ([task] if task else list(inv.tasks)):
                if x.state not in TERMINAL:
                    x.cancel_requested = True
                    self._set_state(inv, x, t.TASK_STATE_CANCELLED, reason="cancelled by alice")
                out.tasks.add().CopyFrom(x)
            return out

    def ResumeInvocation(self, request, context):
        self._enter("ResumeInvocation", request, context)
        resumable = {t.TASK_STATE_FAILED, t.TASK_STATE_CANCELLED, t.TASK_STATE_BUDGET_EXHAUSTED}
        with self.cond:
            inv, task = self._resolve(request.id, context)
            if task is not None and task.state not in resumable:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"task {task.id} is {t.TaskState.Name(task.state)}; only failed, "
                              "cancelled or budget-exhausted tasks can be resumed")
            out = pb.ResumeInvocationResponse()
            for x in ([task] if task else list(inv.tasks)):
                if x.state in resumable:
                    x.cancel_requested = False
                    self._set_state(inv, x, t.TASK_STATE_PENDING, reason="resumed by alice")
                    out.resumed.add().CopyFrom(x)
                else:
                    out.skipped.add(task_id=x.id, reason=t.TaskState.Name(x.state))
            return out

    def StreamLogs(self, request, context):
        self._enter("StreamLogs", request, context)
        with self.cond:
            _, task = self._resolve(request.id, context)
            if task is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "logs need a task id")
            data = self.logs.get(f"{task.id}/{t.LogKind.Name(request.kind)}")
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"task {task.id} has no {t.LogKind.Name(request.kind)} log")
        data = data[request.offset:]  # negative: from the end
        path = f"{task.run_dir}/logs/slurm-1.log"
        for i in range(0, len(data), 7):
            yield pb.StreamLogsResponse(path=path, offset=i, data=data[i:i + 7])

    def GetResults(self, request, context):
        self._enter("GetResults", request, context)
        with self.cond:
            inv, task = self._resolve(request.id, context)
            out = pb.GetResultsResponse()
            for x in ([task] if task else list(inv.tasks)):
                out.tasks.add(task_id=x.id, name=x.name, state=x.state, results=x.results)
            return out

    def ListClusters(self, request, context):
        self._enter("ListClusters", request, context)
        return pb.ListClustersResponse(clusters=self.clusters)


class FakeController:
    """The fake service on a gRPC server at 127.0.0.1:<free port>."""

    def __init__(self, service: FakeEvalService, server: grpc.Server, port: int) -> None:
        self.service = service
        self.server = server
        self.port = port
        self.address = f"127.0.0.1:{port}"

    @classmethod
    def start(cls) -> "FakeController":
        service = FakeEvalService()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        pb_grpc.add_EvalServiceServicer_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return cls(service, server, port)

    def stop(self) -> None:
        self.server.stop(grace=None)

    def __getattr__(self, name: str):
        return getattr(self.service, name)


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
