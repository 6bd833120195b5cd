"""Hostile function bodies the tests deploy (the fork storm, ...) and the one way to wrap them.

Shared by the hostile-function tests and the cgroup v2 VM smoke, so both check the same
behaviour with the same code.
"""
from __future__ import annotations

import textwrap


def function_running(body: str) -> dict[str, str]:
    """The files of a Python function whose main() runs `body` (indented into it) and
    returns the variable `result` it sets."""
    code = ("import os, sys, socket, ctypes, errno, signal, subprocess, time\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "def main(event, context):\n" + textwrap.indent(textwrap.dedent(body), "    ") + "\n    return result\n")
    return {"index.py": code}


# Forks until refused; the children sleep so each one counts against the instance's process
# limit, and are killed and reaped before returning. result: 'unbounded', or how many forks
# worked and the errno name that stopped them.
FORK_STORM = """
    pids = []
    try:
        for _ in range(1000):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            pids.append(pid)
        result = 'unbounded'
    except OSError as exc:
        result = {'forked': len(pids), 'error': errno.errorcode.get(exc.errno)}
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    """


def fork_storm_was_bounded(result) -> bool:
    """The storm stopped at the process limit (well under 100 forks) with EAGAIN."""
    return result != "unbounded" and result["forked"] < 100 and result["error"] == "EAGAIN"
