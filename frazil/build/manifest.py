"""A project's dependency manifest: which files decide its dependency layer, and the layer key.

Python: `requirements.txt`, plus what it references inside the project: nested `-r`/`-c`
files, relative `--find-links` folders and relative wheel/sdist paths (vendored packages).
Node: `package.json` and `package-lock.json` (or `npm-shrinkwrap.json`), plus `file:`
dependencies inside the project (an `npm pack` tarball or a folder).

The key is the sha256 of a format tag, the runtime's name and every one of those files (path
and content), so two versions or functions with the same manifest share one layer, and a
change to any referenced file builds a new one.

References that leave the project are refused (BuildFailed, a 400 at deploy, naming the file
and line): `-r`/`-c` files, `--find-links`, editable and local-path requirements and npm
`file:`/path dependencies must be inside the bundle; `--index-url`, `--extra-index-url`,
`--find-links` URLs and direct URL requirements must be on a configured registry
(registries.py). The build could not reach anything else anyway (it sees only its own
folder and reaches only the registries); refusing at deploy says so clearly and early.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from frazil.build.provided import provided
from frazil.errors import BuildFailed
from frazil.runtimes import RuntimeKind

LAYER_FORMAT = "frazil-layer-v2"  # v2: read-only, digest recorded (integrity.py)  # bump when the way layers are built changes
REQUIREMENTS = "requirements.txt"
PACKAGE_JSON = "package.json"
NODE_LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json")
MAX_REFERENCED_FILES = 1000

_PIP_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
_PIP_LINK_OPTIONS = ("-f", "--find-links")
_PIP_INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url")
_PIP_EDITABLE = ("-e", "--editable")
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


class _Anywhere:
    """No registry rule (callers that only want the key)."""

    @staticmethod
    def allows_url(url: str) -> bool:
        return True


def read_manifest(runtime: RuntimeKind, code_dir: Path, registries=None) -> Manifest | None:
    """The project's manifest, or None when it declares no dependencies. `registries`
    (registries.Registries) judges URLs; None lets any URL through."""
    code_dir = Path(code_dir).resolve()
    registries = registries or _Anywhere()
    if runtime.language == "python":
        return _python_manifest(runtime, code_dir, registries)
    if runtime.language == "node":
        return _node_manifest(runtime, code_dir, registries)
    raise ValueError(f"no dependency manifest for language {runtime.language!r}")


# --- Python --------------------------------------------------------------------------------------

def _python_manifest(runtime: RuntimeKind, code_dir: Path, registries) -> Manifest | None:
    if not _inside_file(code_dir, REQUIREMENTS):
        return None
    files: set[str] = set()
    has_requirements = _scan_requirements(code_dir, REQUIREMENTS, files, depth=0, registries=registries)
    if not has_requirements:
        return None
    ordered = tuple(sorted(files))
    return Manifest(runtime.name, code_dir, ordered, _key(runtime.name, code_dir, ordered), describe=REQUIREMENTS)


def _scan_requirements(code_dir: Path, rel: str, files: set[str], depth: int, registries) -> bool:
    """Add `rel` and what it references to `files`; True when it names any requirement.
    Raises BuildFailed for a reference that leaves the bundle or a non-registry URL."""
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
    for number, line in _logical_lines(text):
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = line.split()
        if not tokens:
            continue
        where = f"{rel} line {number} ({line.strip()[:200]!r})"
        option, value = _split_option(tokens)
        if option in _PIP_FILE_OPTIONS:
            if _leaves(code_dir, base, value):
                raise BuildFailed(f"{where}: {option} must name a file inside the bundle")
            ref = _local_ref(code_dir, base, value)
            if ref is None or not (code_dir / ref).is_file():
                found = True  # missing: pip says so
                continue
            nested = _scan_requirements(code_dir, ref, files, depth + 1, registries)
            if option in ("-r", "--requirement"):
                found |= nested  # constraints alone install nothing
            continue
        if option in _PIP_LINK_OPTIONS:
            if value and "://" not in value and not _leaves(code_dir, base, value):
                ref = _local_ref(code_dir, base, value)
                if ref is not None:
                    _add_tree(code_dir, ref, files)
            elif not (value and "://" in value and registries.allows_url(value)):
                raise BuildFailed(f"{where}: {option} must name a folder inside the bundle or a URL on a "
                                  "configured package registry")
            continue
        if option in _PIP_INDEX_OPTIONS:
            if not (value and registries.allows_url(value)):
                raise BuildFailed(f"{where}: {option} must be a URL on a configured package registry")
            continue
        if option in _PIP_EDITABLE:
            if _leaves(code_dir, Path("."), value):
                raise BuildFailed(f"{where}: {option} must name a folder inside the bundle")
            ref = _local_ref(code_dir, Path("."), value)
            if ref is not None:
                _add_tree(code_dir, ref, files)
            found = True
            continue
        if option is not None:
            continue
        found = True
        for token in tokens:
            if token.startswith("--hash") or token == ";":
                break
            if "://" in token or token.startswith("file:"):
                if token.startswith("file:") or not registries.allows_url(token):
                    raise BuildFailed(f"{where}: a requirement may only come from a configured package "
                                      "registry or a file inside the bundle")
        first = tokens[0]
        if "://" not in first and (first.startswith((".", "/", "~")) or first.endswith(_PACKAGE_SUFFIXES)):
            if _leaves(code_dir, Path("."), first):  # pip resolves these from its cwd
                raise BuildFailed(f"{where}: {first} is not inside the bundle")
            ref = _local_ref(code_dir, Path("."), first)
            if ref is not None:
                _add_tree(code_dir, ref, files)
    return found


def _logical_lines(text: str):
    """(first line number, line) with backslash continuations joined, comments removed."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, (pending + line).strip()
        pending = ""
    if pending.strip():
        yield start, pending.strip()


