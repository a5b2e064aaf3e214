"""Python client of evalctl, the controller that runs LLM evaluations on Slurm clusters.

    from evalctl_client import Client, EvalctlError

    client = Client()                                   # $EVALCTL_CONTROLLER or 127.0.0.1:50051
    inv = client.run("eval.yaml", overrides=["execution.walltime=01:00:00"])
    for event in client.watch(inv.id):
        print(event.task_id, event.state, event.phase)
    final = client.wait(inv.id)
    for r in client.results(inv.id):
        print(r.task_id, r.name, r.state, r.values)     # {'accuracy.acc': 0.9}

Modules: `client` (Client), `types` (the dataclasses it returns), `errors` (the exceptions),
`config` (how a configuration file becomes a request), `v1` (the generated protobuf and gRPC
modules, for direct use with Client.stub).
"""

try:
    from . import v1  # the generated stubs
except ModuleNotFoundError as e:  # pragma: no cover - a source checkout without a build
    if e.name != f"{__name__}.v1":
        raise
    raise ImportError(
        "evalctl_client.v1, the generated gRPC stubs, is missing: this is the source tree. "
        "Install the package (pip install clients/python), or build it with CMake (target "
        "evalctl_client_python) and put <build>/clients/python on PYTHONPATH") from None

from .client import DEFAULT_CONTROLLER, Client, new_request_id, resolve_target
from .config import build_config_source
from .errors import (ControllerUnreachableError, DeadlineExceededError, EvalctlError,
                     FailedPreconditionError, InvalidArgumentError, NotFoundError,
                     PermissionDeniedError, UnauthenticatedError, UnavailableError,
                     UnimplementedError)
from .types import (Attempt, Cluster, Event, EventKind, Invocation, Phase, Plan, PlannedTask,
                    Progress, ResumeReason, ResumeResult, Score, SkippedTask, Task, TaskResult,
                    TaskState)

__version__ = "0.1.0"

__all__ = [
    "v1",
    "Client",
    "DEFAULT_CONTROLLER",
    "new_request_id",
    "resolve_target",
    "build_config_source",
    # errors
    "EvalctlError",
    "UnavailableError",
    "ControllerUnreachableError",
    "NotFoundError",
    "InvalidArgumentError",
    "FailedPreconditionError",
    "PermissionDeniedError",
    "UnauthenticatedError",
    "DeadlineExceededError",
    "UnimplementedError",
    # types
    "Attempt",
    "Cluster",
    "Event",
    "EventKind",
    "Invocation",
    "Phase",
    "Plan",
    "PlannedTask",
    "Progress",
    "ResumeReason",
    "ResumeResult",
    "Score",
    "SkippedTask",
    "Task",
    "TaskResult",
    "TaskState",
]
