"""Safe unpacking of an uploaded code bundle (zip, tar.gz or plain tar).

A bundle is hostile until proven otherwise. `unpack_bundle` refuses, with a `BadBundle` that
names the offending entry, anything that could write outside the destination or exhaust the
disk, and never trusts what an archive declares about itself:

- names: absolute paths, drive letters, `..` components, backslashes, NUL and other control
  characters, components longer than `max_name_bytes`, paths longer than `max_path_bytes` or
  deeper than `max_depth`, duplicates (after normalising `./` and `//`), a file that is also
  used as a directory;
- entry types: devices, fifos, sockets, sparse/unknown tar types, encrypted zip entries;
- links: absolute symlinks and symlinks whose target leaves the tree (checked lexically and
  again, once every link exists, by resolving it for real); tar hard links are materialised as
  copies of an earlier regular file of the same archive, never as links to anything else;
- sizes: more than `max_files` entries (a zip's declared count is checked before its central
  directory is parsed), any entry over `max_file_bytes`, more than `max_total_bytes` in all.
  Bytes are counted while they are decompressed, so a bomb stops at the limit.
- corrupt archives (bad CRC, truncated streams, garbage) and empty bundles.

Symlink decision: relative symlinks that stay inside the tree are kept (projects and their
vendored packages use them, and they are harmless in a read-only mount); every other link is
refused. Links are created only after every regular file has been written, so no write ever
follows a link.

Everything is written into a fresh staging directory beside `dest` (0700, so nothing can be
read half-written) and renamed into place at the end; on any error the staging directory is
removed entirely and `dest` is never created. Regular files get 0644 (0755 when the archive
marks them executable) and directories 0755: no setuid/setgid/sticky bits, no world-writable
files, nothing owned by anyone but the platform.

When every entry sits under one top-level folder (what zipping a folder produces) and that
folder is the project, the folder is stripped. "Is the project" means: when the caller passes
the handler, the handler's module is found inside the folder and not beside it; otherwise the
folder holds a project file (index.py, index.js, package.json, requirements.txt, frazil.toml).
macOS resource-fork junk (`__MACOSX/`) is skipped.
"""
from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from frazil.errors import BadBundle

MiB = 1024 * 1024
CHUNK = 64 * 1024

# Files whose presence at the top of a folder marks it as a project (for stripping).
PROJECT_MARKERS = ("index.py", "index.js", "package.json", "requirements.txt", "frazil.toml",
                   "lambda_function.py", "main.py", "handler.py", "app.py", "__main__.py", "index.mjs", "app.js",
                   "handler.js")
SKIPPED_PREFIXES = ("__MACOSX",)


@dataclass(frozen=True)
class UnpackLimits:
    max_files: int = 10_000  # entries of any kind, directories included
    max_total_bytes: int = 256 * MiB  # bytes written, counted while decompressing
    max_file_bytes: int = 128 * MiB  # one entry
    max_name_bytes: int = 255  # one path component (the usual filesystem limit)
    max_path_bytes: int = 1024
    max_depth: int = 64
    max_link_bytes: int = 1024  # a symlink's target


@dataclass(frozen=True)
class UnpackReport:
    files: int  # regular files written (hard links included)
    total_bytes: int
    dirs: int = 0
    symlinks: int = 0
    archive: str = ""  # "zip" | "tar.gz" | "tar"
    stripped_prefix: str | None = None  # the top-level folder removed, if any


# --- archive kinds ---------------------------------------------------------------------

def detect_archive(data: bytes) -> str | None:
    """"zip", "tar.gz", "tar" from magic bytes; None for anything else."""
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if data[:2] == b"\x1f\x8b":
        return "tar.gz"
    if len(data) >= 262 and data[257:262] == b"ustar":
        return "tar"
    return None


def unpack_bundle(data: bytes, dest: Path, limits: UnpackLimits = UnpackLimits(), *,
                  handler: str | None = None) -> UnpackReport:
    """Unpack `data` into the directory `dest`, which must not exist yet.

    `handler` (e.g. "index.main"), when given, decides whether a lone top-level folder is
    stripped. Raises BadBundle for anything hostile or broken; FileExistsError when `dest`
    already exists."""
    dest = Path(dest)
    kind = detect_archive(data)
    if kind is None:
        raise BadBundle("the bundle is neither a zip nor a tar.gz archive")
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"{dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".staging", dir=dest.parent))
    try:
        tree = staging / "tree"
        tree.mkdir()
        writer = _TreeWriter(tree, limits)
        if kind == "zip":
            _read_zip(data, writer, limits)
        else:
            _read_tar(data, writer, kind)
        if writer.files == 0:
            raise BadBundle("the bundle is empty: it holds no files")
        prefix = _strip_prefix(writer, handler)
        root = tree / prefix if prefix else tree
        writer.make_links(root, prefix)
        os.chmod(root, 0o755)
        try:
            os.rename(root, dest)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):  # another unpack won the race
                raise FileExistsError(f"{dest} already exists") from exc
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return UnpackReport(files=writer.files, total_bytes=writer.total_bytes, dirs=writer.dirs,
                        symlinks=len(writer.links), archive=kind, stripped_prefix=prefix)


