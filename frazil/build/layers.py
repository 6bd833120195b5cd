"""Dependency layers: a project's third-party packages, built once per manifest and shared.

A layer is the directory `<data_dir>/layers/<key>`, key = sha256 of the runtime name and the
manifest (see manifest.py). Every version of every function with the same key uses the same
layer; sandboxes mount it read-only. Python layers are a `pip install --target` tree (put on
sys.path as is); Node layers hold `node_modules/` (resolved after the project's own).

Invariants:
- `<data_dir>/layers/<key>` exists only when complete: a build happens in a throwaway folder
  outside the data dir and is renamed into place in one step.
- One build per key at a time, across tasks (an asyncio lock per key) and across processes
  sharing the data dir (an flock on `<data_dir>/layers/.locks/<key>.lock`); whoever waited
  finds the layer built and reuses it.
- Layer files belong to the platform's user, with no group/other write and no setuid bits,
  whoever built them.
How the installer is isolated is described in runner.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable

from frazil.build.manifest import Manifest, read_manifest
from frazil.build.runner import Isolation, build_env, probe_isolation, run_build
from frazil.errors import BuildFailed
from frazil.runtimes import RuntimeKind, get_runtime
from frazil.settings import Settings

LAYERS_DIR = "layers"
LOCKS_DIR = ".locks"
INCOMING_DIR = ".incoming"  # copies arriving from another filesystem, before their rename
LOCK_POLL_S = 0.05

# Per-key locks for builds in this process; an entry lives while someone holds or waits.
_key_locks: dict[str, tuple[asyncio.Lock, int]] = {}


def layers_root(settings: Settings) -> Path:
    return settings.data_dir / LAYERS_DIR


async def ensure_layer(settings: Settings, runtime: RuntimeKind | str, code_dir: Path,
                       log: Callable[[str], None]) -> Path | None:
    """The layer for the project in `code_dir`, building it if needed; None when the project
    declares no dependencies. Raises BuildFailed with the installer's own error text."""
    kind = get_runtime(runtime) if isinstance(runtime, str) else runtime
    manifest = await asyncio.to_thread(read_manifest, kind, Path(code_dir))
    if manifest is None:
        return None
    root = layers_root(settings)
    final = root / manifest.key
    if final.is_dir():
        log(f"dependency layer {manifest.key[:12]} ({manifest.describe}) is already built; reusing it")
        return final
    async with _key_lock(str(final.resolve())), _file_lock(root / LOCKS_DIR / f"{manifest.key}.lock"):
        if final.is_dir():  # built while we waited
            log(f"dependency layer {manifest.key[:12]} ({manifest.describe}) was built meanwhile; reusing it")
            return final
        await _build(settings, kind, manifest, final, log)
    return final


# --- building --------------------------------------------------------------------------------------

async def _build(settings: Settings, kind: RuntimeKind, manifest: Manifest, final: Path,
                 log: Callable[[str], None]) -> None:
    build_root = Path(tempfile.mkdtemp(prefix="frazil-build-"))
    try:
        home, work = build_root / "home", build_root / "work"
        target = build_root / "target" if kind.language == "python" else work
        for path in (home, home / "tmp", work, target):
            path.mkdir(exist_ok=True)
        manifest.copy_into(work)
        interpreter = str(kind.interpreter())
        argv, what = _installer(kind, manifest, interpreter, target)
        isolation = await _isolation(settings, interpreter, build_root)
        if isinstance(isolation, str):
            log(f"build isolation: none ({isolation}); building as the platform's user in a throwaway folder")
            isolation = None
        else:
            log(f"build isolation: uid {isolation.uid}, data dir hidden in a private mount namespace")
            _chown_tree(build_root, isolation.uid, isolation.gid)
            (build_root / ".hold").mkdir()
        shown = ["python", *argv[2:]] if kind.language == "python" else ["npm", *argv[1:]]
        log(f"building dependency layer {manifest.key[:12]} from {manifest.describe}: {' '.join(shown)}")
        started = time.monotonic()
        await run_build(argv, cwd=work, env=_env(kind, home), timeout_s=settings.build_timeout_s, log=log,
                        isolation=isolation, hold_root=build_root / ".hold", what=what)
        if kind.language == "node":
            (target / "node_modules").mkdir(exist_ok=True)  # dev-only dependencies: still a layer
        await asyncio.to_thread(_settle, target, final)
        log(f"dependency layer {manifest.key[:12]} built in {time.monotonic() - started:.1f} s")
    finally:
        await asyncio.to_thread(shutil.rmtree, build_root, True)


