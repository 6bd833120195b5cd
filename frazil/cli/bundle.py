"""Packing a function folder into a zip, and reading its frazil.toml."""
from __future__ import annotations

import io
import os
import tomllib
import zipfile
from pathlib import Path

from frazil.cli.client import CliError

SKIP_DIRS = {".git", ".hg", "__pycache__", ".venv", "venv", "node_modules", ".frazil", ".pytest_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")


def zip_folder(root: Path) -> tuple[bytes, int]:
    """The folder as a zip (dependencies are built by the platform, so node_modules and
    virtualenvs stay home); returns (bytes, number of files)."""
    buf = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for filename in sorted(filenames):
                if filename.endswith(SKIP_SUFFIXES):
                    continue
                path = Path(dirpath) / filename
                if path.is_symlink() or not path.is_file():
                    continue
                zf.write(path, path.relative_to(root).as_posix())
                count += 1
    if count == 0:
        raise CliError(f"{root} holds no files to deploy")
    return buf.getvalue(), count


def read_toml(root: Path) -> dict:
    """Settings from PATH/frazil.toml (top level or a [function] table)."""
    path = root / "frazil.toml"
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"{path}: {exc}") from None
    return data.get("function", data)

