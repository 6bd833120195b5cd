"""The launcher: a small, single-threaded process that clones sandboxed instances.

Why a separate process: forking the platform itself costs ~2.3 ms of blocked event loop at
~120 MB RSS (page tables), plus copy-on-write faults, and forking a threaded process is
fragile. The launcher is started once per platform with `python -I -S`, imports only the
standard library and frazil.sandbox's own small modules, prepares everything that can be
shared (the template mount namespace, one empty network namespace, the seccomp program,
the Landlock ruleset) and then serves "spawn" requests. Its children are cloned with
CLONE_PARENT, so they are the platform's children, not its own: the platform reaps them
and learns their exit status directly; the launcher keeps no per-instance state.

Wire: one SOCK_SEQPACKET socketpair on fd 3; every message is one JSON object, with file
descriptors attached through SCM_RIGHTS.
  platform -> launcher  {"type": "spawn", "id": N, "argv": [...], "env": {...}, "uid": U,
                         "gid": G, "code_dir": "/abs", "layer_dirs": [...], "tmp_mb": 64,
                         "rlimits": [[resource, soft, hard], ...]}
                        fds: channel, output, error, cgroup.procs...
  launcher -> platform  {"type": "ready", "landlock_abi": N, "netns": "shared"|"per-instance",
                         "setup_ms": F, "filter_len": N}  once, or {"type": "failed", "error": "..."}
                        {"type": "spawned", "id": N, "pid": P} | {"type": "error", "id": N, "error": "..."}
The launcher exits when the platform closes its end, and is SIGKILLed if the platform dies.

Standard library only.
"""
from __future__ import annotations

import gc
import json
import os
import signal
import socket
import sys
import time

from frazil.sandbox import landlock, rootfs
from frazil.sandbox import syscalls as sc
from frazil.sandbox.enter import ChildFds, Plan, Prepared, launch
from frazil.sandbox.seccomp import Filter

CONTROL_FD = 3
# message types
SPAWN = "spawn"
READY = "ready"
FAILED = "failed"
SPAWNED = "spawned"
ERROR = "error"
MAX_MESSAGE = 256 * 1024
MAX_FDS = 32
NETNS_SHARED = "shared"
NETNS_PER_INSTANCE = "per-instance"


def main() -> None:
    config = json.loads(sys.argv[1])
    ctl = socket.socket(fileno=CONTROL_FD)
    started = time.perf_counter()
    try:
        prepared = prepare(config)
    except Exception as exc:  # reported to the platform, which turns it into SandboxUnavailable
        send(ctl, {"type": FAILED, "error": f"{type(exc).__name__}: {exc}"})
        return
    send(ctl, {
        "type": READY,
        "landlock_abi": landlock.abi_version(),
        "netns": NETNS_SHARED if prepared.landlock_fd is not None else NETNS_PER_INSTANCE,
        "setup_ms": (time.perf_counter() - started) * 1000,
        "filter_len": len(prepared.seccomp),
    })
    serve(ctl, prepared)


def prepare(config: dict) -> Prepared:
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal survives exec: give them
    # back their default once here, so every runtime starts with ordinary signals (a child
    # resetting them itself costs ~150 us of copy-on-write faults). The launcher itself
    # only writes to the platform, and has nothing left to do once that pipe is broken.
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    if os.getppid() != config["platform_pid"]:  # it died before the death signal was armed
        raise RuntimeError("the platform exited before the launcher started")
    parent_pidfd = os.pidfd_open(config["platform_pid"])
    landlock_fd = None if config.get("netns_per_instance") else landlock.scope_ruleset()
    if landlock_fd is not None:
        # One empty network namespace (loopback only, down) for every instance: children
        # inherit it, so an instance pays nothing for it.
        sc.unshare(sc.CLONE_NEWNET)
    template_fd = build_template(rootfs.Layout.from_dict(config["layout"]), config["mountpoint"])
    # The launcher keeps its effective capabilities (its children need them until they
    # switch user) but no exec from here on can gain any: empty the bounding and ambient
    # sets once, for every child (41 prctl calls, ~150 us, saved per instance).
    sc.drop_bounding_set(sc.last_capability())
    prepared = Prepared(
        template_fd=template_fd,
        seccomp=Filter(),
        landlock_fd=landlock_fd,
        parent_pidfd=parent_pidfd,
    )
    gc.collect()
    gc.freeze()  # keep the collector away from pages the children share
    return prepared


def build_template(layout: rootfs.Layout, mountpoint: str) -> int:
    """Build the template in a throw-away child and keep its mount namespace as an fd."""
    status_r, status_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(status_r)
            os.close(go_w)
            try:
                rootfs.build_template(layout, mountpoint)
                os.write(status_w, b"ok")
            except BaseException as exc:
                os.write(status_w, f"{type(exc).__name__}: {exc}".encode(errors="replace")[:4000])
            os.read(go_r, 1)  # stay alive until the parent holds the namespace
        finally:
            os._exit(0)
    os.close(status_w)
    os.close(go_r)
    try:
        status = os.read(status_r, 4096)
        if status != b"ok":
            raise RuntimeError(f"building the sandbox root failed: {status.decode(errors='replace') or 'no answer'}")
        return os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(status_r)
        os.close(go_w)
        os.waitpid(pid, 0)


def serve(ctl: socket.socket, prepared: Prepared) -> None:
    """Error policy: a bad request gets an error reply and the loop goes on; the platform
    closing its end (EOF, reset, broken pipe) ends the launcher quietly."""
    while True:
        try:
            data, fds = recv(ctl)
        except ConnectionResetError:
            return
        if not data:
            return  # the platform closed its end
        try:
            reply = handle(json.loads(data), fds, prepared)
        except ValueError as exc:  # not JSON
            reply = {"type": ERROR, "id": None, "error": f"bad request: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        try:
            send(ctl, reply)
        except (BrokenPipeError, ConnectionResetError):
            return


def handle(msg: dict, fds: list[int], prepared: Prepared) -> dict:
    request_id = msg.get("id")
    try:
        if msg.get("type") != SPAWN:
            raise ValueError(f"unknown request {msg.get('type')!r}")
        if len(fds) < 3:
            raise ValueError(f"a spawn request needs at least 3 descriptors, got {len(fds)}")
        plan = Plan(
            argv=tuple(msg["argv"]),
            env=dict(msg["env"]),
            uid=int(msg["uid"]),
            gid=int(msg["gid"]),
            code_dir=msg["code_dir"],
            layer_dirs=tuple(msg["layer_dirs"]),
            tmp_mb=int(msg["tmp_mb"]),
            rlimits=tuple(tuple(r) for r in msg["rlimits"]),
        )
        child_fds = ChildFds(channel=fds[0], output=fds[1], error=fds[2], cgroup_join=tuple(fds[3:]))
        pid = launch(plan, prepared, child_fds)
    except Exception as exc:  # a bad request or a failed clone: the platform gets the reason
        return {"type": ERROR, "id": request_id, "error": f"{type(exc).__name__}: {exc}"}
    return {"type": SPAWNED, "id": request_id, "pid": pid}


def recv(sock: socket.socket) -> tuple[bytes, list[int]]:
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True) for i in range(0, usable, 4)]
    return data, fds


def send(sock: socket.socket, message: dict) -> None:
    sock.sendall(json.dumps(message).encode())


if __name__ == "__main__":
    main()
