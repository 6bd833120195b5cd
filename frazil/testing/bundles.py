"""Code bundles to deploy, made in memory: the zip and tar.gz that `PUT /v1/functions/{name}`
accepts, from a dict of files or from a folder."""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

# Never part of a bundle made from a folder: caches, and installed dependencies (the platform
# builds those from the manifest).
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})


def zip_files(files: dict[str, str | bytes]) -> bytes:
    """A zip holding `files` (path in the bundle -> content)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def tar_files(files: dict[str, str | bytes]) -> bytes:
    """A tar.gz holding `files` (path in the bundle -> content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def folder_files(root: Path) -> dict[str, bytes]:
    """Every file under `root` (sorted, `SKIPPED_DIRS` left out), keyed by its POSIX path in `root`."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not SKIPPED_DIRS & set(p.relative_to(root).parts)}
