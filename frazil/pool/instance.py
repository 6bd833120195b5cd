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
from frazil.sandbox.base import ExitInfo, RuntimePaths, Sandbox, SandboxProcess
from frazil.store.models import FunctionVersion, InvocationStatus

log = logging.getLogger(__name__)

# The SDK's host side, called as each sdk_call frame arrives: it must check the call's
# credential before returning, and returns the sdk_reply's fields when it answers at once (a
# refusal), else what serves the call (-> those fields).
SdkHandler = Callable[["Instance", dict], "dict | Awaitable[dict]"]


class EgressHook(Protocol):
    """The platform's proxy for the instance's own HTTP clients (frazil.sdk.egress.Egress)."""

    def environment(self, sandbox: Sandbox) -> dict[str, str]:
        """The environment variables that lead the clients of `sandbox`'s instances to the
        proxy (empty: none for them)."""

    async def open(self, instance: "Instance") -> None:
        """Serve `instance` (only one `environment` gave variables for); never raises."""

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
    BUSY = "busy"  # leased by the pool to one invocation, from lease() to release() (a cold
    # one straight from STARTING: its init may still be in flight, its first invoke behind it)
    DEAD = "dead"  # killed, crashed or destroyed: never used again (STYLE habit 6)


# Every state change an instance may make. Death is reachable from anywhere and idempotent
# (a kill, the channel closing and destroy() may each arrive, in any order); nothing leaves it.
TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    InstanceState.STARTING: frozenset({InstanceState.IDLE, InstanceState.BUSY, InstanceState.DEAD}),
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


def new_marker() -> bytes:
    """A log marker: the runtime writes it on its output when init or an invocation is done."""
    return b"\x00frazil:" + secrets.token_hex(8).encode() + b"\x00"


@dataclass(frozen=True)
class InitFrame:
    """An instance's init, made before its sandbox is (`make`), so that the sandbox can write
    it the moment the instance is the function's (`Sandbox.create`'s `first_frame`): a
    pre-built runtime then finds it as it is let go, instead of after create() returns."""

    frame: bytes
    marker: bytes  # ends init's output
    proxied: bool  # it gives the proxy's variables: the instance must be served (EgressHook.open)
    max_result_bytes: int  # what it tells the runtime, and what the instance then accepts

    @classmethod
    def make(cls, version: FunctionVersion, paths: RuntimePaths, *, max_result_bytes: int,
             platform_env: dict[str, str]) -> "InitFrame":
        """`paths`: where the runtime will see its directories (`Sandbox.runtime_paths`)."""
        marker = new_marker()
        frame = protocol.frame(orjson.dumps({
            "type": protocol.INIT,
            "handler": version.handler,
            "code_dir": paths.code_dir,
            "layer_dirs": list(paths.layer_dirs),
            "env": {**platform_env, **version.env},  # the function's own settings win
            "function": version.function,
            "version": version.number,
            "memory_mb": version.memory_mb,
            "max_result_bytes": max_result_bytes,
            "log_marker": marker.decode(),
        }))
        return cls(frame, marker, bool(platform_env), max_result_bytes)


