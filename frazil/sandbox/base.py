"""The instance boundary: what every sandbox implementation provides.

The pool asks a `Sandbox` to `create()` a `SandboxProcess` running one runtime loop for one
function version; everything about isolation lives behind this interface, so swapping the
plain child process for the namespaced container happens in `frazil.sandbox.select` only.

Invariants every implementation keeps:
- the runtime's fd 3 (`CHANNEL_FD`) is its end of a socketpair; `channel` is ours;
- the runtime's stdout and stderr are one pipe, `output_fd` is its read end (one pipe keeps
  the order of interleaved prints; the platform caps what it keeps);
- `destroy()` is idempotent and leaves no process, mount, cgroup or temporary file behind;
- `kill()` and `destroy()` work on a frozen instance (they thaw it as needed);
- a sandbox that erred is destroyed, never reused.
"""
from __future__ import annotations

import abc
import signal
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from frazil.runtimes import RuntimeKind


class SandboxError(Exception):
    """Creating or running a sandbox failed."""


class SandboxUnavailable(SandboxError):
    """The kernel or the process lacks what this sandbox needs; the message says what."""


@dataclass(frozen=True)
class SandboxSpec:
    instance_id: str
    runtime: RuntimeKind
    code_dir: Path  # host path of the unpacked bundle; read-only inside
    layer_dirs: tuple[Path, ...] = ()  # host paths of dependency layers; read-only inside
    memory_mb: int = 128
    cpu: float = 0.5
    tmp_mb: int = 64
    pids_max: int = 64
    # The function's own environment variables (sorted pairs): given at init to every instance,
    # and before its imports to one that imports its layers ahead (frazil.sandbox.layer_ready).
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class InstanceShape:
    """What a generic instance is built for: everything of a SandboxSpec but the instance id,
    the code and (unless `layers`) the layers and the environment. A sandbox that builds
    instances ahead of time keeps them per shape; a create() can only use one whose shape is
    the spec's."""

    runtime: RuntimeKind
    memory_mb: int = 128
    cpu: float = 0.5
    tmp_mb: int = 64
    pids_max: int = 64
    layers: tuple[str, ...] = ()  # host paths of layers attached (and imported) ahead of time
    env: tuple[tuple[str, str], ...] = ()  # the environment those layers are imported under

    @classmethod
    def of(cls, spec: SandboxSpec) -> "InstanceShape":
        return cls(spec.runtime, spec.memory_mb, spec.cpu, spec.tmp_mb, spec.pids_max)

    def with_layers(self, layer_dirs, env: tuple[tuple[str, str], ...] = ()) -> "InstanceShape":
        return replace(self, layers=tuple(str(d) for d in layer_dirs), env=env)


@dataclass(frozen=True)
class RuntimePaths:
    """Where the runtime sees the spec's directories (the init message carries these)."""

    code_dir: str
    layer_dirs: tuple[str, ...]
    tmp_dir: str


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int | None = None
    signal: int | None = None
    oom_killed: bool = False

    def describe(self) -> str:
        if self.oom_killed:
            return "the instance ran out of memory and was killed"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"the runtime was killed by {name}"
        return f"the runtime exited with status {self.exit_code}"


@dataclass
class SandboxProcess(abc.ABC):
    instance_id: str
    pid: int
    channel: socket.socket
    output_fd: int
    paths: RuntimePaths
    stats: dict = field(default_factory=dict)
    # What of the first frame the channel did not take at once (`send_first`); None: not sent.
    unsent_first: bytes | None = field(default=None, repr=False)

    def send_first(self, frame: bytes) -> None:
        """Write the runtime's first frame (the platform's init) on the channel, once, without
        blocking: what the socket does not take now (all of it when the runtime is gone) is
        left in `unsent_first`, for the holder to write once it attached the channel. A second
        call does nothing: the sandbox may send it early (see `Sandbox.create`), the holder
        calls it again to be sure."""
        if self.unsent_first is None:
            try:
                self.unsent_first = frame[self.channel.send(frame, socket.MSG_DONTWAIT):]
            except OSError:
                self.unsent_first = frame

    @property
    def pidfd(self) -> int | None:
        """A pidfd of the runtime while it runs (None: none, or it has exited and been reaped)."""
        return None

    @abc.abstractmethod
    async def wait(self) -> ExitInfo:
        """Resolves once the runtime has exited (any number of callers)."""

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL everything in the sandbox now. Idempotent, never raises."""

    @abc.abstractmethod
    async def destroy(self) -> ExitInfo:
        """Kill, reap and release every resource. Idempotent."""

    def freeze(self) -> None:
        """Stop every process of the instance until `thaw()` (the holder calls it when the
        instance goes idle: a thread a handler left running must not spend CPU meanwhile).
        Idempotent, never raises, does not wait; nothing may be awaited from a frozen
        instance (it cannot answer). A sandbox that cannot freeze does nothing."""

    def thaw(self) -> None:
        """Let a frozen instance run again; call before using it. Idempotent, never raises:
        an instance that cannot be thawed is killed (the holder then sees it die)."""


class Sandbox(abc.ABC):
    """A factory of sandboxed runtime processes for one running platform."""

    name: str = "abstract"
    # Whether each instance has a network namespace of its own (loopback only), where the
    # platform may listen for it (frazil.sandbox.listen) through its `pidfd`.
    own_network: ClassVar[bool] = False

    @abc.abstractmethod
    async def start(self) -> None:
        """Prepare (and clean up what a previous, dead platform process left behind)."""

    @abc.abstractmethod
    def runtime_paths(self, spec: SandboxSpec) -> RuntimePaths:
        """Where the runtime of an instance made for `spec` will see its directories (known
        before create(), so that its init can be made first)."""

    @abc.abstractmethod
    async def create(self, spec: SandboxSpec, first_frame: bytes = b"") -> SandboxProcess:
        """Start the runtime loop for `spec`; raises SandboxError. The caller reads the
        runtime's "hello" from the channel itself: it may be there already when this
        returns (a runtime started ahead of time) or come later (one exec'd now).

        `first_frame`: what the runtime must read first (the platform's init, made with
        `runtime_paths(spec)`). A sandbox may write it (`proc.send_first`) as soon as the
        instance is the spec's: a pre-built runtime that waits to be let go then finds it at
        once. The caller sends it otherwise."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Destroy every process this sandbox created that is still alive."""

    def ready_instances(self, runtime: RuntimeKind) -> int:
        """Generic instances of `runtime` built ahead of time and not taken yet (0 for a
        sandbox without such instances)."""
        return 0

    def layer_ready_instances(self) -> int:
        """Instances that imported a dependency layer ahead, not taken yet (0: none here)."""
        return 0

    def keep_ready(self, shape: InstanceShape, count: int) -> None:
        """Keep `count` generic instances of `shape` built ahead of time, so that a cold
        create() of that shape only gives one its code (0: keep none). The instance pool
        says which shapes at its start (every tier's); callable before start(). A sandbox
        without such instances ignores it; one that has them also learns shapes from the
        creates it sees."""
