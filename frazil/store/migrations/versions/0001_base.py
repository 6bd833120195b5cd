"""Base: the schema of the last release without migrations.

That release (commit 5729510) made it with `metadata.create_all`. Frozen: a data dir made by
that release is stamped at this revision instead of running it, so this file must keep
describing exactly that schema.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# frazil.data.schema.JsonDocument's storage, spelled out: JSONB on PostgreSQL, text elsewhere.
JSON_DOCUMENT = sa.Text().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "functions",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("active_version", sa.Integer, nullable=True),
        sa.Column("last_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("function", sa.String(63), sa.ForeignKey("functions.name", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("handler", sa.String(255), nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("timeout_s", sa.Float, nullable=False),
        sa.Column("env", sa.Text, nullable=False),
        sa.Column("resident", sa.Integer, nullable=False),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("bundle_hash", sa.String(64), nullable=False),
        sa.Column("bundle_bytes", sa.Integer, nullable=False),
        sa.Column("layer_key", sa.String(64), nullable=True),
        sa.Column("build_log", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
    )
    op.create_table(
        "invocations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("function", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cold", sa.Boolean, nullable=True),
        sa.Column("instance_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=True),
        sa.Column("event", sa.Text, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("logs", sa.Text, nullable=True),
        sa.Column("next_attempt_at", sa.Float, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("owner", sa.String(64), nullable=True),
    )
    op.create_index("ix_invocations_function_created", "invocations", ["function", "created_at"])
    op.create_index("ix_invocations_status_next", "invocations", ["status", "next_attempt_at"])

    op.create_table(
        "data_tables",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("read_acl", sa.String(16), nullable=False),
        sa.Column("write_acl", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "data_records",
        sa.Column("table_name", sa.String(63), primary_key=True),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_by", sa.String(32), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("data", JSON_DOCUMENT, nullable=False),
    )
    op.create_index("ix_data_records_table_created_at", "data_records", ["table_name", "created_at"])
    op.create_index("ix_data_records_table_created_by", "data_records", ["table_name", "created_by"])
    op.create_table(
        "data_users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "data_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_data_tokens_user", "data_tokens", ["user_id"])


def downgrade() -> None:
    for table in ("data_tokens", "data_users", "data_records", "data_tables", "invocations", "versions",
                  "functions"):
        op.drop_table(table)
