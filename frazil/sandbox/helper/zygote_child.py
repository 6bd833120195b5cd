"""A zygote's child, from its sandboxed fork to the runtime: it turns itself into what a
fresh interpreter running the loop would be (`become_runtime`) and, when built ahead of
time, warms up first (`warm_up`). Everything here runs unprivileged, seccomp on, in the
instance's own namespaces (see `frazil.sandbox.helper.zygote` for how it got there).

Standard library only (runs in the launcher's process image).
"""
from __future__ import annotations

import atexit
import ctypes
import gc
import importlib
import io
import json
import os
import socket
import struct
import sys
import threading
import time
import traceback
from typing import NoReturn

from frazil.sandbox.helper.enter import GO_FD
from frazil.sandbox.helper.rootfs import MAX_LAYERS, layer_dir
from frazil.sandbox.helper.wire import GO, IMPORT_LAYERS
from frazil.sandbox.helper.toplevel import top_level_names


def become_runtime(loop, argv, env: dict, area: tuple[int, int], after_fork, *, warm: bool = False,
                   go: bool = False, layers_first: bool = False) -> NoReturn:
    """Runs in the sandboxed child (unprivileged, seccomp on, fds 0-3 in place); never returns.
    `warm`: an instance built ahead of time first runs the loop once on a throw-away channel.
    `layers_first`: then it waits for its dependency layers and imports them (`_layers_first`)
    before its hello, so that its hello tells the platform the imports are done.
    `go`: after its hello, the loop waits for the go byte on GO_FD (the platform writes it once
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
        if layers_first and not _layers_first():
            return  # the platform gave up on this instance
        status = _run_main(lambda: loop.main(_await_go if go else None))
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        os._exit(status)


def _await_go() -> bool:
    """Wait until the platform has attached the code (one byte) or given up (EOF); the
    descriptor is closed either way, before any function code can run."""
    try:
        return os.read(GO_FD, 1) == GO
    finally:
        os.close(GO_FD)


def _layers_first() -> bool:
    """Wait for the dependency layers alone (the platform attaches them and writes
    IMPORT_LAYERS), then the function's environment from the platform (`read_environment`),
    and import the layers' packages under it (`import_layers`); False when something else
    came (EOF: the platform gave up)."""
    if os.read(GO_FD, 1) != IMPORT_LAYERS:
        return False
    env = read_environment()
    if env is None:
        return False
    os.environ.update(env)
    import_layers()
    return True


EXIT_LAYER_UNFIT = 3  # a layer's package could not be imported: the platform uses the plain path for it
ENV_LENGTH = struct.Struct("!I")  # the length of the environment's JSON that follows IMPORT_LAYERS
MAX_ENV_JSON = 1 << 16


def read_environment() -> dict | None:
    """The function's environment, which the platform writes on the go pipe after the layers
    (frazil.sandbox.layer_ready.send_environment); None at EOF or when it is not one."""
    head = _read_exactly(ENV_LENGTH.size)
    if head is None:
        return None
    (length,) = ENV_LENGTH.unpack(head)
    data = _read_exactly(length) if length <= MAX_ENV_JSON else None
    try:
        env = json.loads(data) if data is not None else None
    except ValueError:
        return None
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        return None
    return env


def _read_exactly(n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = os.read(GO_FD, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def import_layers() -> None:
    """Import every top-level package of the layers attached at /layers/N (from their
    distributions' metadata), with the layers on sys.path as the loop's init will put them;
    output is the instance's (a package that prints at import prints what it would on the
    plain path). An import that raises ends the instance with EXIT_LAYER_UNFIT, its reason on
    stderr: a half-imported package must not be handed to a function."""
    layers = []
    for i in range(MAX_LAYERS):
        path = layer_dir(i)
        if not os.path.isdir(path) or not os.listdir(path):
            break
        layers.append(path)
    saved = list(sys.path)
    sys.path[:0] = layers
    try:
        for layer in layers:
            for name in top_level_names(layer):
                try:
                    importlib.import_module(name)
                except BaseException as exc:
                    print(f"frazil: importing {name} from the dependency layer failed: {type(exc).__name__}: {exc}",
                          file=sys.stderr, flush=True)
                    os._exit(EXIT_LAYER_UNFIT)
    finally:
        sys.path[:] = saved  # the loop's init puts them back, with the code first


WARM_MODULE = "_frazil_warm_up"
WARM_SOURCE = "def main(event, context):\n    return {'warm': [event, context.remaining_ms() > 0]}\n"


def warm_up(loop) -> None:
    """One init and one invoke of a throw-away handler, through the loop's own code, on a
    throw-away channel; then every trace of it is undone.

    Why: the first init and invoke in a fresh fork touch objects (functions, code, module
    dicts, type objects of importlib, json, the loop) whose pages are still shared with the
    zygote, and every first write to such a page is a copy-on-write fault (a few hundred of
    them). An instance built ahead of time takes those faults now, while it waits, instead of
    on a cold start's critical path. What it undoes:
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
