"""A project's dependency manifest: which files decide its dependency layer, and the layer key.

Python: `requirements.txt`, plus what it references inside the project: nested `-r`/`-c`
files, relative `--find-links` folders and relative wheel/sdist paths (vendored packages).
Node: `package.json` and `package-lock.json` (or `npm-shrinkwrap.json`), plus `file:`
dependencies inside the project (an `npm pack` tarball or a folder).

The key is the sha256 of a format tag, the runtime's name and every one of those files (path
and content), so two versions or functions with the same manifest share one layer, and a
change to any referenced file builds a new one. References that leave the project, URLs and
absolute paths are left to the installer as they are (and are not part of the key).
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from frazil.errors import BuildFailed
from frazil.runtimes import RuntimeKind

LAYER_FORMAT = "frazil-layer-v1"  # bump when the way layers are built changes
REQUIREMENTS = "requirements.txt"
PACKAGE_JSON = "package.json"
NODE_LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json")
MAX_REFERENCED_FILES = 1000

_PIP_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
_PIP_LINK_OPTIONS = ("-f", "--find-links")
_PACKAGE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2")


@dataclass(frozen=True)
class Manifest:
    runtime: str
    code_dir: Path
    files: tuple[str, ...]  # paths relative to code_dir, sorted: everything the build may read
    key: str
    lockfile: str | None = None  # Node: the lockfile present, if any
    describe: str = ""  # for the build log, e.g. "requirements.txt"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def copy_into(self, workdir: Path) -> None:
        """Copy the manifest files into `workdir`, keeping their relative paths."""
        for rel in self.files:
            dest = workdir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(self.code_dir / rel, "rb") as src, open(dest, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)


def read_manifest(runtime: RuntimeKind, code_dir: Path) -> Manifest | None:
    """The project's manifest, or None when it declares no dependencies."""
    code_dir = Path(code_dir).resolve()
    if runtime.language == "python":
        return _python_manifest(runtime, code_dir)
    if runtime.language == "node":
        return _node_manifest(runtime, code_dir)
    raise ValueError(f"no dependency manifest for language {runtime.language!r}")


# --- Python --------------------------------------------------------------------------------------

def _python_manifest(runtime: RuntimeKind, code_dir: Path) -> Manifest | None:
    if not _inside_file(code_dir, REQUIREMENTS):
        return None
    files: set[str] = set()
    has_requirements = _scan_requirements(code_dir, REQUIREMENTS, files, depth=0)
    if not has_requirements:
        return None
    ordered = tuple(sorted(files))
    return Manifest(runtime.name, code_dir, ordered, _key(runtime.name, code_dir, ordered), describe=REQUIREMENTS)