def _split_option(tokens: list[str]) -> tuple[str | None, str | None]:
    first = tokens[0]
    if not first.startswith("-"):
        return None, None
    if "=" in first and first.startswith("--"):
        name, _, value = first.partition("=")
        return name, value
    for short in ("-r", "-c", "-f", "-e", "-i"):
        if first.startswith(short) and len(first) > 2 and not first.startswith("--"):
            return short, first[2:]
    return first, tokens[1] if len(tokens) > 1 else None


# --- Node ----------------------------------------------------------------------------------------

def _node_manifest(runtime: RuntimeKind, code_dir: Path, registries) -> Manifest | None:
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
    if not [name for section in ("dependencies", "optionalDependencies") for name in sections[section]
            if not provided(runtime, name)]:
        return None  # dev dependencies, and packages the platform provides, are never installed into a layer
    files = {PACKAGE_JSON}
    lockfile = next((name for name in NODE_LOCKFILES if _inside_file(code_dir, name)), None)
    if lockfile:
        files.add(lockfile)
    # npm resolves the whole tree, dev dependencies included, even with --omit=dev: every
    # local `file:` reference must be there.
    for section, deps in sections.items():
        for name, spec in deps.items():
            if not isinstance(spec, str):
                continue
            where = f"package.json {section}.{name} ({spec[:200]!r})"
            local = _npm_local_path(spec)
            if local is not None:
                if _leaves(code_dir, Path("."), local):
                    raise BuildFailed(f"{where}: a local dependency must be inside the bundle")
                ref = _local_ref(code_dir, Path("."), local)
                if ref is not None:  # missing: npm says so
                    _add_tree(code_dir, ref, files)
            elif spec.startswith(("http://", "https://")) and not registries.allows_url(spec):
                raise BuildFailed(f"{where}: a dependency URL must be on a configured package registry")
    if lockfile:
        _check_lockfile(code_dir, lockfile)
    ordered = tuple(sorted(files))
    describe = PACKAGE_JSON + (f" + {lockfile}" if lockfile else "")
    return Manifest(runtime.name, code_dir, ordered, _key(runtime.name, code_dir, ordered), lockfile=lockfile,
                    describe=describe)


def _npm_local_path(spec: str) -> str | None:
    """The path of a `file:` or path dependency, else None (a version, tag, URL, git...)."""
    if spec.startswith("file:"):
        return spec[len("file:"):].removeprefix("//")
    if spec.startswith(("./", "../", "/", "~/")) or spec in (".", ".."):
        return spec
    return None


def _check_lockfile(code_dir: Path, lockfile: str) -> None:
    """npm ci installs what the lockfile resolved: no `file:` entry may leave the bundle."""
    try:
        lock = json.loads((code_dir / lockfile).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BuildFailed(f"{lockfile} is not valid JSON: {exc}") from None
    packages = lock.get("packages") if isinstance(lock, dict) else None
    for key, entry in (packages or {}).items():
        if not isinstance(entry, dict):
            continue
        resolved = entry.get("resolved")
        if isinstance(resolved, str) and resolved.startswith("file:"):
            if _leaves(code_dir, Path("."), resolved[len("file:"):]):
                raise BuildFailed(f"{lockfile} {key or 'root'}: resolved {resolved[:200]!r} is outside the bundle")
        elif entry.get("link") and isinstance(resolved, str) and _leaves(code_dir, Path("."), resolved):
            raise BuildFailed(f"{lockfile} {key}: links to {resolved[:200]!r}, outside the bundle")
        elif key and not key.startswith("node_modules/") and "/node_modules/" not in key \
                and _leaves(code_dir, Path("."), key):
            raise BuildFailed(f"{lockfile} {key}: a local package outside the bundle")


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


def _leaves(code_dir: Path, base: Path, value: str | None) -> bool:
    """Whether a path reference (relative to `base` in the project) is absolute, starts at a
    home folder, is empty, or resolves (symlinks followed) outside the project."""
    if not value or value.startswith(("/", "~")) or "://" in value:
        return True
    return not (code_dir / base / value).resolve().is_relative_to(code_dir)


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
