"""One instance: a runtime loop in a sandbox, serving one invocation at a time.

The instance speaks the runtime protocol over the sandbox's channel and attributes the
output pipe to invocations. It never decides its own fate: whoever holds it (the pool)
destroys it when `alive` turns false (STYLE habit 6: an instance that erred is never reused).

It trusts nothing the runtime says (a function can write to the channel itself). The frame
rules of frazil/runtimes/protocol.py are enforced here, each as early as it can be decided:
size and kind from a frame's first bytes (`_limit_for`), the rest once it is whole
(`_on_frame`). A frame that breaks one kills the instance at once and fails the invocation
running on it, if any, with `ResultTooLarge` or `ProtocolViolation`; the pool then destroys
it, so the next invocation starts cold on a fresh instance.
"""
from __future__ import annotations

import asyncio
import collections
import enum
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

import orjson

from frazil.pool.channel import RuntimeChannel
from frazil.pool.output import OutputCapture
from frazil.pool.sdk_calls import ENDED, InvocationCalls, error_reply
from frazil.runtimes import protocol
from frazil.sandbox.base import ExitInfo, SandboxProcess
from frazil.store.models import FunctionVersion, InvocationStatus

log = logging.getLogger(__name__)

# The SDK's host side, called as each sdk_call frame arrives: it must check the call's
# credential before returning, and returns the sdk_reply's fields when it answers at once (a
# refusal), else what serves the call (-> those fields).
SdkHandler = Callable[["Instance", dict], "dict | Awaitable[dict]"]


class EgressHook(Protocol):
    """The platform's proxy for the instance's own HTTP clients (frazil.sdk.egress.Egress)."""

    async def open(self, instance: "Instance") -> dict[str, str]:
        """Serve `instance`; answers the environment variables that lead its clients there."""

    def close(self, instance: "Instance") -> None:
        """Stop serving `instance` (it is being destroyed)."""


# Tokens of ended invocations an instance remembers: a call carrying one of them is refused
# with an sdk_reply (a thread of the function raced its invocation's end), any other token
# is a protocol violation.
ENDED_TOKENS_KEPT = 8


class ErrorType(str, enum.Enum):
    """The error types the platform itself gives a failed invocation (the envelope's
    `error.type`; a function's own exceptions carry their class name instead)."""

    TIMEOUT = "Timeout"
    MEMORY_LIMIT_EXCEEDED = "MemoryLimitExceeded"
    RUNTIME_EXITED = "RuntimeExited"
    RESULT_NOT_SERIALIZABLE = "ResultNotSerializable"  # reported by the runtime
    RESULT_TOO_LARGE = "ResultTooLarge"  # by the runtime, or by the platform from the frame's length
    PROTOCOL_VIOLATION = "ProtocolViolation"  # the runtime (or the function) broke the frame rules


class InstanceState(enum.Enum):
    """Who may use an instance. The pool's view and the instance's are this one field."""

    STARTING = "starting"  # created; the runtime has not said "ready" yet
    IDLE = "idle"  # ready, and parked in its FunctionPool: nobody uses it
    BUSY = "busy"  # leased by the pool to one invocation, from acquire() to release()
    DEAD = "dead"  # killed, crashed or destroyed: never used again (STYLE habit 6)


# Every state change an instance may make. Death is reachable from anywhere and idempotent
# (a kill, the channel closing and destroy() may each arrive, in any order); nothing leaves it.
TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    InstanceState.STARTING: frozenset({InstanceState.IDLE, InstanceState.DEAD}),
    InstanceState.IDLE: frozenset({InstanceState.BUSY, InstanceState.DEAD}),
    InstanceState.BUSY: frozenset({InstanceState.IDLE, InstanceState.DEAD}),
    InstanceState.DEAD: frozenset({InstanceState.DEAD}),
}


class ForbiddenTransition(RuntimeError):
    """A programmer error: code asked an instance for a state change TRANSITIONS forbids."""

    def __init__(self, instance_id: str, current: InstanceState, wanted: InstanceState):
        super().__init__(f"instance {instance_id} cannot go from {current.value} to {wanted.value}")
        self.current = current
        self.wanted = wanted


class ChannelLost(Exception):
    """The runtime closed its channel (it exited, crashed or was killed)."""


class InvocationTimedOut(Exception):
    pass


