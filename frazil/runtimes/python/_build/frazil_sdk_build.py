"""A PEP 517 build backend for frazil_sdk, in the standard library only.

Why not setuptools: `pip install frazil/runtimes/python` must work offline, in a fresh venv,
with nothing to download. Build isolation installs the backend's requirements from an index,
and a fresh venv's setuptools cannot build a wheel without the `wheel` package; this backend
needs neither, so pip installs the SDK with no network and no flags.

The package is plain Python files (frazil_sdk/*.py and py.typed); the metadata is the
[project] table of ../pyproject.toml. Archive entries carry a fixed time, so a build is the
same bytes each time.
"""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the folder of pyproject.toml
PACKAGE = "frazil_sdk"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can say
FIXED_EPOCH = 315532800  # the same moment, for tar entries


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _dist_name() -> str:
    return _project()["name"].replace("-", "_")


def _metadata() -> str:
    project = _project()
    return (f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
            f"Summary: {project.get('description', '')}\nRequires-Python: {project.get('requires-python', '')}\n")


def _package_files() -> list[Path]:
    """The files a wheel ships: the package's modules and its py.typed marker."""
    files = sorted(p for p in (ROOT / PACKAGE).iterdir() if p.is_file() and (p.suffix == ".py" or p.name == "py.typed"))
    if not files:
        raise RuntimeError(f"no files in {ROOT / PACKAGE}")
    return files


def _wheel(wheel_directory: str, entries: dict[str, bytes]) -> str:
    """Write a py3-none-any wheel of `entries` (archive name -> bytes) plus its dist-info."""
    project = _project()
    dist_info = f"{_dist_name()}-{project['version']}.dist-info"
    entries = dict(entries)
    entries[f"{dist_info}/METADATA"] = _metadata().encode()
    entries[f"{dist_info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: frazil_sdk_build\n"
                                     b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = []
    for name, data in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    entries[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    filename = f"{_dist_name()}-{project['version']}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return filename


# --- the PEP 517 / PEP 660 hooks -----------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {f"{PACKAGE}/{p.name}": p.read_bytes() for p in _package_files()})


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """A wheel whose .pth file puts this folder on sys.path: edits show without reinstalling."""
    return _wheel(wheel_directory, {f"{_dist_name()}.pth": f"{ROOT}\n".encode()})


def build_sdist(sdist_directory, config_settings=None):
    project = _project()
    base = f"{_dist_name()}-{project['version']}"
    files = {"pyproject.toml": ROOT / "pyproject.toml", "_build/frazil_sdk_build.py": Path(__file__).resolve(),
             **{f"{PACKAGE}/{p.name}": p for p in _package_files()}}
    filename = f"{base}.tar.gz"
    with tarfile.open(Path(sdist_directory) / filename, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for name, data in [("PKG-INFO", _metadata().encode()), *((n, p.read_bytes()) for n, p in files.items())]:
            info = tarfile.TarInfo(f"{base}/{name}")
            info.size, info.mtime, info.mode = len(data), FIXED_EPOCH, 0o644
            archive.addfile(info, io.BytesIO(data))
    return filename
