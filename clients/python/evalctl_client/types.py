"""Plain Python views of the evalctl v1 messages, as Client returns them.

Every class is a frozen dataclass built from a protobuf message by ``from_proto``; ``to_dict()``
gives JSON-ready dicts (enums by name, times in ISO 8601 UTC). The message itself stays available
as ``.raw`` for anything the dataclass leaves out (it takes no part in ``==`` or ``repr``).

Enums are ``str`` enums, so ``task.state == "SUCCEEDED"`` works as well as
``task.state is TaskState.SUCCEEDED``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
from typing import Any, Dict, List, Optional, Type, TypeVar

from .v1 import types_pb2 as _t

__all__ = [
    "TaskState",
    "Phase",
    "EventKind",
    "ResumeReason",
    "Progress",
    "Score",
    "Attempt",
    "Task",
    "Invocation",
    "Event",
    "TaskResult",
    "PlannedTask",
    "Plan",
    "Cluster",
    "SkippedTask",
    "ResumeResult",
]

_E = TypeVar("_E", bound="_ProtoEnum")


class _ProtoEnum(str, enum.Enum):
    """A protobuf enum by its short name (TASK_STATE_SUCCEEDED -> SUCCEEDED)."""

    @classmethod
    def from_proto(cls: Type[_E], value: int, enum_type: Any) -> _E:
        try:
            name = enum_type.Name(value)
        except ValueError:  # a value newer than this client
            return cls("UNSPECIFIED")
        prefix = cls._proto_prefix()
        short = name[len(prefix):] if name.startswith(prefix) else name
        try:
            return cls(short)
        except ValueError:
            return cls("UNSPECIFIED")

    @classmethod
    def _proto_prefix(cls) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.value


class TaskState(_ProtoEnum):
    """Where a task is in its life; see types.proto."""

    UNSPECIFIED = "UNSPECIFIED"
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    RESUMING = "RESUMING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"

    @classmethod
    def _proto_prefix(cls) -> str:
        return "TASK_STATE_"

    @classmethod
    def of(cls, value: int) -> "TaskState":
        return cls.from_proto(value, _t.TaskState)

    @property
    def terminal(self) -> bool:
        """SUCCEEDED, FAILED, CANCELLED or BUDGET_EXHAUSTED: nothing more happens by itself."""
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED,
                        TaskState.BUDGET_EXHAUSTED)


class Phase(_ProtoEnum):
    """What a running job is doing."""

    UNSPECIFIED = "UNSPECIFIED"
    STARTING = "STARTING"
    DEPLOYING = "DEPLOYING"
    WAITING_FOR_ENDPOINT = "WAITING_FOR_ENDPOINT"
    EVALUATING = "EVALUATING"
    FINISHING = "FINISHING"
    FINISHED = "FINISHED"

    @classmethod
    def _proto_prefix(cls) -> str:
        return "PHASE_"

    @classmethod
    def of(cls, value: int) -> "Phase":
        return cls.from_proto(value, _t.Phase)


class EventKind(_ProtoEnum):
    """What a task event reports."""

    UNSPECIFIED = "UNSPECIFIED"
    ACCEPTED = "ACCEPTED"
    SUBMITTED = "SUBMITTED"
    STATE_CHANGED = "STATE_CHANGED"
    PROGRESS = "PROGRESS"
    RESUMED = "RESUMED"
    FINISHED = "FINISHED"

    @classmethod
    def _proto_prefix(cls) -> str:
        return "KIND_"

    @classmethod
    def of(cls, value: int) -> "EventKind":
        return cls.from_proto(value, _t.TaskEvent.Kind)


class ResumeReason(_ProtoEnum):
    """Why an attempt followed another one."""

    UNSPECIFIED = "UNSPECIFIED"
    TIMEOUT = "TIMEOUT"
    PREEMPTED = "PREEMPTED"
    NODE_FAIL = "NODE_FAIL"
    BOOT_FAIL = "BOOT_FAIL"
    SLURM_REQUEUE = "SLURM_REQUEUE"
    MANUAL = "MANUAL"

    @classmethod
    def _proto_prefix(cls) -> str:
        return "RESUME_REASON_"

    @classmethod
    def of(cls, value: int) -> "ResumeReason":
        return cls.from_proto(value, _t.ResumeReason)


def _time(ts: Any) -> Optional[_dt.datetime]:
    """A protobuf Timestamp as an aware UTC datetime; None when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return _dt.datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=_dt.timezone.utc)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _View:
    """to_dict() for the dataclasses below: every field but `raw`, recursively plain."""

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name))
                for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if f.name != "raw"}


def _raw() -> Any:
    return dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Progress(_View):
    """Requests the harness answered, of `total` (0: unknown)."""

    done: int = 0
    total: int = 0

    @property
    def fraction(self) -> Optional[float]:
        return self.done / self.total if self.total > 0 else None

    @classmethod
    def from_proto(cls, p: Any) -> "Progress":
        return cls(done=p.done, total=p.total)


