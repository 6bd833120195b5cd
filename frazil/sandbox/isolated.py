"""The lightweight container: instances in namespaces, cgroups, seccomp and Landlock.

Ownership, one level per class:
- `IsolatedSandbox` (one per platform) owns the launcher and the Python zygote (both through
  one LauncherClient), the cgroup scope <hierarchy>/frazil/<scope>/, the uid block and the
  pool of generic instances (`frazil.sandbox.prebuilt`); it creates instances.
- `IsolatedProcess` (one per instance, generic or not) owns the instance's pid (a direct child
  of the platform, watched through a pidfd), its cgroup, its uid and the platform's ends of
  its channel and output pipe; `destroy()` releases all of them.

Creating one instance, fastest path first (`create`; measured on a 2-vCPU VM, create() to
the runtime's "ready" after init, p50: prebuilt ~1.6-1.9 ms, zygote ~6 ms, exec ~30 ms):
  prebuilt  a generic instance of the spec's shape (runtime + tier limits) is ready (built
            ahead of time, `frazil.sandbox.prebuilt`): create() opens read-only trees of the
            code and layers and hands them to the launcher, which attaches them from outside
            (`frazil.sandbox.specialize`); a Python one waits for its go byte before reading
            "init", so create() returns without waiting (~0.2-0.5 ms); a Node one is waited for.
  zygote    (Python, pool empty) the zygote forks a generic instance now, then as above.
  exec      (Node, pool empty; or Python without a zygote; or a pool that cannot read an
            early hello) the launcher clones a child that enters the sandbox with the code
            mounted and execs the runtime.
Building one (generic or not): the platform makes the cgroup dirs + limits and opens their
join files, the socketpair, output and error pipes; the launcher or the zygote clones the
child with CLONE_PARENT (the sequence is in `frazil.sandbox.enter.launch`); the error pipe
reaching EOF without a message means the child is sandboxed (and, exec'd, running its
runtime). What the pool reads next on the channel is the runtime's "hello".
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import resource
import secrets
import socket
import stat
import time
from pathlib import Path

from frazil.runtimes import PYTHON, RUNTIMES, RUNTIMES_ROOT, RuntimeKind
from frazil.sandbox import rootfs
from frazil.sandbox.base import (ExitInfo, InstanceShape, RuntimePaths, Sandbox, SandboxError, SandboxProcess,
                                 SandboxSpec, SandboxUnavailable)
from frazil.sandbox.cgroups import CgroupBackend, CgroupError, InstanceCgroup, Limits, scope_for
from frazil.sandbox.enter import readonly_tree
from frazil.sandbox.launcher_client import LauncherClient, LauncherError
from frazil.sandbox.prebuilt import GenericPool
from frazil.sandbox.probe import ProbeResult, probe
from frazil.sandbox.spawn import ChildWaiter, exit_info_from_status
from frazil.sandbox.uids import UidPool
from frazil.sandbox.zygote import Config as ZygoteConfig
from frazil.settings import MB, Settings

log = logging.getLogger(__name__)

RUNTIME_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": rootfs.TMP_DIR, "TMPDIR": rootfs.TMP_DIR,
               "LANG": "C.UTF-8"}
CPU_TIME_LIMIT_S = 4 * 3600  # RLIMIT_CPU: generous, an instance lives across many invocations
OPEN_FILES_LIMIT = 4096
SETUP_TIMEOUT_S = 10.0
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
GENERIC_PREFIX = "generic-"  # cgroup names of generic instances (renamed to the instance id once taken)
GENERIC_CAP = 32  # generic instances at most, over all shapes (memory: see prebuilt.py)
REFILL_DELAY_S = 0.02  # a taken generic instance is replaced this much later (off the critical path)
RENAME_DELAY_S = 0.05  # ...and its cgroup renamed to the instance id (~60 us: not on the critical path)
REALPATH_CACHE = 4096


class CreatePath:
    """How an instance was made (`proc.stats["path"]`)."""

    PREBUILT = "prebuilt"
    ZYGOTE = "zygote"
    EXEC = "exec"


def cgroup_name(instance_id: str) -> str:
    if _SAFE_NAME.match(instance_id) and instance_id not in (".", "..") and not instance_id.startswith(GENERIC_PREFIX):
        return instance_id
    return hashlib.sha256(instance_id.encode()).hexdigest()[:32]


class IsolatedProcess(SandboxProcess):
    """One running instance. Touched only from the event loop thread."""

    def __init__(self, *, cgroup: InstanceCgroup, uid: int, on_destroyed, go_fd: int | None = None,
                 weight_fd: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.cgroup = cgroup
        self.uid = uid
        # A generic instance is built with a low CPU weight (its set-up and warm-up only take
        # CPU nobody else wants); `promote()` gives it the ordinary weight when it is taken.
        self._weight_fd = weight_fd
        # Write end of the go pipe of a generic zygote child: the runtime reads "init" only
        # once the launcher, which gets this descriptor with the code, has written one byte.
        self.go_fd = go_fd
        self._on_destroyed = on_destroyed
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[ExitInfo] = self._loop.create_future()
        self._destroying: asyncio.Future[ExitInfo] | None = None
        # The platform is this pid's parent (CLONE_PARENT) and the only one who reaps it.
        self._child = ChildWaiter(self.pid, on_exit=self._on_exit)

    def _on_exit(self, status: int) -> None:
        # Read before the cgroup is removed: the kernel's own count, not a guess from SIGKILL.
        info = exit_info_from_status(status, oom_killed=self.cgroup.oom_kills() > 0)
        if not self._exited.done():
            self._exited.set_result(info)

    @property
    def pidfd(self) -> int | None:
        """Our pidfd of the runtime; None once it has exited and been reaped."""
        return self._child.pidfd

    @property
    def exited(self) -> bool:
        return self._exited.done() or self._destroying is not None

    def exit_info(self) -> ExitInfo:
        return self._exited.result() if self._exited.done() else ExitInfo()

    def on_exit(self, callback) -> None:
        """Call `callback()` (in the event loop) once the runtime has exited."""
        self._exited.add_done_callback(lambda _: callback())

    def greeted(self) -> bool:
        """Whether the runtime has sent something (its hello) that nobody has read yet."""
        try:
            return bool(self.channel.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return False

    def promote(self) -> None:
        """The ordinary CPU weight, from now on (idempotent)."""
        if self._weight_fd is not None:
            try:
                self.cgroup.set_cpu_weight(self._weight_fd, low=False)
            except OSError as exc:
                log.warning("instance %s: CPU weight not restored: %s", self.instance_id, exc)
            os.close(self._weight_fd)
            self._weight_fd = None

    def close_go(self) -> None:
        if self.go_fd is not None:
            os.close(self.go_fd)
            self.go_fd = None

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        """SIGKILL the runtime: it is PID 1 of its namespace, so the kernel kills the rest."""
        self._child.kill()

    async def destroy(self) -> ExitInfo:
        if self._destroying is None:
            self._destroying = asyncio.ensure_future(self._destroy())
        return await asyncio.shield(self._destroying)

    async def _destroy(self) -> ExitInfo:
        started = time.perf_counter()
        self.kill()
        info = await self.wait()
        self.channel.close()
        self.close_go()
        if self._weight_fd is not None:
            os.close(self._weight_fd)
            self._weight_fd = None
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
        self.use_zygote = settings.sandbox_zygote
        self.generics = GenericPool(self._build_generic, cap=GENERIC_CAP, delay_s=REFILL_DELAY_S,
                                    idle_ttl_s=settings.keep_alive_s)
        # Every instance alive, generic or not, by cgroup name; and the instance ids in use
        # (None while a create() of that id is under way).
        self._live: dict[str, IsolatedProcess] = {}
        self._ids: dict[str, IsolatedProcess | None] = {}
        self._launcher_lock = asyncio.Lock()
        self._closing = False
        self._early_hello_ok = False
        self._zygote_warned: LauncherClient | None = None
        self._tiers_pinned = False
        self._specializing: set[asyncio.Future] = set()  # destroys in the background, awaited at close
        self._interpreters: dict[str, str] = {}  # runtime name -> interpreter path (see _interpreter)
        self._realpaths: dict[str, str] = {}  # code/layer dir -> resolved (see _readable_dir)

    @property
    def early_hello_ok(self) -> bool:
        return self._early_hello_ok

    @early_hello_ok.setter
    def early_hello_ok(self, value: bool) -> None:
        # The pool says so after start(): begin building the tiers' generic instances now,
        # not at the first cold start.
        self._early_hello_ok = value
        if value and self.layout is not None and not self._closing:
            self._pin_tiers()

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
        self._interpreters.clear()
        mountpoint = self.data_dir / "sandbox" / "rootfs"
        mountpoint.mkdir(parents=True, exist_ok=True)
        self._launcher_config = {"layout": self.layout.to_dict(), "mountpoint": str(mountpoint)}
        if self.use_zygote:
            argv = PYTHON.argv(str(PYTHON.interpreter()), rootfs.RUNTIME_DIR, 128)
            self._launcher_config["zygote"] = ZygoteConfig(loop=argv[-1], argv=tuple(argv), env=RUNTIME_ENV).to_dict()
        await self._start_launcher()
        self._pin_tiers()

    def _pin_tiers(self) -> None:
        """Keep generic Python instances ready for every tier, once they can be used."""
        if self._tiers_pinned or not self.early_hello_ok or self.settings.sandbox_prebuilt <= 0:
            return
        self._tiers_pinned = True
        for tier in self.settings.tiers.values():
            self.keep_ready(InstanceShape(PYTHON, tier.memory_mb, tier.cpu, self.settings.tmp_mb,
                                          self.settings.pids_max), self.settings.sandbox_prebuilt)

    async def _start_launcher(self) -> None:
        # The launcher (and so the zygote and its children) gets the runtimes' environment.
        launcher = LauncherClient(self._launcher_config, env=RUNTIME_ENV)
        try:
            info = await launcher.start()
        except LauncherError as exc:
            raise SandboxUnavailable(f"the isolated sandbox could not start: {exc}") from exc
        log.info("isolated sandbox: launcher ready in %.1f ms (network namespace %s, seccomp %d instructions%s)",
                 info["setup_ms"], info["netns"], info["filter_len"],
                 ", Python zygote" if launcher.zygote_pid else "")
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
        self._closing = True
        await self.generics.close()
        await asyncio.gather(*self._specializing, return_exceptions=True)
        await asyncio.gather(*(p.destroy() for p in list(self._live.values())), return_exceptions=True)
        if self.launcher is not None:
            await self.launcher.close()
            self.launcher = None
        self.cgroups.remove_scope()

    def keep_ready(self, shape: InstanceShape, count: int) -> None:
        if not self._closing and self.early_hello_ok:
            self.generics.keep(shape, count)

    def _prebuilt_target(self, runtime: RuntimeKind) -> int:
        return self.settings.sandbox_prebuilt if runtime.language == "python" else self.settings.sandbox_prebuilt_node

    # --- instances ------------------------------------------------------------------------

    async def create(self, spec: SandboxSpec) -> IsolatedProcess:
        # A pre-built instance is handed over without a single suspension: nothing to cancel.
        proc = self._create_prebuilt(spec)
        if proc is not None:
            return proc
        # Shielded: a caller that gives up must not strand a half-made instance; whatever
        # gets made after a cancellation is destroyed as soon as it exists.
        task = asyncio.ensure_future(self._create(spec))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_destroy_abandoned)
            raise

    def _create_prebuilt(self, spec: SandboxSpec) -> IsolatedProcess | None:
        """The fast path: a ready generic zygote child of the spec's shape gets its code in the
        background (see _send_code); None when there is none (or no launcher right now)."""
        launcher = self.launcher
        if (not self.early_hello_ok or self.layout is None or self._closing or launcher is None
                or not launcher.alive or spec.runtime.language != "python"):
            return None
        started = time.perf_counter()
        argv, code_dir, layer_dirs = self._resolve(spec)
        self._check_new_id(spec.instance_id)
        shape = InstanceShape.of(spec)
        self._pin_tiers()
        if self.generics.ready_count(shape) == 0:
            return None
        trees = _open_trees(code_dir, layer_dirs)  # before the take: a bad dir wastes no instance
        try:
            proc = self.generics.take(shape, with_go=True)
            if proc is None:
                return None
            try:
                self._send_code(launcher, proc, trees)
            except SandboxError as exc:  # e.g. the launcher went just now: the slow path copes
                log.warning("a generic %s instance could not be used: %s", spec.runtime.name, exc)
                self._destroy_soon(proc)
                return None
        finally:
            _close_all(trees)
        return self._created(proc, spec, shape, layer_dirs, CreatePath.PREBUILT, started)

    def _check_new_id(self, instance_id: str) -> None:
        if instance_id in self._ids or cgroup_name(instance_id) in self._live:
            raise SandboxError(f"instance {instance_id} already exists")

    async def _create(self, spec: SandboxSpec) -> IsolatedProcess:
        started = time.perf_counter()
        if self.layout is None or self._closing:
            raise SandboxError("the sandbox is not started")
        argv, code_dir, layer_dirs = self._resolve(spec)
        self._check_new_id(spec.instance_id)
        self._ids[spec.instance_id] = None
        shape = InstanceShape.of(spec)
        try:
            proc, path = await self._make(spec, shape, argv, code_dir, layer_dirs)
        except BaseException:
            self._ids.pop(spec.instance_id, None)
            raise
        return self._created(proc, spec, shape, layer_dirs, path, started)

    def _created(self, proc: IsolatedProcess, spec: SandboxSpec, shape: InstanceShape, layer_dirs: list[str],
                 path: str, started: float) -> IsolatedProcess:
        """What every successful create ends with: the instance is the spec's now."""
        proc.promote()
        proc.instance_id = spec.instance_id
        proc.paths = RuntimePaths(rootfs.CODE_DIR, tuple(rootfs.layer_dir(i) for i in range(len(layer_dirs))),
                                  rootfs.TMP_DIR)
        self._ids[spec.instance_id] = proc
        proc.stats.update(create_ms=(time.perf_counter() - started) * 1000, path=path)
        if self.early_hello_ok:
            self.generics.used(shape, self._prebuilt_target(spec.runtime))
        if proc.cgroup.name.startswith(GENERIC_PREFIX):
            asyncio.get_running_loop().call_later(RENAME_DELAY_S, self._rename_cgroup, proc)
        return proc

    async def _make(self, spec: SandboxSpec, shape: InstanceShape, argv: list[str], code_dir: str,
                    layer_dirs: list[str]) -> tuple[IsolatedProcess, str]:
        name = cgroup_name(spec.instance_id)
        if not self.early_hello_ok:  # the runtime must say hello after create() returns
            return await self._build(shape, name, argv, code_dir=code_dir, layer_dirs=layer_dirs), CreatePath.EXEC
        self._pin_tiers()
        proc = self.generics.take(shape)
        if proc is not None:
            try:
                await self._give_code(proc, code_dir, layer_dirs)
                return proc, CreatePath.PREBUILT
            except SandboxError as exc:  # e.g. it died just now: make one below
                log.warning("a generic %s instance could not be used: %s", spec.runtime.name, exc)
                await proc.destroy()
        if await self._zygote_for(spec.runtime):
            proc = await self._build(shape, name, argv, via_zygote=True, go=True)
            try:
                await self._give_code(proc, code_dir, layer_dirs)
            except BaseException:
                await proc.destroy()
                raise
            return proc, CreatePath.ZYGOTE
        return await self._build(shape, name, argv, code_dir=code_dir, layer_dirs=layer_dirs), CreatePath.EXEC

    async def _zygote_for(self, runtime: RuntimeKind) -> bool:
        if not self.use_zygote or runtime.language != "python":
            return False
        launcher = await self._running_launcher()
        if await launcher.zygote_ready():
            return True
        if self._zygote_warned is not launcher:  # once per launcher
            self._zygote_warned = launcher
            log.warning("isolated sandbox: no Python zygote (%s); Python instances exec a fresh interpreter",
                        launcher.zygote_error)
        return False

    async def _give_code(self, proc: IsolatedProcess, code_dir: str, layer_dirs: list[str]) -> None:
        """Have the launcher attach the code and layers to a generic instance, from outside:
        in the background for one with a go pipe (_send_code), else waiting for the answer."""
        if proc.pidfd is None or proc.exited:
            raise SandboxError(f"the generic instance exited ({proc.exit_info().describe()})")
        launcher = await self._running_launcher()
        trees = _open_trees(code_dir, layer_dirs)
        try:
            if proc.go_fd is not None:
                self._send_code(launcher, proc, trees)
                return
            started = time.perf_counter()
            try:
                sending = launcher.specialize_nowait(self._specialize_request(proc, trees), [proc.pidfd, *trees])
            except LauncherError as exc:
                raise SandboxError(f"could not give the instance its code: {exc}") from exc
        finally:
            _close_all(trees)  # in flight, the kernel holds them for the launcher
        try:
            inside_us = await sending
        except LauncherError as exc:
            raise SandboxError(f"could not give the instance its code: {exc}") from exc
        self._note_specialized(proc, started, inside_us)

    def _send_code(self, launcher: LauncherClient, proc: IsolatedProcess, trees: list[int]) -> None:
        """Send the specialize request for a zygote child with a go pipe, now, and do not wait.

        The child reads "init" only once the launcher has written its go byte, after the
        mounts: create() returns at once, the pool's hello/init exchange overlaps the
        launcher's work, and a wake-up of the platform leaves the critical path. The go pipe's
        write end travels with the request; ours is closed right away, so if the launcher
        fails or dies before writing, the child reads EOF and its runtime ends. A failed
        answer also kills the instance: the pool then sees it die at init."""
        if proc.pidfd is None or proc.exited:
            raise SandboxError(f"the generic instance exited ({proc.exit_info().describe()})")
        started = time.perf_counter()
        try:
            reply = launcher.specialize_nowait(self._specialize_request(proc, trees, go=True),
                                               [proc.pidfd, proc.go_fd, *trees])
        except LauncherError as exc:
            raise SandboxError(f"could not give the instance its code: {exc}") from exc
        finally:
            proc.close_go()
        reply.add_done_callback(lambda f, proc=proc: self._specialized(f, proc, started))

    @staticmethod
    def _specialize_request(proc: IsolatedProcess, trees: list[int], go: bool = False) -> dict:
        return {"pid": proc.pid, "trees": len(trees), "go": go}

    def _specialized(self, reply: asyncio.Future, proc: IsolatedProcess, started: float) -> None:
        error = "cancelled" if reply.cancelled() else reply.exception()
        if error is None:
            self._note_specialized(proc, started, reply.result())
        else:
            log.warning("instance %s could not be given its code, killed: %s", proc.instance_id, error)
            proc.kill()

    @staticmethod
    def _note_specialized(proc: IsolatedProcess, started: float, inside_us: float) -> None:
        proc.stats["specialize_ms"] = (time.perf_counter() - started) * 1000
        proc.stats["specialize_launcher_ms"] = inside_us / 1000

    def _destroy_soon(self, proc: IsolatedProcess) -> None:
        task = asyncio.ensure_future(proc.destroy())
        self._specializing.add(task)
        task.add_done_callback(self._specializing.discard)

    async def _build_generic(self, shape: InstanceShape) -> IsolatedProcess:
        """A generic instance of `shape`, for the pool (its cgroup is renamed once taken)."""
        if self._closing or self.layout is None:
            raise SandboxError("the sandbox is closing")
        interpreter = self._interpreter(shape.runtime)
        argv = shape.runtime.argv(interpreter, rootfs.RUNTIME_DIR, shape.memory_mb)
        name = GENERIC_PREFIX + secrets.token_hex(6)
        via_zygote = await self._zygote_for(shape.runtime)
        return await self._build(shape, name, argv, via_zygote=via_zygote, warm=True, go=via_zygote, low_weight=True)

    async def _build(self, shape: InstanceShape, name: str, argv: list[str], *, code_dir: str | None = None,
                     layer_dirs: list[str] | tuple[str, ...] = (), via_zygote: bool = False,
                     warm: bool = False, go: bool = False, low_weight: bool = False) -> IsolatedProcess:
        """Make one instance: with code (exec'd by the launcher, code mounted by the child) or
        generic (code_dir None: by the zygote for Python, else exec'd by the launcher).
        `warm`: a zygote child runs the loop once before it says hello (see zygote.warm_up);
        `go`: it waits for its go byte before it reads "init" (see _give_code); `low_weight`:
        built with the lowest CPU weight, until `promote()` (built ahead of time: its set-up
        must not slow down the cold starts running meanwhile)."""
        started = time.perf_counter()
        try:
            uid = self.uids.acquire()
        except RuntimeError as exc:
            raise SandboxError(str(exc)) from None
        cg: InstanceCgroup | None = None
        wiring: _Wiring | None = None
        weight_fd: int | None = None
        try:
            try:
                cg = self.cgroups.create(name, Limits(shape.memory_mb * MB, shape.cpu, shape.pids_max))
            except FileExistsError:
                raise SandboxError(f"a cgroup named {name} already exists") from None
            if low_weight:
                weight_fd = cg.open_cpu_weight()
                cg.set_cpu_weight(weight_fd, low=True)
            wiring = _Wiring(cg.open_procs(), go=go)
            cgroup_done = time.perf_counter()
            request = {
                "argv": argv, "env": RUNTIME_ENV, "uid": uid, "gid": uid, "code_dir": code_dir,
                "layer_dirs": list(layer_dirs), "tmp_mb": shape.tmp_mb, "rlimits": self._rlimits(shape.tmp_mb),
                "go": go,
            }
            launcher = await self._running_launcher()
            if via_zygote:
                pid = await launcher.zygote_spawn({**request, "warm": warm}, wiring.child_fds())
            else:
                pid = await launcher.spawn(request, wiring.child_fds())
        except (OSError, LauncherError, SandboxError) as exc:
            if weight_fd is not None:
                os.close(weight_fd)
            if wiring is not None:
                wiring.close_all()
            if cg is not None:
                # A helper that died mid-request may still have cloned the child: it is
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
            raise SandboxError(f"could not start {shape.runtime.name} in the sandbox: {exc}") from exc
        wiring.close_child_ends()
        spawned = time.perf_counter()
        proc = IsolatedProcess(
            instance_id=name, pid=pid, channel=wiring.channel, output_fd=wiring.output_r,
            paths=RuntimePaths(rootfs.CODE_DIR, (), rootfs.TMP_DIR),
            cgroup=cg, uid=uid, on_destroyed=self._forget, go_fd=wiring.go_w, weight_fd=weight_fd,
        )
        self._live[name] = proc
        error = await _setup_error(wiring.error_r)
        if error:
            info = await proc.destroy()
            raise SandboxError(f"could not start {shape.runtime.name} in the sandbox: {error} ({info.describe()})")
        now = time.perf_counter()
        proc.stats.update(cgroup_ms=(cgroup_done - started) * 1000, spawn_ms=(spawned - cgroup_done) * 1000,
                          exec_ms=(now - spawned) * 1000, uid=uid)
        return proc

    def _rename_cgroup(self, proc: IsolatedProcess) -> None:
        """Give a taken generic instance's cgroup its instance's name (for operators and tools)."""
        old = proc.cgroup.name
        new = cgroup_name(proc.instance_id)
        if proc.exited or self._live.get(old) is not proc or new in self._live:
            return
        try:
            proc.cgroup.rename(new)
        except OSError as exc:
            log.debug("instance %s: cgroup %s not renamed: %s", proc.instance_id, old, exc)
        if proc.cgroup.name == new:
            self._live[new] = self._live.pop(old)

    def _resolve(self, spec: SandboxSpec) -> tuple[list[str], str, list[str]]:
        """Check the spec against what the sandbox can show inside; host paths resolved."""
        runtime: RuntimeKind = spec.runtime
        interpreter = self._interpreter(runtime)
        if len(spec.layer_dirs) > self.layout.max_layers:
            raise SandboxError(f"{len(spec.layer_dirs)} dependency layers; the sandbox mounts at most "
                               f"{self.layout.max_layers}")
        code_dir = self._readable_dir(spec.code_dir, "code")
        layer_dirs = [self._readable_dir(d, "layer") for d in spec.layer_dirs]
        return runtime.argv(interpreter, rootfs.RUNTIME_DIR, spec.memory_mb), code_dir, layer_dirs

    def _interpreter(self, runtime: RuntimeKind) -> str:
        """The runtime's interpreter, resolved once per launcher layout (a cold start's path
        should not walk /root/.pyenv/... with lstat every time)."""
        interpreter = self._interpreters.get(runtime.name)
        if interpreter is not None:
            return interpreter
        try:
            interpreter = str(runtime.interpreter())
        except RuntimeError as exc:
            raise SandboxError(str(exc)) from None
        if not self._visible(interpreter):
            raise SandboxError(f"{interpreter} is not visible inside the sandbox (restart the platform "
                               f"after installing {runtime.name})")
        self._interpreters[runtime.name] = interpreter
        return interpreter

    def _readable_dir(self, path: Path, what: str) -> str:
        """`path` resolved, if it is a directory others may read. The resolution is cached
        (code and layer directories are content-addressed and never move); the stat is not."""
        key = str(path)
        real = self._realpaths.get(key)
        if real is None:
            real = os.path.realpath(path)
        try:
            st = os.stat(real)
        except OSError as exc:
            self._realpaths.pop(key, None)
            raise SandboxError(f"the {what} directory {path} cannot be used: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise SandboxError(f"the {what} directory {path} is not a directory")
        if st.st_mode & 0o005 != 0o005:
            raise SandboxError(f"the {what} directory {path} must be readable by others (mode {st.st_mode & 0o777:o}): "
                               "instances run under their own unprivileged uid")
        if len(self._realpaths) >= REALPATH_CACHE:
            self._realpaths.clear()
        self._realpaths[key] = real
        return real

    def _visible(self, path: str) -> bool:
        return path.startswith("/usr/") or any(
            path.startswith(inside.rstrip("/") + "/") for host, inside in self.layout.ro_binds if host == inside)

    @staticmethod
    def _rlimits(tmp_mb: int) -> list[tuple[int, int, int]]:
        file_size = (tmp_mb + 1) * MB  # a little over /tmp: a full /tmp answers ENOSPC, not SIGXFSZ
        return [
            (resource.RLIMIT_CPU, CPU_TIME_LIMIT_S, CPU_TIME_LIMIT_S + 5),
            (resource.RLIMIT_FSIZE, file_size, file_size),
            (resource.RLIMIT_NOFILE, OPEN_FILES_LIMIT, OPEN_FILES_LIMIT),
            (resource.RLIMIT_CORE, 0, 0),
        ]

    async def _running_launcher(self) -> LauncherClient:
        """The launcher, restarted once if it (or the zygote) died; instances it made live on."""
        launcher = self.launcher
        if launcher is not None and launcher.alive:
            return launcher
        async with self._launcher_lock:
            if self.launcher is None or not self.launcher.alive:
                if self._closing:
                    raise SandboxError("the sandbox is closing")
                if self.launcher is not None:
                    log.warning("isolated sandbox: the launcher or the zygote exited; starting new ones")
                    await self.launcher.close()
                    self.launcher = None
                try:
                    await self._start_launcher()
                except SandboxUnavailable as exc:
                    raise SandboxError(str(exc)) from exc
            return self.launcher

    def _forget(self, proc: IsolatedProcess) -> None:
        if self._live.get(proc.cgroup.name) is proc:
            del self._live[proc.cgroup.name]
        if self._ids.get(proc.instance_id) is proc:
            del self._ids[proc.instance_id]
        self.generics.discard(proc)
        self.uids.release(proc.uid)


class _Wiring:
    """The descriptors between the platform and one instance, until the child has them.

    Ours: the channel, the output pipe's read end, the error pipe's read end, the go pipe's
    write end (if asked for). The child's, sent to the launcher or the zygote and closed here
    once sent: the other channel end, the output pipe's write end, the error pipe's write end,
    the go pipe's read end and the cgroup join descriptors."""

    def __init__(self, cgroup_fds: list[int], go: bool = False):
        made: list = []
        self.go_w: int | None = None
        try:
            self.channel, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            made += [self.channel, self._theirs]
            self.output_r, output_w = os.pipe()
            made += [self.output_r, output_w]
            self.error_r, error_w = os.pipe()
            made += [self.error_r, error_w]
            if go:
                go_r, self.go_w = os.pipe2(os.O_CLOEXEC)
                made += [go_r, self.go_w]
        except OSError:  # e.g. out of descriptors: give back what was taken, cgroup fds too
            for item in made:
                item.close() if isinstance(item, socket.socket) else os.close(item)
            for fd in cgroup_fds:
                os.close(fd)
            raise
        self._child_head = [self._theirs.fileno(), output_w, error_w] + ([go_r] if go else [])
        self._child = list(cgroup_fds)

    def child_fds(self) -> list[int]:
        """In the order the helpers expect: channel, output, error, [go], cgroup joins."""
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
        if self.go_w is not None:
            os.close(self.go_w)


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
    """Reap killed children of ours when they are gone."""
    for pid in pids:
        try:
            ChildWaiter(pid)  # the event loop's reader keeps it until the child is reaped
        except OSError:  # gone and reaped already
            continue


def _open_trees(code_dir: str, layer_dirs: list[str]) -> list[int]:
    """Detached read-only clones of the code and layer dirs (host paths), for the launcher."""
    trees: list[int] = []
    try:
        for path in (code_dir, *layer_dirs):
            trees.append(readonly_tree(path))
    except OSError as exc:
        _close_all(trees)
        raise SandboxError(f"cannot give {path} to an instance: {exc.strerror}") from None
    return trees


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _destroy_abandoned(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is None:
        asyncio.ensure_future(task.result().destroy())