# --- names -------------------------------------------------------------------------------

def _clean_name(raw: str, limits: UnpackLimits) -> str | None:
    """The normalised relative path of an entry; None for the archive root itself."""
    shown = _show(raw)
    if not raw:
        raise BadBundle("the bundle has an entry with an empty name")
    if "\x00" in raw:
        raise BadBundle(f"entry {shown}: its name contains a NUL character")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise BadBundle(f"entry {shown}: its name contains a control character")
    if "\\" in raw:
        raise BadBundle(f"entry {shown}: its name contains a backslash")
    if raw.startswith("/"):
        raise BadBundle(f"entry {shown}: absolute paths are not allowed")
    if len(raw) >= 2 and raw[1] == ":" and raw[0].isalpha():
        raise BadBundle(f"entry {shown}: absolute (drive-letter) paths are not allowed")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadBundle(f"entry {shown}: '..' in a path is not allowed (it would leave the bundle)")
    if not parts:
        return None
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > limits.max_name_bytes:
            raise BadBundle(f"entry {shown}: a name component is longer than {limits.max_name_bytes} bytes")
    path = "/".join(parts)
    if len(path.encode("utf-8", "surrogateescape")) > limits.max_path_bytes:
        raise BadBundle(f"entry {shown}: the path is longer than {limits.max_path_bytes} bytes")
    if len(parts) > limits.max_depth:
        raise BadBundle(f"entry {shown}: the path is nested deeper than {limits.max_depth} levels")
    return path


def _show(name: str, limit: int = 120) -> str:
    text = repr(name)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _skipped(path: str) -> bool:
    return path.split("/", 1)[0] in SKIPPED_PREFIXES


