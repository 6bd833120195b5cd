"""Instances as plain child processes: no isolation, for development on machines without
the kernel features the isolated sandbox needs (FRAZIL_SANDBOX=plain). Each instance still
gets a private /tmp directory (TMPDIR) and its own process group."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

from frazil.runtimes import RUNTIMES_ROOT
from frazil.sandbox.base import ExitInfo, RuntimePaths, Sandbox, SandboxError, SandboxProcess, SandboxSpec
from frazil.sandbox.spawn import ChildWaiter, exit_info_from_status, spawn_runtime
from frazil.settings import Settings


class PlainProcess(SandboxProcess):
    def __init__(self, *, tmp_root: Path, waiter: ChildWaiter, **kwargs):
        super().__init__(**kwargs)
        self._tmp_root = tmp_root
        self._waiter = waiter
        self._destroyed: ExitInfo | None = None

    async def wait(self) -> ExitInfo:
        return exit_info_from_status(await self._waiter.wait())

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    async def destroy(self) -> ExitInfo:
        if self._destroyed is None:
            self.kill()
            info = await self.wait()
            self.channel.close()
            try:
                os.close(self.output_fd)
            except OSError:
                pass
            shutil.rmtree(self._tmp_root, ignore_errors=True)
            self._destroyed = info
        return self._destroyed


class PlainSandbox(Sandbox):
    name = "plain"

    def __init__(self, settings: Settings):
        self._root = settings.data_dir / "instances"
        self._live: dict[str, PlainProcess] = {}

    async def start(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
        self._root.mkdir(parents=True, exist_ok=True)

    def runtime_paths(self, spec: SandboxSpec) -> RuntimePaths:
        return RuntimePaths(str(spec.code_dir), tuple(str(p) for p in spec.layer_dirs),
                            str(self._root / spec.instance_id / "tmp"))

    async def create(self, spec: SandboxSpec, first_frame: bytes = b"") -> SandboxProcess:
        # A runtime exec'd now reads its first frame whenever it comes: the caller sends it.
        paths = self.runtime_paths(spec)
        tmp_dir = Path(paths.tmp_dir)
        tmp_dir.mkdir(parents=True)
        tmp_root = tmp_dir.parent
        argv = spec.runtime.argv(str(spec.runtime.interpreter()), str(RUNTIMES_ROOT), spec.memory_mb)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "TMPDIR": paths.tmp_dir,
            "HOME": paths.tmp_dir,
            "LANG": "C.UTF-8",
        }
        try:
            pid, channel, output_fd = spawn_runtime(argv, env, setsid=True)
        except OSError as exc:
            shutil.rmtree(tmp_root, ignore_errors=True)
            raise SandboxError(f"could not start {spec.runtime.name}: {exc}") from exc
        proc = PlainProcess(
            instance_id=spec.instance_id,
            pid=pid,
            channel=channel,
            output_fd=output_fd,
            paths=paths,
            tmp_root=tmp_root,
            waiter=ChildWaiter(pid),
        )
        self._live[spec.instance_id] = proc
        asyncio.ensure_future(self._forget_on_exit(proc))
        return proc

    async def _forget_on_exit(self, proc: PlainProcess) -> None:
        await proc.wait()
        self._live.pop(proc.instance_id, None)

    async def close(self) -> None:
        await asyncio.gather(*(p.destroy() for p in list(self._live.values())), return_exceptions=True)
