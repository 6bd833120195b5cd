"""Cold starts in flight when the sandbox's launcher (and with it the Python zygote) dies are
retried on the replacement (issue 11, item 2): the helpers' death is the platform's, never
reported as the function's failure."""
from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from frazil.settings import Settings
from frazil.testing import wait_until

SLOW = {"index.py": "import time\n\ndef main(event, context):\n    time.sleep(0.5)\n    return event\n"}
LAUNCHER = b"frazil.sandbox.helper.launcher"


def launcher_pids(server_pid: int) -> list[int]:
    """The server's launcher processes (its children running the launcher's bootstrap)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == server_pid and LAUNCHER in cmdline:
            found.append(int(entry.name))
    return found


def test_cold_starts_survive_the_launchers_death(server_factory):
    """24 concurrent cold starts through a real server; the launcher is SIGKILLed while they
    start: every invocation succeeds (none fails with RuntimeExited), on a new launcher."""
    # Nothing built ahead: every cold start forks from the zygote or execs through the launcher
    # (the create() path that is retried). A pre-built instance handed its code just as the
    # launcher dies is another case, not covered yet (see issue 11).
    srv = server_factory(**{Settings.env_name("sandbox_prebuilt"): "0"})
    srv.deploy("cold", SLOW)
    old = wait_until(lambda: launcher_pids(srv.pid), 30, what="the launcher to run")[0]
    api = srv.client(timeout=60)

    def call(n: int) -> dict:
        response = api.post("/v1/functions/cold/invoke", json={"n": n})
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(24) as workers:
        calls = [workers.submit(call, n) for n in range(24)]
        os.kill(old, signal.SIGKILL)  # the requests are on their way: their cold starts begin now
        answers = [c.result() for c in calls]
    failures = [a for a in answers if not a["success"]]
    assert not failures, failures
    assert sorted(a["result"]["n"] for a in answers) == list(range(24))
    assert any(a["cold"] for a in answers)
    assert wait_until(lambda: [p for p in launcher_pids(srv.pid) if p != old], 30, what="a new launcher")
