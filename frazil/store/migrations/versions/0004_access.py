"""Who may invoke a function: `versions.access` (admin, user, public) replaces the boolean
`public`, which meant access = "public"; and the end user who called, on the record
(`invocations.caller`; not `user`, a reserved word in PostgreSQL), so that a queued invocation
still knows it when it runs.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("versions", sa.Column("access", sa.String(length=8), nullable=False, server_default="admin"))
    op.execute("UPDATE versions SET access = 'public' WHERE public")
    # SQLite cannot drop a column in place: batch mode copies the table.
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("public")
        batch.alter_column("access", server_default=None)
    op.add_column("invocations", sa.Column("caller", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invocations") as batch:
        batch.drop_column("caller")
    op.add_column("versions", sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE versions SET public = (access = 'public')")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("access")
        batch.alter_column("public", server_default=None)
