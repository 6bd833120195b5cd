"""Alembic's environment: runs the migrations on the connection `frazil.store.migrate` passes in
`config.attributes["connection"]`, inside that connection's transaction (so a PostgreSQL upgrade
is all-or-nothing, and the caller's lock is held throughout)."""
from alembic import context

import frazil.data.schema  # noqa: F401  (registers the BaaS tables on `metadata`)
from frazil.store.schema import metadata

if context.is_offline_mode():
    raise RuntimeError("frazil's migrations run online only, through frazil.store.migrate")

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
