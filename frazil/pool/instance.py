"""One instance: a runtime loop in a sandbox, serving one invocation at a time.

The instance speaks the runtime protocol over the sandbox's channel and attributes the
output pipe to invocations. It never decides its own fate: whoever holds it (the pool)
destroys it when `alive` turns false (STYLE habit 6: an instance that erred is never reused).
"""
from __future__ import annotations

import asyncio
import enum
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson

from frazil.pool.output import OutputCapture
from frazil.runtimes import protocol
from frazil.sandbox.base import ExitInfo, SandboxProcess
from frazil.store.models import FunctionVersion, InvocationStatus

log = logging.getLogger(__name__)

# The SDK's host side, called as each sdk_call frame arrives: it must check the call's
# credential before returning, and returns what serves it (-> the sdk_reply's fields).
SdkHandler = Callable[["Instance", dict], Awaitable[dict]]


class InstanceState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


class ChannelLost(Exception):
    """The runtime closed its channel (it exited, crashed or was killed)."""


class InvocationTimedOut(Exception):
    pass


class InitFailed(Exception):
    """The handler could not be loaded; carries the runtime's error and the output so far."""

    def __init__(self, error: dict, logs: str):
        super().__init__(error.get("message", "the handler could not be loaded"))
        self.error = error
        self.logs = logs


@dataclass
class InvokeOutcome:
    status: InvocationStatus
    result: Any = None
    error: dict | None = None
    logs: str = ""
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is InvocationStatus.SUCCEEDED


def error_dict(type_: str, message: str, stack: str = "") -> dict:
    return {"type": type_, "message": message, "stack": stack}


class _Channel(asyncio.Protocol):
    def __init__(self, instance: "Instance"):
        self._instance = instance
        self._decoder = protocol.FrameDecoder()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except protocol.ProtocolError as exc:
            self._instance._fail(f"protocol error: {exc}")
            return
        for payload in frames:
            self._instance._on_frame(payload)

    def connection_lost(self, exc) -> None:
        self._instance._on_channel_lost()


class _Output(asyncio.Protocol):
    def __init__(self, capture: OutputCapture):
        self._capture = capture

    def data_received(self, data: bytes) -> None:
        self._capture.feed(data)


