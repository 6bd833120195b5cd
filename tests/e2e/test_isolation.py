"""Instances against each other and the host, through a real server in the isolated sandbox:
idle instances are frozen, each instance has its own network namespace, disk bandwidth is
capped, and the host shows as little as it can.

Everything here needs the isolated sandbox: the module skips, saying why, without it; a
test that needs a cgroup controller this machine lacks skips saying which.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from frazil.testing.waiting import wait_until
from tests.conftest import SANDBOX_PROBLEM
from tests.e2e.test_sandbox_cleanup import named_instance_cgroups

pytestmark = pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=SANDBOX_PROBLEM or "")

# A handler that starts a thread once (it outlives the invocation) which writes an ever
# growing counter to /tmp/counter every 2 ms; each invocation returns the counter as it
# found it and once it has moved (the thread runs while an invocation does).
TICKER = '''
import os, threading, time

COUNTER = "/tmp/counter"
started = []


def tick():
    n = 0
    while True:
        n += 1
        with open(COUNTER + ".new", "w") as f:
            f.write(str(n))
        os.replace(COUNTER + ".new", COUNTER)
        time.sleep(0.002)


def read():
    try:
        with open(COUNTER) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def main(event, context):
    if not started:
        threading.Thread(target=tick, daemon=True).start()
        started.append(True)
    first = read()
    deadline = time.monotonic() + 5
    while read() < first + 5 and time.monotonic() < deadline:
        time.sleep(0.002)
    return {"first": first, "last": read()}
'''
IDLE_WINDOW_S = 1.0  # how long an idle instance's counter is watched (up to 500 ticks if it ran)
THAW_TICKS = 25  # ticks the thread may make between the thaw and the handler's first read


def instance_cgroup(srv, invocation_id: str):
    """The cgroup of the instance that ran `invocation_id` (once it carries the instance's name)."""
    from frazil.sandbox.cgroups import scope_for
    from frazil.sandbox.instance import cgroup_name
    from frazil.sandbox.probe import discover

    backend = discover(scope_for(srv.data_dir))
    instance_id = srv.invocation(invocation_id)["instance_id"]
    cg = backend.attach(cgroup_name(instance_id))
    wait_until(lambda: cg.exists() and cg.pids(), 5, what=f"the cgroup of instance {instance_id}")
    return cg


def freezer_state(cg) -> str:
    """What the instance's freezer control file says (v2 "0"/"1", v1 "THAWED"/"FROZEN"). The
    directory is read from the runtime's /proc/PID/cgroup: a v2 one keeps the name it was
    made with (v2 cannot rename), which may be a generic instance's."""
    pid = min(cg.pids())
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    v2 = cg.freeze_file == "cgroup.freeze"
    mount = cg._freezer_dir().split("/frazil/")[0]
    for line in lines:
        hierarchy, controllers, rel = line.split(":", 2)
        if (hierarchy == "0") if v2 else ("freezer" in controllers.split(",")):
            break
    return Path(mount + rel, cg.freeze_file).read_text().strip()


def counter_of(cg) -> int:
    """The instance's /tmp/counter, read from the host through its runtime's root."""
    pid = min(cg.pids())  # the runtime (PID 1 inside) is the oldest; any of them shares /tmp
    text = Path(f"/proc/{pid}/root/tmp/counter").read_text()
    return int(text or 0)


def counter_moves_while_idle(cg) -> bool:
    """Watch the idle instance's counter for IDLE_WINDOW_S: whether it moved."""
    seen = counter_of(cg)
    deadline = time.monotonic() + IDLE_WINDOW_S
    while time.monotonic() < deadline:
        if counter_of(cg) != seen:
            return True
        time.sleep(0.01)
    return False


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    from tests.conftest import make_server

    srv = make_server(tmp_path_factory.mktemp("isolation") / "data", FRAZIL_SANDBOX="isolated",
                      **named_instance_cgroups())
    srv.start()
    yield srv
    srv.close()


def require_freezer(cg) -> None:
    if not cg.can_freeze():
        pytest.skip("this machine's cgroups have no freezer (v1 freezer controller or v2 cgroup.freeze)")


class TestIdleInstancesAreFrozen:
    def test_an_idle_instance_makes_no_progress_and_runs_again_when_taken(self, isolated):
        """A thread a handler left running stops while its instance is idle, and goes on
        during the next invocation, which works as usual."""
        isolated.deploy("ticker", {"index.py": TICKER})
        first = isolated.invoke("ticker")
        assert first["success"], first
        cg = instance_cgroup(isolated, first["invocation_id"])
        require_freezer(cg)
        wait_until(lambda: freezer_state(cg) in ("FROZEN", "1"), 5, what="the idle instance to be frozen")
        frozen_at = counter_of(cg)
        assert frozen_at >= first["result"]["last"]
        assert not counter_moves_while_idle(cg)

        second = isolated.invoke("ticker")
        assert second["success"] and second["cold"] is False, second
        # Nothing happened while idle; the thread runs again from the thaw on, a moment
        # before the handler reads the counter.
        assert frozen_at <= second["result"]["first"] <= frozen_at + THAW_TICKS
        assert second["result"]["last"] >= frozen_at + 5  # and it ran during the invocation
        wait_until(lambda: freezer_state(cg) in ("FROZEN", "1"), 5, what="the instance to be frozen again")

    def test_a_frozen_instance_is_destroyed_cleanly(self, isolated):
        """Deleting the function destroys its frozen idle instance: no process or cgroup is left."""
        isolated.deploy("ticker-gone", {"index.py": TICKER})
        body = isolated.invoke("ticker-gone")
        cg = instance_cgroup(isolated, body["invocation_id"])
        require_freezer(cg)
        wait_until(lambda: freezer_state(cg) in ("FROZEN", "1"), 5, what="the idle instance to be frozen")
        assert isolated.client().delete("/v1/functions/ticker-gone").status_code == 200
        wait_until(lambda: not cg.exists(), 10, what="the frozen instance's cgroup to go")

    def test_without_freezing_an_idle_instance_runs_on(self, server_factory):
        """FRAZIL_SANDBOX_FREEZE_IDLE=0: the same thread keeps counting between invocations
        (which is what the freezer is for, and shows the test above can see it)."""
        srv = server_factory(FRAZIL_SANDBOX="isolated", FRAZIL_SANDBOX_FREEZE_IDLE="0",
                             **named_instance_cgroups())
        srv.deploy("ticker", {"index.py": TICKER})
        body = srv.invoke("ticker")
        assert body["success"], body
        cg = instance_cgroup(srv, body["invocation_id"])
        require_freezer(cg)
        assert counter_moves_while_idle(cg)
        assert freezer_state(cg) in ("THAWED", "0")


SQUATTER = '''
import socket

kept = []


def main(event, context):
    server = socket.socket(socket.AF_UNIX)
    server.bind("\\0" + event["name"])
    server.listen()
    kept.append(server)
    return "@" + event["name"] in open("/proc/net/unix").read()
'''
NEIGHBOUR = '''
import socket


def main(event, context):
    result = {"listed": "@" + event["name"] in open("/proc/net/unix").read(),
              "loopback up": "127.0.0.1" in open("/proc/net/fib_trie").read()}
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind("\\0" + event["name"])
        result["bind"] = "bound"
    except OSError as exc:
        result["bind"] = exc.errno
    finally:
        s.close()
    return result
'''


class TestOwnNetworkNamespace:
    def test_an_abstract_socket_name_is_neither_seen_nor_squatted_by_another_instance(self, isolated):
        """One function binds an abstract name and keeps it; another function's instance
        does not list it in /proc/net/unix and binds the same name; each has `lo` up."""
        isolated.deploy("squatter", {"index.py": SQUATTER})
        isolated.deploy("neighbour", {"index.py": NEIGHBOUR})
        name = "frazil-e2e-" + os.urandom(4).hex()
        owner = isolated.invoke("squatter", {"name": name})
        assert owner["success"] and owner["result"] is True, owner
        other = isolated.invoke("neighbour", {"name": name})
        assert other["success"], other
        assert other["result"] == {"listed": False, "loopback up": True, "bind": "bound"}
        # ...and the two instances are in different network namespaces, neither the host's
        namespaces = set()
        for body in (owner, other):
            cg = instance_cgroup(isolated, body["invocation_id"])
            namespaces.add(os.readlink(f"/proc/{min(cg.pids())}/ns/net"))
        assert len(namespaces) == 2 and os.readlink("/proc/self/ns/net") not in namespaces


IO_LIMIT_BPS = 4 * 1024 * 1024
READ_BYTES = 3 * IO_LIMIT_BPS  # about 3 s at the limit
DIRECT_READER = '''
import mmap, os, time

CHUNK = 1 << 20


def main(event, context):
    # O_DIRECT: every read goes to the disk (the page cache would not count as disk I/O).
    fd = os.open(os.path.join(os.path.dirname(__file__), "data.bin"), os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, CHUNK)  # page-aligned, as O_DIRECT wants
    done = 0
    started = time.monotonic()
    try:
        while done < event["bytes"]:
            n = os.preadv(fd, [buf], done)
            if n <= 0:
                break
            done += n
    finally:
        os.close(fd)
    return {"bytes": done, "seconds": time.monotonic() - started}
'''


class TestDiskBandwidth:
    def test_a_direct_read_flood_is_held_near_its_tiers_limit(self, server_factory):
        """FRAZIL_IO_READ_BPS_128/_256: reading a large file of its own code with O_DIRECT
        inside an instance goes no faster than its tier's limit (and not far below it). The
        code lies in the data dir, on whatever disk that is (in the cgroup v2 VM, its scratch
        disk: the root there is on none)."""
        from frazil.sandbox import disks
        from frazil.sandbox.cgroups import scope_for
        from frazil.sandbox.probe import discover

        backend = discover(scope_for("/nonexistent"))
        if backend is None or not backend.limits_io():
            pytest.skip("this machine's cgroups have no blkio (v1) or io (v2) controller")
        limits = {128: IO_LIMIT_BPS, 256: 2 * IO_LIMIT_BPS}
        srv = server_factory(FRAZIL_SANDBOX="isolated", FRAZIL_IO_READ_BPS_128=str(limits[128]),
                             FRAZIL_IO_READ_BPS_256=str(limits[256]))
        if not disks.backing_disks([str(srv.data_dir)]).devices:
            pytest.skip(f"the data dir {srv.data_dir} is on no block device (nothing to throttle)")
        for memory, limit in limits.items():
            # Zeros: a small zip, READ_BYTES written out on the disk when the bundle is unpacked.
            srv.deploy(f"reader-{memory}", {"index.py": DIRECT_READER, "data.bin": bytes(READ_BYTES)},
                       memory=memory, timeout=60)
            body = srv.invoke(f"reader-{memory}", {"bytes": READ_BYTES})
            assert body["success"], body
            rate = body["result"]["bytes"] / body["result"]["seconds"]
            assert body["result"]["bytes"] >= READ_BYTES
            assert 0.5 * limit <= rate <= 1.3 * limit, f"{memory} MB tier: {rate / 2**20:.2f} MiB/s"


LOOKER = '''
import os


def main(event, context):
    return {"mountinfo": open("/proc/self/mountinfo").read(),
            "site": {d: os.listdir(d) for d in event["site_dirs"] if os.path.isdir(d)}}
'''


class TestLessOfTheHost:
    def test_no_install_path_in_mountinfo_and_no_host_site_packages(self, isolated):
        """Through a real server: the platform's install is named nowhere in the instance's
        mount table, and the host interpreter's site-packages list nothing."""
        from frazil.runtimes import PYTHON
        from frazil.sandbox.helper import rootfs
        from frazil.sandbox.launcher_client import PACKAGE_PARENT

        site = rootfs.site_dirs(str(PYTHON.interpreter()))
        isolated.deploy("looker", {"index.py": LOOKER})
        body = isolated.invoke("looker", {"site_dirs": site})
        assert body["success"], body
        assert PACKAGE_PARENT not in body["result"]["mountinfo"]
        # What remains: the instance's own code (a bind) shows its path in the host's file
        # system; no other mount names the data dir.
        naming_data_dir = [line.split()[4] for line in body["result"]["mountinfo"].splitlines()
                           if str(isolated.data_dir.resolve()) in line]
        assert set(naming_data_dir) <= {"/code"} | {f"/layers/{i}" for i in range(rootfs.MAX_LAYERS)}
        assert body["result"]["site"] == {d: [] for d in site}
