"""What the `frazil` command exits with, and the errors that decide it.

The exit statuses are stated once, in `ExitCode` and `EXIT_STATUS` below (`frazil -h` and
docs/cli.md show them). Commands raise `CliError` (or `UsageProblem`); `FrazilGroup` turns it
into one line on stderr and the exit status, in one place, as click's exceptions know their
own exit code and how to show themselves. click's own usage errors (a missing argument, a bad
option value) exit 2 too.
"""
from __future__ import annotations

import enum
import sys

import typer
from typer.core import TyperGroup


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2


EXIT_STATUS = """\
0  OK      the command did what it was asked (an invocation succeeded, a version is active)
1  FAILED  it was understood but did not succeed: the invocation or the build failed, the
           server refused or could not be reached
2  USAGE   the command line or its inputs are wrong (an unknown flag or frazil.toml key,
           --data that is not JSON, `rm` without --yes and without a terminal, a server
           that cannot start with its configuration or on a data dir in use); nothing was done
"""
EXIT_CODES_HELP = "Exit status: 0 ok, 1 the invocation, deploy or request failed, 2 a usage error."


class CliError(Exception):
    """Shown to the user as one line on stderr; the command exits with `exit_code`."""

    exit_code: int = ExitCode.FAILED

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def show(self) -> None:
        # Plain text, no markup: messages quote user input and server text verbatim.
        sys.stderr.write(f"error: {self.message}\n")
        sys.stderr.flush()


class UsageProblem(CliError):
    """The command line or an input it names is wrong; nothing was sent or done."""

    exit_code = ExitCode.USAGE


class FrazilGroup(TyperGroup):
    """The one place a `CliError` becomes output and an exit status (see the module docstring)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CliError as exc:
            exc.show()
            raise typer.Exit(int(exc.exit_code)) from None
