"""Schedules: a version's `triggers` (JSON, NULL on versions from before), and the table of
schedule ticks that fired, whose primary key makes each tick fire once whatever number of
nodes run schedules (frazil.scheduler.schedules).

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("versions", sa.Column("triggers", sa.Text(), nullable=True))
    op.create_table(
        "schedule_ticks",
        sa.Column("function", sa.String(63), primary_key=True),
        sa.Column("trigger", sa.Integer(), primary_key=True),
        sa.Column("tick_at", sa.Float(), primary_key=True),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("invocation", sa.String(32), nullable=True),
        sa.Column("claimed_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schedule_ticks")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("triggers")
