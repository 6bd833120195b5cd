"""The platform's half of the build sandbox: one `BuildBox.run()` per installer command.

The order of every containment step, from here to the installer's exec and back, is written
out once, in frazil/sandbox/helper/build_jail.py. This module owns, for one build: its uid lease (`BuildUids`), its
cgroup, the helper process, the registry proxy serving the socket the helper hands over,
and the capped log. Invariant: `run()` returns or raises only once the build's cgroup is
empty and removed, so nothing the build started is alive when its output is looked at.
"""
from __future__ import annotations

import asyncio
import collections
import fcntl
import json
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from frazil.sandbox.helper import build_jail as jail
from frazil.build.registries import Registries
from frazil.build.registry_proxy import RegistryProxy
from frazil.errors import BuildFailed, BuildTimedOut
from frazil.sandbox.helper import rootfs, wire
from frazil.sandbox.cgroups import CgroupBackend, CgroupError, Limits, scope_for
from frazil.sandbox.probe import discover
from frazil.sandbox.spawn import until_readable

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding frazil/
BOOTSTRAP = ("import sys; sys.path.insert(0, {root!r}); "
             "from frazil.sandbox.helper.build_jail import main; main()")
HELPER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
EMPTY_TIMEOUT_S = 10.0  # killing the cgroup: how long its processes may take to be gone
TAIL_LINES = 50
TAIL_LINE_CHARS = 2000
CGROUP_PREFIX = "build-"

BUILD_FIRST_UID = 20_000_000  # above every instance block (frazil.sandbox.uids: 10M..14M)
BUILD_BLOCK_SIZE = 1000
BUILD_BLOCKS = 400
UID_LOCK_DIR = "/run/frazil/build-uids"


@dataclass(frozen=True)
class BuildLimits:
    memory_mb: int
    cpu: float
    pids_max: int
    timeout_s: float


