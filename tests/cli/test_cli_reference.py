"""docs/cli.md is the CLI reference rendered from the typer app (scripts/cli_reference.py)."""
from pathlib import Path

import typer

from frazil.cli.main import app
from frazil.cli.reference import render

DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "cli.md"


def test_the_reference_matches_the_app():
    """Run `.venv/bin/python scripts/cli_reference.py` when this fails."""
    assert DOC.read_text() == render()


def test_every_command_and_option_is_in_it():
    text = render()
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f"\n## frazil {name}\n" in text and f"(#frazil-{name})" in text
        for param in command.params:
            for opt in param.opts if param.param_type_name == "option" else ():
                assert opt in text, (name, opt)
