"""The lightweight container: instances in namespaces, cgroups, seccomp and Landlock.

Ownership, one level per class:
- `IsolatedSandbox` (one per platform) owns the launcher process, the cgroup scope
  <hierarchy>/frazil/<scope>/ and the uid block; it creates instances.
- `IsolatedProcess` (one per instance) owns the instance's pid (a direct child of the
  platform, watched through a pidfd), its cgroup, its uid and the platform's ends of its
  channel and output pipe; `destroy()` releases all of them.

Creating one instance (all without exec'ing a helper or a shell):
  platform: cgroup dirs + limits, open cgroup.procs; socketpair, output and error pipes
  launcher: clone(CLONE_PARENT | namespaces) -> the child enters the sandbox and execs the
            runtime (the sequence is in `frazil.sandbox.enter.launch`)
  platform: the error pipe reaches EOF without a message -> the runtime is running.
What the pool reads next on the channel is the runtime's "hello".
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import resource
import signal
import socket
import time
from pathlib import Path

from frazil.runtimes import RUNTIMES, RUNTIMES_ROOT, RuntimeKind
from frazil.sandbox import rootfs
from frazil.sandbox.base import (ExitInfo, RuntimePaths, Sandbox, SandboxError, SandboxProcess, SandboxSpec,
                                 SandboxUnavailable)
from frazil.sandbox.cgroups import CgroupBackend, CgroupError, InstanceCgroup, Limits, scope_for
from frazil.sandbox.launcher_client import LauncherClient, LauncherError
from frazil.sandbox.probe import ProbeResult, probe
from frazil.sandbox.spawn import exit_info_from_status
from frazil.sandbox.uids import UidPool
from frazil.settings import MB, Settings

log = logging.getLogger(__name__)

RUNTIME_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": rootfs.TMP_DIR, "TMPDIR": rootfs.TMP_DIR,
               "LANG": "C.UTF-8"}
CPU_TIME_LIMIT_S = 4 * 3600  # RLIMIT_CPU: generous, an instance lives across many invocations
OPEN_FILES_LIMIT = 4096
SETUP_TIMEOUT_S = 10.0
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def cgroup_name(instance_id: str) -> str:
    if _SAFE_NAME.match(instance_id) and instance_id not in (".", ".."):
        return instance_id
    return hashlib.sha256(instance_id.encode()).hexdigest()[:32]


class IsolatedProcess(SandboxProcess):
    """One running instance. Touched only from the event loop thread."""

    def __init__(self, *, cgroup: InstanceCgroup, uid: int, on_destroyed, **kwargs):
        super().__init__(**kwargs)
        self.cgroup = cgroup
        self.uid = uid
        self._on_destroyed = on_destroyed
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[ExitInfo] = self._loop.create_future()
        self._destroying: asyncio.Future[ExitInfo] | None = None
        # The platform is this pid's parent (CLONE_PARENT) and the only one who reaps it,
        # so the pid cannot be reused while we hold it: the pidfd is exact.
        self._pidfd: int | None = os.pidfd_open(self.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        try:
            reaped, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            reaped, status = self.pid, 0
        if reaped == 0:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        # Read before the cgroup is removed: the kernel's own count, not a guess from SIGKILL.
        info = exit_info_from_status(status, oom_killed=self.cgroup.oom_kills() > 0)
        if not self._exited.done():
            self._exited.set_result(info)

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        """SIGKILL the runtime: it is PID 1 of its namespace, so the kernel kills the rest."""
        if self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except OSError:
                pass

    async def destroy(self) -> ExitInfo:
        if self._destroying is None:
            self._destroying = asyncio.ensure_future(self._destroy())
        return await asyncio.shield(self._destroying)

    async def _destroy(self) -> ExitInfo:
        started = time.perf_counter()
        self.kill()
        info = await self.wait()
        self.channel.close()
        try:
            os.close(self.output_fd)
        except OSError:
            pass
        try:
            self.cgroup.remove()
        except CgroupError as exc:  # the next start() removes it
            log.warning("instance %s: %s", self.instance_id, exc)
        self._on_destroyed(self)
        self.stats["destroy_ms"] = (time.perf_counter() - started) * 1000
        return info


class IsolatedSandbox(Sandbox):
    name = "isolated"

    def __init__(self, settings: Settings, probed: ProbeResult, scope: str):
        self.settings = settings
        self.scope = scope
        self.probed = probed
        self.cgroups: CgroupBackend = probed.cgroups
        self.uids = UidPool(scope)
        self.data_dir = Path(os.path.realpath(settings.data_dir))
        self.launcher: LauncherClient | None = None
        self.layout: rootfs.Layout | None = None
        self._live: dict[str, IsolatedProcess] = {}
        self._launcher_lock = asyncio.Lock()

    @classmethod
    def probe_and_create(cls, settings: Settings) -> "IsolatedSandbox":
        """The sandbox if this machine can run it; else SandboxUnavailable naming what is missing."""
        scope = scope_for(settings.data_dir)
        probed = probe(scope)
        if not probed.ok:
            raise SandboxUnavailable(probed.message())
        for note in probed.notes:
            log.info("isolated sandbox: %s", note)
        return cls(settings, probed, scope)

    # --- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        removed = self.remove_stale()
        if removed:
            log.info("isolated sandbox: removed %d instance(s) left by a previous run", removed)
        self.cgroups.remove_empty_scopes()
        self.cgroups.prepare()
        interpreters = []
        for runtime in RUNTIMES.values():
            try:
                interpreters.append(str(runtime.interpreter()))
            except RuntimeError:
                pass  # e.g. no Node.js here: creating such an instance fails with that reason
        self.layout = rootfs.default_layout(interpreters, str(RUNTIMES_ROOT))
        mountpoint = self.data_dir / "sandbox" / "rootfs"
        mountpoint.mkdir(parents=True, exist_ok=True)
        self._launcher_config = {"layout": self.layout.to_dict(), "mountpoint": str(mountpoint)}
        await self._start_launcher()

    async def _start_launcher(self) -> None:
        launcher = LauncherClient(self._launcher_config)
        try:
            info = await launcher.start()
        except LauncherError as exc:
            raise SandboxUnavailable(f"the isolated sandbox could not start: {exc}") from exc
        log.info("isolated sandbox: launcher ready in %.1f ms (network namespace %s, seccomp %d instructions)",
                 info["setup_ms"], info["netns"], info["filter_len"])
        self.launcher = launcher

    def remove_stale(self) -> int:
        """Kill and remove every instance cgroup of this scope (left by a dead platform)."""
        names = self.cgroups.instance_names()
        for name in names:
            if name in self._live:
                continue
            cg = self.cgroups.attach(name)
            cg.kill_all()
            cg.remove(timeout_s=5.0)
        return len(names)

    async def close(self) -> None:
        await asyncio.gather(*(p.destroy() for p in list(self._live.values())), return_exceptions=True)
        if self.launcher is not None:
            await self.launcher.close()
            self.launcher = None
        self.cgroups.remove_scope()

    # --- instances ------------------------------------------------------------------------

    async def create(self, spec: SandboxSpec) -> IsolatedProcess:
        # Shielded: a caller that gives up must not strand a half-made instance; whatever
        # gets made after a cancellation is destroyed as soon as it exists.
        task = asyncio.ensure_future(self._create(spec))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_destroy_abandoned)
            raise

    async def _create(self, spec: SandboxSpec) -> IsolatedProcess:
        started = time.perf_counter()
        if self.layout is None:
            raise SandboxError("the sandbox is not started")
        argv, code_dir, layer_dirs = self._resolve(spec)
        name = cgroup_name(spec.instance_id)
        if name in self._live:
            raise SandboxError(f"instance {spec.instance_id} already exists")
        try:
            uid = self.uids.acquire()
        except RuntimeError as exc:
            raise SandboxError(str(exc)) from None
        cg: InstanceCgroup | None = None
        wiring: _Wiring | None = None
        try:
            try:
                cg = self.cgroups.create(name, Limits(spec.memory_mb * MB, spec.cpu, spec.pids_max))
            except FileExistsError:
                raise SandboxError(f"a cgroup for instance {spec.instance_id} already exists") from None
            wiring = _Wiring(cg.open_procs())
            cgroup_done = time.perf_counter()
            request = {
                "argv": argv, "env": RUNTIME_ENV, "uid": uid, "gid": uid, "code_dir": code_dir,
                "layer_dirs": layer_dirs, "tmp_mb": spec.tmp_mb, "rlimits": self._rlimits(spec),
            }
            launcher = await self._running_launcher()
            pid = await launcher.spawn(request, wiring.child_fds())
        except (OSError, LauncherError, SandboxError) as exc:
            if wiring is not None:
                wiring.close_all()
            if cg is not None:
                # A launcher that died mid-request may still have cloned the child: it is
                # ours (CLONE_PARENT) and in this cgroup, so kill it and reap it here.
                strays = cg.pids()
                try:
                    cg.remove(timeout_s=1.0)
                except OSError:
                    pass
                _reap(strays)
            self.uids.release(uid)
            if isinstance(exc, SandboxError):
                raise
            raise SandboxError(f"could not start {spec.runtime.name} in the sandbox: {exc}") from exc
        wiring.close_child_ends()
        spawned = time.perf_counter()
        proc = IsolatedProcess(
            instance_id=spec.instance_id, pid=pid, channel=wiring.channel, output_fd=wiring.output_r,
            paths=RuntimePaths(rootfs.CODE_DIR, tuple(rootfs.layer_dir(i) for i in range(len(layer_dirs))),
                               rootfs.TMP_DIR),
            cgroup=cg, uid=uid, on_destroyed=self._forget,
        )
        self._live[name] = proc
        error = await _setup_error(wiring.error_r)
        if error:
            info = await proc.destroy()
            raise SandboxError(f"could not start {spec.runtime.name} in the sandbox: {error} ({info.describe()})")
        now = time.perf_counter()
        proc.stats.update(create_ms=(now - started) * 1000, cgroup_ms=(cgroup_done - started) * 1000,
                          spawn_ms=(spawned - cgroup_done) * 1000, exec_ms=(now - spawned) * 1000,
                          uid=uid, cgroup=name)
        return proc

    def _resolve(self, spec: SandboxSpec) -> tuple[list[str], str, list[str]]:
        """Check the spec against what the sandbox can show inside; host paths resolved."""
        runtime: RuntimeKind = spec.runtime
        try:
            interpreter = str(runtime.interpreter())
        except RuntimeError as exc:
            raise SandboxError(str(exc)) from None
        if not self._visible(interpreter):
            raise SandboxError(f"{interpreter} is not visible inside the sandbox (restart the platform "
                               f"after installing {runtime.name})")
        if len(spec.layer_dirs) > self.layout.max_layers:
            raise SandboxError(f"{len(spec.layer_dirs)} dependency layers; the sandbox mounts at most "
                               f"{self.layout.max_layers}")
        code_dir = _readable_dir(spec.code_dir, "code")
        layer_dirs = [_readable_dir(d, "layer") for d in spec.layer_dirs]
        return runtime.argv(interpreter, rootfs.RUNTIME_DIR, spec.memory_mb), code_dir, layer_dirs

    def _visible(self, path: str) -> bool:
        return path.startswith("/usr/") or any(
            path.startswith(inside.rstrip("/") + "/") for host, inside in self.layout.ro_binds if host == inside)

    @staticmethod
    def _rlimits(spec: SandboxSpec) -> list[tuple[int, int, int]]:
        file_size = (spec.tmp_mb + 1) * MB  # a little over /tmp: a full /tmp answers ENOSPC, not SIGXFSZ
        return [
            (resource.RLIMIT_CPU, CPU_TIME_LIMIT_S, CPU_TIME_LIMIT_S + 5),
            (resource.RLIMIT_FSIZE, file_size, file_size),
            (resource.RLIMIT_NOFILE, OPEN_FILES_LIMIT, OPEN_FILES_LIMIT),
            (resource.RLIMIT_CORE, 0, 0),
        ]

    async def _running_launcher(self) -> LauncherClient:
        """The launcher, restarted once if it died (instances it made live on: they are ours)."""
        async with self._launcher_lock:
            if self.launcher is None or not self.launcher.alive:
                if self.launcher is not None:
                    log.warning("isolated sandbox: the launcher exited; starting a new one")
                    await self.launcher.close()
                    self.launcher = None
                try:
                    await self._start_launcher()
                except SandboxUnavailable as exc:
                    raise SandboxError(str(exc)) from exc
            return self.launcher

    def _forget(self, proc: IsolatedProcess) -> None:
        self._live.pop(proc.stats.get("cgroup") or cgroup_name(proc.instance_id), None)
        self.uids.release(proc.uid)


class _Wiring:
    """The descriptors between the platform and one instance, until the child has them.

    Ours: the channel, the output pipe's read end, the error pipe's read end. The child's,
    sent to the launcher and closed here once sent: the other channel end, the output
    pipe's write end, the error pipe's write end and the cgroup join descriptors."""

    def __init__(self, cgroup_fds: list[int]):
        made: list = []
        try:
            self.channel, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            made += [self.channel, self._theirs]
            self.output_r, output_w = os.pipe()
            made += [self.output_r, output_w]
            self.error_r, error_w = os.pipe()
        except OSError:  # e.g. out of descriptors: give back what was taken, cgroup fds too
            for item in made:
                item.close() if isinstance(item, socket.socket) else os.close(item)
            for fd in cgroup_fds:
                os.close(fd)
            raise
        self._child_head = [self._theirs.fileno(), output_w, error_w]
        self._child = list(cgroup_fds)

    def child_fds(self) -> list[int]:
        """In the order the launcher expects: channel, output, error, cgroup joins."""
        return self._child_head + self._child

    def close_child_ends(self) -> None:
        self._theirs.close()
        for fd in self._child_head[1:] + self._child:
            os.close(fd)
        self._child_head, self._child = [], []
        self.channel.setblocking(False)
        os.set_blocking(self.output_r, False)

    def close_all(self) -> None:
        self.close_child_ends()
        self.channel.close()
        os.close(self.output_r)
        os.close(self.error_r)


async def _setup_error(err_r: int) -> str:
    """Wait for the error pipe: EOF alone means the runtime was exec'd."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    chunks: list[bytes] = []

    def readable() -> None:
        try:
            data = os.read(err_r, 4096)
        except BlockingIOError:
            return
        if data:
            chunks.append(data)
        elif not done.done():
            done.set_result(None)

    os.set_blocking(err_r, False)
    loop.add_reader(err_r, readable)
    try:
        await asyncio.wait_for(done, SETUP_TIMEOUT_S)
    except asyncio.TimeoutError:
        chunks.append(f"the sandbox was not ready within {SETUP_TIMEOUT_S:g} s".encode())
    finally:
        loop.remove_reader(err_r)
        os.close(err_r)
    return b"".join(chunks).decode(errors="replace")


def _reap(pids: set[int]) -> None:
    """Reap killed children of ours, when they are gone (a pidfd each, in the event loop)."""
    loop = asyncio.get_running_loop()
    for pid in pids:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue

        def reap(pid=pid, pidfd=pidfd) -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours after all
                pass

        loop.add_reader(pidfd, reap)


def _destroy_abandoned(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is None:
        asyncio.ensure_future(task.result().destroy())


def _readable_dir(path: Path, what: str) -> str:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise SandboxError(f"the {what} directory {path} cannot be used: {exc.strerror}") from None
    if not os.path.isdir(real):
        raise SandboxError(f"the {what} directory {path} is not a directory")
    if st.st_mode & 0o005 != 0o005:
        raise SandboxError(f"the {what} directory {path} must be readable by others (mode {st.st_mode & 0o777:o}): "
                           "instances run under their own unprivileged uid")
    return real
