"""The launcher: a small, single-threaded process that clones sandboxed instances.

Why a separate process: forking the platform itself costs ~2.3 ms of blocked event loop at
~120 MB RSS (page tables), plus copy-on-write faults, and forking a threaded process is
fragile. The launcher is started once per platform with `python -I -S`, imports only the
standard library and frazil.sandbox's own small modules, prepares everything that can be
shared (the template mount namespace, the seccomp program, the Landlock ruleset) and then
serves requests. It leaves the host's network namespace for an empty one of its own; each
instance gets another (see `frazil.sandbox.helper.netns`). Its children are cloned with CLONE_PARENT,
so they are the platform's children, not its own: the platform reaps them and learns their
exit status directly; the launcher keeps no per-instance state.

Right after preparing it clones the Python zygote (`frazil.sandbox.helper.zygote`, when the config
asks for one), also a child of the platform, and hands the platform the zygote's socket with
its "ready" message: Python instances are then forked by the zygote, not exec'd here.

Requests (the wire is in `frazil.sandbox.helper.wire`): "spawn" clones an instance that
execs its runtime (`enter.launch`); with a null code_dir it is generic, and the platform
attaches its code later (`frazil.sandbox.attach`). Its "ready" message names the mount id of
the template's root ("template_root"), where the platform must never attach code. The
launcher exits when the platform closes its end, and is SIGKILLed if the platform dies.

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

from frazil.sandbox.helper import landlock, rootfs, wire, zygote
from frazil.sandbox.helper import syscalls as sc
from frazil.sandbox.helper.enter import Prepared, launch
from frazil.sandbox.helper.seccomp import Filter
from frazil.sandbox.helper.visit import inside

NETNS_PER_INSTANCE = "per-instance"
# The launcher's nice value once it serves: every cold start that finds no instance ready waits
# for it (and so does every refill of the pre-built pools), and on a busy machine it would
# otherwise wait its turn behind everything else at each request. Its children go back to 0
# (enter.launch); the zygote, forked before, keeps 0.
SERVING_NICE = -10


def main() -> None:
    config = json.loads(sys.argv[1])
    del sys.argv[1:]  # the config names host paths: nothing a forked instance should find lying around
    ctl = socket.socket(fileno=wire.CONTROL_FD)
    started = time.perf_counter()
    zygote_sock = None
    try:
        prepared = prepare(config)
        ready = {
            "type": wire.READY,
            "template_root": root_mount_id(prepared.template_fd),
            "landlock_abi": landlock.abi_version(),
            "netns": NETNS_PER_INSTANCE,
            "filter_len": len(prepared.seccomp),
        }
        zygote_config = zygote.Config.from_dict(config["zygote"]) if config.get("zygote") else None
        del config  # (the zygote is a fork of this frame's process: its instances see the stack)
        if zygote_config is not None:
            ready["zygote_pid"], zygote_sock = zygote.start(prepared, zygote_config)
    except Exception as exc:  # reported to the platform, which turns it into SandboxUnavailable
        wire.send(ctl, {"type": wire.FAILED, "error": f"{type(exc).__name__}: {exc}"})
        return
    ready["setup_ms"] = (time.perf_counter() - started) * 1000
    try:
        os.setpriority(os.PRIO_PROCESS, 0, SERVING_NICE)
    except OSError:  # no CAP_SYS_NICE: it serves at the ordinary priority
        pass
    wire.send(ctl, ready, [zygote_sock.fileno()] if zygote_sock is not None else ())
    if zygote_sock is not None:
        zygote_sock.close()  # the platform's now; ours would keep the zygote from seeing EOF
    wire.serve(ctl, lambda msg, fds: handle(msg, fds, prepared))


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
    landlock_fd = landlock.scope_ruleset()
    # Out of the host's network namespace: neither the launcher nor the zygote has any use
    # for it. Instances do not stay in this one either (each gets its own: see enter.py).
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


def root_mount_id(mnt_ns_fd: int) -> int:
    """The mount id of "/" in the mount namespace `mnt_ns_fd` (we come back to ours after)."""
    with inside(mnt_ns_fd, sc.CLONE_NEWNS):
        return sc.mount_id("/")


def handle(msg: dict, fds: list[int], prepared: Prepared) -> dict:
    request_id = msg.get("id")
    kind = msg.get("type")
    try:
        if kind == wire.SPAWN:
            plan, child_fds = wire.spawn_plan(msg, fds)
            if child_fds.go is not None and plan.code_dir is not None:
                # (a generic runtime closes it before it reads "init": see runtimes.GENERIC_FLAG)
                raise ValueError("a go descriptor is for generic instances; one with its code would keep it")
            return {"type": wire.SPAWNED, "id": request_id, "pid": launch(plan, prepared, child_fds)}
        raise ValueError(f"unknown request {kind!r}")
    except Exception as exc:  # a bad request, a failed clone or mount: the platform gets the reason
        return {"type": wire.ERROR, "id": request_id, "error": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    main()
