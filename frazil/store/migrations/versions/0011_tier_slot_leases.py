"""Cluster mode: tier slots leased to nodes in blocks (frazil.cluster.slots), so that a tier's
limit holds for the whole cluster. Self-contained: it only creates its own table.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tier_slot_leases",
        sa.Column("tier_mb", sa.Integer(), primary_key=True),
        sa.Column("node", sa.String(128), primary_key=True),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("wanted", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tier_slot_leases")
