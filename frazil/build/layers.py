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
- A layer is made only from a build that is over: its sandbox's cgroup is empty (every
  process it started is dead, see buildbox.py) before the tree is touched. Then every file
  becomes the platform's (root's), with no write bit for anyone and no setuid bit, its
  digest is recorded (integrity.py), and only then is it renamed into place.
- A build folder (/tmp/frazil-build-*) is flocked by its builder while it exists; folders
  whose lock nobody holds were left by a killed platform and are swept at the next build.
- A layer is used only while it matches its digest: checked before its first use in this
  process (cold start: `Deployer.layer_dirs`; deploy: here). At deploy a mismatching layer
  is set aside and built again.
How the installer is contained is described in frazil/sandbox/helper/build_jail.py (the order of the steps) and
runner.py (what runs where).
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable

from frazil.build import integrity
from frazil.build.manifest import NODE_LOCKFILES, Manifest, read_manifest
from frazil.build.progress import InstallerProgress
from frazil.build.registries import Registries, build_env
from frazil.build.runner import run_installer
from frazil.errors import BuildFailed, BuildTimedOut
from frazil.runtimes import RuntimeKind, get_runtime
from frazil.settings import Settings

LAYERS_DIR = "layers"
LOCKS_DIR = ".locks"
INCOMING_DIR = ".incoming"  # copies arriving from another filesystem, before their rename
SET_ASIDE_DIR = ".tampered"  # layers that no longer matched their digest
BUILD_ROOT_PREFIX = "frazil-build-"
BUILD_ROOT_LOCK = ".lock"  # flocked by the process building there, for as long as the folder exists
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
    registries = Registries.configured(settings.build_registries)
    manifest = await asyncio.to_thread(read_manifest, kind, Path(code_dir), registries)
    if manifest is None:
        return None
    root = layers_root(settings)
    final = root / manifest.key
    if final.is_dir() and await _usable(final, log):
        log(f"dependency layer {manifest.key[:12]} ({manifest.describe}) is already built; reusing it")
        return final
    async with _key_lock(str(final.resolve())), _file_lock(root / LOCKS_DIR / f"{manifest.key}.lock"):
        if final.is_dir() and await _usable(final, log):  # built while we waited
            log(f"dependency layer {manifest.key[:12]} ({manifest.describe}) was built meanwhile; reusing it")
            return final
        if final.is_dir():
            await asyncio.to_thread(set_aside, final)
        await _build(settings, kind, manifest, registries, final, log)
    return final


async def _usable(layer: Path, log: Callable[[str], None]) -> bool:
    try:
        await asyncio.to_thread(integrity.verify, layer)
        return True
    except integrity.LayerTampered as exc:
        log(f"{exc.args[0]}; building it again")
        return False


def set_aside(layer: Path) -> None:
    """Move a layer that failed its check out of the way (kept for inspection)."""
    aside = layer.parent / SET_ASIDE_DIR
    aside.mkdir(exist_ok=True)
    os.rename(layer, aside / f"{layer.name}.{time.time_ns()}")
    integrity.forget(layer)


# --- building --------------------------------------------------------------------------------------

async def _build(settings: Settings, kind: RuntimeKind, manifest: Manifest, registries: Registries, final: Path,
                 log: Callable[[str], None]) -> None:
    # <build_root> (root's, 0700) holds <box>, the build's own folder (its uid's while it
    # runs; /build inside the sandbox), and the mount point of its root file system.
    async with build_folder() as build_root:
        box = build_root / "box"
        home, work = box / "home", box / "work"
        target = box / "target" if kind.language == "python" else work
        for path in (box, home, home / "tmp", work, target):
            path.mkdir(exist_ok=True)
        manifest.copy_into(work)
        interpreter = str(kind.interpreter())
        started = time.monotonic()
        progress = InstallerProgress(kind.language, log)

        async def install(command: str | None = None) -> None:
            try:
                await run_installer(settings, registries, kind, box=box, rootfs_mountpoint=build_root / "root",
                                    interpreter=interpreter, log=progress.line,
                                    command=lambda place: _installer(kind, manifest, interpreter, place(box), command),
                                    env=lambda inside: _env(kind, registries, inside),
                                    describe=f"building dependency layer {manifest.key[:12]} from {manifest.describe}")
            except BuildTimedOut as exc:
                doing = progress.doing()
                raise BuildTimedOut(f"{exc.message} ({doing})" if doing else exc.message) from None

        try:
            await install()
        except BuildTimedOut:
            raise
        except BuildFailed:
            reason = progress.npm_ci_retry_reason() if kind.language == "node" and manifest.lockfile else None
            if reason is None:
                raise
            log(f"npm ci failed ({reason}): retrying once with npm install, without {manifest.lockfile} "
                "(the lockfile is not used for this build)")
            _forget_lockfile(work)
            await install("install")
        if kind.language == "node":
            (target / "node_modules").mkdir(exist_ok=True)  # dev-only dependencies: still a layer
        await asyncio.to_thread(_settle, target, final)
        log(f"dependency layer {manifest.key[:12]} built in {time.monotonic() - started:.1f} s")


@contextlib.asynccontextmanager
async def build_folder():
    """A fresh build folder (root's, 0700) in the temporary folder, flocked while it exists
    and removed after, whatever happens (see the module's invariants)."""
    await asyncio.to_thread(_sweep_build_roots)
    build_root = Path(tempfile.mkdtemp(prefix=BUILD_ROOT_PREFIX))
    held = _hold(build_root)
    try:
        yield build_root
    finally:
        await asyncio.to_thread(_remove_tree, build_root)
        os.close(held)


