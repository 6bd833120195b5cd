"""A small driver that starts a runtime loop with `spawn_runtime` and speaks the protocol to it
over blocking sockets, so the runtime tests read like the conversation they check."""
from __future__ import annotations

import json
import os
import select
import signal
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from frazil.runtimes import NODE, PYTHON, RUNTIMES_ROOT, RuntimeKind
from frazil.runtimes.protocol import GuardedDecoder, RuntimeFrameLimits, encode
from frazil.sandbox.spawn import spawn_runtime

TIMEOUT_S = 15.0



def readable(fds: list[int], timeout_s: float) -> set[int]:
    """The descriptors among `fds` that are readable (or closed) within `timeout_s`. poll,
    not select: a long test session may hold descriptors numbered above 1023."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return {fd for fd, _ in poller.poll(max(0, timeout_s) * 1000)}

class LoopDriver:
    """One runtime process and the platform's side of its channel and output pipe."""

    def __init__(self, runtime: RuntimeKind, home: Path, memory_mb: int = 128):
        self.runtime = runtime
        home.mkdir(parents=True, exist_ok=True)
        argv = runtime.argv(str(runtime.interpreter()), str(RUNTIMES_ROOT), memory_mb)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home),
               "LANG": "C.UTF-8"}
        self.pid, self.channel, self.output_fd = spawn_runtime(argv, env, setsid=True)
        self.channel.setblocking(True)
        self.channel.settimeout(TIMEOUT_S)
        # The platform's own rules: every frame a runtime sends must name its kind first and
        # stay within its kind's limit, or this raises.
        limits = RuntimeFrameLimits(6 * 1024 * 1024)
        self._decoder = GuardedDecoder(limits.__getitem__, limits.largest)
        self._frames: list[dict] = []
        self._output = bytearray()
        self.exit_status: int | None = None

    # --- channel ---------------------------------------------------------------------------
    def send(self, message: dict) -> None:
        self.channel.sendall(encode(message))

    def recv(self) -> dict | None:
        """The next frame; the output pipe is drained meanwhile, as the platform does (a
        runtime blocked on a full pipe would never send its result otherwise)."""
        deadline = time.monotonic() + TIMEOUT_S
        output_open = True
        while not self._frames:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the runtime")
            watch = [self.channel.fileno()] + ([self.output_fd] if output_open else [])
            ready = readable(watch, left)
            if self.output_fd in ready:
                try:
                    chunk = os.read(self.output_fd, 1 << 20)
                    self._output += chunk
                    output_open = bool(chunk)
                except BlockingIOError:
                    pass
            if self.channel.fileno() in ready:
                data = self.channel.recv(1 << 20)
                if not data:
                    return None
                self._frames.extend(json.loads(p) for _, p in self._decoder.feed(data))
        return self._frames.pop(0)

    # --- output pipe -------------------------------------------------------------------------
    def read_output_until(self, marker: str) -> str:
        """The output written before `marker` (consumed, with the marker)."""
        needle = marker.encode()
        deadline = time.monotonic() + TIMEOUT_S
        while needle not in self._output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no marker in output: {bytes(self._output[-2000:])!r}")
            if readable([self.output_fd], left):
                try:
                    chunk = os.read(self.output_fd, 1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise EOFError(f"output closed before the marker: {bytes(self._output[-2000:])!r}")
                self._output += chunk
        before, _, after = bytes(self._output).partition(needle)
        self._output = bytearray(after)
        return before.decode("utf-8", "replace")

    def drain_output(self) -> str:
        """Whatever output is there right now (non-blocking)."""
        while True:
            try:
                chunk = os.read(self.output_fd, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._output += chunk
        text, self._output = bytes(self._output).decode("utf-8", "replace"), bytearray()
        return text

    # --- conversation --------------------------------------------------------------------------
    def hello(self) -> dict:
        message = self.recv()
        assert message is not None and message["type"] == "hello", message
        return message

    def init(self, code_dir: Path, handler: str = "index.main", layer_dirs=(), env=None,
             **extra) -> tuple[dict, str]:
        self.hello()
        marker = f"\n--frazil-init-{uuid.uuid4().hex}--\n"
        self.send({"type": "init", "handler": handler, "code_dir": str(code_dir),
                   "layer_dirs": [str(d) for d in layer_dirs], "env": env or {}, "function": "fn",
                   "version": 3, "memory_mb": 128, "log_marker": marker, **extra})
        reply = self.recv()
        return reply, self._output_of(reply, marker)

    def _output_of(self, reply: dict, marker: str) -> str:
        """The output before `marker`; the reply's "marker" flag is consumed here."""
        if reply.pop("marker", True) is False:
            # The runtime found the pipe empty: everything it printed was already read here.
            return self.drain_output()
        return self.read_output_until(marker)

    def invoke(self, event=None, *, cold: bool = False, timeout_s: float = 10.0,
               on_sdk_call: Callable[[dict], dict] | None = None, sdk_token: str | None = None) -> tuple[dict, str]:
        invocation_id = uuid.uuid4().hex
        marker = f"\n--frazil-{invocation_id}--\n"
        self.send({"type": "invoke", "id": invocation_id, "event": event, "cold": cold,
                   "deadline_ms": time.time() * 1000 + timeout_s * 1000, "log_marker": marker,
                   **({"sdk_token": sdk_token} if sdk_token is not None else {})})
        while True:
            reply = self.recv()
            assert reply is not None, "the runtime closed the channel"
            if reply["type"] == "sdk_call":
                assert on_sdk_call is not None, reply
                self.send({"type": "sdk_reply", "call": reply["call"], **on_sdk_call(reply)})
                continue
            break
        assert reply["type"] == "result" and reply["id"] == invocation_id, reply
        return reply, self._output_of(reply, marker)

    def wait_exit(self, timeout: float = TIMEOUT_S) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_status = status
                return status
            time.sleep(0.01)
        return None

    def close(self) -> None:
        self.channel.close()
        if self.exit_status is None and self.wait_exit(3.0) is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
        os.close(self.output_fd)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def start_loop(tmp_path):
    """Factory: start_loop(runtime) -> LoopDriver; every driver is closed at teardown."""
    drivers: list[LoopDriver] = []

    def start(runtime: RuntimeKind) -> LoopDriver:
        driver = LoopDriver(runtime, tmp_path / f"home{len(drivers)}")
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.close()


@pytest.fixture
def node_loop(start_loop) -> LoopDriver:
    return start_loop(NODE)


@pytest.fixture
def python_loop(start_loop) -> LoopDriver:
    return start_loop(PYTHON)
