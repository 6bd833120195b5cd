"""A function may answer HTTP at /fn/{name} (`versions.http`); existing versions do not.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("versions", sa.Column("http", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("versions") as batch:
        batch.alter_column("http", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("http")
