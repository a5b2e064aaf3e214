"""Client: the Python client of evalctl-controller's EvalService (proto/evalctl/v1/eval_service.proto).

    from evalctl_client import Client

    with Client() as c:                              # $EVALCTL_CONTROLLER, else 127.0.0.1:50051
        inv = c.run("my.yaml", overrides=["execution.walltime=01:00:00"])
        for event in c.watch(inv.id):                # until every task is terminal
            print(event.task_id, event.state, event.phase)
        for r in c.results(inv.id):
            print(r.task_id, r.name, r.state, r.values)

Ids: wherever a method takes an `id`, any unique prefix of an invocation id works, and
`<invocation>.<index>` (or a prefix of it) names a task.

Every unary call has a deadline (`timeout`, 10 s by default). Streams (watch, logs) first check
that the controller answers (the standard gRPC health check, within `timeout`), then run without
a deadline. A controller that cannot be reached raises ControllerUnreachableError naming the
address and the cause: at once when the connection is refused, else within `timeout`.

Thread-safety: a Client may be shared by threads; each generator returned by watch() or logs() is
consumed by one thread.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
import uuid
from pathlib import Path
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar,
                    Union)

import grpc

from . import errors
from .config import ConfigInput, build_config_source, local_user
from .errors import DeadlineExceededError, EvalctlError, InvalidArgumentError
from .types import (Cluster, Event, Invocation, Plan, ResumeResult, Task, TaskResult)
from .v1 import eval_service_pb2 as pb
from .v1 import eval_service_pb2_grpc as pb_grpc
from .v1 import types_pb2

__all__ = ["Client", "DEFAULT_CONTROLLER", "resolve_target", "user_config_path", "new_request_id"]

log = logging.getLogger("evalctl_client")

DEFAULT_CONTROLLER = "127.0.0.1:50051"
_VERSION = "0.1.0"
# As the C++ client: keepalive pings find a dead connection under a long watch or logs(follow);
# servers refuse pings more frequent than every 5 minutes by default, so stay above.
_CHANNEL_OPTIONS: Tuple[Tuple[str, Any], ...] = (
    ("grpc.primary_user_agent", f"evalctl-client-python/{_VERSION}"),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.keepalive_time_ms", 330_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.max_pings_without_data", 0),
)
_LOG_KINDS = {
    "slurm": types_pb2.LOG_KIND_SLURM,
    "server": types_pb2.LOG_KIND_SERVER,
    "eval": types_pb2.LOG_KIND_EVAL,
}
_MAX_PAGE = 1000
# Tasks per GetInvocation page: a 100,000-task invocation is read in ten messages, not one.
_TASK_PAGE = 10000
_VIEWS = {"summary": pb.INVOCATION_VIEW_SUMMARY, "basic": pb.INVOCATION_VIEW_BASIC,
          "full": pb.INVOCATION_VIEW_FULL}

Pem = Union[bytes, str, "os.PathLike[str]"]
_R = TypeVar("_R")


def user_config_path() -> Optional[Path]:
    """$XDG_CONFIG_HOME/evalctl/config.yaml, else ~/.config/evalctl/config.yaml (as `evalctl`)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg) / "evalctl" / "config.yaml"
    home = os.environ.get("HOME")
    if not home:
        try:
            import pwd
            home = pwd.getpwuid(os.getuid()).pw_dir
        except (KeyError, ImportError):
            return None
    return Path(home) / ".config" / "evalctl" / "config.yaml"


