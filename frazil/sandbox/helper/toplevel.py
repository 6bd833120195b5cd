"""The importable top-level names of a Python dependency layer, read from the metadata of the
distributions installed in it (never guessed from the folder's listing).

A layer is a `pip install --target` tree: each distribution left a `<name>-<version>.dist-info`
folder next to its packages. Per distribution:
- `top_level.txt`, when the installer wrote one (setuptools builds), lists its top-level
  names, one per line;
- otherwise (wheels from other build backends: numpy and pandas are built with meson and have
  none) the first path component of every file in `RECORD` that lies inside the layer: a
  package folder, a `name.py` module or a `name.<tag>.so` extension module.
Names that are not Python identifiers (`numpy.libs`, a `.data` or `.dist-info` folder, files
installed outside the layer such as `../../bin/x`) and `__pycache__` are not importable and are
left out; so are names no file of the layer backs (a stale top_level.txt).

Why: an instance that imports a layer's packages before it is given a function (issue 15)
must import exactly what the layer installed: a wrong guess would run code nobody asked for.
Standard library only (it runs in zygote children, in the launcher's process image).
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

DIST_INFO_SUFFIX = ".dist-info"
NOT_MODULES = {"__pycache__"}
EXTENSION_SUFFIXES = (".so", ".pyd")


def top_level_names(layer_dir: str | os.PathLike) -> list[str]:
    """Sorted, distinct importable top-level names of every distribution in `layer_dir`."""
    layer = Path(layer_dir)
    names: set[str] = set()
    for dist_info in sorted(layer.glob("*" + DIST_INFO_SUFFIX)):
        if dist_info.is_dir():
            names.update(distribution_names(dist_info))
    return sorted(n for n in names if _backed(layer, n))


def distribution_names(dist_info: Path) -> set[str]:
    """One distribution's top-level names: its top_level.txt, else its RECORD's first components."""
    top_level = dist_info / "top_level.txt"
    if top_level.is_file():
        lines = top_level.read_text(encoding="utf-8", errors="replace").splitlines()
        return {n for n in (line.strip().replace("/", ".").split(".")[0] for line in lines) if _importable(n)}
    record = dist_info / "RECORD"
    if not record.is_file():
        return set()
    names = set()
    for row in csv.reader(io.StringIO(record.read_text(encoding="utf-8", errors="replace"))):
        name = _module_of(row[0]) if row else None
        if name is not None:
            names.add(name)
    return names


def _module_of(path: str) -> str | None:
    """The top-level module a RECORD path belongs to, or None (metadata, scripts, data)."""
    parts = path.replace("\\", "/").split("/")
    first = parts[0]
    if len(parts) > 1:  # a file inside a folder: the folder is the package
        return first if _importable(first) else None
    stem, dot, suffix = first.partition(".")
    if suffix == "py" or (dot and ("." + suffix.rsplit(".", 1)[-1]) in EXTENSION_SUFFIXES):
        return stem if _importable(stem) else None
    return None  # a lone .pth, a data file at the top


def _importable(name: str) -> bool:
    return name.isidentifier() and name not in NOT_MODULES


def _backed(layer: Path, name: str) -> bool:
    """Some file of the layer provides `name`: its package folder, its .py, or an extension."""
    if (layer / name).is_dir() or (layer / f"{name}.py").is_file():
        return True
    return any(p.name.startswith(name + ".") and p.suffix in EXTENSION_SUFFIXES for p in layer.glob(name + ".*"))
