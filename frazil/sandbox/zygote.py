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
`frazil.sandbox.wire`) on its own socket, whose other end the platform holds.

One spawn. `enter.launch(exec_runtime=False)` clones the child and takes it through every step
an exec'd instance goes through - cgroup join, namespaces (only an unshare: the zygote is in
the template already), /tmp, /proc, rlimits, uid, capabilities, parent death signal,
Landlock, seccomp, descriptors 0-3, everything else closed (the zygote's socket too) - and
returns in it with the error pipe closed, which tells the platform it is sandboxed. No code
is mounted: the zygote cannot see host paths; the launcher attaches the function's code from
outside later (`frazil.sandbox.specialize`). Only then, unprivileged, the child turns itself
into what a fresh interpreter running the loop would be (`become_runtime`): CPython's own
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

import atexit
import ctypes
import dataclasses
import gc
import importlib
import importlib.util
import io
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import NoReturn

from frazil.sandbox import syscalls as sc
from frazil.sandbox import wire
from frazil.sandbox.enter import GO_FD, Prepared, launch
from frazil.sandbox.specialize import GO

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
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
        if prepared.parent_pidfd is not None and _readable(prepared.parent_pidfd):
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
                               go=child_fds.go is not None)
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


def _fresh_stdio() -> None:
    """New sys.std* objects on fds 0-2, made as CPython makes them at start: nothing the
    zygote may have buffered can reach an instance's output."""
    encoding = sys.stdout.encoding if sys.stdout is not None else "utf-8"

    def stream(fd: int, name: str, errors: str, line_buffering: bool):
        raw = io.FileIO(fd, "rb" if fd == 0 else "wb", closefd=False)
        raw.name = name
        buffered = io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw)
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, newline="\n",
                                line_buffering=line_buffering)

    sys.stdin = sys.__stdin__ = stream(0, "<stdin>", "strict", False)
    sys.stdout = sys.__stdout__ = stream(1, "<stdout>", "strict", False)
    sys.stderr = sys.__stderr__ = stream(2, "<stderr>", "backslashreplace", True)


def set_cmdline(area: tuple[int, int], argv) -> None:
    """Rewrite this process's argv strings in place (what `ps` and /proc/PID/cmdline show)."""
    start, end = area
    data = b"\0".join(os.fsencode(a) for a in argv)[:max(0, end - start - 1)] + b"\0"
    ctypes.memset(start, 0, end - start)
    ctypes.memmove(start, data, len(data))


def _readable(fd: int) -> bool:
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


# --- the child: from sandboxed fork to runtime ------------------------------------------------

def become_runtime(loop, argv, env: dict, area: tuple[int, int], after_fork, *, warm: bool = False,
                   go: bool = False) -> NoReturn:
    """Runs in the sandboxed child (unprivileged, seccomp on, fds 0-3 in place); never returns.
    `warm`: an instance built ahead of time first runs the loop once on a throw-away channel.
    `go`: after its hello, the loop waits for the go byte on GO_FD (the launcher writes it once
    the code is in place) before it reads "init"; EOF instead ends the runtime."""
    status = 1
    try:
        after_fork()  # PyOS_AfterFork_Child: what os.fork() does in a child, hooks included
        gc.enable()
        _fresh_stdio()  # here: a stream decides at creation whether its descriptor can seek
        set_cmdline(area, argv)
        if dict(os.environ) != env:
            os.environ.clear()
            os.environ.update(env)
        sys.orig_argv = list(argv)
        sys.argv = list(argv[_script_index(argv):])
        if warm:
            warm_up(loop)
        status = _run_main(lambda: loop.main(_await_go if go else None))
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        os._exit(status)


def _await_go() -> bool:
    """Wait until the launcher has attached the code (one byte) or given up (EOF); the
    descriptor is closed either way, before any function code can run."""
    try:
        return os.read(GO_FD, 1) == GO
    finally:
        os.close(GO_FD)


WARM_MODULE = "_frazil_warm_up"
WARM_SOURCE = "def main(event, context):\n    return {'warm': [event, context.remaining_ms() > 0]}\n"


def warm_up(loop) -> None:
    """One init and one invoke of a throw-away handler, through the loop's own code, on a
    throw-away channel; then every trace of it is undone.

    Why: the first init and invoke in a fresh fork touch objects (functions, code, module
    dicts, type objects of importlib, json, the loop) whose pages are still shared with the
    zygote, and every first write to such a page is a copy-on-write fault (~160 at init, ~40
    at the first invoke, 2-3.6 us each here). An instance built ahead of time takes those
    faults now, while it waits, instead of on a cold start's critical path. What it undoes:
    the module, its folder in /tmp and its importer cache entry, sys.path, the working
    directory, the environment and the SDK bridge the loop published."""
    folder = f"/tmp/.frazil-warm-up-{os.getpid()}"
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    bridge = sys.modules.get(loop.BRIDGE_MODULE)
    ours, theirs = socket.socketpair()
    try:
        os.mkdir(folder, 0o700)
        with open(f"{folder}/{WARM_MODULE}.py", "w") as f:
            f.write(WARM_SOURCE)
        encode = loop.protocol.encode
        theirs.sendall(
            encode({"type": "init", "handler": f"{WARM_MODULE}.main", "code_dir": folder, "layer_dirs": [],
                    "env": {}, "function": WARM_MODULE, "version": 0, "memory_mb": 0})
            + encode({"type": "invoke", "id": "warm-up", "event": {"name": "warm"}, "cold": True,
                      "deadline_ms": (time.time() + 60) * 1000}))
        theirs.shutdown(socket.SHUT_WR)
        loop.serve(loop.Channel(ours.fileno()))  # hello, ready, result land in `theirs`, unread
    finally:
        ours.close()
        theirs.close()
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        sys.path_importer_cache.pop(folder, None)
        for name in set(sys.modules) - saved_modules:
            del sys.modules[name]
        if bridge is None:
            sys.modules.pop(loop.BRIDGE_MODULE, None)
        else:
            sys.modules[loop.BRIDGE_MODULE] = bridge
        if dict(os.environ) != saved_env:
            os.environ.clear()
            os.environ.update(saved_env)
        for entry in os.listdir(folder) if os.path.isdir(folder) else ():
            os.unlink(f"{folder}/{entry}")
        if os.path.isdir(folder):
            os.rmdir(folder)
        gc.collect()


def _script_index(argv) -> int:
    for i, arg in enumerate(argv[1:], 1):
        if not arg.startswith("-"):
            return i
    return len(argv)


def _run_main(main) -> int:
    """main(), then what the interpreter does before exiting: the exit status of a
    SystemExit, the traceback of anything else, non-daemon threads joined, atexit, flush."""
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException as exc:
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None  # not our frame
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        status = 1
    try:
        threading._shutdown()
    except BaseException:
        pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    return status


def _exit_status(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except BaseException:
        pass
    return 1
