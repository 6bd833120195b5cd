"""Processes as /proc shows them, and stopping a process started in its own session so that
nothing of it is left.

A pid alone is not an identity: once a process is reaped, its pid can be given to an unrelated
one. Everything here that kills by pid checks the process's start time first (field 22 of
/proc/PID/stat), so a reused pid is never hit.
"""
from __future__ import annotations

import os
import signal
import subprocess


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and parens):
    index 0 is the state, 1 the ppid, 2 the process group, 19 the start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot): tells it from a later process reusing the pid."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def process_table() -> dict[int, int]:
    """pid -> ppid for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            table[int(entry)] = int(fields[1])
    return table


def descendants(pid: int, table: dict[int, int] | None = None) -> list[int]:
    """Every process below `pid` (children, their children, ...)."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for child, parent in table.items():
        children.setdefault(parent, []).append(child)
    out, todo = [], list(children.get(pid, ()))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def direct_children(pid: int, table: dict[int, int] | None = None) -> list[int]:
    table = process_table() if table is None else table
    return sorted(c for c, p in table.items() if p == pid)


def group_members(pgid: int) -> list[int]:
    """The processes of process group `pgid`."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None and int(fields[2]) == pgid:
            out.append(int(entry))
    return out


def kill_if_same(pid: int, started: int | None) -> None:
    """SIGKILL `pid` if it is still the process that started at `started`."""
    if started is not None and start_time(pid) == started:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Session:
    """A process started with `start_new_session=True` (so its pid is its process group's
    id), and everything it starts.

    `signal`/`wait` act on the leader alone, as a supervisor would; `sweep` kills whatever
    is left of the session afterwards: the processes remembered with `remember()` (orphans
    leave the tree when the leader dies, so the tree is noted while it is still whole) and
    every member of the process group. Group members are identified safely after the leader
    is reaped: the kernel does not reuse a pid while a group still carries it as its id, a
    member must have started no earlier than the leader, and the group is left alone once the
    leader's pid names another process."""

    def __init__(self, popen: subprocess.Popen):
        self.popen = popen
        self.pid = popen.pid
        self.started = start_time(popen.pid)
        self._remembered: dict[int, int | None] = {}

    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int, *, group: bool = False) -> None:
        """Send `sig` to the leader (or its whole process group) unless it has exited."""
        if not self.running():
            return
        try:
            if group:
                os.killpg(self.pid, sig)
            else:
                self.popen.send_signal(sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int | None:
        """The leader's exit code, or None if it is still running after `timeout` seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def remember(self) -> None:
        """Note the current tree below the leader, for `sweep`."""
        for pid in descendants(self.pid):
            self._remembered.setdefault(pid, start_time(pid))

    def end(self, term_timeout: float) -> int:
        """SIGTERM to the whole group, SIGKILL to it after `term_timeout` s, then `sweep`."""
        self.remember()
        self.signal(signal.SIGTERM, group=True)
        if self.wait(term_timeout) is None:
            self.signal(signal.SIGKILL, group=True)
            self.popen.wait(10)
        self.sweep()
        return self.popen.returncode

    def sweep(self) -> None:
        """SIGKILL every process left of this session. The leader must have exited."""
        self.remember()
        for pid, started in self._remembered.items():
            kill_if_same(pid, started)
        self._remembered.clear()
        if self.started is None or start_time(self.pid) not in (None, self.started):
            return  # the leader's pid now names another process, whose group this may be
        for pid in group_members(self.pid):
            started = start_time(pid)
            if started is not None and started >= self.started:
                kill_if_same(pid, started)