class BuildUids:
    """A uid per running build, unique on the machine: builds of every platform take a lock
    file per uid (flock, released by the kernel when the holder dies), so no two live builds,
    and no instance (whose blocks lie below BUILD_FIRST_UID), ever share one. Each platform
    scope starts at its own block, so platforms rarely even contend for a lock."""

    def __init__(self, scope: str, lock_dir: str = UID_LOCK_DIR):
        self.base = BUILD_FIRST_UID + (int(scope, 16) % BUILD_BLOCKS) * BUILD_BLOCK_SIZE
        self.lock_dir = lock_dir

    def acquire(self) -> tuple[int, int]:
        """(uid, lock descriptor); close the descriptor to release."""
        os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
        span = BUILD_BLOCKS * BUILD_BLOCK_SIZE
        for offset in range(span):
            uid = BUILD_FIRST_UID + (self.base - BUILD_FIRST_UID + offset) % span
            fd = os.open(f"{self.lock_dir}/{uid}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return uid, fd
            except BlockingIOError:
                os.close(fd)
        raise BuildFailed("every build uid is in use")


class BuildLog:
    """A build's output, line by line, at most `cap` bytes of it into `log`; the rest is
    counted and dropped (one line says so), and the last TAIL_LINES lines are kept for the
    failure message whatever the cap."""

    def __init__(self, log: Callable[[str], None], cap: int):
        self._log = log
        self._room = cap
        self.dropped = 0
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def line(self, text: str) -> None:
        self.tail.append(text[:TAIL_LINE_CHARS])
        size = len(text.encode()) + 1
        if size <= self._room:
            self._room -= size
            self._log(text)
            return
        if not self.dropped:
            self._log("[frazil: the build log reached its cap; further output is dropped]")
        self._room = 0
        self.dropped += size

    def close(self) -> None:
        if self.dropped:
            self._log(f"[frazil: build log truncated, {self.dropped} bytes dropped]")


class BuildBox:
    """Runs installer commands in the build sandbox of one platform (its data dir)."""

    def __init__(self, data_dir: Path, limits: BuildLimits, registries: Registries, log_cap: int):
        scope = scope_for(data_dir)
        self.limits = limits
        self.registries = registries
        self.log_cap = log_cap
        self.uids = BuildUids(scope)
        self.backend: CgroupBackend | None = discover(CGROUP_PREFIX + scope)
        if self.backend is not None and os.geteuid() == 0:
            self._remove_empty_leftovers()

    def _remove_empty_leftovers(self) -> None:
        """Build cgroups a platform killed outright left behind are empty (its builds died
        with it: the helper and PID 1 have a parent death signal); rmdir removes those and
        refuses any cgroup still in use (another process sharing this data dir may be
        building): nothing is killed here."""
        for name in self.backend.instance_names():
            for d in self.backend.attach(name).dirs:
                try:
                    os.rmdir(d)
                except OSError:
                    pass

    def unavailable(self) -> str | None:
        """Why builds cannot be sandboxed here, or None."""
        if os.geteuid() != 0:
            return "the platform does not run as root"
        if self.backend is None:
            return "no cgroup hierarchy with the memory, cpu and pids controllers"
        return None

    async def run(self, argv: list[str], *, box: Path, mountpoint: Path, layout: rootfs.Layout, cwd: str,
                  env: dict[str, str], log: Callable[[str], None], what: str,
                  timeout_s: float | None = None) -> None:
        """Run `argv` (paths as seen inside) with `box` as /build; raise BuildFailed unless it
        exits 0 (BuildTimedOut past `timeout_s`, by default the build's limit). Returns only
        once every process of the build is gone."""
        timeout_s = self.limits.timeout_s if timeout_s is None else timeout_s
        out = BuildLog(log, self.log_cap)
        started = time.perf_counter()
        uid, uid_lock = self.uids.acquire()
        cg = None
        helper = None
        proxy = RegistryProxy(self.registries, log)
        ours = theirs = None
        ready: dict | None = None
        pump: asyncio.Task | None = None
        timed_out = False
        status = None
        oom = 0
        try:
            _chown_tree(box, uid)
            self.backend.prepare()
            cg = self.backend.create(f"{CGROUP_PREFIX}{secrets.token_hex(6)}",
                                     Limits(self.limits.memory_mb << 20, self.limits.cpu, self.limits.pids_max))
            log(f"build sandbox: uid {uid}, own namespaces, cgroup {cg.name} ({self.limits.memory_mb} MB, "
                f"{self.limits.cpu:g} CPU, {self.limits.pids_max} pids); network: {self.registries.describe()}")
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            # Both ends stay close-on-exec here: `pass_fds` hands the helper its end, and no
            # other process the platform starts meanwhile (an instance launcher) inherits it.
            helper = await asyncio.create_subprocess_exec(
                _platform_python(), "-I", "-S", "-B", "-c", BOOTSTRAP.format(root=PACKAGE_PARENT), str(theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                pass_fds=(theirs.fileno(),), start_new_session=True, env=HELPER_ENV)
            theirs.close()
            theirs = None
            spec = {"platform_pid": os.getpid(), "build_dir": str(box), "mountpoint": str(mountpoint),
                    "layout": layout.to_dict(), "uid": uid, "gid": uid, "argv": argv, "env": env, "cwd": cwd}
            join = cg.open_procs()
            try:
                wire.send(ours, spec, join)
            finally:
                for fd in join:
                    os.close(fd)
            pump = asyncio.ensure_future(_pump(helper.stdout, out.line))
            try:
                async with asyncio.timeout(timeout_s):
                    ready = await _receive(ours)
                    if ready.get("type") == jail.READY:
                        await proxy.serve(ready.pop("fds")[0])
                        log(f"build sandbox ready in {(time.perf_counter() - started) * 1000:.0f} ms")
                    status = await helper.wait()
                    ended = time.perf_counter()
            except TimeoutError:
                timed_out = True
        finally:
            # Whatever happened: kill the cgroup and wait until it is empty, then the rest.
            stuck = None
            if cg is not None:
                oom = cg.oom_kills()
                cg.kill_all()
                try:
                    await asyncio.to_thread(cg.remove, EMPTY_TIMEOUT_S)
                except CgroupError as exc:
                    stuck = exc
                else:
                    self.backend.remove_scope()  # when no other build is using it (rmdir refuses then)
            if helper is not None and helper.returncode is None and stuck is None:
                await helper.wait()  # it was in the cgroup: dead, to be reaped
            if pump is not None and stuck is None:
                await pump  # every writer of the log pipe is dead: EOF has come
            elif pump is not None:
                pump.cancel()
            out.close()
            await proxy.close()
            for sock in (ours, theirs):
                if sock is not None:
                    sock.close()
            os.close(uid_lock)
            if stuck is not None:  # the tree must not become a layer
                raise BuildFailed(f"the build's processes could not be stopped: {stuck}") from None
            if status is not None:
                log(f"build sandbox removed in {(time.perf_counter() - ended) * 1000:.0f} ms")
        if timed_out:
            raise BuildTimedOut(f"the dependency build timed out after {timeout_s:g} s")
        if ready is not None and ready.get("type") == jail.FAILED:
            raise BuildFailed(f"the build sandbox could not be set up: {ready.get('error')}")
        if status == 0:
            return
        text = "\n".join(out.tail)
        if status is not None and status < 0:
            reason = f"was killed by signal {-status}"
        else:
            reason = f"exited with status {status}"
        if oom:  # the installer itself or one of its processes: either way, this is why
            reason += f"; the build ran out of memory (the build's limit is {self.limits.memory_mb} MB)"
        raise BuildFailed(f"the dependency build failed ({what} {reason}):\n{text}", exit_status=status)


async def _receive(sock: socket.socket) -> dict:
    """The helper's one message: "ready" with the proxy socket (under "fds"), or "failed";
    {"type": "failed"} with a reason when the helper closed the socket without a word."""
    sock.setblocking(False)
    await until_readable(sock.fileno())
    data, fds = wire.recv(sock)
    if not data:
        return {"type": jail.FAILED, "error": "the sandbox helper exited before it was ready"}
    message = json.loads(data)
    if message.get("type") == jail.READY:
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return {"type": jail.FAILED, "error": f"expected one proxy socket, got {len(fds)}"}
        message["fds"] = [socket.socket(fileno=fds[0])]
    else:
        for fd in fds:
            os.close(fd)
    return message


async def _pump(stream: asyncio.StreamReader, emit: Callable[[str], None]) -> None:
    """Read the output to EOF, one line at a time, without a line-length limit."""
    pending = b""
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            emit(_text(line))
        if len(pending) > 65536:  # a line without end (a progress bar): show it in pieces
            emit(_text(pending))
            pending = b""
    if pending:
        emit(_text(pending))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r")


def _chown_tree(root: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.lchown(dirpath, uid, uid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


def _platform_python() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))
