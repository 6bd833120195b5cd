"""Every table of the platform's metadata, in one MetaData (STYLE habit 4).

Times are epoch seconds (float): cheap to compare, the same on SQLite and PostgreSQL; the
API renders them as ISO 8601. Code bundles live in the blob store, keyed by content hash.
The BaaS data tables (frazil.data.schema) register themselves on the same `metadata`.

A change here ships with a migration (frazil/store/migrations; a test compares the two).
"""
from sqlalchemy import (BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData,
                        String, Table, Text)

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
    Column("access", String(8), nullable=False),  # Access
    Column("http", Boolean, nullable=False),  # an HTTP endpoint at /fn/{name}
    Column("triggers", Text, nullable=True),  # JSON list (frazil.deploy.config); None = none (0009)
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
    Column("event", Text, nullable=True),  # JSON; None when larger than the payload limit
    Column("result", Text, nullable=True),  # JSON
    Column("error", Text, nullable=True),  # JSON {"type", "message", "stack"}
    Column("logs", Text, nullable=True),
    Column("next_attempt_at", Float, nullable=True),  # async: not before this time
    Column("expires_at", Float, nullable=True),  # async: end of the throttle retry window
    Column("owner", String(64), nullable=True),  # async: the node that claimed it
    # async, running: the claim lapses then and any dispatcher takes the row back (migration 0009)
    Column("lease_until", Float, nullable=True),
    Column("trigger", String(16), nullable=True),  # Trigger; None on records from before 0003
    Column("node", String(128), nullable=True),  # the invoker that ran it
    Column("caller", Text, nullable=True),  # JSON {"id", "username"}: the end user who called
    Column("retry_of", String(32), nullable=True),  # the record whose event this one replays
    Column("depth", Integer, nullable=True),  # calls between functions above it; None (old records) = 0
    # Lists and retention read a function's records in id order (migration 0002).
    Index("ix_invocations_function_id", "function", "id"),
    Index("ix_invocations_status_next", "status", "next_attempt_at"),
)

# One row per schedule tick that fired (frazil.scheduler.schedules). The primary key is the
# exactly-once claim: every node that runs schedules INSERTs the tick before queueing its
# invocation, and only the node whose INSERT went in queues it. Rows older than an hour go.
schedule_ticks = Table(
    "schedule_ticks",
    metadata,
    Column("function", String(63), primary_key=True),
    Column("trigger", Integer, primary_key=True),  # the index in the version's `triggers`
    Column("tick_at", Float, primary_key=True),  # the tick's time (epoch seconds, whole)
    Column("node", String(128), nullable=False),  # the node that claimed it
    Column("invocation", String(32), nullable=True),  # its record, once queued
    Column("claimed_at", Float, nullable=False),
)

# --- Cluster mode (frazil.cluster.blobs, frazil.cluster.layers): bundles and dependency layers
# shared by every node, content-addressed. Empty in the embedded mode (its blobs are files).
# A blob is complete exactly when its `blobs` row exists: the row is inserted in the same
# transaction as the last of its chunks, so a reader never sees half a blob.
blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),  # hex digest of the whole content
    Column("size", BigInteger, nullable=False),
    Column("chunks", Integer, nullable=False),  # rows in blob_chunks, seq 0..chunks-1
    Column("created_at", Float, nullable=False),
)

blob_chunks = Table(
    "blob_chunks",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),  # at most frazil.cluster.blobs.CHUNK_BYTES
)

# A dependency layer built for the cluster: its key (frazil.build.manifest), the blob of its
# tarball and the tree digest its builder recorded (frazil.build.integrity), which every node
# checks its unpacked copy against.
shared_layers = Table(
    "shared_layers",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("blob", String(64), nullable=False),
    Column("tree_digest", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

# Cluster mode (frazil.cluster.slots): the tier slots each node holds a lease on. One row per
# (tier, node); the rows of a tier change only under its advisory lock, and the sum of `slots`
# over a tier's rows with `expires_at` in the future never exceeds the tier's limit.
tier_slot_leases = Table(
    "tier_slot_leases",
    metadata,
    Column("tier_mb", Integer, primary_key=True),
    Column("node", String(128), primary_key=True),
    Column("slots", Integer, nullable=False),  # leased to this node
    Column("wanted", Integer, nullable=False),  # more the node waits for (a hint to give spares back)
    Column("expires_at", Float, nullable=False),  # the database's clock (epoch seconds)
)
