"""What `frazil deploy PATH` uploads: a folder packed into a zip, or an archive sent as it is;
and the deploy settings of its frazil.toml."""
from __future__ import annotations

import difflib
import io
import os
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from frazil.cli.errors import UsageProblem
from frazil.deploy.config import DeployConfig

SKIP_DIRS = {".git", ".hg", "__pycache__", ".venv", "venv", "node_modules", ".frazil", ".pytest_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")
TOML_NAME = "frazil.toml"
# The archives the server unpacks (frazil.build.unpack), by how their name ends.
ARCHIVE_SUFFIXES = {".zip": "application/zip", ".tar.gz": "application/gzip", ".tgz": "application/gzip",
                    ".tar": "application/x-tar"}
# The keys frazil.toml may hold: the function's name and every deploy setting the server
# knows. Taken from DeployConfig, so a setting added there is accepted here at once.
TOML_KEYS = frozenset({"name", *DeployConfig.model_fields})


@dataclass
class Bundle:
    """The bytes to upload and what the user should hear about them."""

    data: bytes
    filename: str  # the upload's file name: its suffix tells the server the format
    content_type: str
    default_name: str  # the function name when neither --name nor frazil.toml gives one
    toml: dict = field(default_factory=dict)  # settings from frazil.toml (checked keys)
    files: int | None = None  # files packed, for a folder

    def describe(self) -> str:
        size = f"{len(self.data) / 1024:.1f} KiB"
        return f"{self.files} files, {size}" if self.files is not None else f"{self.filename}, {size}"


def archive_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if name.endswith(s)), None)


def load_bundle(path: Path) -> Bundle:
    """A folder (zipped here) or a .zip/.tar.gz/.tgz/.tar archive (sent as it is)."""
    if path.is_dir():
        data, count = zip_folder(path)
        return Bundle(data, "bundle.zip", "application/zip", path.resolve().name,
                      toml=read_toml(path / TOML_NAME), files=count)
    suffix = archive_suffix(path)
    if suffix is None or not path.is_file():
        raise UsageProblem(f"{path} is neither a folder nor a .zip, .tar.gz, .tgz or .tar archive")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror}") from None
    toml_text = _toml_in_archive(data, suffix, path)
    toml = parse_toml(toml_text, f"{path}:{TOML_NAME}") if toml_text is not None else {}
    return Bundle(data, "bundle" + suffix, ARCHIVE_SUFFIXES[suffix], path.name[:-len(suffix)], toml=toml)


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
        raise UsageProblem(f"{root} holds no files to deploy")
    return buf.getvalue(), count


def read_toml(path: Path) -> dict:
    """Settings from a frazil.toml file; {} when there is none."""
    if not path.exists():
        return {}
    return parse_toml(path.read_text(), str(path))


def parse_toml(text: str, where: str) -> dict:
    """The settings (top level, or a [function] table), refusing keys the server does not know:
    a typo such as `memroy = 256` must not deploy silently with the default 128 MB."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageProblem(f"{where}: {exc}") from None
    settings = data.get("function", data)
    if not isinstance(settings, dict):
        raise UsageProblem(f"{where}: [function] must be a table")
    unknown = sorted(set(settings) - TOML_KEYS)
    if unknown:
        raise UsageProblem(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                           + ", ".join(_with_hint(key) for key in unknown)
                           + f" (known: {', '.join(sorted(TOML_KEYS))})")
    return settings


def _with_hint(key: str) -> str:
    close = difflib.get_close_matches(key, TOML_KEYS, n=1)
    return f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)


def _toml_in_archive(data: bytes, suffix: str, path: Path) -> str | None:
    """The text of frazil.toml at the archive's root, or under its lone top-level folder (the
    server strips such a folder, as `zip -r fn.zip fn/` makes), if the archive has one."""
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                members = {n.removeprefix("./"): n for n in zf.namelist() if not n.endswith("/")}
                name = _toml_member(members)
                return zf.read(members[name]).decode() if name else None
        mode = "r:gz" if suffix in (".tar.gz", ".tgz") else "r:"
        with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as tf:
            members = {m.name.removeprefix("./"): m for m in tf.getmembers() if m.isfile()}
            name = _toml_member(members)
            return tf.extractfile(members[name]).read().decode() if name else None
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        raise UsageProblem(f"{path} is not a readable {suffix} archive: {exc}") from None
    except UnicodeDecodeError:
        raise UsageProblem(f"{path}: {TOML_NAME} is not UTF-8 text") from None


def _toml_member(names) -> str | None:
    if TOML_NAME in names:
        return TOML_NAME
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and f"{next(iter(tops))}/{TOML_NAME}" in names:
        return f"{next(iter(tops))}/{TOML_NAME}"
    return None
