"""Calls between functions: how many calls deep an invocation is (`invocations.depth`), kept on
the record so that an async call's chain is still counted when the dispatcher runs it later.
Records from before have NULL, read as 0.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invocations", sa.Column("depth", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invocations") as batch:
        batch.drop_column("depth")
