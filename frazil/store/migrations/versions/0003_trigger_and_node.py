"""Invocation records say what fired them (`trigger`) and which invoker ran them (`node`).

Records from before this revision keep NULL in both: the store reads a NULL trigger as `api`,
the only source there was.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invocations", sa.Column("trigger", sa.String(length=16), nullable=True))
    op.add_column("invocations", sa.Column("node", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invocations") as batch:
        batch.drop_column("node")
        batch.drop_column("trigger")
