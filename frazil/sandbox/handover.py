"""Handing a generic instance over to a function: the platform opens read-only trees of the
code and layer dirs and attaches them inside the instance itself (`frazil.sandbox.attach`,
which also says why that is safe), then lets the instance go on.

Every way is synchronous, from the event loop thread, and waits for no other process:
- an instance with a go pipe (a zygote child; a pre-started Node runtime) reads "init" only
  once it got its go byte, written right after the attach (`take_ready`, `give_code`) and
  the platform's first frame (its init, when given): the runtime finds init at once;
- any other generic instance (a Python runtime exec'd without the zygote) reads "init"
  whenever it comes: it is attached before create() returns, so before any "init" is sent;
- a zygote child may also be given its layers first (`give_layers`: it imports their
  packages, see layer_ready.py) and, once taken, its code alone (`take_ready` with ATTACH_CODE).
Error policy: an instance that could not be given its code is destroyed, never handed over;
the failure raises SandboxError (`give_code`, `give_layers`) or makes `take_ready` return
None, and the caller makes an instance another way.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

from frazil.sandbox.attach import ATTACH_ALL, ATTACH_LAYERS, AttachError, attach_trees
from frazil.sandbox.base import InstanceShape, SandboxError
from frazil.sandbox.helper import syscalls as sc
from frazil.sandbox.helper.enter import readonly_tree
from frazil.sandbox.helper.wire import GO, IMPORT_LAYERS
from frazil.sandbox.instance import IsolatedProcess
from frazil.sandbox.prebuilt import GenericPool

log = logging.getLogger(__name__)


class Handover:
    """Gives generic instances their code, for one sandbox. Event loop thread only."""

    def __init__(self, template_roots: set[int]):
        # Mount ids of the root of every launcher's template: no instance's (see attach.py).
        self._template_roots = template_roots
        self._host_root: int | None = None  # the mount id of our own root, known from start()
        self._destroying: set[asyncio.Future] = set()  # destroys in the background, awaited at close

    def start(self) -> None:
        self._host_root = sc.mount_id("/")

    def refused_roots(self) -> set[int]:
        """The roots no code is ever attached under: the host's and every template's."""
        return {self._host_root, *self._template_roots}

    def take_ready(self, generics: GenericPool, shape: InstanceShape, code_dir: str, layer_dirs: list[str],
                   first_frame: bytes, attach: str = ATTACH_ALL) -> IsolatedProcess | None:
        """A ready generic instance of `shape` with a go pipe from `generics`, given its code
        and `first_frame` and let go, without a single suspension; None when there is none or
        it could not be used. `attach` ATTACH_CODE: the instance has its layers already
        (`give_layers`)."""
        if generics.ready_count(shape) == 0:
            return None
        trees = open_trees(code_dir, layer_dirs)  # before the take: a bad dir wastes no instance
        try:
            proc = generics.take(shape, with_go=True)
            if proc is None:
                return None
            try:
                self._attach(proc, trees, attach, first_frame)
            except SandboxError as exc:
                log.warning("a generic %s instance could not be used: %s", shape.runtime.name, exc)
                self._destroy_soon(proc)
                return None
        finally:
            _close_all(trees)
        return proc

    def give_code(self, proc: IsolatedProcess, code_dir: str, layer_dirs: list[str], first_frame: bytes) -> None:
        """Attach the code and layers to a generic instance taken from the pool or just made
        (create()'s slow path), write `first_frame`, and let it go if it waits for its go byte."""
        trees = open_trees(code_dir, layer_dirs)
        try:
            self._attach(proc, trees, ATTACH_ALL, first_frame)
        finally:
            _close_all(trees)

    def give_layers(self, proc: IsolatedProcess, layer_dirs: list[str]) -> None:
        """Attach only the layers to a generic zygote child, which then imports their packages
        and waits for its code (`take_ready` with ATTACH_CODE). Our end of the go pipe stays
        open for that."""
        if proc.go_fd is None:
            raise SandboxError("the generic instance has no go pipe")
        trees = open_trees(layer_dirs[0], layer_dirs[1:])
        try:
            self._attach(proc, trees, ATTACH_LAYERS, b"")
        finally:
            _close_all(trees)

    def _attach(self, proc: IsolatedProcess, trees: list[int], attach: str, first_frame: bytes) -> None:
        """Attach `trees` to `proc` and write its go byte: IMPORT_LAYERS after its layers
        (our end of the pipe stays open), else GO (our end is closed: the pipe has done its
        job, and an instance whose attach failed reads its end and exits). `first_frame` goes
        on the channel before GO, once the instance is the function's (never to an instance
        whose attach failed: it may carry the function's settings)."""
        if self._host_root is None:
            raise SandboxError("the sandbox is not started")
        if proc.pidfd is None or proc.exited:
            raise SandboxError(f"the generic instance exited ({proc.exit_info().describe()})")
        started = time.perf_counter()
        try:
            attach_trees(proc.pidfd, trees, attach, self.refused_roots())
            if first_frame:
                proc.send_first(first_frame)
            if proc.go_fd is not None:
                os.write(proc.go_fd, IMPORT_LAYERS if attach == ATTACH_LAYERS else GO)
        except AttachError as exc:
            raise SandboxError(f"could not give the instance its code: {exc}") from exc
        except OSError as exc:  # the go pipe: the instance exited just now
            raise SandboxError(f"the generic instance exited ({exc.strerror})") from exc
        finally:
            if attach != ATTACH_LAYERS:
                proc.close_go()
        proc.stats["specialize_ms"] = (time.perf_counter() - started) * 1000

    def _destroy_soon(self, proc: IsolatedProcess) -> None:
        task = asyncio.ensure_future(proc.destroy())
        self._destroying.add(task)
        task.add_done_callback(self._destroying.discard)

    async def close(self) -> None:
        """Wait for the destroys started in the background."""
        await asyncio.gather(*self._destroying, return_exceptions=True)


def open_trees(code_dir: str, layer_dirs: list[str]) -> list[int]:
    """Detached read-only clones of the code and layer dirs (host paths), for `attach`."""
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
