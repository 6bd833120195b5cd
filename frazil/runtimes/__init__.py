"""The runtimes frazil can run, and how to start each one's loop.

Everything under this folder except this file runs *inside* an instance: it must need
nothing but its language's standard library. A sandbox makes this folder visible to the
runtime (read-only) and passes the protocol channel as file descriptor CHANNEL_FD.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

RUNTIMES_ROOT = Path(__file__).resolve().parent
CHANNEL_FD = 3  # the runtime's end of the protocol socketpair
# The Node loop's argument for a generic instance (one started before its function is known):
# it warms up, says hello, then waits for the go byte on the sandbox's GO_FD before it reads
# "init" (loop.js removes the flag from process.argv before any function code runs).
GENERIC_FLAG = "--generic"


@dataclass(frozen=True)
class RuntimeKind:
    name: str  # the public name, e.g. "python3.11"
    language: str  # "python" | "node"
    entry: str  # the loop, relative to RUNTIMES_ROOT

    def interpreter(self) -> Path:
        """Host path of the interpreter binary (symlinks resolved: never a shim)."""
        if self.language == "python":
            return Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed; the nodejs20 runtime needs Node.js 20")
        return Path(os.path.realpath(node))

    @property
    def generic_awaits_go(self) -> bool:
        """Whether a generic instance of this runtime that is exec'd (not forked by the Python
        zygote) waits for a go byte before it reads "init" (`argv(generic=True)` says so)."""
        return self.language == "node"

    def argv(self, interpreter: str, runtimes_root: str, memory_mb: int, generic: bool = False) -> list[str]:
        """The command that starts the loop, as seen from where it runs; `generic`: for an
        instance whose code comes later (only `generic_awaits_go` runtimes are told)."""
        entry = f"{runtimes_root}/{self.entry}"
        if self.language == "python":
            # -I -S: no user site, no .pth files, no PYTHON* env: fast and predictable.
            return [interpreter, "-I", "-S", "-B", entry]
        # Keep V8's heap inside the cgroup's memory so a big heap ends as a clean JS error.
        heap = max(32, int(memory_mb * 0.75))
        return [interpreter, f"--max-old-space-size={heap}", entry] + ([GENERIC_FLAG] if generic else [])


PYTHON = RuntimeKind("python3.11", "python", "python/loop.py")
NODE = RuntimeKind("nodejs20", "node", "node/loop.js")
RUNTIMES: dict[str, RuntimeKind] = {r.name: r for r in (PYTHON, NODE)}


def get_runtime(name: str) -> RuntimeKind:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}") from None