def _scan_requirements(code_dir: Path, rel: str, files: set[str], depth: int) -> bool:
    """Add `rel` and what it references to `files`; True when it names any requirement."""
    if rel in files:
        return False
    if depth > 10:
        raise BuildFailed(f"{rel}: requirement files are nested more than 10 deep")
    files.add(rel)
    base = Path(rel).parent
    try:
        text = (code_dir / rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildFailed(f"cannot read {rel}: {exc}") from None
    found = False
    for line in _logical_lines(text):
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = line.split()
        if not tokens:
            continue
        option, value = _split_option(tokens)
        if option in _PIP_FILE_OPTIONS and value:
            ref = _local_ref(code_dir, base, value)
            if ref is not None:
                nested = _scan_requirements(code_dir, ref, files, depth + 1)
                if option in ("-r", "--requirement"):
                    found |= nested  # constraints alone install nothing
            elif option in ("-r", "--requirement"):
                found = True  # a requirement file outside the project: let pip read it
            continue
        if option in _PIP_LINK_OPTIONS and value:
            ref = _local_ref(code_dir, base, value)
            if ref is not None:
                _add_tree(code_dir, ref, files)
            continue
        if option is not None:
            if option in ("-e", "--editable"):
                found = True
            continue
        found = True
        first = tokens[0]
        if "://" not in first and (first.startswith((".", "/")) or first.endswith(_PACKAGE_SUFFIXES)):
            ref = _local_ref(code_dir, Path("."), first)  # pip resolves these from its cwd
            if ref is not None:
                _add_tree(code_dir, ref, files)
    return found


def _logical_lines(text: str):
    """Lines with backslash continuations joined, comments removed."""
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield (pending + line).strip()
        pending = ""
    if pending.strip():
        yield pending.strip()


def _split_option(tokens: list[str]) -> tuple[str | None, str | None]:
    first = tokens[0]
    if not first.startswith("-"):
        return None, None
    if "=" in first and first.startswith("--"):
        name, _, value = first.partition("=")
        return name, value
    for short in ("-r", "-c", "-f", "-e"):
        if first.startswith(short) and len(first) > 2 and not first.startswith("--"):
            return short, first[2:]
    return first, tokens[1] if len(tokens) > 1 else None


# --- Node ----------------------------------------------------------------------------------------

def _node_manifest(runtime: RuntimeKind, code_dir: Path) -> Manifest | None:
    if not _inside_file(code_dir, PACKAGE_JSON):
        return None
    try:
        package = json.loads((code_dir / PACKAGE_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BuildFailed(f"package.json is not valid JSON: {exc}") from None
    if not isinstance(package, dict):
        raise BuildFailed("package.json must hold a JSON object")
    sections: dict[str, dict] = {}
    for section in ("dependencies", "optionalDependencies", "devDependencies", "peerDependencies"):
        value = package.get(section) or {}
        if not isinstance(value, dict):
            raise BuildFailed(f"package.json: {section!r} must be an object")
        sections[section] = value
    if not sections["dependencies"] and not sections["optionalDependencies"]:
        return None  # dev dependencies alone are never installed into a layer
    files = {PACKAGE_JSON}
    lockfile = next((name for name in NODE_LOCKFILES if _inside_file(code_dir, name)), None)
    if lockfile:
        files.add(lockfile)
    # npm resolves the whole tree, dev dependencies included, even with --omit=dev: every
    # local `file:` reference must be there.
    for spec in (spec for deps in sections.values() for spec in deps.values()):
        if isinstance(spec, str) and spec.startswith("file:"):
            ref = _local_ref(code_dir, Path("."), spec[len("file:"):].removeprefix("//"))
            if ref is not None:
                _add_tree(code_dir, ref, files)
    ordered = tuple(sorted(files))
    describe = PACKAGE_JSON + (f" + {lockfile}" if lockfile else "")
    return Manifest(runtime.name, code_dir, ordered, _key(runtime.name, code_dir, ordered), lockfile=lockfile,
                    describe=describe)


# --- shared ----------------------------------------------------------------------------------------

def _key(runtime: str, code_dir: Path, files: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    digest.update(f"{LAYER_FORMAT}\0{runtime}\0".encode())
    for rel in files:
        content = hashlib.sha256()
        with open(code_dir / rel, "rb") as src:
            while chunk := src.read(1 << 20):
                content.update(chunk)
        digest.update(f"{rel}\0{content.hexdigest()}\0".encode())
    return digest.hexdigest()


def _local_ref(code_dir: Path, base: Path, value: str) -> str | None:
    """`value` (relative to `base` inside the project) as a project-relative path, or None
    when it is a URL, absolute, missing, or leaves the project."""
    if not value or "://" in value or value.startswith(("/", "~")):
        return None
    candidate = (code_dir / base / value).resolve()
    if not candidate.is_relative_to(code_dir) or not candidate.exists():
        return None
    return candidate.relative_to(code_dir).as_posix()


def _inside_file(code_dir: Path, rel: str) -> bool:
    return _local_ref(code_dir, Path("."), rel) is not None and (code_dir / rel).is_file()


def _add_tree(code_dir: Path, rel: str, files: set[str]) -> None:
    path = code_dir / rel
    if path.is_file():
        files.add(rel)
        return
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = Path(root) / name
            if full.is_file() and full.resolve().is_relative_to(code_dir):
                files.add(full.relative_to(code_dir).as_posix())
                if len(files) > MAX_REFERENCED_FILES:
                    raise BuildFailed(f"the dependency manifest references more than {MAX_REFERENCED_FILES} files")
