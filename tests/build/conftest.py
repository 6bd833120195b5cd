"""Fixtures for the build tests: small packages the tests make themselves (a wheel, an sdist
whose in-tree build backend misbehaves, an `npm pack` tarball), so no test needs an index."""
from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from frazil.testing import wheels


def _write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


@pytest.fixture(scope="session")
def make_wheel():
    """make_wheel(name, version, body) -> bytes of a pure-Python wheel holding package `name`
    (frazil.testing.wheels: offline, no index needed)."""
    return wheels.make_wheel


@pytest.fixture
def write_tree():
    """write_tree(root, {relative path: text or bytes}) -> root"""
    return _write_tree


@pytest.fixture
def backend_sdist():
    """backend_sdist(name, backend_source) -> bytes of an sdist with an in-tree build backend."""
    return _backend_sdist


def _backend_sdist(name: str, backend_source: str) -> bytes:
    """An sdist whose in-tree build backend is `backend_source` (needs nothing from an index)."""
    files = {
        "pyproject.toml": (
            "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n"
            f"[project]\nname = \"{name}\"\nversion = \"1.0\"\n"),
        "backend.py": backend_source,
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-1.0/{rel}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="session")
def npm_tarball(tmp_path_factory):
    """npm_tarball(name, source) -> bytes of an `npm pack` tarball of a one-file package."""
    cache: dict[tuple, bytes] = {}

    def make(name: str = "tiny-dep", source: str = "module.exports = (s) => 'tiny:' + s;\n") -> bytes:
        key = (name, source)
        if key not in cache:
            src = tmp_path_factory.mktemp(f"{name}-pkg")
            _write_tree(src, {"package.json": f'{{"name": "{name}", "version": "1.0.0", "main": "index.js"}}',
                             "index.js": source})
            out = tmp_path_factory.mktemp(f"{name}-tgz")
            subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(out)], cwd=src, check=True,
                           capture_output=True, timeout=120)
            (tgz,) = out.glob("*.tgz")
            cache[key] = tgz.read_bytes()
        return cache[key]

    return make
