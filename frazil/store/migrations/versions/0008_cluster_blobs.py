"""Cluster mode: bundles and dependency layers shared in the database, content-addressed.

Self-contained (it only creates its own tables), so it can be re-chained after any other
migration.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "blob_chunks",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "shared_layers",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("blob", sa.String(64), nullable=False),
        sa.Column("tree_digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("shared_layers")
    op.drop_table("blob_chunks")
    op.drop_table("blobs")
