"""A `Sandbox` whose instances are scripted peers on the event loop, for in-process tests of
the API, the scheduler and the pool.

Each instance is a socketpair and a pipe, like a real one; its far end is an asyncio task
that speaks the runtime protocol (frazil.runtimes.protocol) as the real loops do: hello,
init -> ready, then one invoke -> result at a time, writing the invocation's output and the
log marker to the output pipe before each answer. Nothing is exec'd and the function's
code is never run: what a "function" does is read from its event (a dict):

    {"return": V}          answer V (without "return": answer the event itself)
    {"raise": "msg"}       fail with a ValueError carrying "msg"
    {"fail_first": N}      fail the first N attempts of this invocation id, then answer
    {"gate": "name"}       wait at the gate `name` until the test opens it (a hang when it never does)
    {"exit": N}            the runtime exits with status N mid-invocation
    {"print": "text"}      write text to the output pipe first
    {"pad": N}             answer a string of N "x"s
    {"send": [F, ...]}     write these frames to the channel first, as a function writing to
                           the channel itself would (see below)
    {"sdk": [C, ...]}      make these SDK calls (fields of sdk_call frames: "op", "table", ...;
                           the call id and the invocation's token are added unless given),
                           all at once, then read until each has its reply; answer the replies
                           in call order (unless "return" says otherwise)
    {"flood": {"n": N, "call": C}}  write N such sdk_calls at once, read no reply, go on
    {"after": [F, ...]}    write these frames right after the answer (the instance is idle)
    {"hang": true}         never answer (until the platform kills the runtime)
    {"report_ms": V}       say V as the handler's duration_ms in the result (any JSON value;
                           without it the result carries none)

A frame F is a dict, encoded as a frame, or {"raw": "text", "announce": N}: a length prefix
announcing N bytes (default: the length of `text`) followed by just `text`.
In frames, "$id" and "$token" (as whole strings, or inside "raw") stand for the invocation's
id and sdk_token, and "$previous_token" for the last invocation's token on this runtime.

A version whose handler is `index.broken` fails to load (init_error).
The sandbox counts what happened (instances created and destroyed, invocations running now
and at most), so a test asserts on what the runtimes saw, not on what the platform says.
"""
from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
from dataclasses import dataclass
from itertools import count

import orjson

from frazil.runtimes import protocol
from frazil.sandbox.base import ExitInfo, RuntimePaths, Sandbox, SandboxProcess, SandboxSpec

BROKEN_HANDLER = "index.broken"
# Above Linux's largest pid_max: no real process can have these, so nothing can signal one.
_FAKE_PIDS = count(2 ** 22 + 1)


@dataclass(frozen=True)
class Seen:
    """One invoke a runtime received."""

    instance_id: str
    invocation_id: str
    cold: bool
    at: float  # the event loop's clock


