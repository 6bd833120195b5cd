"""The Python zygote: a process that has already imported the Python runtime loop, and forks
sandboxed instances that run it without exec'ing an interpreter (after SOCK, USENIX ATC'18).

Where it lives. The launcher clones it right after preparing (`start`), with CLONE_PARENT, so
the zygote - and every instance it clones with CLONE_PARENT in turn - is a direct child of
the platform, which reaps it, holds a pidfd on it and whose death kills it. The zygote keeps
the launcher's privileges and prepared pieces (seccomp program, Landlock ruleset, the
platform's pidfd) and closes every other descriptor. It then enters the template mount
namespace for good: it sees exactly the paths an instance sees (/runtime/python/loop.py, the
interpreter's prefix at its own path, /usr), so it imports the loop from there, as
`python -I -S -B /runtime/python/loop.py` would, and whatever a function imports later comes
from the same files. It makes its interpreter look like that fresh one (`_prepare_interpreter`),
pre-imports a few common modules, runs gc.collect() + gc.freeze() (the collector never
touches, and so never copies, the pages children share) and serves "spawn" requests (see
`frazil.sandbox.helper.wire`) on its own socket, whose other end the platform holds.

One spawn. `enter.launch(exec_runtime=False)` clones the child and takes it through every step
an exec'd instance goes through - cgroup join, namespaces (only an unshare: the zygote is in
the template already), /tmp, /proc, rlimits, uid, capabilities, parent death signal,
Landlock, seccomp, descriptors 0-3, everything else closed (the zygote's socket too) - and
returns in it with the error pipe closed, which tells the platform it is sandboxed. No code
is mounted: the zygote cannot see host paths; the platform attaches the function's code from
outside later (`frazil.sandbox.attach`). Only then, unprivileged, the child turns itself
into what a fresh interpreter running the loop would be (`zygote_child.become_runtime`): CPython's own
after-fork work (thread states, import lock, the at-fork hooks: `random` reseeds itself),
garbage collection back on, argv (in Python and in /proc/PID/cmdline), environment, and
`__main__`; then it calls the loop's main(): hello, and wait for "init".

What an instance inherits from the zygote and an exec'd one would not have: the zygote's
memory (the imported modules, shared copy-on-write; host paths of the platform's install and
data dir are in it, nothing secret), the string hash secret (shared by every instance of one
platform run: a function can learn its own, not attack another's dicts), and a few more
modules already in sys.modules. Descriptors, signal dispositions (SIGPIPE and SIGXFSZ
ignored, as Python sets them), identity and limits are exactly an exec'd runtime's.

Standard library only (runs in the launcher's process image).
"""
from __future__ import annotations

import ctypes
import dataclasses
import gc
import importlib
import importlib.util
import os
import signal
import socket
import sys
from typing import NoReturn

from frazil.sandbox.helper import syscalls as sc
from frazil.sandbox.helper import wire
from frazil.sandbox.helper.enter import Prepared, launch
from frazil.sandbox.helper.zygote_child import become_runtime, set_cmdline

LOOP_MODULE = "_frazil_runtime_loop"
# Imported once in the zygote: the loop's own imports come with it; these are what functions
# (and the in-sandbox SDK) commonly import next. Each costs the zygote's memory, shared by
# every child, and nothing per child. A name missing here is simply skipped.
PRELOAD = (
    "asyncio",  # the loop imports it only for an async handler: ~40 ms an exec'd runtime avoids, free here
    "base64", "binascii", "copy", "dataclasses", "datetime", "decimal", "hashlib", "hmac", "json", "random",
    "string", "tempfile", "urllib.parse", "uuid", "zlib",
)
# The zygote forks instances built ahead of time at this nice value (the copy of its page tables
# then takes CPU the platform does not want); the child is back at 0 once in its own cgroup.
BACKGROUND_NICE = 10
# The folder holding frazil/ (the launcher put it on sys.path; a runtime's sys.path lacks it).
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["frazil"].__file__)))
EXIT_ZYGOTE_FAILED = 1


@dataclasses.dataclass(frozen=True)
class Config:
    """What the platform tells the launcher about the zygote (all paths as seen inside)."""

    loop: str  # the Python runtime loop, e.g. /runtime/python/loop.py
    argv: tuple[str, ...]  # what an exec'd instance would run: [interpreter, -I, -S, -B, loop]
    env: dict

    def to_dict(self) -> dict:
        return {"loop": self.loop, "argv": list(self.argv), "env": dict(self.env)}

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        return cls(d["loop"], tuple(d["argv"]), dict(d["env"]))


# --- in the launcher --------------------------------------------------------------------------

