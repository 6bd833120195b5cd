"""Host paths, seen from the platform: what the sandbox's root shows inside (the layout), the
runtimes' interpreters, and the code and layer directories a spec names.

A spec is checked here before anything is built: every path the instance will be given must
be visible inside (the interpreter) or readable by an unprivileged uid (the code and the
layers); a spec that fails is refused with a SandboxError naming the path.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from frazil.runtimes import RUNTIMES, RUNTIMES_ROOT, RuntimeKind
from frazil.sandbox.base import SandboxError, SandboxSpec
from frazil.sandbox.helper import rootfs

REALPATH_CACHE = 4096  # resolved code/layer dirs remembered at most (then forgotten at once)


class HostPaths:
    """Resolves and checks host paths for one sandbox. Event loop thread only."""

    def __init__(self, data_dir: Path):
        self.mountpoint = data_dir / "sandbox" / "rootfs"  # where helpers build the template root
        self.layout: rootfs.Layout | None = None  # set by prepare()
        self._interpreters: dict[str, str] = {}  # runtime name -> interpreter path (see interpreter())
        self._realpaths: dict[str, str] = {}  # code/layer dir -> resolved (see readable_dir())

    def prepare(self) -> rootfs.Layout:
        """The layout for the launcher about to start: every runtime found here is visible."""
        interpreters = []
        for runtime in RUNTIMES.values():
            try:
                interpreters.append(str(runtime.interpreter()))
            except RuntimeError:
                pass  # e.g. no Node.js here: creating such an instance fails with that reason
        self.layout = rootfs.default_layout(interpreters, str(RUNTIMES_ROOT))
        self._interpreters.clear()
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        return self.layout

    def resolve(self, spec: SandboxSpec) -> tuple[list[str], str, list[str]]:
        """Check the spec against what the sandbox can show inside: the runtime's argv, and
        the code and layer dirs resolved."""
        runtime: RuntimeKind = spec.runtime
        argv = self.argv(runtime, spec.memory_mb)
        if len(spec.layer_dirs) > self.layout.max_layers:
            raise SandboxError(f"{len(spec.layer_dirs)} dependency layers; the sandbox mounts at most "
                               f"{self.layout.max_layers}")
        code_dir = self.readable_dir(spec.code_dir, "code")
        layer_dirs = [self.readable_dir(d, "layer") for d in spec.layer_dirs]
        return argv, code_dir, layer_dirs

    def argv(self, runtime: RuntimeKind, memory_mb: int, generic: bool = False) -> list[str]:
        """What an instance of `runtime` runs (paths as seen inside); `generic`: one whose
        code comes later."""
        return runtime.argv(self.interpreter(runtime), rootfs.RUNTIME_DIR, memory_mb, generic)

    def interpreter(self, runtime: RuntimeKind) -> str:
        """The runtime's interpreter, resolved once per launcher layout (a cold start's path
        should not walk /root/.pyenv/... with lstat every time)."""
        interpreter = self._interpreters.get(runtime.name)
        if interpreter is not None:
            return interpreter
        try:
            interpreter = str(runtime.interpreter())
        except RuntimeError as exc:
            raise SandboxError(str(exc)) from None
        if not self.visible(interpreter):
            raise SandboxError(f"{interpreter} is not visible inside the sandbox (restart the platform "
                               f"after installing {runtime.name})")
        self._interpreters[runtime.name] = interpreter
        return interpreter

    def readable_dir(self, path: Path, what: str) -> str:
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

    def visible(self, path: str) -> bool:
        """Whether a host path is at the same path inside (bound read-only from the host)."""
        return path.startswith("/usr/") or any(
            path.startswith(inside.rstrip("/") + "/") for host, inside in self.layout.ro_binds if host == inside)
