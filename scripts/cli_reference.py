"""Write docs/cli.md, the CLI reference, from the typer app (see frazil/cli/reference.py).

Run `.venv/bin/python scripts/cli_reference.py` after changing a command, an option or a help
text; tests/cli/test_cli_reference.py fails while the file is out of date.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere, no install needed

from frazil.cli.reference import render  # noqa: E402

DOC = ROOT / "docs" / "cli.md"

if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