def resolve_target(target: Optional[str] = None, environ: Optional[Dict[str, str]] = None,
                   config_path: Optional[Path] = None) -> str:
    """The controller address as `evalctl` finds it: `target` when given, else $EVALCTL_CONTROLLER
    when set and not empty, else `controller:` in the user's evalctl config file, else
    127.0.0.1:50051. A config file that does not parse raises InvalidArgumentError naming it."""
    if target:
        return target
    env = os.environ if environ is None else environ
    if env.get("EVALCTL_CONTROLLER"):
        return env["EVALCTL_CONTROLLER"]
    path = user_config_path() if config_path is None else config_path
    if path is None or not path.is_file():
        return DEFAULT_CONTROLLER
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dependency
        return DEFAULT_CONTROLLER
    try:
        root = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InvalidArgumentError(f"{path}: {e}") from None
    if root is None:
        return DEFAULT_CONTROLLER
    if not isinstance(root, dict):
        raise InvalidArgumentError(f"{path}: expected a mapping with a `controller:` key")
    controller = root.get("controller")
    if controller is None:
        return DEFAULT_CONTROLLER
    if not isinstance(controller, str) or not controller:
        raise InvalidArgumentError(f"{path}: `controller` must be an address such as host:50051")
    return controller


def new_request_id() -> str:
    """A fresh idempotency key for Client.run(): a random UUID (version 4)."""
    return str(uuid.uuid4())


