"""Python instances that have imported a dependency layer's packages before any function is
theirs, so that a cold start of a function with that layer pays neither the interpreter nor
the imports (issue 15: numpy ~0.3 s, pandas ~1.5 s of a cold start on the plain path).

How one is made: a generic zygote child (see prebuilt.py) is given only its layers, read-only
at /layers/N (`Handover.give_layers`); it imports the top-level packages that
the layers' distributions declare (`zygote_child.import_layers`, names from
`helper.toplevel`) under the function's environment (`send_environment`: a package may read
a setting such as OMP_NUM_THREADS at import) and waits for its code. A cold start of a
function with exactly those layers (same dirs, same order: a layer is content-addressed, so
functions with the same dependency manifest share it), the same environment and the same
shape takes one and is given only its code (ATTACH_CODE). It is an ordinary sandboxed
instance throughout: the package code runs unprivileged, in the instance that the function
will get, never in a process that forks other instances (see attach.py for why the
second attach is as safe as the first).

Why not a zygote that forks from imported packages (SOCK's package cache): a fork that lands
in its own PID namespace, uid, cgroup and mount namespace needs privilege in the process that
forks, after package code has run (and could have changed) that very process - which a zygote
of the launcher's kind has, and an instance must never have. So the memory of the imports is
not shared between instances: each ready one costs its layer's import (CPU, in the background
at the lowest weight) and memory, measured per layer (its cgroup's peak) and kept under
`sandbox_layer_prebuilt_mb`, the least recently used layers' ready instances dropped first.

An instance joins the pool only once its imports are done (it says hello after them), so a
cold start that takes one neither waits for them nor inherits their failure.

Policy: a layer is made ready only after a cold start used it (`used`), one instance at a time
per recent cold start (the GenericPool's demand, at most LAYER_CEILING); a layer whose import
fails in such an instance (it exits with EXIT_LAYER_UNFIT) is never tried again in this
process, and its cold starts take the plain path: a log line says why.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Awaitable, Callable

from frazil.sandbox.attach import ATTACH_CODE
from frazil.sandbox.base import InstanceShape, SandboxError, SandboxSpec
from frazil.sandbox.handover import Handover
from frazil.sandbox.helper.zygote_child import ENV_LENGTH, EXIT_LAYER_UNFIT, MAX_ENV_JSON
from frazil.sandbox.hostpaths import HostPaths
from frazil.sandbox.instance import IsolatedProcess
from frazil.sandbox.prebuilt import GenericPool
from frazil.sandbox.spawn import until_readable
from frazil.settings import MB, Settings

log = logging.getLogger(__name__)

LAYER_CEILING = 4  # ready instances per (shape, layers) at most, whatever the demand
LAYER_CAP = 32  # over all layers
FIRST_COST_MB = 64.0  # a layer's cost until one of its instances was measured
IMPORT_TIMEOUT_S = 120.0  # a layer whose imports take longer is not worth an instance waiting
OUTPUT_KEPT = 2000  # characters of an unfit instance's output in the log line


class LayerReady:
    """Event loop thread only."""

    def __init__(self, settings: Settings, build_generic: Callable[..., Awaitable[IsolatedProcess]],
                 handover: Handover, paths: HostPaths, delay_s: float):
        # Only zygote children can wait for their layers before their code: none without a zygote.
        self.budget_mb = settings.sandbox_layer_prebuilt_mb if settings.sandbox_zygote else 0
        # async (shape without layers, layers_first=True) -> a generic zygote child
        self._build_generic = build_generic
        self._handover = handover
        self._paths = paths
        self.pool = GenericPool(self._build, cap=LAYER_CAP, delay_s=delay_s, idle_ttl_s=settings.keep_alive_s,
                                window_s=settings.sandbox_prebuilt_window_s, budget_mb=self.budget_mb,
                                cost_mb=self.cost_mb)
        self.unfit: dict[tuple[str, ...], str] = {}  # layers -> why their cold starts use the plain path
        self._cost_mb: dict[tuple[str, ...], float] = {}
        self._recent: OrderedDict[InstanceShape, None] = OrderedDict()  # least recently used first
        self._taken: set[int] = set()  # pids of instances handed to a function (theirs from then on)

    @property
    def enabled(self) -> bool:
        return self.budget_mb > 0

    def shape_for(self, spec: SandboxSpec) -> InstanceShape | None:
        """The shape of a ready instance for `spec`, or None when there can be none."""
        if not self.enabled or spec.runtime.language != "python" or not spec.layer_dirs:
            return None
        shape = InstanceShape.of(spec).with_layers(spec.layer_dirs, spec.env)
        return None if shape.layers in self.unfit else shape

    def take(self, spec: SandboxSpec, code_dir: str, first_frame: bytes) -> IsolatedProcess | None:
        """A ready instance for `spec`, given its code and `first_frame`; None when there is none."""
        shape = self.shape_for(spec)
        if shape is None:
            return None
        proc = self._handover.take_ready(self.pool, shape, code_dir, [], first_frame, attach=ATTACH_CODE)
        if proc is not None:
            self._taken.add(proc.pid)
            self._measure(shape, proc)
        return proc

    def used(self, spec: SandboxSpec) -> None:
        """A cold start of `spec` happened: keep its layers ready, within the budget, by
        dropping the least recently used layers' ready instances first."""
        shape = self.shape_for(spec)
        if shape is None:
            return
        self._recent.pop(shape, None)
        self._recent[shape] = None
        while self._committed_mb(but=shape) + self.cost_mb(shape) > self.budget_mb:
            oldest = next((s for s in self._recent if s != shape), None)
            if oldest is None:
                break
            del self._recent[oldest]
            self.pool.keep(oldest, 0)  # its ready instances are destroyed
        self.pool.used(shape, 0, LAYER_CEILING)

    def cost_mb(self, shape: InstanceShape) -> float:
        return self._cost_mb.get(shape.layers, FIRST_COST_MB)

    async def close(self) -> None:
        await self.pool.close()

    def _committed_mb(self, but: InstanceShape) -> float:
        return sum(self.pool.ready_count(s) * self.cost_mb(s) for s in self._recent if s != but)

    def _measure(self, shape: InstanceShape, proc: IsolatedProcess) -> None:
        try:
            peak = proc.cgroup.memory_peak_bytes() / MB
        except OSError:
            return
        self._cost_mb[shape.layers] = max(peak, self._cost_mb.get(shape.layers, 0.0))

    async def _build(self, shape: InstanceShape) -> IsolatedProcess:
        if shape.layers in self.unfit:
            raise SandboxError(f"the layers' packages cannot be imported ahead: {self.unfit[shape.layers]}")
        # Checked and resolved as every create checks them (a layer dir's mode may have changed
        # since the cold start that asked for this instance).
        layer_dirs = [self._paths.readable_dir(Path(d), "layer") for d in shape.layers]
        proc = await self._build_generic(shape.with_layers(()), layers_first=True)
        if proc.go_fd is None:  # not a zygote child: it would read "init" at once
            await proc.destroy()
            raise SandboxError("no Python zygote: instances cannot import layers ahead of their code")
        proc.on_exit(lambda: self._exited(shape, proc))
        try:
            self._handover.give_layers(proc, layer_dirs)
            send_environment(proc, dict(shape.env))
            await _imported(proc, IMPORT_TIMEOUT_S)
        except BaseException:
            await proc.destroy()
            raise
        return proc

    def _exited(self, shape: InstanceShape, proc: IsolatedProcess) -> None:
        if proc.pid in self._taken:
            # A function's instance now: how it ends (sys.exit(3) included) and what it wrote are
            # that function's, never a verdict on a layer other functions share.
            self._taken.discard(proc.pid)
            return
        if proc.exit_info().exit_code != EXIT_LAYER_UNFIT or shape.layers in self.unfit:
            return
        reason = _output(proc).strip() or f"its import ended the instance ({proc.exit_info().describe()})"
        self.unfit[shape.layers] = reason
        log.warning("dependency layer %s: its cold starts take the plain path, its packages cannot be imported "
                    "ahead: %s", ", ".join(os.path.basename(d) for d in shape.layers), reason)
        self._recent.pop(shape, None)
        self.pool.keep(shape, 0)


