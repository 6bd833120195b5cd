"""Handing a generic instance over to a function: the platform opens read-only trees of the
code and layer dirs, and the launcher attaches them inside the instance, from outside (the
security argument is in `frazil.sandbox.helper.specialize`).

Two ways, by what the instance waits for:
- an instance with a go pipe (a zygote child; a pre-started Node runtime) reads "init" only
  once the launcher has written its go byte, after the mounts: the request is sent and not
  waited for (`send_code`), so create() returns at once and the caller's hello/init exchange
  overlaps the launcher's work;
- any other generic instance (a Python runtime exec'd without the zygote) reads "init"
  whenever it comes, so the answer is waited for before create() returns (`give_code`).
A zygote child may also be given its layers first (`give_layers`: it imports their packages,
see layer_ready.py) and, once taken, its code alone (`take_ready` with ATTACH_CODE).
Error policy: an instance that could not be given its code is killed or destroyed, never
handed over; a failure known before create() returns raises SandboxError (the caller then
makes an instance another way), one answered later kills the instance (its caller sees it
die at init); a launcher that dies before answering leaves it to its go pipe (`_specialized`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

from frazil.sandbox.base import InstanceShape, SandboxError
from frazil.sandbox.helper.enter import readonly_tree
from frazil.sandbox.helper.specialize import ATTACH_ALL, ATTACH_LAYERS
from frazil.sandbox.instance import IsolatedProcess
from frazil.sandbox.launcher_client import LauncherClient, LauncherError, LauncherGone
from frazil.sandbox.prebuilt import GenericPool
from frazil.sandbox.supervisor import LauncherSupervisor

log = logging.getLogger(__name__)


class Handover:
    """Gives generic instances their code, for one sandbox. Event loop thread only."""

    def __init__(self, supervisor: LauncherSupervisor):
        self._supervisor = supervisor
        self._destroying: set[asyncio.Future] = set()  # destroys in the background, awaited at close

    def take_ready(self, launcher: LauncherClient, generics: GenericPool, shape: InstanceShape, code_dir: str,
                   layer_dirs: list[str], attach: str = ATTACH_ALL) -> IsolatedProcess | None:
        """A ready generic instance of `shape` with a go pipe from `generics`, its code on the
        way (`send_code`), without a single suspension; None when there is none or it could
        not be used. `attach` ATTACH_CODE: the instance has its layers already (`give_layers`)."""
        if generics.ready_count(shape) == 0:
            return None
        trees = open_trees(code_dir, layer_dirs)  # before the take: a bad dir wastes no instance
        try:
            proc = generics.take(shape, with_go=True)
            if proc is None:
                return None
            try:
                self.send_code(launcher, proc, trees, attach)
            except SandboxError as exc:  # e.g. the launcher went just now: the slow path copes
                log.warning("a generic %s instance could not be used: %s", shape.runtime.name, exc)
                self._destroy_soon(proc)
                return None
        finally:
            _close_all(trees)
        return proc

    async def give_code(self, proc: IsolatedProcess, code_dir: str, layer_dirs: list[str]) -> None:
        """Have the launcher attach the code and layers to a generic instance, and wait for
        its answer (also for one with a go pipe, `send_code`): this is create()'s slow path,
        and a launcher that dies now must fail the create - which is then retried on a new
        launcher - not the instance's first invocation."""
        if proc.pidfd is None or proc.exited:
            raise SandboxError(f"the generic instance exited ({proc.exit_info().describe()})")
        launcher = await self._supervisor.running()
        trees = open_trees(code_dir, layer_dirs)
        try:
            if proc.go_fd is not None:
                sending = self.send_code(launcher, proc, trees)  # notes its times itself
                started = None
            else:
                started = time.perf_counter()
                try:
                    sending = launcher.specialize_nowait(_request(proc, trees), [proc.pidfd, *trees])
                except LauncherError as exc:
                    raise SandboxError(f"could not give the instance its code: {exc}") from exc
        finally:
            _close_all(trees)  # in flight, the kernel holds them for the launcher
        try:
            inside_us = await sending
        except LauncherError as exc:
            raise SandboxError(f"could not give the instance its code: {exc}") from exc
        if started is not None:
            _note_specialized(proc, started, inside_us)

    async def give_layers(self, proc: IsolatedProcess, layer_dirs: list[str]) -> None:
        """Have the launcher attach only the layers to a generic zygote child, which then
        imports their packages and waits for its code (`take_ready` with ATTACH_CODE). Our end
        of the go pipe stays open for that."""
        if proc.pidfd is None or proc.exited or proc.go_fd is None:
            raise SandboxError("the generic instance exited or has no go pipe")
        launcher = await self._supervisor.running()
        trees = open_trees(layer_dirs[0], layer_dirs[1:])
        try:
            reply = launcher.specialize_nowait({"pid": proc.pid, "trees": len(trees), "go": True,
                                                "attach": ATTACH_LAYERS}, [proc.pidfd, proc.go_fd, *trees])
        except LauncherError as exc:
            raise SandboxError(f"could not give the instance its layers: {exc}") from exc
        finally:
            _close_all(trees)
        try:
            await reply
        except LauncherError as exc:
            raise SandboxError(f"could not give the instance its layers: {exc}") from exc

    def send_code(self, launcher: LauncherClient, proc: IsolatedProcess, trees: list[int],
                  attach: str = ATTACH_ALL) -> asyncio.Future:
        """Send the specialize request for an instance with a go pipe, now, and do not wait.

        The go pipe's write end travels with the request; ours is closed right away, so if
        the launcher fails or dies before writing, the child reads EOF and its runtime ends.
        A failed answer also kills the instance: its caller then sees it die at init."""
        if proc.pidfd is None or proc.exited:
            raise SandboxError(f"the generic instance exited ({proc.exit_info().describe()})")
        started = time.perf_counter()
        try:
            reply = launcher.specialize_nowait(_request(proc, trees, go=True, attach=attach),
                                               [proc.pidfd, proc.go_fd, *trees])
        except LauncherError as exc:
            raise SandboxError(f"could not give the instance its code: {exc}") from exc
        finally:
            proc.close_go()
        reply.add_done_callback(lambda f, proc=proc: _specialized(f, proc, started))
        return reply

    def _destroy_soon(self, proc: IsolatedProcess) -> None:
        task = asyncio.ensure_future(proc.destroy())
        self._destroying.add(task)
        task.add_done_callback(self._destroying.discard)

    async def close(self) -> None:
        """Wait for the destroys started in the background."""
        await asyncio.gather(*self._destroying, return_exceptions=True)