def _read_pem(value: Optional[Pem], what: str) -> Optional[bytes]:
    """PEM data given as bytes, as a str holding PEM, or as the path of a PEM file."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    path = Path(os.fspath(value))
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise errors.NotFoundError(f"{what} {path}: no such file") from None
    except OSError as e:
        raise errors.PermissionDeniedError(f"{what} {path}: cannot read ({e.strerror})") from None


def _timestamp_seconds(since: Union[_dt.datetime, _dt.timedelta, float, int]) -> int:
    if isinstance(since, _dt.timedelta):
        return int(time.time() - since.total_seconds())
    if isinstance(since, _dt.datetime):
        if since.tzinfo is None:
            since = since.astimezone()  # a naive time is local time
        return int(since.timestamp())
    if isinstance(since, (int, float)):
        return int(since)
    raise TypeError("since must be a datetime, a timedelta (an age) or Unix seconds")


def _read_token_file(path: str) -> str:
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise InvalidArgumentError(f"cannot read the token file {path}: {e.strerror}") from None
    if mode & 0o077:
        raise InvalidArgumentError(
            f"the token file {path} is readable by other users (mode {mode & 0o7777:04o}); "
            "chmod 600 it")
    if not token:
        raise InvalidArgumentError(f"the token file {path} is empty")
    return token


class Client:
    """A connection to evalctl-controller. Cheap to keep; close() (or `with`) releases it.

    Args:
      target: host:port of evalctl-controller (any gRPC target). Default: $EVALCTL_CONTROLLER, then
        `controller:` in ~/.config/evalctl/config.yaml, then 127.0.0.1:50051.
      token: bearer token, sent as `authorization: Bearer <token>`. Default: the content of
        `token_file`, then of $EVALCTL_TOKEN_FILE, then $EVALCTL_TOKEN; "" sends none. Never logged.
      token_file: a file holding the token; refused when other users may read it.
      timeout: seconds: the deadline of each unary call, and of the health check that precedes
        each stream.
      root_certificates: PEM of the CAs that sign the controller's certificate (bytes, PEM text or
        a file path; default: the file named by $EVALCTL_CA_CERT). Giving it, or `tls=True`, makes
        the channel TLS (`tls=True` alone verifies with the system's roots). Without TLS the channel is plaintext: the controller's
        loopback-only insecure mode.
      private_key, certificate_chain: a client key pair for mutual TLS (both or neither).
      user: the user name sent as `x-evalctl-user` on a plaintext channel, which the insecure
        controller takes as the caller. Default: the local user.
      options: more gRPC channel options, e.g. (("grpc.enable_retries", 0),).
      channel: use this channel instead of creating one (then the TLS arguments are ignored,
        `x-evalctl-user` is sent unless tls=True, and close() leaves the channel open).
    """

    def __init__(self, target: Optional[str] = None, token: Optional[str] = None,
                 timeout: float = 10.0, root_certificates: Optional[Pem] = None, *,
                 private_key: Optional[Pem] = None, certificate_chain: Optional[Pem] = None,
                 tls: Optional[bool] = None, user: Optional[str] = None,
                 options: Sequence[Tuple[str, Any]] = (),
                 channel: Optional[grpc.Channel] = None,
                 token_file: Optional[str] = None) -> None:
        if timeout is None or timeout <= 0:
            raise InvalidArgumentError(f"the call timeout must be positive, not {timeout!r}")
        if (private_key is None) != (certificate_chain is None):
            raise InvalidArgumentError(
                "a client certificate needs its key and a key needs its certificate; give both "
                "or neither")
        self.target = resolve_target(target)
        self.timeout = float(timeout)
        if token is None:
            token_file = token_file or os.environ.get("EVALCTL_TOKEN_FILE") or None
            token = (_read_token_file(token_file) if token_file
                     else os.environ.get("EVALCTL_TOKEN", ""))
        self._token = token
        if root_certificates is None and tls is not False and os.environ.get("EVALCTL_CA_CERT"):
            root_certificates = os.environ["EVALCTL_CA_CERT"]
        secure = tls if tls is not None else (
            root_certificates is not None or certificate_chain is not None)
        self.secure = bool(secure) and channel is None
        metadata: List[Tuple[str, str]] = []
        if self._token:
            metadata.append(("authorization", f"Bearer {self._token}"))
        if not secure:
            metadata.append(("x-evalctl-user", user or local_user()))
        self._metadata = tuple(metadata)

        self._own_channel = channel is None
        if channel is None:
            opts = list(_CHANNEL_OPTIONS) + list(options)
            if secure:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=_read_pem(root_certificates, "CA certificate"),
                    private_key=_read_pem(private_key, "client key"),
                    certificate_chain=_read_pem(certificate_chain, "client certificate"))
                channel = grpc.secure_channel(self.target, creds, options=opts)
            else:
                channel = grpc.insecure_channel(self.target, options=opts)
        self._channel = channel
        self._stub = pb_grpc.EvalServiceStub(channel)
        # The standard health service, which evalctl-controller serves: streams check the
        # connection with it first (see _open_stream).
        self._health_check = channel.unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=lambda _: b"",
            response_deserializer=lambda data: data)
        # Whether the controller ever answered, to tell a controller that was never reached from
        # one that is slow when a call runs out of time.
        self._answered = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Releases the channel (unless it was passed in): open streams are cancelled and calls
        afterwards fail. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        # No token: it is a secret.
        return f"Client(target={self.target!r}, secure={self.secure})"

    @property
    def stub(self) -> pb_grpc.EvalServiceStub:
        """The generated EvalService stub, for calls this wrapper does not cover. Pass
        `metadata=client.metadata` so that the call is authenticated."""
        return self._stub

    @property
    def metadata(self) -> Tuple[Tuple[str, str], ...]:
        """The metadata every call carries (authorization, x-evalctl-user)."""
        return self._metadata

    # ------------------------------------------------------------------ the API

    def run(self, config: ConfigInput, overrides: Sequence[str] = (), tasks: Sequence[str] = (),
            request_id: Optional[str] = None, wait: bool = False, *,
            group_dirs: Sequence[Union[str, "os.PathLike[str]"]] = (),
            wait_timeout: Optional[float] = None) -> Invocation:
        """Submits a configuration; returns the new invocation (with its tasks).

        Args:
          config: path of a YAML file, YAML text, or a mapping (see config.build_config_source).
          overrides: Hydra overrides, e.g. ["execution.walltime=01:00:00", "+target.x=1"].
          tasks: keep only these tasks (by name, or `name.N` for the Nth duplicate).
          request_id: idempotency key (default: a new UUID). Submitting again with the same key
            returns the invocation created the first time (`duplicate` is then True), so a call
            that failed in transit can be retried safely.
          wait: wait until every task is terminal and return the final state (see wait()).
          group_dirs: more directories of config groups.
          wait_timeout: with `wait`, give up after this many seconds (DeadlineExceededError).

        Raises:
          InvalidArgumentError: the configuration is invalid (the message has file, line, key).
          UnavailableError: no agent serves the cluster the configuration names.
        """
        source = build_config_source(config, overrides, tasks, group_dirs)
        request = pb.SubmitInvocationRequest(request_id=request_id or new_request_id(),
                                             config=source)
        response = self._unary(self._stub.SubmitInvocation, request)
        inv = Invocation.from_proto(response.invocation, duplicate=response.duplicate)
        log.info("submitted invocation %s (%d tasks) on cluster %s", inv.id, len(inv.tasks),
                 inv.cluster)
        if wait:
            final = self.wait(inv.id, timeout=wait_timeout)
            assert isinstance(final, Invocation)
            return final
        return inv

    def plan(self, config: ConfigInput, overrides: Sequence[str] = (), tasks: Sequence[str] = (),
             *, group_dirs: Sequence[Union[str, "os.PathLike[str]"]] = ()) -> Plan:
        """Composes, validates and renders a configuration on the controller without submitting
        it (a dry run): the resolved configuration and each task's job, secrets redacted."""
        source = build_config_source(config, overrides, tasks, group_dirs)
        return Plan.from_proto(self._unary(self._stub.PlanInvocation,
                                           pb.PlanInvocationRequest(config=source)))

    def status(self, id: str, view: str = "full") -> Union[Invocation, Task]:
        """An invocation with its tasks, or — for a task id (`<invocation>.<index>`) — one task.

        Args:
          view: how much of an invocation to read. "full": every attempt and score of every task.
            "basic": what a status table shows (state, phase, progress, reason, `attempt_count`,
            `slurm_job_id`); no attempts, scores, times or resolved_config: a tenth of the data,
            for invocations of thousands of tasks. "summary": `counts` and `finished` only, no
            tasks. A task id always reads the whole task.
        """
        if view not in _VIEWS:
            raise InvalidArgumentError(f"view must be one of {', '.join(_VIEWS)}, not {view!r}")
        if "." in id:
            return Task.from_proto(self._unary(self._stub.GetTask, pb.GetTaskRequest(id=id)))
        request = pb.GetInvocationRequest(id=id, view=_VIEWS[view], page_size=_TASK_PAGE)
        inv = self._unary(self._stub.GetInvocation, request)
        request.id = inv.id
        while inv.next_page_token:
            request.page_token = inv.next_page_token
            page = self._unary(self._stub.GetInvocation, request)
            inv.tasks.extend(page.tasks)
            inv.counts.CopyFrom(page.counts)
            inv.finished = page.finished
            inv.next_page_token = page.next_page_token
        return Invocation.from_proto(inv)

    def list(self, limit: int = 50,
             since: Optional[Union[_dt.datetime, _dt.timedelta, float]] = None) -> List[Invocation]:
        """The caller's invocations, newest first, without their tasks (`counts` are filled).

        Args:
          limit: at most this many.
          since: only those created at or after this time: a datetime (naive: local time), a
            timedelta (an age: timedelta(hours=6)) or Unix seconds.
        """
        if limit <= 0:
            raise InvalidArgumentError("limit must be at least 1")
        request = pb.ListInvocationsRequest(page_size=min(limit, _MAX_PAGE))
        if since is not None:
            request.since.seconds = _timestamp_seconds(since)
        out: List[Invocation] = []
        while len(out) < limit:
            page = self._unary(self._stub.ListInvocations, request)
            out.extend(Invocation.from_proto(i) for i in page.invocations)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        return out[:limit]

    def watch(self, id: str = "", after_sequence: int = 0, *, max_attempts: int = 8,
              initial_backoff: float = 0.5, max_backoff: float = 10.0,
              _deadline: Optional[float] = None) -> Iterator[Event]:
        """Yields the task events of an invocation (or a task; "" for all the caller's
        invocations) as they happen, until every task is terminal.

        With after_sequence=0 the controller first sends a snapshot of every task. A stream that
        drops after it delivered something (controller restart, network) is reopened after the
        last sequence seen, with backoff, up to `max_attempts` consecutive failures; a controller
        that cannot be reached at the start raises at once. An event with `overflowed=True` means
        this watcher fell behind and events were dropped: re-read the state with status().

        Stopping the iteration early (break, close()) cancels the stream.
        """
        after = after_sequence
        delivered_once = False
        failures = 0
        backoff = initial_backoff
        while True:
            call = None
            received = False
            try:
                remaining = None if _deadline is None else max(0.0, _deadline - time.monotonic())
                call = self._open_stream(self._stub.WatchInvocation,
                                         pb.WatchInvocationRequest(id=id, after_sequence=after),
                                         remaining)
                for response in call:
                    received = True
                    after = max(after, response.sequence)
                    yield Event.from_proto(response)
                return
            except grpc.RpcError as e:
                error = self._convert(e, remaining)
            except errors.ControllerUnreachableError as e:
                error = e
            finally:
                if call is not None:
                    call.cancel()
            if received:
                delivered_once = True
                failures = 0
                backoff = initial_backoff
            if not isinstance(error, errors.UnavailableError) or not delivered_once:
                raise error
            failures += 1
            if failures > max_attempts:
                raise type(error)(
                    f"{error.message}: the event stream dropped and {max_attempts} attempts to "
                    "resume it failed", code=error.code, details=error.details,
                    target=error.target) from error
            log.warning("event stream interrupted (%s); resuming after event %d in %gs",
                        error.message, after, backoff)
            if _deadline is not None and time.monotonic() + backoff > _deadline:
                raise DeadlineExceededError("deadline reached while the event stream was down",
                                            target=self.target) from error
            time.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)

    def wait(self, id: str, timeout: Optional[float] = None) -> Union[Invocation, Task]:
        """Blocks until every task of the invocation (or the task) is terminal; returns the final
        state, read from the controller. Raises DeadlineExceededError after `timeout` seconds (the
        tasks keep running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = 0
        while True:
            # Whether it finished needs the counts only; the final state is read whole.
            current = self.status(id, view="summary")
            if current.finished if isinstance(current, Invocation) else current.terminal:
                return self.status(id) if isinstance(current, Invocation) else current
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceededError(
                    f"{id} did not finish within {timeout:g}s (its tasks keep running)",
                    code=grpc.StatusCode.DEADLINE_EXCEEDED, target=self.target)
            received = False
            try:
                for event in self.watch(id, after_sequence=last, _deadline=deadline):
                    received = True
                    last = max(last, event.sequence)
            except DeadlineExceededError:
                if deadline is None or time.monotonic() < deadline - 0.05:
                    raise
                # Checked (and reported) at the top of the loop.
            # The controller ends the stream once every task is terminal; the loop re-reads the
            # state to confirm. A stream that ended early without news is watched again later.
            if not received:
                pause = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
                time.sleep(pause)

    def cancel(self, id: str) -> List[Task]:
        """Cancels an invocation (every task) or one task; returns the tasks it applied to, with
        their states after it was recorded (finished tasks are left as they are)."""
        response = self._unary(self._stub.CancelInvocation, pb.CancelInvocationRequest(id=id))
        return [Task.from_proto(t) for t in response.tasks]

    def resume(self, id: str) -> ResumeResult:
        """Starts a new attempt for tasks that ended FAILED, CANCELLED or BUDGET_EXHAUSTED, in the
        same run directory. For one task that is still active or succeeded: FailedPreconditionError."""
        return ResumeResult.from_proto(
            self._unary(self._stub.ResumeInvocation, pb.ResumeInvocationRequest(id=id)))

    def logs(self, id: str, which: str = "slurm", follow: bool = False, *, offset: int = 0,
             attempt: int = 0) -> Iterator[bytes]:
        """Yields a task's log as raw bytes, in chunks.

        Args:
          id: a task id (`<invocation>.<index>`, prefix accepted).
          which: "slurm" (the batch script's output), "server" (the model server) or "eval" (the
            evaluation harness).
          follow: keep the stream open and yield new data as the log grows, until the task is
            terminal (or the iteration stops).
          offset: byte offset to start from; negative counts from the end (-4096: the last 4 KiB).
          attempt: attempt number; 0 means the newest.
        """
        kind = _LOG_KINDS.get(which)
        if kind is None:
            raise InvalidArgumentError(
                f"unknown log {which!r}; use one of {', '.join(sorted(_LOG_KINDS))}")
        request = pb.StreamLogsRequest(id=id, kind=kind, offset=offset, follow=follow,
                                       attempt=attempt)
        return self._stream_logs(request)

    def _stream_logs(self, request: pb.StreamLogsRequest) -> Iterator[bytes]:
        call = None
        try:
            call = self._open_stream(self._stub.StreamLogs, request, None)
            for chunk in call:
                if chunk.data:
                    yield chunk.data
        except grpc.RpcError as e:
            raise self._convert(e, None) from None
        finally:
            if call is not None:
                call.cancel()

    def results(self, id: str) -> List[TaskResult]:
        """The scores of a task, or of every task of an invocation (tasks without results have an
        empty `scores`)."""
        response = self._unary(self._stub.GetResults, pb.GetResultsRequest(id=id))
        return [TaskResult.from_proto(t) for t in response.tasks]

    def clusters(self) -> List[Cluster]:
        """Clusters with an agent, connected or recently seen."""
        response = self._unary(self._stub.ListClusters, pb.ListClustersRequest())
        return [Cluster.from_proto(c) for c in response.clusters]

    # ------------------------------------------------------------------ plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise EvalctlError("the client is closed", target=self.target)

    def _unary(self, method: Callable[..., _R], request: Any) -> _R:
        self._check_open()
        try:
            response = method(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._convert(e, self.timeout) from None
        self._answered = True
        return response

    def _convert(self, err: grpc.RpcError, timeout: Optional[float]) -> EvalctlError:
        code = err.code() if hasattr(err, "code") else None
        if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            self._answered = True
        # UNAVAILABLE: gRPC's message tells a failed connection from the controller's own answer.
        # DEADLINE_EXCEEDED: "cannot reach" while the controller never answered this client.
        reached = self._answered if code == grpc.StatusCode.DEADLINE_EXCEEDED else True
        return errors.from_rpc_error(err, target=self.target, timeout=timeout, reached=reached)

    def _open_stream(self, method: Callable[..., Any], request: Any,
                     limit: Optional[float]) -> Any:
        """Starts a server-streaming call once the controller answers a health check (within
        `timeout`, or `limit` when shorter), so that a controller that cannot be reached fails
        here rather than hanging the stream. The stream itself gets a deadline only from
        `limit`."""
        self._check_open()
        wait = self.timeout if limit is None else min(self.timeout, limit)
        try:
            self._health_check(None, metadata=self._metadata, timeout=wait)
        except grpc.RpcError as e:
            code = e.code()
            details = e.details() or ""
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                if limit is not None and limit <= self.timeout:
                    raise self._convert(e, limit) from None
                raise errors.unreachable(self.target, f"no answer within {wait:g}s", code,
                                         details) from None
            if code == grpc.StatusCode.UNAVAILABLE and errors.looks_like_transport_failure(details):
                raise errors.unreachable(self.target, errors.connect_failure_cause(details), code,
                                         details) from None
            # Anything else (UNIMPLEMENTED from a server without the health service, ...) came
            # from the server: it is reachable; the call itself reports its own errors.
        self._answered = True
        return method(request, metadata=self._metadata, timeout=limit)