def _hold(build_root: Path) -> int:
    """Lock the build folder as ours: the lock file appears under its name already locked,
    so a sweep (`_sweep_build_roots`) never finds it free."""
    partial = build_root / (BUILD_ROOT_LOCK + ".new")
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(partial, build_root / BUILD_ROOT_LOCK)
    return fd


_swept = [False]


def _sweep_build_roots() -> None:
    """Once per process: remove the build folders a platform that was killed mid-build left in
    the temporary folder. A folder counts as left behind only when it has a lock file nobody
    holds (a build in progress, of any process, holds its own; a folder without one belongs
    to something else and is not touched)."""
    if _swept[0]:
        return
    _swept[0] = True
    base = Path(tempfile.gettempdir())
    for root in base.glob(BUILD_ROOT_PREFIX + "*"):
        try:
            fd = os.open(root / BUILD_ROOT_LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            _remove_tree(root)
        finally:
            os.close(fd)


def _remove_tree(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():  # read-only folders (a settled tree not yet renamed) as a non-root platform
        _make_writable(root)
        shutil.rmtree(root, ignore_errors=True)


def _forget_lockfile(work: Path) -> None:
    """Before the `npm install` retry: no lockfile (its URLs or versions are the problem) and
    nothing `npm ci` left half installed."""
    for name in NODE_LOCKFILES:
        (work / name).unlink(missing_ok=True)
    shutil.rmtree(work / "node_modules", ignore_errors=True)


def _installer(kind: RuntimeKind, manifest: Manifest, interpreter: str, box: str,
               npm_command: str | None = None) -> tuple[list[str], str]:
    """The installer's argv and name; `box` is the build folder as the installer sees it.
    npm runs `ci` when there is a lockfile, else `install` (or `npm_command` when given)."""
    if kind.language == "python":
        return [interpreter, "-I", "-m", "pip", "install", "--target", f"{box}/target", "--no-input",
                "--disable-pip-version-check", "--no-cache-dir", "--no-warn-script-location",
                "--progress-bar", "off", "-r", "requirements.txt"], "pip"
    npm = shutil.which("npm", path="/usr/local/bin:/usr/bin:/bin")
    if npm is None:
        raise BuildFailed("npm is not installed on this platform; the nodejs20 runtime needs it to build dependencies")
    command = npm_command or ("ci" if manifest.lockfile else "install")
    return [npm, command, "--omit=dev", "--no-audit", "--no-fund", "--no-progress", "--install-links",
            "--no-update-notifier", "--loglevel=warn"], f"npm {command}"


def _env(kind: RuntimeKind, registries: Registries, box: str) -> dict[str, str]:
    home = f"{box}/home"
    if kind.language == "python":
        extra = {"PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    else:
        extra = {"npm_config_cache": f"{home}/.npm", "npm_config_update_notifier": "false",
                 "npm_config_fund": "false", "npm_config_audit": "false"}
    return build_env(registries, home=home, extra=extra)


def seal_tree(tree: Path) -> None:
    """Make every entry of `tree` the platform's (root's), with no write bit for anyone and no
    setuid bit: folders and executables 0555, other files 0444; links are left as they are.
    The modes follow from the owner's execute bit alone, so a copy of a sealed tree that kept
    that bit (a tarball unpacked with tarfile's `data` filter, frazil.cluster.layers) seals to
    the same modes, and to the same tree digest."""
    uid, gid = os.geteuid(), os.getegid()
    for dirpath, dirnames, filenames in os.walk(tree):
        for path in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            st = os.lstat(path)
            if st.st_uid != uid or st.st_gid != gid:
                os.lchown(path, uid, gid)
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o100:
                mode = 0o555
            else:
                mode = 0o444
            os.chmod(path, mode)


def _settle(built: Path, final: Path) -> None:
    """Make the built tree root's and read-only, record its digest, rename it into place.
    Called only once every process of the build is gone (nothing can change it meanwhile)."""
    seal_tree(built)
    final.parent.mkdir(parents=True, exist_ok=True)
    if os.stat(built).st_dev == os.stat(final.parent).st_dev:
        integrity.record(built, final)
        os.rename(built, final)
        return
    # Another filesystem: copy next to the final place, then rename (still one step).
    incoming = final.parent / INCOMING_DIR
    incoming.mkdir(exist_ok=True)
    copy = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=incoming))
    try:
        shutil.copytree(built, copy, symlinks=True, dirs_exist_ok=True)  # modes copied, root dir's too
        integrity.record(copy, final)
        os.rename(copy, final)
    finally:
        if copy.exists():
            _make_writable(copy)
            shutil.rmtree(copy, ignore_errors=True)


def _make_writable(tree: Path) -> None:
    for dirpath, _, _ in os.walk(tree):
        os.chmod(dirpath, 0o755)


# --- locks -------------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def local_layer_lock(settings: Settings, key: str):
    """The lock `ensure_layer` builds under (this process's tasks and every process sharing the
    data dir), for others that write `<data_dir>/layers/<key>` (frazil.cluster.layers, which
    unpacks a layer fetched from the cluster). Not reentrant: never call ensure_layer inside."""
    root = layers_root(settings)
    async with _key_lock(str((root / key).resolve())), _file_lock(root / LOCKS_DIR / f"{key}.lock"):
        yield root / key


async def manifest_key(settings: Settings, runtime: RuntimeKind | str, code_dir: Path) -> str | None:
    """The layer key of the project in `code_dir`; None when it declares no dependencies."""
    kind = get_runtime(runtime) if isinstance(runtime, str) else runtime
    registries = Registries.configured(settings.build_registries)
    manifest = await asyncio.to_thread(read_manifest, kind, Path(code_dir), registries)
    return None if manifest is None else manifest.key


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