def start(prepared: Prepared, config: Config) -> tuple[int, socket.socket]:
    """Clone the zygote; returns its pid and the socket end that belongs to the platform.
    The zygote reports "ready" (or "failed") on that socket once it has imported the loop."""
    platform_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    area = argv_area()
    pid = sc.clone(sc.CLONE_PARENT | signal.SIGCHLD)
    if pid == 0:
        try:
            _main(zygote_end, prepared, config, area)
        finally:
            os._exit(EXIT_ZYGOTE_FAILED)
    zygote_end.close()
    return pid, platform_end


def argv_area() -> tuple[int, int]:
    """Where this process's argv strings are (what /proc/PID/cmdline shows)."""
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[45]), int(fields[46])  # fields 48 and 49: arg_start, arg_end


# --- the zygote -------------------------------------------------------------------------------

def _main(sock: socket.socket, prepared: Prepared, config: Config, area: tuple[int, int]) -> NoReturn:
    gc.disable()
    try:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)  # the platform is our parent
        if prepared.platform_exited():
            os._exit(EXIT_ZYGOTE_FAILED)
        keep = {0, 1, 2, sock.fileno(), prepared.template_fd, prepared.parent_pidfd, prepared.landlock_fd}
        for fd in [int(x) for x in os.listdir("/proc/self/fd")]:
            if fd not in keep:  # the launcher's socket, the listing's own fd (gone: EBADF)
                try:
                    os.close(fd)
                except OSError:
                    pass
        sc.setns(prepared.template_fd, sc.CLONE_NEWNS)
        os.close(prepared.template_fd)
        os.chdir("/")
        prepared = dataclasses.replace(prepared, template_fd=None)
        set_cmdline(area, [config.argv[0], "frazil-python-zygote"])
        loop = _prepare_interpreter(config)
        gc.collect()
        gc.freeze()
        after_fork = ctypes.pythonapi.PyOS_AfterFork_Child
        after_fork.restype = None
        after_fork.argtypes = []
        wire.send(sock, {"type": wire.READY, "pid": os.getpid(), "modules": len(sys.modules)})
    except BaseException as exc:
        try:
            wire.send(sock, {"type": wire.FAILED, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            os._exit(EXIT_ZYGOTE_FAILED)

    def handle(msg: dict, fds: list[int]) -> dict:
        request_id = msg.get("id")
        try:
            if msg.get("type") != wire.SPAWN:
                raise ValueError(f"unknown request {msg.get('type')!r}")
            plan, child_fds = wire.spawn_plan(msg, fds)
            if plan.code_dir is not None:
                raise ValueError("the zygote cannot see host paths: its children get their code from the launcher")
            background = bool(msg.get("warm"))  # built ahead of time: the fork may wait for idle CPU
            pid = -1
            if background:
                os.setpriority(os.PRIO_PROCESS, 0, BACKGROUND_NICE)
            try:
                pid = launch(plan, prepared, child_fds, exec_runtime=False)
            finally:
                if background and pid != 0:
                    os.setpriority(os.PRIO_PROCESS, 0, 0)
            if pid == 0:
                become_runtime(loop, plan.argv, plan.env, area, after_fork, warm=bool(msg.get("warm")),
                               go=child_fds.go is not None, layers_first=bool(msg.get("layers_first")))
        except Exception as exc:  # a bad request or a failed clone: the platform gets the reason
            return {"type": wire.ERROR, "id": request_id, "error": f"{type(exc).__name__}: {exc}"}
        return {"type": wire.SPAWNED, "id": request_id, "pid": pid}

    wire.serve(sock, handle)
    os._exit(0)


def _prepare_interpreter(config: Config):
    """Make this interpreter what `python -I -S -B <loop>` is at start, with the loop imported."""
    # Signals as a fresh interpreter sets them (the launcher gave them back their default
    # for the runtimes it execs).
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if dict(os.environ) != config.env:
        os.environ.clear()
        os.environ.update(config.env)
    # sys.path: the interpreter's own, nothing of the launcher's (-I keeps a script's folder
    # out of sys.path, so an exec'd loop does not have /runtime/python either).
    stdlib = [p for p in sys.path if p != PACKAGE_PARENT]
    sys.path[:] = stdlib
    for key in list(sys.path_importer_cache):
        if not any(key == p or key.startswith(p.rstrip("/") + "/") for p in stdlib):
            del sys.path_importer_cache[key]
    for name in [m for m in sys.modules if m == "frazil" or m.startswith("frazil.")]:
        del sys.modules[name]  # the launcher's; a function may have its own `frazil` package
    sys.argv = [config.loop]
    sys.orig_argv = list(config.argv)
    spec = importlib.util.spec_from_file_location(LOOP_MODULE, config.loop)
    loop = importlib.util.module_from_spec(spec)
    sys.modules[LOOP_MODULE] = loop
    spec.loader.exec_module(loop)  # under its own name, so its `if __name__ == "__main__"` stays put
    loop.__name__ = "__main__"
    sys.modules["__main__"] = loop
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    return loop