def _check_link_target(path: str, target: str, limits: UnpackLimits, entry: str | None = None) -> None:
    """A symlink at `path` pointing to `target` must be relative and stay in the tree.
    `entry` is the name to show, when it differs from `path` (after stripping)."""
    shown = _show(entry or path)
    if not target:
        raise BadBundle(f"entry {shown}: a symlink with an empty target")
    if len(target.encode("utf-8", "surrogateescape")) > limits.max_link_bytes:
        raise BadBundle(f"entry {shown}: the symlink target is longer than {limits.max_link_bytes} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in target) or "\\" in target:
        raise BadBundle(f"entry {shown}: the symlink target contains a control character or backslash")
    if target.startswith("/"):
        raise BadBundle(f"entry {shown}: symlink to the absolute path {_show(target)} is not allowed")
    depth = len(PurePosixPath(path).parts) - 1  # directories above the link, inside the tree
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise BadBundle(f"entry {shown}: symlink target {_show(target)} leaves the bundle")
        elif part not in ("", "."):
            depth += 1


# --- writing -----------------------------------------------------------------------------

class _TreeWriter:
    """Writes entries into `tree`, enforcing every limit; links wait until the end."""

    def __init__(self, tree: Path, limits: UnpackLimits):
        self.tree = tree
        self.limits = limits
        self.kinds: dict[str, str] = {}  # path -> "file" | "dir" | "link"; implicit dirs too
        self.explicit: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (path, target)
        self.files = 0
        self.dirs = 0
        self.entries = 0
        self.total_bytes = 0

    # Every entry goes through claim() before anything is written.
    def claim(self, raw: str, kind: str) -> str | None:
        path = _clean_name(raw, self.limits)
        if path is None:
            return None
        if _skipped(path):
            return None
        self.entries += 1
        if self.entries > self.limits.max_files:
            raise BadBundle(f"the bundle has more than {self.limits.max_files} entries")
        if path in self.explicit:
            raise BadBundle(f"entry {_show(path)} appears more than once in the bundle")
        existing = self.kinds.get(path)
        if existing is not None and not (existing == "dir" and kind == "dir"):
            raise BadBundle(f"entry {_show(path)} is both a {existing} and a {kind}")
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            parent_kind = self.kinds.get(parent)
            if parent_kind is None:
                self.kinds[parent] = "dir"
            elif parent_kind != "dir":
                raise BadBundle(f"entry {_show(path)} is inside {_show(parent)}, which is a {parent_kind}")
        self.kinds[path] = kind
        self.explicit.add(path)
        return path

    def add_dir(self, raw: str) -> None:
        path = self.claim(raw, "dir")
        if path is not None:
            self.dirs += 1
            os.makedirs(self.tree / path, mode=0o755, exist_ok=True)

    def add_file(self, raw: str, stream, executable: bool, declared: int | None = None) -> None:
        path = self.claim(raw, "file")
        if path is None:
            _drain(stream)
            return
        if declared is not None and declared > self.limits.max_file_bytes:
            raise BadBundle(f"entry {_show(path)} is larger than {_mib(self.limits.max_file_bytes)}")
        target = self.tree / path
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        # O_EXCL|O_NOFOLLOW: never write through anything that is already there.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o755 if executable else 0o644)
        written = 0
        try:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                self.total_bytes += len(chunk)
                if written > self.limits.max_file_bytes:
                    raise BadBundle(f"entry {_show(path)} is larger than {_mib(self.limits.max_file_bytes)}")
                if self.total_bytes > self.limits.max_total_bytes:
                    raise BadBundle(f"the bundle unpacks to more than {_mib(self.limits.max_total_bytes)}"
                                    f" (stopped at entry {_show(path)})")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        # umask may have narrowed the mode; set it exactly.
        os.chmod(target, 0o755 if executable else 0o644)
        self.files += 1

    def add_hardlink(self, raw: str, target_raw: str) -> None:
        """A tar hard link becomes a copy of an earlier regular file of this archive."""
        shown = _show(raw)
        try:
            target = _clean_name(target_raw, self.limits)
        except BadBundle:
            target = None
        if target is None or self.kinds.get(target) != "file" or target not in self.explicit:
            raise BadBundle(f"entry {shown}: hard link to {_show(target_raw)}, which is not an earlier "
                            "regular file of the bundle")
        source = self.tree / target
        with open(source, "rb") as stream:
            self.add_file(raw, stream, executable=bool(os.stat(source).st_mode & 0o100))

    def add_symlink(self, raw: str, target: str) -> None:
        path = self.claim(raw, "link")
        if path is None:
            return
        _check_link_target(path, target, self.limits)
        self.links.append((path, target))

    def make_links(self, root: Path, prefix: str | None) -> None:
        """Create the symlinks under `root` (the tree, or its stripped top folder), then make
        sure each one really resolves inside it, with every other link in place."""
        for path, target in self.links:
            rel = path[len(prefix) + 1:] if prefix else path
            _check_link_target(rel, target, self.limits, path)  # again: stripping moved the root up
            # Parents of a link are directories by claim(), never links: mkdir follows nothing.
            (root / rel).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.symlink(target, root / rel)
        real_root = os.path.realpath(root)
        for path, target in self.links:
            rel = path[len(prefix) + 1:] if prefix else path
            resolved = os.path.realpath(root / rel)
            if resolved != real_root and not resolved.startswith(real_root + os.sep):
                raise BadBundle(f"entry {_show(path)}: symlink target {_show(target)} leaves the bundle")


def _drain(stream) -> None:
    while stream.read(CHUNK):
        pass


def _mib(n: int) -> str:
    return f"{n / MiB:g} MiB" if n >= MiB else f"{n} bytes"


# --- zip ---------------------------------------------------------------------------------

def _zip_declared_entries(data: bytes) -> int | None:
    """The entry count from the end-of-central-directory record, before zipfile parses the
    (possibly enormous) central directory. None when the record cannot be found."""
    tail_start = max(0, len(data) - (22 + 65535))
    pos = data.rfind(b"PK\x05\x06", tail_start)
    if pos < 0 or pos + 22 > len(data):
        return None
    total = struct.unpack_from("<H", data, pos + 10)[0]
    if total != 0xFFFF:
        return total
    # Zip64: the locator sits just before the end record and points at the zip64 record.
    loc = pos - 20
    if loc >= 0 and data[loc:loc + 4] == b"PK\x06\x07":
        offset = struct.unpack_from("<Q", data, loc + 8)[0]
        if offset + 56 <= len(data) and data[offset:offset + 4] == b"PK\x06\x06":
            return struct.unpack_from("<Q", data, offset + 32)[0]
    return None


def _read_zip(data: bytes, writer: _TreeWriter, limits: UnpackLimits) -> None:
    declared = _zip_declared_entries(data)
    if declared is not None and declared > limits.max_files:
        raise BadBundle(f"the bundle has more than {limits.max_files} entries ({declared} declared)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_files:
                raise BadBundle(f"the bundle has more than {limits.max_files} entries")
            for info in infos:
                _read_zip_entry(zf, info, writer, limits)
    except BadBundle:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
            RuntimeError, ValueError, struct.error, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # our own disk, not the archive
        raise BadBundle(f"the zip archive is corrupt or unsupported: {exc}") from None


def _read_zip_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, writer: _TreeWriter,
                    limits: UnpackLimits) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise BadBundle(f"entry {_show(name)} is encrypted; encrypted bundles are not supported")
    mode = (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0
    kind = stat.S_IFMT(mode) if mode else 0
    if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        raise BadBundle(f"entry {_show(name)} is a device, fifo or socket; only files, folders and "
                        "symlinks are allowed")
    if kind == stat.S_IFLNK:
        if info.file_size > limits.max_link_bytes:
            raise BadBundle(f"entry {_show(name)}: the symlink target is longer than {limits.max_link_bytes} bytes")
        with zf.open(info) as stream:
            raw = stream.read(limits.max_link_bytes + 1)
        if len(raw) > limits.max_link_bytes:
            raise BadBundle(f"entry {_show(name)}: the symlink target is longer than {limits.max_link_bytes} bytes")
        try:
            target = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadBundle(f"entry {_show(name)}: the symlink target is not UTF-8") from None
        if "\x00" in target:
            raise BadBundle(f"entry {_show(name)}: the symlink target contains a NUL character")
        writer.add_symlink(name, target)
        return
    if info.is_dir() or kind == stat.S_IFDIR:
        writer.add_dir(name)
        return
    if kind not in (0, stat.S_IFREG):
        raise BadBundle(f"entry {_show(name)} has an unsupported file type")
    with zf.open(info) as stream:
        writer.add_file(name, stream, executable=bool(mode & 0o111), declared=info.file_size)


# --- tar ---------------------------------------------------------------------------------

def _read_tar(data: bytes, writer: _TreeWriter, kind: str) -> None:
    # Stream mode: one pass, members in order, nothing decompressed ahead of need.
    mode = "r|gz" if kind == "tar.gz" else "r|"
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as tf:
            for member in tf:
                _read_tar_entry(tf, member, writer)
    except BadBundle:
        raise
    except (tarfile.TarError, zlib.error, EOFError, ValueError, UnicodeError, struct.error, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, tarfile.TarError) and exc.errno is not None:
            raise  # our own disk, not the archive
        raise BadBundle(f"the {kind} archive is corrupt or unsupported: {exc}") from None


def _read_tar_entry(tf: tarfile.TarFile, member: tarfile.TarInfo, writer: _TreeWriter) -> None:
    name = member.name
    if member.isdir():
        writer.add_dir(name)
    elif member.issym():
        writer.add_symlink(name, member.linkname)
    elif member.islnk():
        writer.add_hardlink(name, member.linkname)
    elif member.ischr() or member.isblk() or member.isfifo():
        raise BadBundle(f"entry {_show(name)} is a device or fifo; only files, folders and symlinks "
                        "are allowed")
    elif member.isreg() and not member.issparse():
        stream = tf.extractfile(member)
        writer.add_file(name, stream, executable=bool(member.mode & 0o111), declared=member.size)
    else:
        raise BadBundle(f"entry {_show(name)} has an unsupported tar entry type {member.type!r}")


# --- stripping a lone top-level folder ------------------------------------------------------

def _strip_prefix(writer: _TreeWriter, handler: str | None) -> str | None:
    tops = {path.split("/", 1)[0] for path in writer.kinds}
    if len(tops) != 1:
        return None
    (top,) = tops
    if writer.kinds.get(top) != "dir":
        return None
    if handler:
        from frazil.build.detect import handler_candidates

        candidates = handler_candidates(handler)
        if any(c in writer.kinds for c in candidates):
            return None  # the handler is where the user said: keep the folder
        if any(f"{top}/{c}" in writer.kinds for c in candidates):
            return top
    return top if any(writer.kinds.get(f"{top}/{m}") == "file" for m in PROJECT_MARKERS) else None
