"""Commands on the data tables: tables, records."""
from __future__ import annotations

import json
from typing import Optional

import typer

from frazil.cli.app import app
from frazil.cli.client import Client
from frazil.cli.errors import UsageProblem
from frazil.cli.output import JSON_OPTION, print_json, print_table, show

# The platform's own fields of a record; the rest is the user's data.
PLATFORM_FIELDS = ("id", "created_by", "created_at", "updated_at")


@app.command()
def tables(as_json: bool = JSON_OPTION):
    """List the data tables with their ACLs."""
    body = Client().get("/v1/tables")
    if as_json:
        print_json(body)
        return
    print_table(["TABLE", "READ", "WRITE", "RECORDS", "CREATED"],
                [[t["name"], t["acl"]["read"], t["acl"]["write"], show(t.get("records")), t["created_at"]]
                 for t in body["tables"]])


@app.command()
def records(table: str = typer.Argument(..., help="Table name"),
            where: Optional[str] = typer.Option(None, help='A JSON filter, e.g. \'{"age": {"gte": 18}}\''),
            order: Optional[str] = typer.Option(None, help='Sort keys, e.g. "-created_at" or "name,-age"'),
            limit: int = typer.Option(100, min=1, max=1000, help="How many records to show"),
            as_json: bool = JSON_OPTION):
    """Find records of a table (as the admin: every record, whatever the ACL)."""
    params: dict = {"limit": limit}
    if where is not None:
        try:
            json.loads(where)
        except ValueError as exc:
            raise UsageProblem(f"--where is not valid JSON: {exc}") from None
        params["where"] = where
    if order is not None:
        params["order"] = order
    body = Client().get(f"/v1/tables/{table}/records", params=params)
    if as_json:
        print_json(body)
        return
    print_table(["ID", "CREATED", "DATA"],
                [[r["id"], show(r.get("created_at")),
                  json.dumps({k: v for k, v in r.items() if k not in PLATFORM_FIELDS}, ensure_ascii=False)]
                 for r in body["records"]])
