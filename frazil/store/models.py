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
    public: bool
    bundle_hash: str
    bundle_bytes: int
    layer_key: str | None
    created_at: float
    finished_at: float | None = None
    error: str | None = None

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
            "public": self.public,
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

    def public_view(self) -> dict[str, Any]:
        import orjson

        return {
            "id": self.id,
            "function": self.function,
            "version": self.version,
            "mode": self.mode,
            "status": self.status.value,
            "attempts": self.attempts,
            "cold": self.cold,
            "instance_id": self.instance_id,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "result": orjson.loads(self.result) if self.result is not None else None,
            "error": orjson.loads(self.error) if self.error is not None else None,
            "logs": self.logs or "",
        }
