"""The wire between the platform and its sandbox helpers (the launcher, the Python zygote).

One SOCK_SEQPACKET socketpair per helper; every message is one JSON object, with file
descriptors attached through SCM_RIGHTS. Requests carry an "id" that their reply repeats, so
the platform may have many in flight.

  platform -> helper  {"type": "spawn", "id": N, "argv": [...], "env": {...}, "uid": U, "gid": G,
                       "code_dir": "/abs" | null, "layer_dirs": [...], "tmp_mb": 64,
                       "rlimits": [[resource, soft, hard], ...], "go": bool, "netns": bool,
                       "cgroup_dir": bool, "warm": bool, "layers_first": bool}
                       fds: channel, output, error, [go pipe's read end,] [a network
                       namespace made ahead of time,] [a cgroup v2 directory to clone the
                       child into,] cgroup joins...
                       (code_dir null: a generic instance, specialized later; "go" only for
                       one, "warm" and "layers_first" only for the zygote: see
                       zygote_child.py)
  helper -> platform  {"type": "ready", ...} once (the launcher's may carry the zygote's
                       socket as a descriptor), or {"type": "failed", "error": "..."}
                      {"type": "spawned", "id": N, "pid": P} | {"type": "error", "id": N, "error": "..."}
A helper exits when the platform closes its end, and is SIGKILLed if the platform dies.

Standard library only.
"""
from __future__ import annotations

import json
import os
import socket
import sys
from typing import Callable

from frazil.sandbox.helper.enter import ChildFds, Plan

CONTROL_FD = 3  # the launcher's socket, as it starts
# message types
SPAWN = "spawn"
READY = "ready"
FAILED = "failed"
SPAWNED = "spawned"
ERROR = "error"
MAX_MESSAGE = 256 * 1024
MAX_FDS = 32
# The byte on a generic instance's go pipe (platform -> instance, `frazil.sandbox.handover`):
GO = b"1"  # its code is attached: read "init"
IMPORT_LAYERS = b"L"  # its layers are attached: import their packages, then wait for GO (zygote_child)

Handler = Callable[[dict, list[int]], dict]


def serve(sock: socket.socket, handle: Handler) -> None:
    """Answer requests until the platform closes its end.

    Error policy: a bad request gets an error reply and the loop goes on; the platform
    closing its end (EOF, reset, broken pipe) ends the loop quietly. Received descriptors
    are closed once handled, whatever happened."""
    while True:
        try:
            data, fds = recv(sock)
        except ConnectionResetError:
            return
        if not data:
            return  # the platform closed its end
        try:
            reply = handle(json.loads(data), fds)
        except ValueError as exc:  # not JSON
            reply = {"type": ERROR, "id": None, "error": f"bad request: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        try:
            send(sock, reply)
        except (BrokenPipeError, ConnectionResetError):
            return


def spawn_plan(msg: dict, fds: list[int]) -> tuple[Plan, ChildFds]:
    """The Plan and descriptors of a spawn request; raises ValueError when malformed."""
    go, has_netns, has_dir = bool(msg.get("go")), bool(msg.get("netns")), bool(msg.get("cgroup_dir"))
    head = 3 + go + has_netns + has_dir
    if len(fds) < head:
        raise ValueError(f"a spawn request needs at least {head} descriptors, got {len(fds)}")
    code_dir = msg.get("code_dir")
    plan = Plan(
        argv=tuple(msg["argv"]),
        env=dict(msg["env"]),
        uid=int(msg["uid"]),
        gid=int(msg["gid"]),
        code_dir=None if code_dir is None else str(code_dir),
        layer_dirs=tuple(msg.get("layer_dirs") or ()) if code_dir is not None else (),
        tmp_mb=int(msg["tmp_mb"]),
        rlimits=tuple(tuple(r) for r in msg["rlimits"]),
    )
    return plan, ChildFds(channel=fds[0], output=fds[1], error=fds[2], cgroup_join=tuple(fds[head:]),
                          go=fds[3] if go else None, netns=fds[3 + go] if has_netns else None,
                          cgroup_dir=fds[3 + go + has_netns] if has_dir else None)


def recv(sock: socket.socket) -> tuple[bytes, list[int]]:
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True) for i in range(0, usable, 4)]
    return data, fds


def send(sock: socket.socket, message: dict, fds: list[int] | tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)
