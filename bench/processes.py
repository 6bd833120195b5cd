"""Cleanup of everything a benchmark starts.

Every process a benchmark starts (servers, functions-framework, py-spy) is registered here
and stopped - with every descendant it left behind - when its `with` block ends, on an
exception, on Ctrl-C, on SIGTERM/SIGHUP (`install_signal_handlers`) and at interpreter exit.
"""
from __future__ import annotations

import atexit
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from frazil.testing import HOST, ServerFailed
from frazil.testing.processes import Session

# Everything started and not stopped yet: each has `what` and `stop()`.
_running: dict[int, object] = {}


def register(thing) -> None:
    _running[id(thing)] = thing


def unregister(thing) -> bool:
    """Whether `thing` was still registered."""
    return _running.pop(id(thing), None) is not None


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP end the benchmark like Ctrl-C does: through every `finally`."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)


@dataclass
class OwnedProcess:
    """A process we started (in its own session) and must leave nothing of."""

    popen: subprocess.Popen
    what: str
    term_timeout_s: float = 15.0
    session: Session = field(init=False)

    def __post_init__(self):
        self.session = Session(self.popen)
        register(self)

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after `term_timeout_s`, then whatever is left."""
        if id(self) not in _running:
            return
        self.session.end(self.term_timeout_s)
        unregister(self)


def stop_all() -> None:
    for thing in list(_running.values()):
        try:
            thing.stop()
        except Exception as exc:  # keep stopping the others
            print(f"warning: stopping {thing.what} failed: {exc}", file=sys.stderr)


atexit.register(stop_all)


def wait_for_port(port: int, owned: OwnedProcess, timeout_s: float, log_path: Path | None = None) -> None:
    """Until something accepts connections on `port`; `ServerFailed` if `owned` exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if owned.popen.poll() is not None:
            raise ServerFailed(f"{owned.what} exited with {owned.popen.returncode}" + _tail(log_path), log_path)
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ServerFailed(f"{owned.what} did not listen on port {port} within {timeout_s:g} s" + _tail(log_path),
                               log_path)
        time.sleep(0.05)


def start_listening(argv: list[str], what: str, port: int, log_path: Path, cwd: Path,
                    timeout_s: float = 30) -> OwnedProcess:
    """A server process of ours (its own session, output to `log_path`), once it accepts on
    `port`; stopped again if it does not."""
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, cwd=cwd)
    owned = OwnedProcess(popen, what, term_timeout_s=10)
    try:
        wait_for_port(port, owned, timeout_s, log_path)
    except BaseException:
        owned.stop()
        raise
    return owned


def _tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n" + "\n".join(text)
