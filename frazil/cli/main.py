"""The `frazil` command: the typer app with every command module added to it.

Client commands are thin: they call the HTTP API through one `Client` (frazil.cli.client), and
refuse with one line and an exit status from frazil.cli.errors.
"""
from __future__ import annotations

from frazil.cli.app import app
# Imported for their side effect: each module adds its commands to `app`, in this order.
from frazil.cli.commands import server, functions, invocations, data  # noqa: F401,E402

__all__ = ["app"]

if __name__ == "__main__":
    app()