class Gate:
    """Invocations that name this gate wait at it until `open()`; the test can wait for
    them to arrive (the way to hold a tier slot without sleeping)."""

    def __init__(self):
        self._opened = asyncio.Event()
        self._changed = asyncio.Condition()
        self.arrived = 0

    async def _pass(self) -> None:
        async with self._changed:
            self.arrived += 1
            self._changed.notify_all()
        await self._opened.wait()

    async def arrivals(self, n: int, timeout_s: float = 5.0) -> None:
        """Return once `n` invocations have reached the gate in all."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.arrived >= n), timeout_s)

    def open(self) -> None:
        self._opened.set()


class FakeProcess(SandboxProcess):
    def __init__(self, sandbox: "FakeSandbox", spec: SandboxSpec, channel: socket.socket, output_fd: int,
                 peer: socket.socket, output_w: int):
        super().__init__(instance_id=spec.instance_id, pid=next(_FAKE_PIDS), channel=channel, output_fd=output_fd,
                         paths=sandbox.runtime_paths(spec))
        self.spec = spec
        self._sandbox = sandbox
        self._peer = peer
        self._peer_transport: asyncio.Transport | None = None  # owns `peer` once connected
        self._output_w = output_w
        self._exited: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        self._exit_code = 0  # what the runtime exits with when it ends on its own
        self._destroyed = False
        self._task = asyncio.create_task(self._serve(), name=f"fake-runtime-{spec.instance_id}")

    # --- the SandboxProcess interface ----------------------------------------------------

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        if not self._exited.done():
            self._task.cancel()
            self._end(ExitInfo(signal=9))

    async def destroy(self) -> ExitInfo:
        self.kill()
        info = await self.wait()
        if not self._destroyed:
            self._destroyed = True
            self.channel.close()
            try:
                os.close(self.output_fd)
            except OSError:
                pass
            self._sandbox.destroyed.append(self.instance_id)
        return info

    def _end(self, info: ExitInfo) -> None:
        """The runtime is gone: its ends of the channel and the pipe close, as at a real exit."""
        # Through the transport when there is one: closing the socket under it would leave
        # its fd number watched by the event loop, to be reused by the next socketpair.
        if self._peer_transport is not None:
            self._peer_transport.abort()
        else:
            self._peer.close()
        try:
            os.close(self._output_w)
        except OSError:
            pass
        self._exited.set_result(info)
        self._sandbox.live.discard(self.instance_id)

    # --- the scripted runtime ------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            await self._speak()
        finally:  # however the script ended (a kill has ended it already)
            if not self._exited.done():
                self._end(ExitInfo(exit_code=self._exit_code))

    async def _speak(self) -> None:
        reader, writer = await asyncio.open_unix_connection(sock=self._peer)
        self._peer_transport = writer.transport
        send = lambda message: writer.write(protocol.encode(message))  # noqa: E731
        send({"type": protocol.HELLO, "protocol": protocol.PROTOCOL_VERSION, "runtime": self.spec.runtime.name,
              "pid": self.pid})
        init = await _read(reader)
        self._output(b"", init["log_marker"])
        if init["handler"] == BROKEN_HANDLER:
            send({"type": protocol.INIT_ERROR, "error": {"type": "AttributeError",
                                                         "message": "module 'index' has no attribute 'broken'",
                                                         "stack": ""}})
            return  # like the real runtimes: nothing more (an invoke sent behind init is not served)
        send({"type": protocol.READY})
        self._tokens: list[str] = []
        while (invoke := await _read(reader)) is not None:
            if invoke["type"] == protocol.SDK_REPLY:  # a reply nobody waits for (a flood's): dropped
                continue
            script = invoke["event"] if isinstance(invoke["event"], dict) else {}
            self._tokens.append(invoke.get("sdk_token", ""))
            for forged in script.get("send", ()):
                writer.write(self._forge(forged, invoke))
            if "flood" in script:
                flood = script["flood"]
                one = self._call(flood["call"], 0, invoke)
                writer.write(b"".join(protocol.encode({**one, "call": n}) for n in range(flood["n"])))
            replies = await self._calls(reader, writer, script.get("sdk", ()), invoke)
            reply = await self._run(invoke, script, replies)
            if reply is None:  # the script asked the runtime to exit
                break
            self._output(str(script.get("print", "")).encode(), invoke["log_marker"])
            send(reply)
            for forged in script.get("after", ()):
                writer.write(self._forge(forged, invoke))

    def _substitute(self, value, invoke: dict):
        if isinstance(value, str):
            previous = self._tokens[-2] if len(self._tokens) > 1 else ""
            return (value.replace("$previous_token", previous).replace("$token", invoke.get("sdk_token", ""))
                    .replace("$id", invoke["id"]))
        if isinstance(value, dict):
            return {k: self._substitute(v, invoke) for k, v in value.items()}
        if isinstance(value, list):
            return [self._substitute(v, invoke) for v in value]
        return value

    def _forge(self, forged: dict, invoke: dict) -> bytes:
        if "raw" in forged:
            raw = self._substitute(forged["raw"], invoke).encode()
            return protocol.HEADER.pack(forged.get("announce", len(raw))) + raw
        return protocol.encode(self._substitute(forged, invoke))

    def _call(self, fields: dict, call: int, invoke: dict) -> dict:
        # "type" first, as every runtime frame begins (see protocol.py).
        return {"type": protocol.SDK_CALL, "call": call, "sdk_token": invoke.get("sdk_token"),
                **self._substitute(fields, invoke)}

    async def _calls(self, reader, writer, calls, invoke: dict) -> list[dict]:
        """Send every call at once, then read until each has its reply (in call order)."""
        if not calls:
            return []
        writer.write(b"".join(protocol.encode(self._call(c, n, invoke)) for n, c in enumerate(calls)))
        replies: dict = {}
        while len(replies) < len(calls):
            message = await _read(reader)
            if message is None:
                raise ConnectionError("the platform closed the channel")
            if message["type"] == protocol.SDK_REPLY and isinstance(message.get("call"), int):
                replies[message["call"]] = message
        return [replies[n] for n in range(len(calls))]

    async def _run(self, invoke: dict, script: dict, replies: list[dict]) -> dict | None:
        sandbox = self._sandbox
        sandbox.attempts[invoke["id"]] += 1
        sandbox.running += 1
        sandbox.peak_running = max(sandbox.peak_running, sandbox.running)
        sandbox.invocations.append(Seen(self.instance_id, invoke["id"], bool(invoke["cold"]),
                                        asyncio.get_running_loop().time()))
        try:
            if "gate" in script:
                await sandbox.gate(script["gate"])._pass()
            if script.get("hang"):
                await asyncio.Event().wait()
            if "exit" in script:
                self._exit_code = int(script["exit"])
                return None
            reported = {"duration_ms": script["report_ms"]} if "report_ms" in script else {}
            if "raise" in script or sandbox.attempts[invoke["id"]] <= int(script.get("fail_first", 0)):
                return {"type": protocol.RESULT, "id": invoke["id"], "ok": False, **reported,
                        "error": {"type": "ValueError", "message": str(script.get("raise", "not yet")), "stack": ""}}
            result = script["return"] if "return" in script else (
                "x" * script["pad"] if "pad" in script else replies if "sdk" in script else invoke["event"])
            return {"type": protocol.RESULT, "id": invoke["id"], "ok": True, **reported, "result": result}
        finally:
            sandbox.running -= 1

    def _output(self, text: bytes, marker: str) -> None:
        # What the function printed, then the marker: the platform's OutputCapture attributes
        # everything before the marker to this invocation.
        os.write(self._output_w, text + marker.encode())


async def _read(reader: asyncio.StreamReader) -> dict | None:
    try:
        header = await reader.readexactly(protocol.HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    (size,) = protocol.HEADER.unpack(header)
    return orjson.loads(await reader.readexactly(size))


class FakeSandbox(Sandbox):
    name = "fake"

    def __init__(self):
        self.created: list[SandboxSpec] = []  # every create(), in order
        self.destroyed: list[str] = []  # instance ids, in the order destroy() finished
        self.live: set[str] = set()  # instances whose runtime has not exited
        self.attempts: Counter[str] = Counter()  # invocation id -> invokes the runtimes received
        self.invocations: list[Seen] = []  # every invoke received, in order
        self.running = 0  # invocations inside a runtime now ...
        self.peak_running = 0  # ... and at most
        self._gates: dict[str, Gate] = {}
        self._procs: list[FakeProcess] = []

    def gate(self, name: str) -> Gate:
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = Gate()
        return gate

    async def start(self) -> None:
        pass

    def runtime_paths(self, spec: SandboxSpec) -> RuntimePaths:
        return RuntimePaths(str(spec.code_dir), tuple(str(p) for p in spec.layer_dirs), "/tmp")

    async def create(self, spec: SandboxSpec, first_frame: bytes = b"") -> SandboxProcess:
        channel, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel.setblocking(False)
        peer.setblocking(False)
        output_r, output_w = os.pipe()
        os.set_blocking(output_w, False)
        self.created.append(spec)
        self.live.add(spec.instance_id)
        proc = FakeProcess(self, spec, channel, output_r, peer, output_w)
        self._procs.append(proc)
        return proc

    async def close(self) -> None:
        await asyncio.gather(*(p.destroy() for p in self._procs), return_exceptions=True)


async def fake_inspect_handler(settings, runtime, code_dir, layer_dir, requested, env, timeout_s, log) -> str:
    """The deploy's handler inspection for fake instances: no code runs here either, so the
    handler is the one given, else the default."""
    handler = requested or "index.main"
    log(f"handler: {handler} (not inspected: in-process test)")
    return handler
