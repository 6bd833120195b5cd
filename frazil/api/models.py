"""The HTTP API's response bodies as pydantic models: what /openapi.json documents, and what
FastAPI checks every answer of a route against (its `response_model`), so the document cannot
drift from what the server sends.

Resources (a function, a version, an invocation record, a table, a node, a user, a session,
health) allow fields beyond those listed: a field added to a view reaches clients at once, and
the document names it when its model does. The envelopes around them are exact. A route names
its model with `returns(...)`, and its refusals with `answers(...)`: each is frazil's one error
body (`ErrorBody`), with `Retry-After` on 429 and 503.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from frazil.data.acl import AclMode
from frazil.store.models import Access, InvocationStatus, Trigger, VersionStatus

Timestamp = str  # ISO 8601, UTC, e.g. "2026-11-30T15:02:40.123456Z"


class _Exact(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Resource(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- errors -----------------------------------------------------------------------------------

class ErrorDetail(_Resource):
    """The refusal: a machine-readable type, the message, and details some refusals add
    (`retry_after_s` on 429, `cause` on 503, `field` and `invocation_id` on 502)."""

    type: str = Field(examples=["NotFound"])
    message: str


class ErrorBody(_Exact):
    """Every refusal of the platform (any status but 2xx) has this body."""

    success: Literal[False]
    message: str = Field(examples=["function 'hello' does not exist"])
    error: ErrorDetail


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}
STATUS_TEXT = {
    400: "Bad input: the message names what is wrong",
    401: "No credentials, or credentials that are not valid (send `Authorization: Bearer <token>`)",
    403: "Valid credentials without the right (an end user's token on an admin route, or an ACL)",
    404: "The function, version, invocation, table or record does not exist",
    409: "Conflict with the current state",
    411: "The request has no Content-Length",
    413: "The body is larger than its limit",
    422: "A parameter does not have its declared type or range",
    429: "Too many requests: see Retry-After",
    503: "The platform's own resources are unavailable (database unreachable, disk full): see Retry-After",
}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route refusing with `statuses` (503 is added: any route may meet an
    outage of the database or the disk)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 503}):
        entry: dict[str, Any] = {"model": ErrorBody, "description": STATUS_TEXT[status]}
        if status in (429, 503):
            entry["headers"] = RETRY_AFTER
        out[status] = entry
    return out


ADMIN_ANSWERS = (401, 403)  # every admin route's


def returns(model: type[BaseModel]) -> dict[str, Any]:
    """A route's keyword arguments for answering a `model`: FastAPI checks the answer against it,
    and sends only the fields the route gave (a field the model declares with a default, such
    as a version's `build_log`, stays out of an answer that did not set it)."""
    return {"response_model": model, "response_model_exclude_unset": True}


# --- small answers ----------------------------------------------------------------------------

class Done(_Exact):
    success: Literal[True]
    message: str


# --- functions and versions -------------------------------------------------------------------

class TriggerView(_Resource):
    type: str = Field(examples=["schedule"])
    next_fire_at: Timestamp | None = Field(None, description="schedule triggers: the next tick")


class FunctionSettings(_Resource):
    runtime: str = Field(examples=["python3.11"])
    handler: str = Field(examples=["index.main"])
    memory: int = Field(description="the memory tier, in MB", examples=[128])
    timeout: float = Field(description="seconds")
    env: dict[str, str]
    resident: int
    access: Access
    public: bool = Field(description="the older spelling of access = public")
    http: bool = Field(description="whether the function answers at /fn/{name}")
    triggers: list[TriggerView]


class FunctionView(FunctionSettings):
    name: str
    version: int = Field(description="the active version")
    deployed_at: Timestamp | None


class VersionView(FunctionSettings):
    function: str
    version: int
    status: VersionStatus
    bundle_sha256: str
    bundle_bytes: int
    layer: str | None = Field(description="the dependency layer, when the bundle has dependencies")
    error: str | None = Field(description="why the build failed")
    created_at: Timestamp | None
    finished_at: Timestamp | None
    build_log: str | None = Field(None, description="only on GET of one version")


class FunctionOut(_Exact):
    success: Literal[True]
    function: FunctionView


class FunctionList(_Exact):
    success: Literal[True]
    functions: list[FunctionView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class Activated(_Exact):
    success: Literal[True]
    message: str
    function: FunctionView
    version: int


class Deployed(Activated):
    build_log: str


class VersionList(_Exact):
    success: Literal[True]
    versions: list[VersionView]
    next_cursor: str | None


class VersionOut(_Exact):
    success: Literal[True]
    version: VersionView


# --- invocations ------------------------------------------------------------------------------

class FunctionError(_Resource):
    """Why an invocation failed: the exception's class name (or Timeout, MemoryLimitExceeded,
    RuntimeExited, ResultNotSerializable, TooManyRequests), its message and stack."""

    type: str
    message: str
    stack: str | None = None


class Envelope(_Exact):
    """The answer of a sync invocation: `success` false when the function failed (still 200)."""

    success: bool
    message: str
    result: Any = Field(description="the function's return value; null when it failed")
    invocation_id: str
    cold: bool
    duration_ms: float | None
    error: FunctionError | None = Field(None, description="only when success is false")


class Accepted(_Exact):
    """An async invocation, durably queued."""

    success: Literal[True]
    message: Literal["accepted"]
    invocation_id: str
    status: InvocationStatus
    not_before: Timestamp | None = Field(None, description="delayed invocations: not run before this")
    retry_of: str | None = Field(None, description="retries: the invocation replayed")


class InvocationView(_Resource):
    id: str
    function: str
    version: int | None
    mode: str = Field(examples=["sync"])
    status: InvocationStatus
    attempts: int
    cold: bool | None
    instance_id: str | None
    node: str | None
    trigger: Trigger
    user: dict[str, Any] | None = Field(description="the end user who called, if one did")
    created_at: Timestamp | None
    not_before: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    duration_ms: float | None
    result: Any
    error: FunctionError | None
    logs: str
    retry_of: str | None
    depth: int = Field(description="0 for a call from outside; n for a call made by a function at depth n-1")
    event: Any = Field(None, description="only on GET of one record; null when it was larger than the limit")


class InvocationOut(_Exact):
    success: Literal[True]
    invocation: InvocationView


class InvocationList(_Exact):
    success: Literal[True]
    invocations: list[InvocationView]
    next_cursor: str | None


class LogEntry(_Exact):
    invocation_id: str
    created_at: Timestamp | None
    status: InvocationStatus
    version: int | None
    logs: str


class LogPage(_Exact):
    success: Literal[True]
    entries: list[LogEntry]
    cursor: str | None = Field(description="pass as `after` to follow the output that comes later")
    next_cursor: str | None


# --- end users --------------------------------------------------------------------------------

class Session(_Resource):
    success: Literal[True]
    token: str
    user_id: str
    username: str
    expires_at: Timestamp | None


class UserView(_Resource):
    user_id: str
    username: str
    created_at: Timestamp | None


class UserList(_Exact):
    success: Literal[True]
    users: list[UserView]
    next_cursor: str | None


class Me(_Resource):
    success: Literal[True]
    admin: bool
    user_id: str | None
    username: str | None = None
    created_at: Timestamp | None = None


# --- tables and records -----------------------------------------------------------------------

class AclView(_Exact):
    read: AclMode
    write: AclMode


class TableView(_Resource):
    name: str
    acl: AclView
    created_at: Timestamp | None
    updated_at: Timestamp | None
    records: int | None = Field(None, description="the number of records (GET of one table)")


class TableOut(_Exact):
    success: Literal[True]
    table: TableView


class TablePut(TableOut):
    created: bool


class TableList(_Exact):
    success: Literal[True]
    tables: list[TableView]
    next_cursor: str | None


class TableDropped(_Exact):
    success: Literal[True]
    message: str
    deleted_records: int


class Record(_Resource):
    """A stored JSON object with the platform's fields."""

    id: str
    created_by: str | None
    created_at: Timestamp | None
    updated_at: Timestamp | None


class RecordOut(_Exact):
    success: Literal[True]
    record: Record


class RecordPage(_Exact):
    success: Literal[True]
    records: list[Record]
    count: int
    limit: int
    offset: int
    next_cursor: str | None


class RecordDeleted(_Exact):
    success: Literal[True]
    deleted: Literal[1]
    record: Record


# --- health and the cluster -------------------------------------------------------------------

class Health(_Resource):
    success: bool
    status: Literal["ok", "degraded"]
    version: str
    sandbox: str
    node: str
    reasons: list[str] | None = Field(None, description="degraded: why")
    message: str | None = None


class NodeView(_Resource):
    id: str
    role: str
    address: str
    started_at: float
    last_seen: float
    instances: dict[str, int]
    running: dict[str, int]


class Nodes(_Exact):
    success: Literal[True]
    mode: Literal["embedded", "cluster"] = Field(description="embedded: this one process; cluster: FRAZIL_NATS_URL is set")
    nodes: list[NodeView]


# --- the console's numbers --------------------------------------------------------------------

class TierView(_Exact):
    running: int
    limit: int
    waiting: int


class DurationHistogram(_Exact):
    count: int
    sum: float = Field(description="seconds")
    buckets: list[int] = Field(description="cumulative counts per `latency_buckets_s` bound, then +Inf")


class CounterSet(_Exact):
    invocations: dict[str, int] = Field(description="finished invocations by status")
    cold_starts: int
    throttled_sync: int
    duration: DurationHistogram


class Stats(_Resource):
    success: Literal[True]
    time: float = Field(description="when sampled, in seconds since the epoch")
    tiers: dict[str, TierView]
    instances: dict[str, int]
    latency_buckets_s: list[float]
    totals: CounterSet
    functions: dict[str, CounterSet]
    queue_depth: int


class StatsSample(_Exact):
    """One interval of the last hour: counters as differences over it, gauges at its end."""

    time: float
    interval_s: float
    tiers: dict[str, int] = Field(description="running invocations per tier")
    instances: dict[str, int]
    queue_depth: int
    totals: CounterSet
    functions: dict[str, CounterSet] = Field(description="the functions that ran in the interval (the busiest)")


class StatsHistory(_Exact):
    success: Literal[True]
    interval_s: float
    latency_buckets_s: list[float]
    samples: list[StatsSample]
