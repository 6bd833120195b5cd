"""`db`: the BaaS data tables, with admin rights (table ACLs do not apply to functions).

Filters (`where`) use the platform's filter language: {"field": value} or
{"field": {"eq"|"ne"|"lt"|"lte"|"gt"|"gte"|"in"|"contains": value}}, several fields ANDed.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, TypedDict

Record = dict[str, Any]
"""A stored record: the caller's fields plus "id", "created_by", "created_at", "updated_at"."""
Where = Optional[dict[str, Any]]
AclMode = Literal["public", "authenticated", "owner", "admin"]


class Acl(TypedDict, total=False):
    read: AclMode
    write: AclMode


def _where(where: Where) -> dict[str, Any]:
    return {} if where is None else where


class Table:
    """One table. Every method is one call to the platform."""

    def __init__(self, runner: Any, name: str) -> None:
        self._run = runner.run
        self.name = name

    def insert(self, record: dict[str, Any]) -> Record:
        """Store a new record; answers it with its "id", "created_at" and "updated_at"."""
        return self._run("db.insert", {"table": self.name, "record": record})

    def find(self, where: Where = None, *, limit: int = 100, offset: int = 0,
             order: str | None = None) -> list[Record]:
        """The records matching `where` (all when None), sorted by `order` ("field",
        "-field" descending, or a comma-separated list; default: creation order)."""
        return self._run("db.find", {"table": self.name, "where": _where(where), "limit": limit,
                                     "offset": offset, "order": order})

    def find_one(self, where: Where = None, *, order: str | None = None) -> Record | None:
        """The first record matching `where`, or None."""
        return self._run("db.find", {"table": self.name, "where": _where(where), "limit": 1, "offset": 0,
                                     "order": order}, lambda rows: rows[0] if rows else None)

    def get(self, record_id: str) -> Record:
        """The record with this id; SdkError (type "NotFound") when there is none."""
        return self._run("db.get", {"table": self.name, "id": record_id})

    def count(self, where: Where = None) -> int:
        """How many records match `where` (all when None)."""
        return self._run("db.count", {"table": self.name, "where": _where(where)})

    def update(self, where: dict[str, Any], patch: dict[str, Any] | None = None, *,
               ops: dict[str, Any] | None = None) -> int:
        """Set the patch's fields on every record matching `where` ({} = every record) and apply
        the atomic `ops` ({"n": {"inc": 1}, "tags": {"push": [...]}, "old": {"remove": True}});
        answers how many changed."""
        fields = {"table": self.name, "where": where, "patch": patch}
        if ops is not None:
            fields["ops"] = ops
        return self._run("db.update", fields)

    def delete(self, where: dict[str, Any]) -> int:
        """Delete every record matching `where` ({} = every record); answers how many."""
        return self._run("db.delete", {"table": self.name, "where": where})

    def __repr__(self) -> str:
        return f"Table({self.name!r})"


class Database:
    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self._run = runner.run

    def table(self, name: str) -> Table:
        """A handle on a table (no call is made). Inserting into a table that does not
        exist creates it, closed to everyone but the admin (ACL admin/admin)."""
        if not isinstance(name, str):
            raise TypeError(f"a table name is a string, not {type(name).__name__}")
        return Table(self._runner, name)

    __getitem__ = table

    def create_table(self, name: str, acl: Acl | None = None) -> dict[str, Any]:
        """Create a table with an ACL like {"read": "public", "write": "owner"} (a missing
        mode is "admin"); SdkError (type "Conflict") when it exists."""
        return self._run("db.create_table", {"table": name, "acl": acl})

    def set_acl(self, name: str, acl: Acl) -> dict[str, Any]:
        """Create the table or replace its ACL."""
        return self._run("db.set_acl", {"table": name, "acl": acl})

    def drop(self, name: str) -> int:
        """Delete the table and all its records; answers how many records went."""
        return self._run("db.drop", {"table": name})

    def tables(self) -> list[dict[str, Any]]:
        """Every table with its ACL and record count."""
        return self._run("db.tables", {})
