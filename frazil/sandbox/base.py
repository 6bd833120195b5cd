"""The instance boundary: what every sandbox implementation provides.

The pool asks a `Sandbox` to `create()` a `SandboxProcess` running one runtime loop for one
function version; everything about isolation lives behind this interface, so swapping the
plain child process for the namespaced container happens in `frazil.sandbox.select` only.

Invariants every implementation keeps:
- the runtime's fd 3 (`CHANNEL_FD`) is its end of a socketpair; `channel` is ours;
- the runtime's stdout and stderr are one pipe, `output_fd` is its read end (one pipe keeps
  the order of interleaved prints; the platform caps what it keeps);
- `destroy()` is idempotent and leaves no process, mount, cgroup or temporary file behind;
- a sandbox that erred is destroyed, never reused.
"""
from __future__ import annotations

import abc
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass(frozen=True)
class InstanceShape:
    """What a generic instance is built for: everything of a SandboxSpec but the instance id,
    the code and the layers. A sandbox that builds instances ahead of time keeps them per
    shape; a create() can only use one whose shape is the spec's."""

    runtime: RuntimeKind
    memory_mb: int = 128
    cpu: float = 0.5
    tmp_mb: int = 64
    pids_max: int = 64

    @classmethod
    def of(cls, spec: SandboxSpec) -> "InstanceShape":
        return cls(spec.runtime, spec.memory_mb, spec.cpu, spec.tmp_mb, spec.pids_max)


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

    @abc.abstractmethod
    async def wait(self) -> ExitInfo:
        """Resolves once the runtime has exited (any number of callers)."""

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL everything in the sandbox now. Idempotent, never raises."""

    @abc.abstractmethod
    async def destroy(self) -> ExitInfo:
        """Kill, reap and release every resource. Idempotent."""


class Sandbox(abc.ABC):
    """A factory of sandboxed runtime processes for one running platform."""

    name: str = "abstract"
    # Set by whoever drives created instances (the pool) once it reads a "hello" that is
    # already waiting on the channel when create() returns - i.e. it expects the hello before
    # it attaches to the channel. A sandbox that starts runtimes ahead of time (a zygote's
    # fork, pre-built instances) uses those paths only then; until then every runtime starts
    # after create() and says hello later, as an exec'd interpreter does.
    early_hello_ok: bool = False

    @abc.abstractmethod
    async def start(self) -> None:
        """Prepare (and clean up what a previous, dead platform process left behind)."""

    @abc.abstractmethod
    async def create(self, spec: SandboxSpec) -> SandboxProcess:
        """Start the runtime loop for `spec`; raises SandboxError."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Destroy every process this sandbox created that is still alive."""

    def keep_ready(self, shape: InstanceShape, count: int) -> None:
        """Hint from the pool: keep `count` generic instances of `shape` built ahead of time,
        so that a cold create() of that shape only gives one its code (0: keep none).
        A sandbox without such instances ignores it; one that has them also learns shapes
        from the creates it sees."""