class Instance:
    """Fields are touched only from the event loop thread; `state` says who may use it:
    IDLE instances belong to their FunctionPool, a BUSY one to the invocation running on it."""

    def __init__(self, version: FunctionVersion, proc: SandboxProcess, *, log_cap: int,
                 max_result_bytes: int, sdk_handler: SdkHandler | None = None, resident: bool = False):
        self.id = proc.instance_id
        self.version = version
        self.proc = proc
        self.resident = resident
        self.state = InstanceState.STARTING
        self.created_at = time.monotonic()
        self.last_used = self.created_at
        self.invocations = 0
        self.current_invocation: str | None = None  # the invocation running now
        # The SDK credential of the running invocation: calls must carry it, and it dies with
        # the invocation, so nothing a function keeps can be replayed later.
        self.sdk_token: str | None = None
        self.deadline: float | None = None  # when the running invocation times out (monotonic)
        self.death: str | None = None
        self._max_result_bytes = max_result_bytes
        self._sdk_handler = sdk_handler
        self._output = OutputCapture(log_cap)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._out_transport: asyncio.BaseTransport | None = None
        self._waiting: asyncio.Future | None = None  # the frame we wait for (hello/ready/result)
        self._init_logs = ""
        self.stats: dict[str, float] = {}  # create_ms, destroy_ms

    @property
    def alive(self) -> bool:
        return self.state is not InstanceState.DEAD

    # --- life cycle -----------------------------------------------------------------------

    async def start(self, *, init_timeout_s: float) -> None:
        """Connect, wait for hello, send init, wait for ready. Raises InitFailed / ChannelLost."""
        # Armed before attaching: a runtime forked from a zygote or built ahead of time has
        # already said hello, and that frame is read as soon as the channel is attached.
        hello_waiter = self._waiting = self._loop.create_future()
        self._transport, _ = await self._loop.create_unix_connection(lambda: _Channel(self), sock=self.proc.channel)
        # The pipe transport closes what it reads from: give it its own descriptor.
        pipe = os.fdopen(os.dup(self.proc.output_fd), "rb", buffering=0)
        self._out_transport, _ = await self._loop.connect_read_pipe(lambda: _Output(self._output), pipe)
        hello = await self._expect(init_timeout_s, "start", hello_waiter)
        if hello.get("type") != protocol.HELLO or hello.get("protocol") != protocol.PROTOCOL_VERSION:
            raise InitFailed(error_dict("RuntimeExited", f"the runtime spoke an unknown protocol: {hello}"), "")
        marker = self._new_marker()
        seen = self._loop.create_future()
        self._output.expect(marker, seen)
        self._send({
            "type": protocol.INIT,
            "handler": self.version.handler,
            "code_dir": self.proc.paths.code_dir,
            "layer_dirs": list(self.proc.paths.layer_dirs),
            "env": self.version.env,
            "function": self.version.function,
            "version": self.version.number,
            "memory_mb": self.version.memory_mb,
            "max_result_bytes": self._max_result_bytes,
            "log_marker": marker.decode(),
        })
        reply = await self._expect(init_timeout_s, "load the handler")
        if reply.get("marker", True):
            await self._settle_output(seen)
        self._init_logs = self._output.take()
        if reply.get("type") == protocol.INIT_ERROR:
            raise InitFailed(reply.get("error") or error_dict("InitError", "the handler could not be loaded"),
                             self._init_logs)
        if reply.get("type") != protocol.READY:
            raise InitFailed(error_dict("RuntimeExited", f"unexpected message from the runtime: {reply}"),
                             self._init_logs)
        self.state = InstanceState.IDLE

    async def _expect(self, timeout_s: float, what: str, waiting: asyncio.Future | None = None) -> dict:
        waiting = self._waiting = waiting or self._loop.create_future()
        try:
            return await asyncio.wait_for(waiting, timeout_s)
        except asyncio.TimeoutError:
            self._fail(f"the runtime did not {what} within {timeout_s:g} s")
            raise InitFailed(error_dict("Timeout", f"the runtime did not {what} within {timeout_s:g} s"),
                             self._output.take()) from None
        except ChannelLost:
            info = await self._exit_info()
            raise InitFailed(_death_error(info, self.version), self._output.take()) from None
        finally:
            self._waiting = None

    async def destroy(self) -> ExitInfo:
        self.state = InstanceState.DEAD
        if self._transport is not None:
            self._transport.close()
        if self._out_transport is not None:
            self._out_transport.close()
        return await self.proc.destroy()

    # --- invocations ----------------------------------------------------------------------

    async def invoke(self, invocation_id: str, event_json: bytes, *, cold: bool, timeout_s: float) -> InvokeOutcome:
        """Run one invocation. Never raises for the function's failures: they are outcomes."""
        assert self.state is InstanceState.IDLE, f"instance {self.id} is {self.state.value}"
        self.state = InstanceState.BUSY
        self.current_invocation = invocation_id
        self.sdk_token = secrets.token_urlsafe(18)
        self.deadline = time.monotonic() + timeout_s
        self.invocations += 1
        marker = self._new_marker()
        seen = self._loop.create_future()
        self._output.expect(marker, seen)
        header = orjson.dumps({
            "type": protocol.INVOKE, "id": invocation_id, "cold": cold, "log_marker": marker.decode(),
            "deadline_ms": (time.time() + timeout_s) * 1000, "sdk_token": self.sdk_token,
        })
        started = time.perf_counter()
        waiting = self._waiting = self._loop.create_future()
        timer = self._loop.call_later(timeout_s, _expire, waiting)
        # The event is already validated JSON: splice it in rather than re-encoding it.
        self._transport.write(protocol.frame(header[:-1] + b',"event":' + event_json + b"}"))
        try:
            reply = await waiting
            duration_ms = (time.perf_counter() - started) * 1000
            outcome = self._outcome(reply)
            if reply.get("marker", True):  # false: the runtime saw the pipe empty, nothing to wait for
                await self._settle_output(seen)
        except InvocationTimedOut:
            duration_ms = (time.perf_counter() - started) * 1000
            self._fail("timed out")
            outcome = InvokeOutcome(InvocationStatus.TIMEOUT, error=error_dict(
                "Timeout", f"the function did not finish within {timeout_s:g} s"))
        except ChannelLost:
            duration_ms = (time.perf_counter() - started) * 1000
            info = await self._exit_info()
            outcome = InvokeOutcome(InvocationStatus.FAILED, error=_death_error(info, self.version))
        finally:
            timer.cancel()
            self._waiting = None
            self.current_invocation = None
            self.sdk_token = None
            self.deadline = None
        outcome.duration_ms = round(duration_ms, 3)
        outcome.logs = self._init_logs + self._output.take() if self._init_logs else self._output.take()
        self._init_logs = ""
        self.last_used = time.monotonic()
        if self.state is InstanceState.BUSY:
            self.state = InstanceState.IDLE
        return outcome

    def _outcome(self, reply: dict) -> InvokeOutcome:
        if reply.get("type") != protocol.RESULT:
            self._fail(f"unexpected message {reply.get('type')!r} during an invocation")
            return InvokeOutcome(InvocationStatus.FAILED, error=error_dict(
                "RuntimeExited", "the runtime broke the protocol and was stopped"))
        if reply.get("ok"):
            return InvokeOutcome(InvocationStatus.SUCCEEDED, result=reply.get("result"))
        error = reply.get("error") or {}
        return InvokeOutcome(InvocationStatus.FAILED, error=error_dict(
            str(error.get("type") or "Error"), str(error.get("message") or ""), str(error.get("stack") or "")))

    async def _settle_output(self, seen: asyncio.Future) -> None:
        # The marker was written before the answer; it is in the pipe, if not read yet.
        if not seen.done():
            try:
                await asyncio.wait_for(asyncio.shield(seen), 1.0)
            except asyncio.TimeoutError:
                pass

    async def _exit_info(self) -> ExitInfo:
        try:
            return await asyncio.wait_for(self.proc.wait(), 5.0)
        except asyncio.TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    # --- frames -----------------------------------------------------------------------------

    def _new_marker(self) -> bytes:
        return b"\x00frazil:" + secrets.token_hex(8).encode() + b"\x00"

    def _send(self, message: dict) -> None:
        self._transport.write(protocol.frame(orjson.dumps(message)))

    def _on_frame(self, payload: bytes) -> None:
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._fail("the runtime sent a frame that is not JSON")
            return
        kind = message.get("type")
        if kind == protocol.SDK_CALL:
            self._start_sdk_call(message)
            return
        if kind == protocol.RESULT:
            # The invocation ends with this frame: an sdk_call behind it in the same read
            # must already find its credential gone.
            self.sdk_token = None
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_result(message)
        else:
            self._fail(f"the runtime sent an unexpected {message.get('type')!r} frame")

    def _start_sdk_call(self, message: dict) -> None:
        # Handed over now, in frame order: the credential is judged as the call arrives, not
        # after a result frame read in the same chunk has ended the invocation.
        try:
            if self._sdk_handler is None:
                raise RuntimeError("the SDK is not available on this platform")
            pending = self._sdk_handler(self, message)
        except Exception as exc:  # an SDK failure is the function's error, not ours
            pending = exc
        asyncio.ensure_future(self._finish_sdk_call(message.get("call"), pending))

    async def _finish_sdk_call(self, call, pending) -> None:
        try:
            if isinstance(pending, Exception):
                raise pending
            reply = await pending
        except Exception as exc:  # an SDK failure is the function's error, not ours
            reply = {"ok": False, "error": error_dict(type(exc).__name__, str(exc))}
        if self.alive and self._transport is not None and not self._transport.is_closing():
            self._send({"type": protocol.SDK_REPLY, "call": call, **reply})

    def _on_channel_lost(self) -> None:
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_exception(ChannelLost())
        if self.state is not InstanceState.DEAD:
            self.death = self.death or "the runtime closed its channel"
            self.state = InstanceState.DEAD

    def _fail(self, why: str) -> None:
        """Kill the sandbox now; the holder destroys it."""
        self.death = self.death or why
        self.state = InstanceState.DEAD
        self.proc.kill()


def _expire(waiting: asyncio.Future) -> None:
    if not waiting.done():
        waiting.set_exception(InvocationTimedOut())


def _death_error(info: ExitInfo, version: FunctionVersion) -> dict:
    if info.oom_killed:
        return error_dict("MemoryLimitExceeded",
                          f"the function exceeded its memory limit of {version.memory_mb} MB and was killed")
    return error_dict("RuntimeExited", f"{info.describe()} during the invocation")
