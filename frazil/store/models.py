"""The records the store hands out, and the states they move through."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


class VersionStatus(str, enum.Enum):
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


class Access(str, enum.Enum):
    """Who may invoke a function (SPEC "Who may invoke")."""

    ADMIN = "admin"  # the admin key only
    USER = "user"  # any logged-in end user with their token, and the admin
    PUBLIC = "public"  # anyone, no token


class InvocationStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    THROTTLED = "throttled"

    @property
    def final(self) -> bool:
        return self in _FINAL


class Trigger(str, enum.Enum):
    """What fired an invocation. Every source ends in the same invocation path
    (frazil.scheduler.entry), which writes this on the record."""

    API = "api"  # POST /v1/functions/{name}/invoke
    HTTP = "http"  # the function's HTTP endpoint, /fn/{name}
    SCHEDULE = "schedule"
    TABLE = "table"
    DELAY = "delay"  # an async invocation with delay_s
    FUNCTION = "function"  # another function, through the SDK
    RETRY = "retry"  # POST /v1/invocations/{id}/retry


_FINAL = {InvocationStatus.SUCCEEDED, InvocationStatus.FAILED, InvocationStatus.TIMEOUT, InvocationStatus.THROTTLED}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class FunctionVersion:
    """One deployed version of a function with its settings (immutable once ready)."""

    function: str
    number: int
    status: VersionStatus
    runtime: str
    handler: str
    memory_mb: int
    timeout_s: float
    env: dict[str, str]
    resident: int
    access: Access
    http: bool  # answers at /fn/{name} too
    bundle_hash: str
    bundle_bytes: int
    layer_key: str | None
    created_at: float
    finished_at: float | None = None
    error: str | None = None
    # What fires it besides calls: [{"type": "schedule", "cron", "event"}] (frazil.deploy.config).
    triggers: tuple[dict[str, Any], ...] = ()

    @property
    def key(self) -> tuple[str, int]:
        return (self.function, self.number)

    def settings_view(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "handler": self.handler,
            "memory": self.memory_mb,
            "timeout": self.timeout_s,
            "env": self.env,
            "resident": self.resident,
            "access": self.access.value,
            "public": self.access is Access.PUBLIC,  # the older name of access = "public"
            "http": self.http,
            "triggers": [dict(t) for t in self.triggers],
        }


@dataclass
class InvocationRecord:
    id: str
    function: str
    version: int | None
    mode: str
    status: InvocationStatus
    created_at: float
    attempts: int = 0
    cold: bool | None = None
    instance_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: float | None = None
    event: str | None = None
    result: str | None = None  # JSON text
    error: str | None = None  # JSON text
    logs: str | None = None
    next_attempt_at: float | None = None
    expires_at: float | None = None
    owner: str | None = None
    lease_until: float | None = None  # async, running: the owner's claim ends then (frazil.scheduler.dispatcher)
    trigger: Trigger = Trigger.API
    node: str | None = None  # the invoker that ran it (its last attempt)
    caller: str | None = None  # JSON {"id", "username"}: the end user who called (context.user)
    retry_of: str | None = None  # the record whose event this one replays (trigger `retry`)
    depth: int = 0  # calls between functions above this one: 0 unless a function invoked it

    def public_view(self, *, with_event: bool = True) -> dict[str, Any]:
        """The record as the API shows it; lists leave the event out (`with_event=False`):
        they do not read it from the store."""
        import orjson

        view = {
            "id": self.id,
            "function": self.function,
            "version": self.version,
            "mode": self.mode,
            "status": self.status.value,
            "attempts": self.attempts,
            "cold": self.cold,
            "instance_id": self.instance_id,
            "node": self.node,
            "trigger": self.trigger.value,
            "user": orjson.loads(self.caller) if self.caller is not None else None,
            "created_at": iso(self.created_at),
            "not_before": iso(self.next_attempt_at),  # queued: not run before this (a delay or a retry's backoff)
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "result": orjson.loads(self.result) if self.result is not None else None,
            "error": orjson.loads(self.error) if self.error is not None else None,
            "logs": self.logs or "",
            "retry_of": self.retry_of,
            "depth": self.depth,
        }
        if with_event:
            # None when it was not kept: larger than the payload limit (see frazil.scheduler.entry).
            view["event"] = orjson.loads(self.event) if self.event is not None else None
        return view