class ProtocolViolated(Exception):
    """The runtime broke a frame rule; `error` is what the invocation fails with."""

    def __init__(self, error: dict):
        super().__init__(error["message"])
        self.error = error


class InvocationStopped(Exception):
    """The platform stopped the invocation (abort()); `error` is what it fails with."""

    def __init__(self, error: dict):
        super().__init__(error["message"])
        self.error = error


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
    return {"type": type_.value if isinstance(type_, ErrorType) else type_, "message": message, "stack": stack}


class _Output(asyncio.Protocol):
    def __init__(self, capture: OutputCapture):
        self._capture = capture

    def data_received(self, data: bytes) -> None:
        self._capture.feed(data)


class Instance:
    """Fields are touched only from the event loop thread; `state` says who may use it:
    IDLE instances belong to their FunctionPool, a BUSY one to the invocation it is leased
    to. `state` changes only in `_become()`, along TRANSITIONS."""

    def __init__(self, version: FunctionVersion, proc: SandboxProcess, *, log_cap: int,
                 max_result_bytes: int, sdk_handler: SdkHandler | None = None, resident: bool = False,
                 egress: EgressHook | None = None):
        self.id = proc.instance_id
        self.version = version
        self.proc = proc
        self.resident = resident
        self._state = InstanceState.STARTING
        self.created_at = time.monotonic()
        self.last_used = self.created_at
        self.invocations = 0
        self.current_invocation: str | None = None  # the invocation running now
        # The SDK credential of the running invocation: calls must carry it, and it dies with
        # the invocation (into `_ended_tokens`, which only earns a refusal), so nothing a
        # function keeps can be replayed later.
        self.sdk_token: str | None = None
        self._ended_tokens: collections.deque[str] = collections.deque(maxlen=ENDED_TOKENS_KEPT)
        self._calls: InvocationCalls | None = None  # the running invocation's SDK calls
        self.deadline: float | None = None  # when the running invocation times out (monotonic)
        # Resolved when the running invocation ends: what it started outside the SDK channel
        # (its HTTP_PROXY connections, frazil.sdk.egress) is cut off then. None before the first.
        self.invocation_done: asyncio.Future | None = None
        self._egress = egress
        self.death: str | None = None
        self._max_result_bytes = max_result_bytes
        self._limits = protocol.RuntimeFrameLimits(max_result_bytes)
        self._sdk_handler = sdk_handler
        self._output = OutputCapture(log_cap)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._out_transport: asyncio.BaseTransport | None = None
        # The one frame we wait for now (hello; ready or init_error; the result) and its kinds.
        # Only a waited-for kind, and sdk_call, may arrive: anything else breaks the rules.
        self._waiting: asyncio.Future | None = None
        self._waiting_for: frozenset[str] = frozenset()
        self._init_logs = ""
        self.stats: dict[str, float] = {}  # create_ms, destroy_ms

    @property
    def state(self) -> InstanceState:
        return self._state

    @property
    def alive(self) -> bool:
        return self._state is not InstanceState.DEAD

    def _become(self, state: InstanceState) -> None:
        """The one place the state changes; a change TRANSITIONS forbids raises."""
        if state not in TRANSITIONS[self._state]:
            raise ForbiddenTransition(self.id, self._state, state)
        self._state = state

    def lease(self) -> None:
        """IDLE -> BUSY: the pool hands this instance to one invocation."""
        self._become(InstanceState.BUSY)

    def end_lease(self) -> None:
        """BUSY -> IDLE: the invocation gave it back and the pool parks it."""
        self._become(InstanceState.IDLE)

    # --- life cycle -----------------------------------------------------------------------

    async def start(self, *, init_timeout_s: float) -> None:
        """Connect, wait for hello, send init, wait for ready. Raises InitFailed / ChannelLost."""
        # Armed before attaching: a runtime forked from a zygote or built ahead of time has
        # already said hello, and that frame is read as soon as the channel is attached.
        hello_waiter = self._wait_for(protocol.HELLO)
        channel = RuntimeChannel(limit_for=self._limit_for, largest=self._limits.largest, on_frame=self._on_frame,
                                 on_broken=self._on_broken, on_lost=self._on_channel_lost)
        self._transport, _ = await self._loop.create_unix_connection(lambda: channel, sock=self.proc.channel)
        # The pipe transport closes what it reads from: give it its own descriptor.
        pipe = os.fdopen(os.dup(self.proc.output_fd), "rb", buffering=0)
        self._out_transport, _ = await self._loop.connect_read_pipe(lambda: _Output(self._output), pipe)
        hello = await self._expect(init_timeout_s, "start", hello_waiter)
        if hello.get("protocol") != protocol.PROTOCOL_VERSION:
            raise InitFailed(error_dict(ErrorType.RUNTIME_EXITED,
                                        f"the runtime spoke an unknown protocol: {hello}"), "")
        # After hello: the runtime is in its final network namespace, where the proxy listens.
        platform_env = await self._egress.open(self) if self._egress is not None else {}
        marker = self._new_marker()
        seen = self._loop.create_future()
        self._output.expect(marker, seen)
        self._send({
            "type": protocol.INIT,
            "handler": self.version.handler,
            "code_dir": self.proc.paths.code_dir,
            "layer_dirs": list(self.proc.paths.layer_dirs),
            "env": {**platform_env, **self.version.env},  # the function's own settings win
            "function": self.version.function,
            "version": self.version.number,
            "memory_mb": self.version.memory_mb,
            "max_result_bytes": self._max_result_bytes,
            "log_marker": marker.decode(),
        })
        reply = await self._expect(init_timeout_s, "load the handler",
                                   self._wait_for(protocol.READY, protocol.INIT_ERROR))
        if reply.get("marker", True):
            await self._settle_output(seen)
        self._init_logs = self._output.take()
        if reply.get("type") == protocol.INIT_ERROR:
            raise InitFailed(_runtime_error(reply, "InitError", "the handler could not be loaded"), self._init_logs)
        if not self.alive:  # it said ready, then died while its output settled
            raise InitFailed(error_dict(ErrorType.RUNTIME_EXITED, f"the runtime died after loading: {self.death}"),
                             self._init_logs)
        self._become(InstanceState.IDLE)

    def _wait_for(self, *kinds: str) -> asyncio.Future:
        """Arm the wait for the next frame, of one of `kinds` (the only ones legal until it comes)."""
        self._waiting = self._loop.create_future()
        self._waiting_for = frozenset(kinds)
        return self._waiting

    async def _expect(self, timeout_s: float, what: str, waiting: asyncio.Future) -> dict:
        try:
            return await asyncio.wait_for(waiting, timeout_s)
        except asyncio.TimeoutError:
            self._fail(f"the runtime did not {what} within {timeout_s:g} s")
            raise InitFailed(error_dict(ErrorType.TIMEOUT, f"the runtime did not {what} within {timeout_s:g} s"),
                             self._output.take()) from None
        except ChannelLost:
            info = await self._exit_info()
            raise InitFailed(_death_error(info, self.version), self._output.take()) from None
        except ProtocolViolated as exc:
            raise InitFailed(exc.error, self._output.take()) from None
        finally:
            self._waiting = None
            self._waiting_for = frozenset()

    async def destroy(self) -> ExitInfo:
        self._become(InstanceState.DEAD)
        if self._egress is not None:
            self._egress.close(self)
        if self._transport is not None:
            self._transport.close()
        if self._out_transport is not None:
            self._out_transport.close()
        return await self.proc.destroy()

    # --- invocations ----------------------------------------------------------------------

    async def invoke(self, invocation_id: str, event_json: bytes, *, cold: bool, timeout_s: float,
                     user: dict | None = None) -> InvokeOutcome:
        """Run one invocation on this leased (BUSY) instance; it stays BUSY, or DEAD when the
        invocation killed it, until the pool takes it back. Never raises for the function's
        failures: they are outcomes. Returns once none of the invocation's SDK calls runs."""
        if self._state is not InstanceState.BUSY or self.current_invocation is not None:
            raise ForbiddenTransition(self.id, self._state, InstanceState.BUSY)  # not leased, or in use
        self.current_invocation = invocation_id
        self.sdk_token = secrets.token_urlsafe(18)
        self.deadline = time.monotonic() + timeout_s
        calls = self._calls = InvocationCalls(self.deadline, self._reply)
        done = self.invocation_done = self._loop.create_future()
        self.invocations += 1
        marker = self._new_marker()
        seen = self._loop.create_future()
        self._output.expect(marker, seen)
        message = {
            "type": protocol.INVOKE, "id": invocation_id, "cold": cold, "log_marker": marker.decode(),
            "deadline_ms": (time.time() + timeout_s) * 1000, "sdk_token": self.sdk_token,
        }
        if user is not None:  # the end user who called: the runtime's context.user
            message["user"] = user
        header = orjson.dumps(message)
        started = time.perf_counter()
        waiting = self._wait_for(protocol.RESULT)
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
                ErrorType.TIMEOUT, f"the function did not finish within {timeout_s:g} s"))
        except (ProtocolViolated, InvocationStopped) as exc:
            duration_ms = (time.perf_counter() - started) * 1000
            outcome = InvokeOutcome(InvocationStatus.FAILED, error=exc.error)
        except ChannelLost:
            duration_ms = (time.perf_counter() - started) * 1000
            info = await self._exit_info()
            outcome = InvokeOutcome(InvocationStatus.FAILED, error=_death_error(info, self.version))
        finally:
            timer.cancel()
            self._waiting = None
            self._waiting_for = frozenset()
            self._end_token()
            done.set_result(None)
            self.current_invocation = None
            self.deadline = None
            # No call of this invocation may act after it: wait until they have all stopped.
            await calls.end()
            self._calls = None
        outcome.duration_ms = round(duration_ms, 3)
        outcome.logs = self._init_logs + self._output.take() if self._init_logs else self._output.take()
        self._init_logs = ""
        self.last_used = time.monotonic()
        return outcome

    def _outcome(self, reply: dict) -> InvokeOutcome:
        if reply.get("ok") is True:
            return InvokeOutcome(InvocationStatus.SUCCEEDED, result=reply.get("result"))
        return InvokeOutcome(InvocationStatus.FAILED, error=_runtime_error(reply, "Error", ""))

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
    # Who may send what when (protocol.py's rules): a runtime sends the kinds `_waiting_for`
    # names while `_waiting` is armed, and sdk_calls with a token this instance issued; each
    # frame no larger than `_limits` allows. These run on the event loop, frame by frame, in
    # the order the runtime wrote them; a rule broken raises ProtocolError, and the channel
    # then calls `_on_broken` and delivers nothing more.

    def _new_marker(self) -> bytes:
        return b"\x00frazil:" + secrets.token_hex(8).encode() + b"\x00"

    def _send(self, message: dict) -> None:
        self._transport.write(protocol.frame(orjson.dumps(message)))

    def _limit_for(self, kind: str) -> int:
        """The largest frame of `kind` acceptable now (judged from its first bytes)."""
        if kind not in self._limits.by_kind:
            raise protocol.UnexpectedFrame(kind, "(a kind no runtime may send)")
        if kind != protocol.SDK_CALL and not self._awaits(kind):
            raise protocol.UnexpectedFrame(kind, self._moment())
        return self._limits[kind]

    def _awaits(self, kind: str) -> bool:
        return self._waiting is not None and not self._waiting.done() and kind in self._waiting_for

    def _moment(self) -> str:
        """When the runtime sent something unexpected, in words."""
        if self._awaits(protocol.RESULT):
            return f"during invocation {self.current_invocation}"
        if self._waiting is not None and not self._waiting.done():
            return f"while the platform waited for {' or '.join(sorted(self._waiting_for))}"
        if self.current_invocation is not None:
            return f"after invocation {self.current_invocation} had answered"
        return "while no invocation was running"

    def _on_frame(self, kind: str, payload: bytes) -> None:
        if not self.alive:  # killed meanwhile (a timeout): its last words do not matter
            return
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise protocol.ProtocolError(f"a {kind!r} frame that is not JSON") from None
        if message.get("type") != kind:  # e.g. a duplicate "type" key: sized as one kind, parsed as another
            raise protocol.ProtocolError(f"a frame that begins as {kind!r} but is {message.get('type')!r}")
        if kind == protocol.SDK_CALL:
            self._on_sdk_call(message, len(payload))
            return
        if not self._awaits(kind):
            raise protocol.UnexpectedFrame(kind, self._moment())
        if kind == protocol.RESULT:
            if message.get("id") != self.current_invocation:
                raise protocol.UnexpectedFrame(kind, f"for invocation {message.get('id')!r} during invocation "
                                                     f"{self.current_invocation}")
            # The invocation ends with this frame: an sdk_call behind it in the same read
            # must already find its credential gone.
            self._end_token()
        self._waiting.set_result(message)

    def _on_sdk_call(self, message: dict, size: int) -> None:
        # Handed over now, in frame order: the credential is judged as the call arrives, not
        # after a result frame read in the same chunk has ended the invocation.
        token, call = message.get("sdk_token"), message.get("call")
        current = self.sdk_token is not None and isinstance(token, str) and secrets.compare_digest(
            token.encode(), self.sdk_token.encode())
        if not current and token not in self._ended_tokens:
            raise protocol.ProtocolError("an sdk_call without a credential this instance issued")
        if current and self._calls is not None and not self._calls.has_room(size):
            self._reply(call, error_reply("TooManyCalls", f"this invocation's SDK calls being served hold "
                                          f"{self._calls.bytes_held} bytes; a call of {size} bytes more is "
                                          f"refused", 429))
            return
        try:
            if self._sdk_handler is None:
                raise RuntimeError("the SDK is not available on this platform")
            answer = self._sdk_handler(self, message)
        except Exception as exc:  # an SDK failure is the function's error, not ours
            answer = error_reply(type(exc).__name__, str(exc), 500)
        if isinstance(answer, dict):  # answered at once (a refusal): no task, no queue
            self._reply(call, answer)
        elif current and self._calls is not None:
            self._calls.start(call, answer, size)
        else:  # the host must refuse an ended invocation's call at once; never serve it late
            asyncio.ensure_future(answer).cancel()
            self._reply(call, ENDED)

    def _reply(self, call, reply: dict) -> None:
        if self.alive and self._transport is not None and not self._transport.is_closing():
            self._send({"type": protocol.SDK_REPLY, "call": call, **reply})

    def _on_broken(self, exc: protocol.ProtocolError) -> None:
        """The runtime broke a frame rule: kill it, and fail the invocation running on it."""
        if isinstance(exc, protocol.FrameTooLarge) and exc.kind == protocol.RESULT:
            error = error_dict(ErrorType.RESULT_TOO_LARGE,
                               f"the function's result frame is {exc.size} bytes; a result may be at most "
                               f"{self._max_result_bytes} bytes (with {protocol.RESULT_ENVELOPE_BYTES} bytes "
                               f"of envelope)")
        else:
            error = error_dict(ErrorType.PROTOCOL_VIOLATION,
                               f"the instance broke the runtime protocol and was stopped: it sent {exc}")
        log.warning("instance %s of %s v%s: %s", self.id, self.version.function, self.version.number,
                    error["message"])
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_exception(ProtocolViolated(error))
        if self.alive:
            self._fail(error["message"])

    def abort(self, why: str) -> None:
        """Stop the invocation running here now, the platform may no longer run it: the
        sandbox is killed and the invocation fails (RuntimeExited) saying `why`."""
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_exception(InvocationStopped(error_dict(ErrorType.RUNTIME_EXITED,
                                                               f"the instance was stopped: {why}")))
        if self.alive:
            self._fail(why)

    def _end_token(self) -> None:
        if self.sdk_token is not None:
            self._ended_tokens.append(self.sdk_token)
            self.sdk_token = None

    def _on_channel_lost(self) -> None:
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_exception(ChannelLost())
        if self._calls is not None:
            self._calls.cancel()
        if self.alive:
            self.death = self.death or "the runtime closed its channel"
            self._become(InstanceState.DEAD)

    def _fail(self, why: str) -> None:
        """Kill the sandbox now, and cut off its SDK calls; the holder destroys it."""
        self.death = self.death or why
        self._become(InstanceState.DEAD)
        if self._calls is not None:
            self._calls.cancel()
        self.proc.kill()


def _runtime_error(reply: dict, default_type: str, default_message: str) -> dict:
    """The ERROR a runtime's frame carries, as plain strings whatever it sent."""
    error = reply.get("error")
    error = error if isinstance(error, dict) else {}
    return error_dict(str(error.get("type") or default_type), str(error.get("message") or default_message),
                      str(error.get("stack") or ""))


def _expire(waiting: asyncio.Future) -> None:
    if not waiting.done():
        waiting.set_exception(InvocationTimedOut())


def _death_error(info: ExitInfo, version: FunctionVersion) -> dict:
    if info.oom_killed:
        return error_dict(ErrorType.MEMORY_LIMIT_EXCEEDED,
                          f"the function exceeded its memory limit of {version.memory_mb} MB and was killed")
    return error_dict(ErrorType.RUNTIME_EXITED, f"{info.describe()} during the invocation")