def open_trees(code_dir: str, layer_dirs: list[str]) -> list[int]:
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


def _request(proc: IsolatedProcess, trees: list[int], go: bool = False, attach: str = ATTACH_ALL) -> dict:
    return {"pid": proc.pid, "trees": len(trees), "go": go, "attach": attach}


def _specialized(reply: asyncio.Future, proc: IsolatedProcess, started: float) -> None:
    """The launcher's answer to `send_code`. An instance with a go pipe runs from the go byte
    on, which the launcher writes last, before its answer: when the launcher died without
    answering, the instance either has its code and runs (it must not be killed: its first
    invocation may already be under way) or never got the byte and ends by itself on the
    pipe's EOF (no other process holds its write end). Only an answered failure or a
    launcher that stopped answering kills it."""
    error = "cancelled" if reply.cancelled() else reply.exception()
    if error is None:
        _note_specialized(proc, started, reply.result())
    elif isinstance(error, LauncherGone):
        log.info("the launcher exited before confirming instance %s's code: it runs if it got "
                 "its go byte, else it exits on the go pipe's end", proc.instance_id)
    else:
        log.warning("instance %s could not be given its code, killed: %s", proc.instance_id, error)
        proc.kill()


def _note_specialized(proc: IsolatedProcess, started: float, inside_us: float) -> None:
    proc.stats["specialize_ms"] = (time.perf_counter() - started) * 1000
    proc.stats["specialize_launcher_ms"] = inside_us / 1000
