"""How commands print: data on stdout (a table for people, JSON with --json), everything else
(progress, confirmations, build logs) on stderr, so `frazil ... --json | jq` sees only data."""
from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

# Piped output is not a terminal: give tables room instead of cutting names short.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

JSON_OPTION = typer.Option(False, "--json", help="Print the server's answer as JSON")


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def note(message: str) -> None:
    """A line for the person at the terminal (stderr; no markup is read from `message`)."""
    err.print(message, highlight=False, markup=False)


def show(value) -> str:
    """A cell: None as '-', booleans as yes/no."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