async def _imported(proc: IsolatedProcess, timeout_s: float) -> None:
    """Until the instance has imported its layers: its hello comes after them
    (`zygote_child.become_runtime` with layers_first), and it stays unread on the channel for
    the runtime client that takes the instance. SandboxError when the instance ended first (an
    import failed: `_exited` then marks the layer unfit) or took longer than `timeout_s`."""
    try:
        await until_readable(proc.channel.fileno(), timeout_s)
    except asyncio.TimeoutError:
        raise SandboxError(f"importing the layers' packages took more than {timeout_s:g} s") from None
    if not proc.greeted():  # the channel's end: the instance exited
        raise SandboxError("the instance ended while importing the layers' packages")


def send_environment(proc: IsolatedProcess, env: dict[str, str]) -> None:
    """Give a zygote child that was given its layers (`Handover.give_layers` wrote IMPORT_LAYERS
    on the go pipe) the function's environment, which it sets before it imports them
    (`zygote_child.read_environment`): a length and JSON, on our end of its go pipe. A
    function's environment is at most a few KB (frazil.deploy.config.MAX_ENV_BYTES), far below
    a pipe's buffer: the write never blocks."""
    data = json.dumps(env).encode()
    if len(data) > MAX_ENV_JSON:
        raise SandboxError(f"an environment of {len(data)} bytes of JSON; a ready instance takes at most {MAX_ENV_JSON}")
    try:
        os.write(proc.go_fd, ENV_LENGTH.pack(len(data)) + data)
    except OSError as exc:
        raise SandboxError(f"could not give the instance its environment: {exc.strerror}") from None


def _output(proc: IsolatedProcess) -> str:
    """What an exited instance wrote (nobody reads a generic instance's output before its take)."""
    chunks = []
    try:
        while sum(map(len, chunks)) < OUTPUT_KEPT:
            data = os.read(proc.output_fd, 65536)
            if not data:
                break
            chunks.append(data)
    except OSError:
        pass
    return b"".join(chunks).decode(errors="replace")[-OUTPUT_KEPT:]
