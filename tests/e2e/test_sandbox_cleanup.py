"""Nothing of an instance outlives it: not after destroy, not after the server is SIGKILLed
and restarted. Checks processes, cgroups and mounts from the host's side."""
import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from frazil.testing import wait_until
from tests.conftest import SANDBOX_PROBLEM, alive, host_mounts_mentioning

pytestmark = pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=SANDBOX_PROBLEM or "")

LINGERER = {"index.py": (
    "import subprocess, time\n"
    "def main(event, context):\n"
    "    open('/tmp/scratch', 'w').write('x' * 1000)\n"
    "    subprocess.Popen(['sleep', '300'], start_new_session=True)  # a daemon left running\n"
    "    time.sleep(event.get('s', 0))\n"
    "    return 'ok'\n")}


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def daemons(pid: int) -> set[int]:
    """The `sleep 300` daemons LINGERER leaves, among the processes below `pid`."""
    found = set()
    for child in descendants(pid):
        try:
            if Path(f"/proc/{child}/cmdline").read_bytes() == b"sleep\x00300\x00":
                found.add(child)
        except OSError:
            pass
    return found


def named_instance_cgroups() -> dict[str, str]:
    """Settings under which every instance's cgroup carries its instance's name, for tests
    that look a cgroup up by it. cgroup v2 cannot rename a cgroup (EPERM), so there a taken
    generic instance (built ahead of time, before its instance id was known) keeps its
    `generic-` name: on v2 no generic Python instances are built, and the zygote names each
    cgroup as it makes it. (On v1 the renamed directories are what operators see.)"""
    from frazil.sandbox.cgroups import scope_for
    from frazil.sandbox.probe import discover

    backend = discover(scope_for(Path("/nonexistent")))
    return {"FRAZIL_SANDBOX_PREBUILT": "0"} if backend is not None and backend.version == 2 else {}


def instance_cgroups(data_dir: Path, generic: bool = False) -> set[str]:
    """Names of the instance cgroups of the platform on `data_dir`, in the hierarchies its
    backend uses (v1 or v2); with `generic`, also those of the generic instances it builds
    ahead of time (no function's yet)."""
    from frazil.sandbox.cgroups import scope_for
    from frazil.sandbox.instance import GENERIC_PREFIX
    from frazil.sandbox.probe import discover

    backend = discover(scope_for(data_dir))
    assert backend is not None, "the isolated sandbox runs, so some cgroup hierarchy is usable"
    return {name for name in backend.instance_names() if generic or not name.startswith(GENERIC_PREFIX)}


def describe(pid: int) -> str:
    """A process's state, command line and cgroups, for a failure message."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        cgroups = Path(f"/proc/{pid}/cgroup").read_text().replace("\n", " ")
    except OSError as exc:
        return f"gone ({exc.strerror})"
    return f"state {state}: {cmdline.strip() or '(no command line)'} in {cgroups.strip()}"


def is_helper_or_generic(pid: int) -> bool:
    """The sandbox's launcher or Python zygote, or a generic instance built ahead of time."""
    from frazil.sandbox.instance import GENERIC_PREFIX

    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    return (b"frazil.sandbox.helper.launcher" in cmdline or b"frazil-python-zygote" in cmdline
            or f"/{GENERIC_PREFIX}" in cgroups)


def test_sigkill_of_the_server_then_restart_leaves_nothing(server_factory):
    srv = server_factory(FRAZIL_SANDBOX="isolated", **named_instance_cgroups())
    srv.deploy("lingerer", LINGERER)
    def in_flight():
        try:
            srv.invoke("lingerer", {"s": 30}, expect=None)
        except httpx.HTTPError:
            pass  # the server is killed under this call: that is the point

    busy = threading.Thread(target=in_flight)
    busy.start()
    wait_until(lambda: 'frazil_instances{state="busy"} 1.0' in srv.metrics(), 20, what="a busy instance")
    srv.invoke("lingerer")  # a second instance, idle afterwards
    # The busy instance's daemon may not be started yet when the idle one's call returns:
    # wait for both, so the snapshot below holds what must die with the server.
    wait_until(lambda: len(daemons(srv.process.pid)) == 2, 20, what="both instances' sleeping daemons")
    processes = descendants(srv.process.pid)
    assert len(processes) >= 5  # launcher, two runtimes, their sleeping daemons
    # (a taken generic instance's cgroup gets its instance's name a moment later)
    wait_until(lambda: len(instance_cgroups(srv.data_dir)) == 2, 10, what="two instance cgroups")

    srv.stop(signal.SIGKILL)
    busy.join(30)
    wait_until(lambda: not any(alive(p) for p in processes), 10,
               what="every instance process to die with the server")
    assert host_mounts_mentioning(str(srv.data_dir)) == []

    srv.start()  # the new platform removes what the dead one left
    assert instance_cgroups(srv.data_dir) == set()
    assert srv.invoke("lingerer")["result"] == "ok"
    srv.stop()
    assert instance_cgroups(srv.data_dir, generic=True) == set()


def test_destroyed_instances_leave_no_cgroup_or_process(server_factory):
    """Timeouts, crashes and reaping each destroy their instance completely."""
    srv = server_factory(FRAZIL_SANDBOX="isolated", FRAZIL_KEEP_ALIVE_S="0.3", **named_instance_cgroups())
    srv.deploy("lingerer", LINGERER, timeout=1)
    assert srv.invoke("lingerer", {"s": 5})["error"]["type"] == "Timeout"
    srv.invoke("lingerer")
    # Wait for the event itself, not for "no instance cgroup": a taken generic instance keeps
    # its generic cgroup name for a moment, so that is also true before the second instance is
    # reaped (or even renamed).
    wait_until(lambda: "frazil_sandbox_destroy_seconds_count 2.0" in srv.metrics(), 10,
               what="the timed-out and the reaped instance to be destroyed")
    assert instance_cgroups(srv.data_dir) == set()
    children = descendants(srv.process.pid)
    left = {p: describe(p) for p in children if not is_helper_or_generic(p)}
    assert children and not left, left  # no instance is left
