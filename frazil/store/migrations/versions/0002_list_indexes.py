"""Indexes in the order the lists read: invocations by (function, id).

A function's invocations list newest first by id (ids are time-ordered), and retention counts
them the same way; the index on (function, created_at) could not serve that order, so listing 50
of a function's 90,000 records sorted them all. Nothing queried by created_at: it goes.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_invocations_function_id", "invocations", ["function", "id"], if_not_exists=True)
    op.drop_index("ix_invocations_function_created", table_name="invocations", if_exists=True)


def downgrade() -> None:
    op.create_index("ix_invocations_function_created", "invocations", ["function", "created_at"])
    op.drop_index("ix_invocations_function_id", table_name="invocations")