class Instance:
    """Fields are touched only from the event loop thread; `state` says who may use it:
    IDLE instances belong to their FunctionPool, a BUSY one to the invocation it is leased
    to. `state` changes only in `_become()`, along TRANSITIONS."""

    def __init__(self, version: FunctionVersion, proc: SandboxProcess, init: InitFrame, *, log_cap: int,
                 sdk_handler: SdkHandler | None = None, resident: bool = False, egress: EgressHook | None = None,
                 on_ready: Callable[["Instance"], None] | None = None):
        """`init`: the one given to the sandbox's create() as its first frame."""
        self.id = proc.instance_id
        self.version = version
        self.proc = proc
        self._init_frame = init
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
        self._on_ready = on_ready  # called once the runtime said "ready" to init
        self.death: str | None = None
        self._limits = protocol.RuntimeFrameLimits(init.max_result_bytes)
        self._sdk_handler = sdk_handler
        self._output = OutputCapture(log_cap)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._out_transport: asyncio.BaseTransport | None = None
        # The frames we wait for (hello; ready or init_error; a result), each a future and its
        # kinds, in the order they must come: a cold instance's first invoke is sent right
        # behind init, so its result is awaited behind init's answer. Only the head's kinds,
        # and sdk_call, may arrive: anything else breaks the rules.
        self._waits: collections.deque[tuple[asyncio.Future, frozenset[str]]] = collections.deque()
        # init's answer being awaited (`begin()` to `initialized()`); None before and after.
        self._init: asyncio.Task | None = None
        self._init_timeout_s = 0.0
        self._said_ready = False  # the runtime's "ready" was read: it is past init
        self._timeout_from_ready_s: float | None = None  # the timeout of an invocation sent behind init
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
        """IDLE -> BUSY: the pool hands this instance to one invocation; or STARTING -> BUSY,
        a cold one whose init was sent (`begin()`), the invocation's frame to follow it."""
        if self._state is InstanceState.STARTING and self._init is None:
            raise ForbiddenTransition(self.id, self._state, InstanceState.BUSY)  # no init sent (or answered)
        self._become(InstanceState.BUSY)

    def end_lease(self) -> None:
        """BUSY -> IDLE: the invocation gave it back and the pool parks it."""
        self._become(InstanceState.IDLE)

    # --- life cycle -----------------------------------------------------------------------

    async def start(self, *, init_timeout_s: float) -> None:
        """Connect, wait for hello, send init, wait for ready. Raises InitFailed."""
        await self.begin(init_timeout_s=init_timeout_s)
        await self.initialized()

    async def begin(self, *, init_timeout_s: float) -> None:
        """Connect, wait for hello, send init. Its answer is awaited by `initialized()` or by
        the first `invoke()`, which sends its frame first, right behind init: the runtime
        reads both at once and goes on from init to the invocation without a round trip
        through the platform. Raises InitFailed (the instance is then dead)."""
        try:
            await self._begin(init_timeout_s)
        except BaseException:
            self._kill_unready("its start failed")
            raise

    async def _begin(self, init_timeout_s: float) -> None:
        # Init goes out first, before the channel is attached, if the sandbox did not write it
        # already: the runtime (a pre-built one is awake already) loads the handler while the
        # platform sets up its side. Its hello is read and checked after; a runtime that
        # speaks another protocol is killed, whatever it made of init. Both answers are armed
        # before attaching: hello, and "ready" behind it, may come in the channel's first read.
        hello_waiter = self._wait_for(protocol.HELLO)
        answer = self._wait_for(protocol.READY, protocol.INIT_ERROR)
        try:
            seen = self._loop.create_future()
            self._output.expect(self._init_frame.marker, seen)
            self.proc.send_first(self._init_frame.frame)
            channel = RuntimeChannel(limit_for=self._limit_for, largest=self._limits.largest,
                                     on_frame=self._on_frame, on_broken=self._on_broken,
                                     on_lost=self._on_channel_lost)
            self._transport, _ = await self._loop.create_unix_connection(lambda: channel, sock=self.proc.channel)
            if self.proc.unsent_first:
                self._transport.write(self.proc.unsent_first)
            # The pipe transport closes what it reads from: give it its own descriptor.
            pipe = os.fdopen(os.dup(self.proc.output_fd), "rb", buffering=0)
            self._out_transport, _ = await self._loop.connect_read_pipe(lambda: _Output(self._output), pipe)
            hello = await self._expect(init_timeout_s, "start", hello_waiter)
            if hello.get("protocol") != protocol.PROTOCOL_VERSION:
                raise InitFailed(error_dict(ErrorType.RUNTIME_EXITED,
                                            f"the runtime spoke an unknown protocol: {hello}"), "")
        except BaseException:
            _abandon(answer)
            raise
        self._init_timeout_s = init_timeout_s
        self._init = asyncio.ensure_future(self._await_init(answer, seen, init_timeout_s))
        # The runtime is in its final network namespace once created, and the proxy listens
        # there before begin() returns, so before any invocation, which alone may use it.
        if self._init_frame.proxied and self._egress is not None:
            await self._egress.open(self)  # never raises: an instance the proxy cannot serve runs without it

    @property
    def invocation_running(self) -> bool:
        """An invocation runs in the runtime: sent to it, and the runtime past init (an
        invocation sent behind init starts when "ready" is read, in the same read maybe)."""
        return self.current_invocation is not None and self._said_ready

    @property
    def init_pending(self) -> bool:
        """init was sent and its answer not consumed yet (by `initialized()` or the first invoke)."""
        return self._init is not None

    async def initialized(self) -> None:
        """Wait for init's answer, if still awaited: STARTING -> IDLE on "ready" (a leased
        instance stays BUSY). Raises InitFailed, the instance then dead: the handler did
        not load (the runtime's error, with the output of its init), or the runtime died,
        timed out or broke the rules meanwhile."""
        await self._init_answered()
        if not self.alive:  # it said ready, then died
            raise InitFailed(error_dict(ErrorType.RUNTIME_EXITED, f"the runtime died after loading: {self.death}"),
                             self._output.take())
        if self._state is InstanceState.STARTING:
            self._become(InstanceState.IDLE)

    async def _init_answered(self) -> None:
        """Wait for init's answer, if still awaited; raises InitFailed (the instance then dead)."""
        init = self._init
        if init is None:
            return
        try:
            await init
        except BaseException:
            self._kill_unready("its init failed")
            raise
        finally:
            self._init = None

    async def _await_init(self, answer: asyncio.Future, seen: asyncio.Future, timeout_s: float) -> None:
        reply = await self._expect(timeout_s, "load the handler", answer)
        if reply.get("type") == protocol.INIT_ERROR:
            if reply.get("marker", True):
                await self._settle_output(seen)
            raise InitFailed(_runtime_error(reply, "InitError", "the handler could not be loaded"),
                             self._output.take())
        # Its output stays in `_output`, ahead of the first invocation's: that one's logs begin with it.
        # (If it died since, whoever awaits a frame from it now learns how.)
        if self._on_ready is not None and self.alive:
            self._on_ready(self)

    def _kill_unready(self, why: str) -> None:
        """An instance whose start or init did not succeed: nothing more may arrive or wait."""
        if self._init is not None and not self._init.done():
            self._init.cancel()
        if self.alive:
            self._fail(why)
        self._abandon_waits()

    def _wait_for(self, *kinds: str) -> asyncio.Future:
        """Arm the wait for a frame of one of `kinds`, after those armed already (each wait's
        kinds are the only legal ones while it is the first pending)."""
        waiting = self._loop.create_future()
        self._waits.append((waiting, frozenset(kinds)))
        return waiting

    def _head(self) -> tuple[asyncio.Future, frozenset[str]] | None:
        """The first wait still pending (those ended otherwise - a timeout - are dropped)."""
        while self._waits and self._waits[0][0].done():
            self._waits.popleft()
        return self._waits[0] if self._waits else None

    def _forget(self, waiting: asyncio.Future) -> None:
        for i, (future, _) in enumerate(self._waits):
            if future is waiting:
                del self._waits[i]
                return

    def _fail_waits(self, error: Callable[[], Exception]) -> None:
        """Every pending wait ends with an `error()` (the channel is lost, the rules broken, stopped)."""
        for waiting, _ in self._waits:
            if not waiting.done():
                waiting.set_exception(error())
        self._waits.clear()

    def _abandon_waits(self) -> None:
        """Drop the waits nobody will await any more (their exceptions, if any, read)."""
        for waiting, _ in self._waits:
            _abandon(waiting)
        self._waits.clear()

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
        except (ProtocolViolated, InvocationStopped) as exc:
            raise InitFailed(exc.error, self._output.take()) from None
        finally:
            self._forget(waiting)

    async def destroy(self) -> ExitInfo:
        self._become(InstanceState.DEAD)
        if self._init is not None:  # nobody awaits it any more, or its awaiter reads the failure
            self._init.add_done_callback(_abandon)
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
        failures: they are outcomes. Returns once none of the invocation's SDK calls runs.

        On an instance whose init is still in flight (`init_pending`: a cold one just leased)
        the invoke frame goes out now, right behind init, and the invocation starts once the
        runtime says "ready": its timeout, duration and deadline count from then. Raises
        InitFailed if init fails (nothing of the invocation ran: the runtime reads no frame
        after a failed init)."""
        if self._state is not InstanceState.BUSY or self.current_invocation is not None:
            raise ForbiddenTransition(self.id, self._state, InstanceState.BUSY)  # not leased, or in use
        behind_init = self._init is not None
        self.current_invocation = invocation_id
        self.sdk_token = secrets.token_urlsafe(18)
        # Set before the frame goes out: the runtime may call the SDK as soon as it has it. Behind
        # init, the runtime cannot start it (nor call) before "ready": the deadline is put in its
        # true place as "ready" is read (`_on_frame`), before any frame behind it in the same read.
        self.deadline = time.monotonic() + timeout_s + (self._init_timeout_s if behind_init else 0.0)
        self._timeout_from_ready_s = timeout_s if behind_init else None
        calls = self._calls = InvocationCalls(self.deadline, self._reply)
        done = self.invocation_done = self._loop.create_future()
        marker = new_marker()
        seen = self._loop.create_future()
        self._output.expect(marker, seen)
        message = {"type": protocol.INVOKE, "id": invocation_id, "cold": cold, "log_marker": marker.decode(),
                   "sdk_token": self.sdk_token}
        if behind_init:  # the runtime starts its clock when it starts the invocation, after init
            message["timeout_ms"] = timeout_s * 1000
        else:
            message["deadline_ms"] = (time.time() + timeout_s) * 1000
        if user is not None:  # the end user who called: the runtime's context.user
            message["user"] = user
        header = orjson.dumps(message)
        waiting = self._wait_for(protocol.RESULT)  # behind init's answer, if that is awaited
        # The event is already validated JSON: splice it in rather than re-encoding it.
        self._transport.write(protocol.frame(header[:-1] + b',"event":' + event_json + b"}"))
        sent = time.perf_counter()
        if behind_init:
            try:
                await self._init_answered()  # a death after "ready" is this invocation's: `waiting` says how
            except BaseException:
                _abandon(waiting)
                self._forget(waiting)
                self._end_invocation(done)
                await calls.end()
                self._calls = None
                raise
        started = time.perf_counter()
        self.invocations += 1
        timer = self._loop.call_later(timeout_s, _expire, waiting)
        try:
            reply = await waiting
            duration_ms = _handler_ms(reply, (time.perf_counter() - started) * 1000,
                                      (time.perf_counter() - sent) * 1000)
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
            self._forget(waiting)
            self._end_invocation(done)
            # No call of this invocation may act after it: wait until they have all stopped.
            await calls.end()
            self._calls = None
        outcome.duration_ms = round(duration_ms, 3)
        outcome.logs = self._output.take()  # a cold instance's init output first (`_await_init`)
        self.last_used = time.monotonic()
        return outcome

    def _end_invocation(self, done: asyncio.Future) -> None:
        self._end_token()
        done.set_result(None)
        self.current_invocation = None
        self.deadline = None
        self._timeout_from_ready_s = None

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
    # Who may send what when (protocol.py's rules): a runtime sends the kinds the first pending
    # wait of `_waits` names, and sdk_calls with a token this instance issued; each
    # frame no larger than `_limits` allows. These run on the event loop, frame by frame, in
    # the order the runtime wrote them; a rule broken raises ProtocolError, and the channel
    # then calls `_on_broken` and delivers nothing more.

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
        head = self._head()
        return head is not None and kind in head[1]

    def _moment(self) -> str:
        """When the runtime sent something unexpected, in words."""
        if self._awaits(protocol.RESULT):
            return f"during invocation {self.current_invocation}"
        head = self._head()
        if head is not None:
            return f"while the platform waited for {' or '.join(sorted(head[1]))}"
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
        if kind == protocol.READY:
            self._said_ready = True
            if self._timeout_from_ready_s is not None:  # an invocation sent behind init starts now
                self.deadline = time.monotonic() + self._timeout_from_ready_s
                if self._calls is not None:
                    self._calls.deadline = self.deadline
                self._timeout_from_ready_s = None
        waiting, _ = self._waits.popleft()  # the head (`_awaits` made it so)
        waiting.set_result(message)

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
                               f"{self._init_frame.max_result_bytes} bytes (with {protocol.RESULT_ENVELOPE_BYTES} bytes "
                               f"of envelope)")
        else:
            error = error_dict(ErrorType.PROTOCOL_VIOLATION,
                               f"the instance broke the runtime protocol and was stopped: it sent {exc}")
        log.warning("instance %s of %s v%s: %s", self.id, self.version.function, self.version.number,
                    error["message"])
        self._fail_waits(lambda: ProtocolViolated(error))
        if self.alive:
            self._fail(error["message"])

    def abort(self, why: str) -> None:
        """Stop the invocation running here now, the platform may no longer run it: the
        sandbox is killed and the invocation fails (RuntimeExited) saying `why`."""
        self._fail_waits(lambda: InvocationStopped(error_dict(ErrorType.RUNTIME_EXITED,
                                                               f"the instance was stopped: {why}")))
        if self.alive:
            self._fail(why)

    def _end_token(self) -> None:
        if self.sdk_token is not None:
            self._ended_tokens.append(self.sdk_token)
            self.sdk_token = None

    def _on_channel_lost(self) -> None:
        self._fail_waits(ChannelLost)
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


def _handler_ms(reply: dict, measured_ms: float, seen_ms: float) -> float:
    """How long the handler ran: what its runtime measured (the result's "duration_ms"), never
    more than the platform saw from sending the invocation to reading its result (`seen_ms`);
    else the platform's own figure (`measured_ms`, from the invocation's start as the platform
    knows it). The platform's figure alone is off by its wake-ups: for an invocation behind
    init, "ready" and the result often come in one read, so it would say ~0."""
    reported = reply.get("duration_ms")
    if isinstance(reported, (int, float)) and not isinstance(reported, bool) and reported >= 0:
        return min(float(reported), seen_ms)
    return measured_ms


def _abandon(future: asyncio.Future) -> None:
    """Read a future's exception (nobody else will), or cancel it if it is pending."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


def _expire(waiting: asyncio.Future) -> None:
    if not waiting.done():
        waiting.set_exception(InvocationTimedOut())


def _death_error(info: ExitInfo, version: FunctionVersion) -> dict:
    if info.oom_killed:
        return error_dict(ErrorType.MEMORY_LIMIT_EXCEEDED,
                          f"the function exceeded its memory limit of {version.memory_mb} MB and was killed")
    return error_dict(ErrorType.RUNTIME_EXITED, f"{info.describe()} during the invocation")