def _installer(kind: RuntimeKind, manifest: Manifest, interpreter: str, target: Path) -> tuple[list[str], str]:
    if kind.language == "python":
        return [interpreter, "-I", "-m", "pip", "install", "--target", str(target), "--no-input",
                "--disable-pip-version-check", "--no-cache-dir", "--no-warn-script-location",
                "--progress-bar", "off", "-r", "requirements.txt"], "pip"
    npm = shutil.which("npm", path="/usr/local/bin:/usr/bin:/bin")
    if npm is None:
        raise BuildFailed("npm is not installed on this platform; the nodejs20 runtime needs it to build dependencies")
    command = "ci" if manifest.lockfile else "install"
    return [npm, command, "--omit=dev", "--no-audit", "--no-fund", "--no-progress", "--install-links",
            "--no-update-notifier", "--loglevel=warn"], f"npm {command}"


def _env(kind: RuntimeKind, home: Path) -> dict[str, str]:
    if kind.language == "python":
        extra = {"PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    else:
        extra = {"npm_config_cache": str(home / ".npm"), "npm_config_update_notifier": "false",
                 "npm_config_fund": "false", "npm_config_audit": "false"}
    return build_env(home, extra)


async def _isolation(settings: Settings, interpreter: str, build_root: Path) -> Isolation | str:
    """The isolation to build with, or the reason there is none."""
    data_dir = os.path.realpath(settings.data_dir)
    expose = tuple(sorted({_prefix(interpreter)}))
    isolation = Isolation(hide=(data_dir,), expose=expose)
    build_real = os.path.realpath(build_root)
    if _is_within(build_real, data_dir):
        return f"the temporary folder {build_real} is inside the data dir"
    reason = await probe_isolation(isolation, interpreter, Path(tempfile.mkdtemp(prefix="frazil-probe-")))
    return reason if reason is not None else isolation


def _prefix(interpreter: str) -> str:
    """The installation an interpreter belongs to (/usr for /usr/bin/node)."""
    return str(Path(interpreter).parent.parent)


def _is_within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.lchown(dirpath, uid, gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def _settle(built: Path, final: Path) -> None:
    """Make the built tree the platform's, read-only-friendly, and rename it into place."""
    uid, gid = os.geteuid(), os.getegid()
    for dirpath, dirnames, filenames in os.walk(built):
        for path in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            st = os.lstat(path)
            if st.st_uid != uid or st.st_gid != gid:
                os.lchown(path, uid, gid)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | 0o022)
            mode |= 0o755 if stat.S_ISDIR(st.st_mode) else 0o644
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o100:
                mode |= 0o111
            os.chmod(path, mode)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(built, final)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    # Another filesystem: copy next to the final place, then rename (still one step).
    incoming = final.parent / INCOMING_DIR
    incoming.mkdir(exist_ok=True)
    copy = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=incoming))
    try:
        shutil.copytree(built, copy, symlinks=True, dirs_exist_ok=True)
        os.chmod(copy, 0o755)
        os.rename(copy, final)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


# --- locks -------------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _key_lock(key: str):
    lock, users = _key_locks.get(key, (None, 0))
    if lock is None:
        lock = asyncio.Lock()
    _key_locks[key] = (lock, users + 1)
    try:
        async with lock:
            yield
    finally:
        lock, users = _key_locks[key]
        if users <= 1:
            del _key_locks[key]
        else:
            _key_locks[key] = (lock, users - 1)


@contextlib.asynccontextmanager
async def _file_lock(path: Path):
    """An exclusive flock, waited for without blocking the event loop."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the flock
