"""Where things are: the checkout, its venv, and where results go."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
FRAZIL = VENV_BIN / "frazil"
RESULTS_DIR = REPO / "bench" / "results"
