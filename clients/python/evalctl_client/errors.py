"""The exceptions of evalctl_client.

Every failure of a call is an :class:`EvalctlError`; the subclasses say what kind::

    EvalctlError
    ├── UnavailableError            UNAVAILABLE: e.g. no agent serves the configured cluster
    │   └── ControllerUnreachableError   the controller could not be reached at all
    ├── NotFoundError               NOT_FOUND (also a LookupError)
    ├── InvalidArgumentError        INVALID_ARGUMENT, with the controller's message: file, line and
    │                               key path of a configuration problem (also a ValueError)
    ├── FailedPreconditionError     FAILED_PRECONDITION, e.g. resuming a task that still runs
    ├── PermissionDeniedError       PERMISSION_DENIED
    ├── UnauthenticatedError        UNAUTHENTICATED: missing or rejected token
    ├── DeadlineExceededError       DEADLINE_EXCEEDED, or Client.wait() timing out (also a TimeoutError)
    └── UnimplementedError          UNIMPLEMENTED: the server is not (this version of) evalctl-controller

``code`` is the gRPC status code (``None`` for errors found locally, such as an unreadable
configuration file), ``details`` the server's message as it sent it, ``target`` the controller's
address.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Type

import grpc

__all__ = [
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
]


class EvalctlError(Exception):
    """A call to evalctl-controller failed, or its request could not be built."""

    def __init__(self, message: str, *, code: Optional[grpc.StatusCode] = None,
                 details: Optional[str] = None, target: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = message if details is None else details
        self.target = target

    def __str__(self) -> str:
        return self.message


class UnavailableError(EvalctlError):
    """UNAVAILABLE: the controller is reachable but cannot serve the request now (for instance no
    agent serves the cluster the configuration names; the message lists the connected clusters),
    or — as the subclass :class:`ControllerUnreachableError` — the controller was not reached."""


class ControllerUnreachableError(UnavailableError):
    """The controller could not be reached: refused connection, unknown host, TLS mismatch, no
    answer within the timeout. The message names the address and the cause."""


class NotFoundError(EvalctlError, LookupError):
    """NOT_FOUND: no invocation or task with that id (or prefix), or a missing local file."""


class InvalidArgumentError(EvalctlError, ValueError):
    """INVALID_ARGUMENT: a bad request or configuration; the message is the controller's (file,
    line and key path for configuration problems)."""


class FailedPreconditionError(EvalctlError):
    """FAILED_PRECONDITION: e.g. resuming a task that is still active or succeeded."""


class PermissionDeniedError(EvalctlError):
    """PERMISSION_DENIED: the caller may not see or change this."""


class UnauthenticatedError(EvalctlError):
    """UNAUTHENTICATED: no token, or a token the controller rejects."""


class DeadlineExceededError(EvalctlError, TimeoutError):
    """DEADLINE_EXCEEDED: the controller did not answer in time, or :meth:`Client.wait` gave up."""


class UnimplementedError(EvalctlError):
    """UNIMPLEMENTED: the server does not know the call."""


_BY_CODE: Dict[grpc.StatusCode, Type[EvalctlError]] = {
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
}

# gRPC's messages for failures of the connection itself, not of the controller.
_TRANSPORT_PATTERNS = (
    "failed to connect to all addresses",
    "dns resolution failed",
    "domain name not found",
    "connection refused",
    "connections to all backends failing",
    "socket closed",
    "connection reset",
    "broken pipe",
    "handshake",
    "ssl_error",
    "no route to host",
    "network is unreachable",
    "endpoint closing",
    "goaway",
)


def looks_like_transport_failure(details: str) -> bool:
    """True when gRPC's message describes a failed connection rather than the controller's answer."""
    lower = details.lower()
    return any(p in lower for p in _TRANSPORT_PATTERNS)


def connect_failure_cause(details: str) -> str:
    """The cause of a connection failure in a few words, from gRPC's message."""
    lower = details.lower()
    if "connection refused" in lower:
        return "connection refused"
    if "dns resolution failed" in lower or "domain name not found" in lower:
        return "cannot resolve the host name"
    if "handshake" in lower or "ssl_error" in lower:
        if "certificate verify failed" in lower or "certificate_verify_failed" in lower:
            return "TLS handshake failed: the controller's certificate is not signed by the given CA"
        if any(s in lower for s in ("wrong version number", "wrong_version_number",
                                    "packet length too long", "packet_length_too_long")):
            return "TLS handshake failed: the controller does not speak TLS"
        return "TLS handshake failed"
    if "no route to host" in lower:
        return "no route to host"
    if "network is unreachable" in lower:
        return "network is unreachable"
    if any(s in lower for s in ("connection reset", "socket closed", "connection closed")):
        return "the connection was closed; the controller may have stopped, or expects TLS"
    if "timed out" in lower or "deadline" in lower:
        return "connection timed out"
    m = re.search(r"last error: (.*)$", details)
    return m.group(1) if m else details


def unreachable(target: str, cause: str, code: Optional[grpc.StatusCode] = None,
                details: str = "") -> ControllerUnreachableError:
    """The error for a controller that could not be reached, naming its address."""
    return ControllerUnreachableError(
        f"cannot reach evalctl-controller at {target} ({cause}); start it, or pass the right "
        "target (Client(target=...) or $EVALCTL_CONTROLLER)",
        code=code or grpc.StatusCode.UNAVAILABLE, details=details or cause, target=target)


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def from_rpc_error(err: grpc.RpcError, *, target: str, timeout: Optional[float],
                   reached: bool) -> EvalctlError:
    """Converts a failed call. `reached` is False when the channel never had a connection, so the
    controller was not reached at all; `timeout` is the call's deadline in seconds (None: none)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else None) or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        if not reached or looks_like_transport_failure(details):
            return unreachable(target, connect_failure_cause(details), code, details)
        return UnavailableError(details or "evalctl-controller is unavailable", code=code,
                                details=details, target=target)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        if not reached:
            within = f"no answer within {_fmt_seconds(timeout)}" if timeout else "no answer"
            return unreachable(target, within, code, details)
        if timeout is not None:
            return DeadlineExceededError(
                f"evalctl-controller at {target} did not answer within {_fmt_seconds(timeout)} "
                "(deadline exceeded)", code=code, details=details, target=target)
        return DeadlineExceededError(details or "deadline exceeded", code=code, details=details,
                                     target=target)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return UnimplementedError(
            f"the server at {target} does not implement this call ({details}); is it "
            "evalctl-controller, and as new as this client?", code=code, details=details,
            target=target)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return UnauthenticatedError(
            f"evalctl-controller at {target} rejected the credentials: "
            f"{details or 'no or invalid token'}", code=code, details=details, target=target)
    cls = _BY_CODE.get(code, EvalctlError)
    message = details or f"RPC failed with code {code.name if code else 'UNKNOWN'}"
    return cls(message, code=code, details=details, target=target)
