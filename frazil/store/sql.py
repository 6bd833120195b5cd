"""Small SQL helpers that differ between SQLite and PostgreSQL."""
from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def insert_ignore(conn: AsyncConnection, table: Table, values: dict):
    """INSERT ... ON CONFLICT DO NOTHING, in the connection's dialect."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    return conn.execute(dialect.insert(table).values(**values).on_conflict_do_nothing())
