"""docs/cli.md, the CLI reference, rendered from the typer app itself: each command's help as
`frazil CMD -h` gives it, in click's plain layout at a fixed width (no terminal, no colours),
so the file changes only when a command, option or help text does.

`scripts/cli_reference.py` writes the file; tests/cli/test_cli_reference.py fails while it is
out of date.
"""
from __future__ import annotations

import importlib
import types

import typer

from frazil.cli.client import __doc__ as CLIENT_DOC
from frazil.cli.errors import EXIT_STATUS
from frazil.cli.main import app

WIDTH = 100
PROG = "frazil"


def _click_of(command) -> types.ModuleType:
    """The click package the command's classes are built on: typer's own copy in recent
    versions (typer._click), the click distribution in older ones."""
    for cls in type(command).__mro__:
        if cls.__name__ == "Command" and not cls.__module__.startswith("typer.core"):
            return importlib.import_module(cls.__module__.rsplit(".", 1)[0])
    raise TypeError(f"{type(command).__name__} is not a click command")


def _help(command, ctx) -> str:
    click = _click_of(command)
    formatter = click.HelpFormatter(width=WIDTH, max_width=WIDTH)
    # click's own layout, not typer's rich panels (those are drawn for a terminal).
    click.Command.format_help(command, ctx, formatter)
    return formatter.getvalue().rstrip() + "\n"


def _section(text: str, start: str, stop: str) -> str:
    """The paragraphs of a module docstring from the one starting with `start` to `stop`."""
    return text[text.index(start):text.index(stop)].strip()


def render() -> str:
    group = typer.main.get_command(app)
    click = _click_of(group)
    root = click.Context(group, info_name=PROG, **group.context_settings)  # -h as well as --help
    parts = [
        "# The `frazil` command\n",
        "Generated from the typer app by `scripts/cli_reference.py`; do not edit by hand "
        "(`tests/cli/test_cli_reference.py` checks it). `frazil -h` and `frazil COMMAND -h` print "
        "the same help.\n",
        "## Commands\n",
        *(f"- [`{PROG} {name}`](#{PROG}-{name}): {group.commands[name].get_short_help_str(limit=200)}"
          for name in group.list_commands(root)),
        "",
        "## Server and key\n",
        _section(CLIENT_DOC, "The server is", "Everything that") + "\n",
        "## Exit status\n",
        "```text\n" + EXIT_STATUS + "```\n",
        f"## {PROG}\n",
        "```text\n" + _help(group, root) + "```\n",
    ]
    for name in group.list_commands(root):
        command = group.commands[name]
        ctx = click.Context(command, info_name=name, parent=root)
        parts += [f"## {PROG} {name}\n", "```text\n" + _help(command, ctx) + "```\n"]
    return "\n".join(parts)
