"""Render README.md's configuration table from the fields of `frazil.settings.Settings`.

Run `.venv/bin/python scripts/settings_table.py` after adding or changing a setting; the table
lives between the two markers below, and tests/test_settings.py fails while it is out of date.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, no install needed

from frazil.settings import env_table  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- settings table: generated from frazil/settings.py by scripts/settings_table.py -->\n"
END = "<!-- end of settings table -->\n"


def splice(readme: str, table: str | None = None) -> str:
    """`readme` with the text between the markers replaced by `table` (default: the current one)."""
    head, begin, rest = readme.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"README.md lacks the markers {BEGIN.strip()} and {END.strip()}")
    return head + BEGIN + (env_table() if table is None else table) + END + tail


if __name__ == "__main__":
    README.write_text(splice(README.read_text()))
