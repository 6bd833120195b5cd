"""The BaaS tables, registered on the platform's one `metadata` (STYLE habit 4).

All data tables share one `data_records` table, keyed by (table, id): creating a data table is
one metadata row, never DDL, so it works the same on SQLite and PostgreSQL and inside a
transaction. The user's fields live in one JSON column (JSONB on PostgreSQL, for its operators);
the platform's fields (id, created_by, created_at, updated_at) are real columns so they can be
indexed. Times are epoch seconds, like the rest of the store.
"""
import orjson
from sqlalchemy import Column, Float, Index, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from frazil.store.schema import metadata


class JsonDocument(TypeDecorator):
    """A JSON object: JSONB on PostgreSQL; on SQLite, compact UTF-8 JSON text written and read
    with orjson (what the JSON1 functions read, and what the size limit measures)."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else Text())

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name == "postgresql":
            return value  # JSONB serializes it
        return orjson.dumps(value).decode()

    def process_result_value(self, value, dialect):
        if value is None or not isinstance(value, (str, bytes)):
            return value
        return orjson.loads(value)


data_tables = Table(
    "data_tables",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("read_acl", String(16), nullable=False),  # an AclMode value
    Column("write_acl", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

data_records = Table(
    "data_records",
    metadata,
    # No foreign key to data_tables: dropping a table deletes its records explicitly, in the
    # same transaction, and an insert that auto-creates its table needs no ordering games.
    Column("table_name", String(63), primary_key=True),
    Column("id", String(32), primary_key=True),  # frazil.store.ids.new_id: time-ordered
    Column("created_by", String(32), nullable=True),  # a user id; None for the admin or anonymous
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("data", JsonDocument(), nullable=False),
    Index("ix_data_records_table_created_at", "table_name", "created_at"),
    Index("ix_data_records_table_created_by", "table_name", "created_by"),
)

data_users = Table(
    "data_users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),  # stored lower-cased
    Column("password_hash", String(255), nullable=False),  # argon2id, self-describing
    Column("created_at", Float, nullable=False),
)

# Only the SHA-256 of a token is stored: a leaked database does not leak live sessions.
data_tokens = Table(
    "data_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_data_tokens_user", "user_id"),
)