@dataclasses.dataclass(frozen=True)
class Score(_View):
    """One score of results.yml: results.<task>.metrics.<metric>.scores.<score>.value."""

    task: str
    metric: str
    score: str
    value: float
    stats: Dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        """`metric.score`, e.g. `accuracy.acc`."""
        return f"{self.metric}.{self.score}"

    @classmethod
    def from_proto(cls, s: Any) -> "Score":
        return cls(task=s.task, metric=s.metric, score=s.score, value=s.value,
                   stats=dict(s.stats))


@dataclasses.dataclass(frozen=True)
class Attempt(_View):
    """One Slurm job of a task."""

    number: int
    attempt_id: str
    slurm_job_id: str
    slurm_state: str
    slurm_reason: str
    exit_code: Optional[int]
    signal: Optional[int]
    submit_time: Optional[_dt.datetime]
    start_time: Optional[_dt.datetime]
    end_time: Optional[_dt.datetime]
    elapsed_seconds: int
    node_list: str
    resume_reason: ResumeReason
    slurm_restarts: int
    raw: Any = _raw()

    @classmethod
    def from_proto(cls, a: Any) -> "Attempt":
        return cls(
            number=a.number, attempt_id=a.attempt_id, slurm_job_id=a.slurm_job_id,
            slurm_state=a.slurm_state, slurm_reason=a.slurm_reason,
            exit_code=a.exit_code if a.HasField("exit_code") else None,
            signal=a.signal if a.HasField("signal") else None,
            submit_time=_time(a.submit_time), start_time=_time(a.start_time),
            end_time=_time(a.end_time), elapsed_seconds=a.elapsed_seconds,
            node_list=a.node_list, resume_reason=ResumeReason.of(a.resume_reason),
            slurm_restarts=a.slurm_restarts, raw=a)


@dataclasses.dataclass(frozen=True)
class Task(_View):
    """One task of an invocation (`<invocation id>.<index>`)."""

    id: str
    invocation_id: str
    index: int
    name: str
    dir_name: str
    state: TaskState
    phase: Phase
    reason: str
    progress: Progress
    attempts: List[Attempt]
    # Attempts so far; also set when `attempts` is not (Client.status(..., view="basic")).
    attempt_count: int
    elapsed_seconds: int
    scores: List[Score]
    results_path: str
    run_dir: str
    cancel_requested: bool
    created_time: Optional[_dt.datetime]
    updated_time: Optional[_dt.datetime]
    raw: Any = _raw()

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    @property
    def slurm_job_id(self) -> str:
        """The newest attempt's Slurm job id ('' before the first sbatch)."""
        if self.attempts:
            return self.attempts[-1].slurm_job_id
        return self.raw.slurm_job_id if self.raw is not None else ""

    @classmethod
    def from_proto(cls, t: Any) -> "Task":
        return cls(
            id=t.id, invocation_id=t.invocation_id, index=t.index, name=t.name,
            dir_name=t.dir_name, state=TaskState.of(t.state), phase=Phase.of(t.phase),
            reason=t.reason, progress=Progress.from_proto(t.progress),
            attempts=[Attempt.from_proto(a) for a in t.attempts],
            attempt_count=max(t.attempt_count, len(t.attempts)),
            elapsed_seconds=t.elapsed_seconds,
            scores=[Score.from_proto(s) for s in t.results.scores],
            results_path=t.results.results_path, run_dir=t.run_dir,
            cancel_requested=t.cancel_requested, created_time=_time(t.created_time),
            updated_time=_time(t.updated_time), raw=t)


_COUNT_FIELDS = ("pending", "queued", "running", "resuming", "succeeded", "failed", "cancelled",
                 "budget_exhausted")


@dataclasses.dataclass(frozen=True)
class Invocation(_View):
    """An invocation with its tasks (list() leaves `tasks` empty; `counts` is always filled).

    `duplicate` is True only in what Client.run() returns when the request id had been submitted
    before, so this is the invocation created then."""

    id: str
    owner: str
    created_time: Optional[_dt.datetime]
    cluster: str
    hostname: str
    username: str
    run_dir: str
    resolved_config: str
    counts: Dict[str, int]
    tasks: List[Task]
    finished: bool
    duplicate: bool = False
    raw: Any = _raw()

    def task(self, name_or_index: Any) -> Task:
        """The task with this name, index or id; KeyError when there is none."""
        for t in self.tasks:
            if name_or_index in (t.name, t.index, t.id):
                return t
        raise KeyError(name_or_index)

    @classmethod
    def from_proto(cls, inv: Any, duplicate: bool = False) -> "Invocation":
        return cls(
            id=inv.id, owner=inv.owner, created_time=_time(inv.created_time),
            cluster=inv.cluster, hostname=inv.hostname, username=inv.username,
            run_dir=inv.run_dir, resolved_config=inv.resolved_config,
            counts={f: getattr(inv.counts, f) for f in _COUNT_FIELDS},
            tasks=[Task.from_proto(t) for t in inv.tasks], finished=inv.finished,
            duplicate=duplicate, raw=inv)


