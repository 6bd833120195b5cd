"""Every table of the platform's metadata, in one MetaData (STYLE habit 4).

Times are epoch seconds (float): cheap to compare, the same on SQLite and PostgreSQL; the
API renders them as ISO 8601. Code bundles live in the blob store, keyed by content hash.
The BaaS data tables (frazil.data.schema) register themselves on the same `metadata`.
"""
from sqlalchemy import Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

functions = Table(
    "functions",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("active_version", Integer, nullable=True),  # None until the first build succeeds
    Column("last_version", Integer, nullable=False, default=0),  # allocates version numbers
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One row per deploy. Settings live on the version, so a version is immutable as a whole.
versions = Table(
    "versions",
    metadata,
    Column("function", String(63), ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("status", String(16), nullable=False),  # VersionStatus
    Column("runtime", String(32), nullable=False),
    Column("handler", String(255), nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("timeout_s", Float, nullable=False),
    Column("env", Text, nullable=False),  # JSON object
    Column("resident", Integer, nullable=False),
    Column("public", Boolean, nullable=False),
    Column("bundle_hash", String(64), nullable=False),
    Column("bundle_bytes", Integer, nullable=False),
    Column("layer_key", String(64), nullable=True),
    Column("build_log", Text, nullable=False, default=""),
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
)

invocations = Table(
    "invocations",
    metadata,
    Column("id", String(32), primary_key=True),  # time-ordered: see frazil.store.ids
    Column("function", String(63), nullable=False),
    Column("version", Integer, nullable=True),
    Column("mode", String(8), nullable=False),  # "sync" | "async"
    Column("status", String(16), nullable=False),  # InvocationStatus
    Column("attempts", Integer, nullable=False, default=0),
    Column("cold", Boolean, nullable=True),
    Column("instance_id", String(32), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("event", Text, nullable=True),  # kept for async invocations only (they run later)
    Column("result", Text, nullable=True),  # JSON
    Column("error", Text, nullable=True),  # JSON {"type", "message", "stack"}
    Column("logs", Text, nullable=True),
    Column("next_attempt_at", Float, nullable=True),  # async: not before this time
    Column("expires_at", Float, nullable=True),  # async: end of the throttle retry window
    Column("owner", String(64), nullable=True),  # async: the node that claimed it
    Index("ix_invocations_function_created", "function", "created_at"),
    Index("ix_invocations_status_next", "status", "next_attempt_at"),
)
