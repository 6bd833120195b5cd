"""Importing a dependency layer's packages in a process meant to be forked, and checking that
what the imports left behind is safe to copy into every child.

A process that has imported packages and then forks gives each child a copy of its memory but
not of its threads, and shares its open descriptors with every child. So a package is unfit
for a process that forks instances (the dependency-aware zygote of issue 15) when its import:
- raises (the process would hold a half-imported module);
- starts a thread (a native pool such as OpenBLAS', or a Python one): the children get the
  memory the thread was using - possibly in the middle of a lock - without the thread;
- leaves a descriptor open (a socket, a file, an eventfd): every child would share it, and its
  offset or its peer, with every other child.
Each import is checked on its own, in order, so the reason names the package at fault.
The kernel's view is used (/proc/self/task, /proc/self/fd), not Python's alone: a native
library's threads are invisible to `threading`.

Standard library only (runs in the sandbox's helpers and in a bare interpreter).
"""
from __future__ import annotations

import importlib
import os
import stat
from dataclasses import dataclass, field


@dataclass
class ImportVerdict:
    """What importing a layer's names did: `imported` in order; `unfit` maps a name to why a
    process that imported it must not fork instances (empty: all fine)."""

    imported: list[str] = field(default_factory=list)
    unfit: dict[str, str] = field(default_factory=dict)

    @property
    def fit(self) -> bool:
        return not self.unfit

    def reason(self) -> str:
        return "; ".join(f"{name}: {why}" for name, why in self.unfit.items())


def import_checked(names: list[str]) -> ImportVerdict:
    """Import `names` one by one in this process; stop at the first that is unfit (what it
    left behind would make every later check ambiguous)."""
    verdict = ImportVerdict()
    for name in names:
        tasks, fds = _tasks(), _fds()
        try:
            importlib.import_module(name)
        except BaseException as exc:  # SystemExit from a package's import is a failure too
            verdict.unfit[name] = f"its import raised {type(exc).__name__}: {str(exc)[:200]}"
            return verdict
        why = _left_behind(tasks, fds)
        if why:
            verdict.unfit[name] = why
            return verdict
        verdict.imported.append(name)
    return verdict


def _left_behind(tasks_before: set[str], fds_before: set[int]) -> str:
    reasons = []
    started = _tasks() - tasks_before
    if started:
        reasons.append(f"its import started {len(started)} thread(s)")
    opened = sorted(_fds() - fds_before)
    if opened:
        reasons.append(f"its import left {len(opened)} descriptor(s) open ({', '.join(_describe(fd) for fd in opened)})")
    return "; ".join(reasons)


def _tasks() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def _fds() -> set[int]:
    fds = {int(fd) for fd in os.listdir("/proc/self/fd")}
    return {fd for fd in fds if _is_open(fd)}  # the listing's own descriptor is closed by now


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _describe(fd: int) -> str:
    try:
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            return f"{fd}: a socket"
        return f"{fd}: {os.readlink(f'/proc/self/fd/{fd}')}"
    except OSError:
        return f"{fd}: closed meanwhile"