@dataclasses.dataclass(frozen=True)
class Event(_View):
    """One event of Client.watch(): a task's full current status after a change.

    When `overflowed` is True this watcher fell behind and the controller dropped events: the
    task fields are empty; re-read the state with Client.status() (watching continues)."""

    sequence: int
    invocation_id: str
    kind: EventKind
    task_id: str
    time: Optional[_dt.datetime]
    state: TaskState
    phase: Phase
    reason: str
    progress: Progress
    attempt: Optional[Attempt]
    elapsed_seconds: int
    scores: List[Score]
    overflowed: bool = False
    raw: Any = _raw()

    @classmethod
    def from_proto(cls, r: Any) -> "Event":
        e = r.event
        return cls(
            sequence=r.sequence, invocation_id=r.invocation_id, kind=EventKind.of(e.kind),
            task_id=e.task_id, time=_time(e.time), state=TaskState.of(e.state),
            phase=Phase.of(e.phase), reason=e.reason, progress=Progress.from_proto(e.progress),
            attempt=Attempt.from_proto(e.attempt) if e.HasField("attempt") else None,
            elapsed_seconds=e.elapsed_seconds,
            scores=[Score.from_proto(s) for s in e.results.scores], overflowed=r.overflowed,
            raw=r)


@dataclasses.dataclass(frozen=True)
class TaskResult(_View):
    """The scores of one task, from Client.results()."""

    task_id: str
    name: str
    state: TaskState
    scores: List[Score]
    results_path: str
    raw: Any = _raw()

    @property
    def values(self) -> Dict[str, float]:
        """{'metric.score': value}, prefixed by `task/` where results.yml has several tasks."""
        multi = len({s.task for s in self.scores}) > 1
        return {(f"{s.task}/{s.key}" if multi else s.key): s.value for s in self.scores}

    @classmethod
    def from_proto(cls, ts: Any) -> "TaskResult":
        return cls(task_id=ts.task_id, name=ts.name, state=TaskState.of(ts.state),
                   scores=[Score.from_proto(s) for s in ts.results.scores],
                   results_path=ts.results.results_path, raw=ts)


@dataclasses.dataclass(frozen=True)
class PlannedTask(_View):
    """A task as Client.plan() would submit it. `env` maps names to values with secrets redacted."""

    index: int
    name: str
    dir_name: str
    script: str
    env: Dict[str, str]
    run_dir: str
    max_walltime_seconds: int
    max_attempts: int
    raw: Any = _raw()

    @classmethod
    def from_proto(cls, p: Any) -> "PlannedTask":
        return cls(index=p.index, name=p.name, dir_name=p.dir_name, script=p.job.script,
                   env={e.name: e.value for e in p.job.env}, run_dir=p.job.run_dir,
                   max_walltime_seconds=p.resume_policy.max_walltime_seconds,
                   max_attempts=p.resume_policy.max_attempts, raw=p)


@dataclasses.dataclass(frozen=True)
class Plan(_View):
    """What Client.plan() returns: the resolved configuration (secrets redacted) and the jobs."""

    resolved_config: str
    tasks: List[PlannedTask]
    cluster: str
    warnings: List[str]
    raw: Any = _raw()

    @classmethod
    def from_proto(cls, p: Any) -> "Plan":
        return cls(resolved_config=p.resolved_config,
                   tasks=[PlannedTask.from_proto(t) for t in p.tasks], cluster=p.cluster,
                   warnings=list(p.warnings), raw=p)


@dataclasses.dataclass(frozen=True)
class Cluster(_View):
    """A cluster served by a connected (or recently connected) agent."""

    name: str
    aliases: List[str]
    unix_user: str
    agent_id: str
    agent_version: str
    capabilities: List[str]
    connected: bool
    last_seen: Optional[_dt.datetime]
    slurm_reachable: bool
    slurm_message: str
    tracked_jobs: int
    raw: Any = _raw()

    @classmethod
    def from_proto(cls, c: Any) -> "Cluster":
        return cls(name=c.name, aliases=list(c.aliases), unix_user=c.unix_user,
                   agent_id=c.agent_id, agent_version=c.agent_version,
                   capabilities=list(c.capabilities), connected=c.connected,
                   last_seen=_time(c.last_seen), slurm_reachable=c.slurm_reachable,
                   slurm_message=c.slurm_message, tracked_jobs=c.tracked_jobs, raw=c)


@dataclasses.dataclass(frozen=True)
class SkippedTask(_View):
    task_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ResumeResult(_View):
    """What Client.resume() did: tasks with a new attempt, and tasks left alone with why."""

    resumed: List[Task]
    skipped: List[SkippedTask]
    raw: Any = _raw()

    @classmethod
    def from_proto(cls, r: Any) -> "ResumeResult":
        return cls(resumed=[Task.from_proto(t) for t in r.resumed],
                   skipped=[SkippedTask(s.task_id, s.reason) for s in r.skipped], raw=r)
