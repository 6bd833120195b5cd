"""The platform's side of the launcher and of the Python zygote (see `frazil.sandbox.helper.wire`).

One `LauncherClient` starts the launcher process, which clones the zygote (when asked) and
hands over its socket. Both helpers are direct children of the platform: the client watches
each through a pidfd and reaps it when it exits. Requests are sent from the event loop
without blocking; replies are matched by id, so concurrent creates pipeline. When either
helper dies, every pending request fails with `LauncherGone` and `alive` turns false: the
sandbox then closes this client and starts a new one (instances made so far live on).

Fields are only touched from the event loop thread that called `start()`; that thread
must outlive the launcher, because PR_SET_PDEATHSIG follows the thread that spawned it.
"""
from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from frazil.sandbox.helper import wire
from frazil.sandbox.spawn import ChildWaiter

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding frazil/
BOOTSTRAP = ("import sys; sys.path.insert(0, {root!r}); "
             "from frazil.sandbox.helper.launcher import main; main()")


class LauncherError(Exception):
    """The launcher (or the zygote) refused a request or could not start."""


class LauncherGone(LauncherError):
    """The launcher or the zygote exited."""


def _interpreter() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


class _Peer:
    """One helper's socket: requests by id, the one "ready"/"failed" message, and death."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, name: str):
        self.name = name
        self._loop = loop
        self._sock: socket.socket | None = sock
        self._next_id = 0
        self._pending: dict[int, asyncio.Future] = {}
        self.ready: asyncio.Future = loop.create_future()  # (message, fds)
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def alive(self) -> bool:
        return self._sock is not None

    async def request(self, message: dict, fds: list[int], timeout_s: float) -> dict:
        if self._sock is None:
            raise LauncherGone(f"the sandbox {self.name} is not running")
        self._next_id += 1
        request_id = self._next_id
        future = self._loop.create_future()
        self._pending[request_id] = future
        try:
            await self._send(json.dumps({**message, "id": request_id}).encode(), fds)
            return await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            raise LauncherError(f"the sandbox {self.name} did not answer within {timeout_s:g} s") from None
        finally:
            self._pending.pop(request_id, None)

    async def _send(self, data: bytes, fds: list[int]) -> None:
        while True:
            if self._sock is None:
                raise LauncherGone(f"the sandbox {self.name} exited")
            try:
                socket.send_fds(self._sock, [data], fds)
                return
            except BlockingIOError:
                await self._writable()
            except (BrokenPipeError, ConnectionResetError):
                self.gone()
                raise LauncherGone(f"the sandbox {self.name} exited") from None

    async def _writable(self) -> None:
        future = self._loop.create_future()
        fd = self._sock.fileno()

        def ready() -> None:
            self._loop.remove_writer(fd)
            if not future.done():
                future.set_result(None)

        self._loop.add_writer(fd, ready)
        try:
            await future
        finally:
            self._loop.remove_writer(fd)

    def _on_readable(self) -> None:
        while self._sock is not None:
            try:
                data, fds = wire.recv(self._sock)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                for fd in fds:
                    os.close(fd)
                self.gone()
                return
            message = json.loads(data)
            if message.get("type") in (wire.READY, wire.FAILED):
                if not self.ready.done():
                    self.ready.set_result((message, fds))
                    continue
            for fd in fds:  # only "ready" may carry descriptors
                os.close(fd)
            future = self._pending.get(message.get("id"))
            if future is not None and not future.done():
                future.set_result(message)

    def gone(self) -> None:
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for future in [self.ready, *self._pending.values()]:
            if not future.done():
                future.set_exception(LauncherGone(f"the sandbox {self.name} exited"))
        if self.ready.done() and not self.ready.cancelled():
            self.ready.exception()  # mark retrieved


class LauncherClient:
    def __init__(self, config: dict, env: dict | None = None):
        self._config = config
        self._env = dict(env) if env is not None else {"LANG": "C.UTF-8"}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._launcher: _Peer | None = None
        self._zygote: _Peer | None = None
        self._children: list[ChildWaiter] = []
        self.pid: int | None = None
        self.zygote_pid: int | None = None
        self.zygote_error: str | None = None  # why there is no zygote, when there is none
        self.info: dict = {}

    @property
    def alive(self) -> bool:
        """The launcher runs, and so does the zygote if one was started and came up."""
        if self._launcher is None or not self._launcher.alive:
            return False
        return self._zygote is None or self._zygote.alive or self.zygote_error is not None

    async def start(self, timeout_s: float = 30.0) -> dict:
        """Spawn the launcher and wait until it has prepared; returns its "ready" message.
        The zygote, if any, comes up in the background: see `zygote_ready()`."""
        self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs_fd = fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD_CLOEXEC, wire.CONTROL_FD + 1)
        interpreter = _interpreter()
        config = {**self._config, "platform_pid": os.getpid()}
        argv = [interpreter, "-I", "-S", "-B", "-c", BOOTSTRAP.format(root=PACKAGE_PARENT), json.dumps(config)]
        try:
            self.pid = os.posix_spawn(interpreter, argv, self._env, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, theirs_fd, wire.CONTROL_FD),
            ], setsid=True)
        finally:
            os.close(theirs_fd)
            theirs.close()
        self._launcher = _Peer(self._loop, ours, "launcher")
        self._children.append(ChildWaiter(self.pid, on_exit=lambda _status: self._launcher.gone()))
        try:
            message, fds = await asyncio.wait_for(asyncio.shield(self._launcher.ready), timeout_s)
        except asyncio.TimeoutError:
            await self.close()
            raise LauncherError(f"the sandbox launcher did not start within {timeout_s:g} s") from None
        except LauncherGone:
            await self.close()
            raise LauncherError("the sandbox launcher exited while starting (see its stderr)") from None
        if message.get("type") != wire.READY:
            for fd in fds:
                os.close(fd)
            await self.close()
            raise LauncherError(message.get("error") or f"unexpected message from the launcher: {message}")
        self.info = message
        if "zygote_pid" in message and fds:
            self.zygote_pid = int(message["zygote_pid"])
            self._zygote = _Peer(self._loop, socket.socket(fileno=fds[0]), "zygote")
            self._children.append(ChildWaiter(self.zygote_pid, on_exit=lambda _status: self._zygote.gone()))
            for fd in fds[1:]:
                os.close(fd)
        else:
            for fd in fds:
                os.close(fd)
            self.zygote_error = "no zygote was asked for"
        return message

    async def zygote_ready(self, timeout_s: float = 30.0) -> bool:
        """Whether the zygote is up (waits for it to finish importing); False with
        `zygote_error` set when there is none."""
        if self._zygote is None:
            return False
        if self.zygote_error is not None:
            return False
        try:
            message, _ = await asyncio.wait_for(asyncio.shield(self._zygote.ready), timeout_s)
        except asyncio.TimeoutError:
            self.zygote_error = f"the Python zygote did not start within {timeout_s:g} s"
            return False
        except LauncherGone:
            self.zygote_error = "the Python zygote exited while starting"
            return False
        if message.get("type") != wire.READY:
            self.zygote_error = message.get("error") or f"unexpected message from the zygote: {message}"
            return False
        return self._zygote.alive

    async def spawn(self, request: dict, fds: list[int], timeout_s: float = 10.0) -> int:
        """Have the launcher clone an instance that execs its runtime; returns its pid."""
        return await self._spawn(self._launcher, request, fds, timeout_s)

    async def zygote_spawn(self, request: dict, fds: list[int], timeout_s: float = 10.0) -> int:
        """Have the zygote fork a generic Python instance; returns its pid."""
        if not await self.zygote_ready():
            raise LauncherError(f"no Python zygote: {self.zygote_error}")
        return await self._spawn(self._zygote, request, fds, timeout_s)

    @staticmethod
    async def _spawn(peer: _Peer | None, request: dict, fds: list[int], timeout_s: float) -> int:
        if peer is None:
            raise LauncherGone("the sandbox launcher is not running")
        reply = await peer.request({**request, "type": wire.SPAWN}, fds, timeout_s)
        if reply.get("type") != wire.SPAWNED:
            raise LauncherError(reply.get("error") or f"unexpected reply {reply}")
        return int(reply["pid"])

    async def close(self, timeout_s: float = 5.0) -> None:
        """Close both sockets (each helper exits on EOF) and wait until both are reaped."""
        for peer in (self._launcher, self._zygote):
            if peer is not None:
                peer.gone()
        for child in self._children:
            await child.wait(timeout_s)
