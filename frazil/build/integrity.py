"""A finished layer's content digest: recorded once the build is over, checked before use.

The digest covers every entry of the tree: its relative path, its kind, its permission
bits and owner, and a file's content or a link's target. It is recorded in
`<data_dir>/layers/.digests/<key>` before the layer is renamed into place, so a layer
directory without a digest was never finished by this code (or predates it).

`verify()` answers from a per-process cache after the first check of a layer (layers are
immutable: a layer that matched once is not hashed again on every cold start); a layer that
does not match raises LayerTampered, which fails the cold start with that message, and at
deploy the layer is set aside and built again (layers.py).
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from frazil.sandbox.base import SandboxError

DIGESTS_DIR = ".digests"
CHUNK = 1 << 20

# Layers (absolute paths) that matched their digest in this process: a cold start asks for
# free (no system call) after the first check.
_verified: set[str] = set()


class LayerTampered(SandboxError):
    """A layer whose files are not what its build left."""


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):  # top-down, so sorting dirnames orders the walk
        dirnames.sort()
        for path in [dirpath, *(os.path.join(dirpath, n) for n in sorted(dirnames + filenames))]:
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISDIR(st.st_mode):
                if path != dirpath:
                    continue  # a directory is described by its own walk step
                entry = f"d\0{rel}\0{stat.S_IMODE(st.st_mode):o}\0{st.st_uid}"
            elif stat.S_ISLNK(st.st_mode):
                entry = f"l\0{rel}\0{os.readlink(path)}"
            elif stat.S_ISREG(st.st_mode):
                entry = f"f\0{rel}\0{stat.S_IMODE(st.st_mode):o}\0{st.st_uid}\0{_file_digest(path)}"
            else:
                entry = f"?\0{rel}\0{stat.S_IFMT(st.st_mode)}"
            digest.update(entry.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def digest_path(layer: Path) -> Path:
    return layer.parent / DIGESTS_DIR / layer.name


def record(tree: Path, final: Path) -> str:
    """Compute `tree`'s digest and record it for the layer that will live at `final`."""
    return record_value(tree_digest(tree), final)


def record_value(value: str, final: Path) -> str:
    """Record `value` as the digest of the layer that will live at `final` (a caller that has
    just checked the tree against it: frazil.cluster.layers)."""
    path = digest_path(final)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(value + "\n")
    os.replace(partial, path)
    _verified.add(os.path.abspath(final))
    return value


def verify(layer: Path) -> None:
    """Raise LayerTampered unless `layer` matches its recorded digest (checked once per process)."""
    key = os.path.abspath(layer)
    if key in _verified:
        return
    try:
        recorded = digest_path(layer).read_text().strip()
    except OSError:
        raise LayerTampered(f"the dependency layer {layer.name[:12]} has no recorded digest (built before "
                            "layers were checked, or never finished); redeploy to build it again") from None
    if tree_digest(Path(layer)) != recorded:
        raise LayerTampered(f"the dependency layer {layer.name[:12]} does not match its recorded digest: its "
                            "files changed after it was built; it will not be used (redeploy to build it again)")
    _verified.add(key)


def forget(layer: Path) -> None:
    _verified.discard(os.path.abspath(layer))
