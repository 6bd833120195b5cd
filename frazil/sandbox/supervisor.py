"""Supervision of the sandbox's helpers: one launcher (and the Python zygote it clones) per
sandbox, started with the sandbox and started again, once per need, when either has died.

Instances the dead helpers made live on (they are the platform's children, not the
helpers'). Restarts happen on demand, in the create() or build that finds the helpers dead,
under a lock: concurrent creates wait for one new launcher instead of starting several. A
sandbox that is closing refuses to restart them.
"""
from __future__ import annotations

import asyncio
import logging

from frazil.runtimes import PYTHON, RuntimeKind
from frazil.sandbox.base import SandboxError, SandboxUnavailable
from frazil.sandbox.helper import rootfs
from frazil.sandbox.helper.zygote import Config as ZygoteConfig
from frazil.sandbox.launcher_client import LauncherClient, LauncherError

log = logging.getLogger(__name__)

# The environment of the runtimes; the launcher (and so the zygote and its children) gets it.
RUNTIME_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": rootfs.TMP_DIR, "TMPDIR": rootfs.TMP_DIR,
               "LANG": "C.UTF-8", "MAGICK_CONFIGURE_PATH": rootfs.MAGICK_CONFIGURE_DIR}


class LauncherSupervisor:
    """Owns the current LauncherClient. Event loop thread only."""

    def __init__(self, use_zygote: bool):
        self.use_zygote = use_zygote
        self.launcher: LauncherClient | None = None  # the current one (alive or not); None before start
        self.template_roots: set[int] = set()  # the root mount id of every launcher's template
        self._config: dict | None = None
        self._lock = asyncio.Lock()  # held while a dead launcher is replaced
        self._closing = False
        self._zygote_warned: LauncherClient | None = None  # the launcher whose missing zygote was logged

    async def start(self, layout: rootfs.Layout, mountpoint: str) -> None:
        """Start the helpers for `layout`; SandboxUnavailable if they cannot start."""
        self._config = {"layout": layout.to_dict(), "mountpoint": mountpoint}
        if self.use_zygote:
            argv = PYTHON.argv(str(PYTHON.interpreter()), rootfs.RUNTIME_DIR, 128)
            self._config["zygote"] = ZygoteConfig(loop=argv[-1], argv=tuple(argv), env=RUNTIME_ENV).to_dict()
        await self._start()

    async def _start(self) -> None:
        launcher = LauncherClient(self._config, env=RUNTIME_ENV)
        try:
            info = await launcher.start()
        except LauncherError as exc:
            raise SandboxUnavailable(f"the isolated sandbox could not start: {exc}") from exc
        log.info("isolated sandbox: launcher ready in %.1f ms (network namespace %s, seccomp %d instructions%s)",
                 info["setup_ms"], info["netns"], info["filter_len"],
                 ", Python zygote" if launcher.zygote_pid else "")
        self.launcher = launcher
        self.template_roots.add(int(info["template_root"]))

    async def running(self) -> LauncherClient:
        """The launcher, restarted once if it (or the zygote) died; instances it made live on."""
        launcher = self.launcher
        if launcher is not None and launcher.alive:
            return launcher
        async with self._lock:
            if self.launcher is None or not self.launcher.alive:
                if self._closing:
                    raise SandboxError("the sandbox is closing")
                if self.launcher is not None:
                    log.warning("isolated sandbox: the launcher or the zygote exited; starting new ones")
                    await self.launcher.close()
                    self.launcher = None
                try:
                    await self._start()
                except SandboxUnavailable as exc:
                    raise SandboxError(str(exc)) from exc
            return self.launcher

    async def zygote_for(self, runtime: RuntimeKind) -> bool:
        """Whether instances of `runtime` are forked by a running zygote (else exec'd)."""
        if not self.use_zygote or runtime.language != "python":
            return False
        launcher = await self.running()
        if await launcher.zygote_ready():
            return True
        if self._zygote_warned is not launcher:  # once per launcher
            self._zygote_warned = launcher
            log.warning("isolated sandbox: no Python zygote (%s); Python instances exec a fresh interpreter",
                        launcher.zygote_error)
        return False

    def stop_restarting(self) -> None:
        """The sandbox is closing: a dead launcher stays dead from now on."""
        self._closing = True

    async def close(self) -> None:
        self._closing = True
        if self.launcher is not None:
            await self.launcher.close()
            self.launcher = None
