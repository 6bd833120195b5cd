"""The typer application every command module adds itself to (frazil.cli.main assembles it)."""
from __future__ import annotations

from typing import Optional

import typer

from frazil import __version__
from frazil.cli.errors import EXIT_CODES_HELP, FrazilGroup

app = typer.Typer(
    cls=FrazilGroup,
    help=f"frazil: self-hosted serverless cloud functions.\n\n{EXIT_CODES_HELP}",
    no_args_is_help=True,
    # -h as well as --help, on every command.
    context_settings={"help_option_names": ["-h", "--help"]},
    # Completion stays on: `frazil --install-completion` installs it for the user's shell.
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"frazil {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                 help="Print frazil's version and exit")) -> None:
    pass  # the options above act through their callbacks; the help text is the app's
