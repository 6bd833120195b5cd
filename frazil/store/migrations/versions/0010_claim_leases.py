"""Async claims are leases (issue 11): `invocations.lease_until`, the time a running async
invocation's claim lapses and any dispatcher may take it back. Rows from before have NULL:
they come back as before, through the orphan sweep at start.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invocations", sa.Column("lease_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invocations") as batch:
        batch.drop_column("lease_until")
