"""The real cgroup backend of this machine: limits applied, join, counters, removal."""
from __future__ import annotations

import os
import select
import signal

import pytest

from frazil.sandbox import cgroups, probe


@pytest.fixture
def backend(tmp_path):
    scope = cgroups.scope_for(tmp_path)
    result = probe.probe(scope)
    if not result.ok:
        pytest.skip(result.message())
    result.cgroups.prepare()
    yield result.cgroups
    for name in result.cgroups.instance_names():
        result.cgroups.attach(name).remove()
    result.cgroups.remove_scope()
    assert all(not os.path.exists(d) for d in result.cgroups.scope_dirs())


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_limits_are_applied(backend):
    cg = backend.create("limits", cgroups.Limits(128 << 20, 0.5, 64))
    if backend.version == 1:
        by = cg.by_controller
        assert int(read(f"{by['memory']}/memory.limit_in_bytes")) == 128 << 20
        if os.path.exists(f"{by['memory']}/memory.memsw.limit_in_bytes"):
            assert int(read(f"{by['memory']}/memory.memsw.limit_in_bytes")) == 128 << 20
        assert read(f"{by['cpu']}/cpu.cfs_quota_us") == "50000"
        assert read(f"{by['cpu']}/cpu.cfs_period_us") == "100000"
        if os.path.exists(f"{by['cpu']}/cpu.cfs_burst_us"):
            assert read(f"{by['cpu']}/cpu.cfs_burst_us") == "50000"
        assert read(f"{by['pids']}/pids.max") == "64"
    else:
        assert int(read(f"{cg.dir}/memory.max")) == 128 << 20
        assert read(f"{cg.dir}/cpu.max") == "50000 100000"
        assert read(f"{cg.dir}/pids.max") == "64"
    assert cg.oom_kills() == 0 and cg.cpu_usage_ns() == 0 and cg.pids() == set()
    cg.remove()
    assert not cg.exists()


def test_disk_bandwidth_limits_are_applied(backend, tmp_path):
    from frazil.sandbox import disks

    if not backend.limits_io():
        pytest.skip("this machine's cgroups have no blkio (v1) or io (v2) controller")
    # The root, or where tests keep data dirs (the cgroup v2 VM's root is a network share over
    # memory; its /tmp is a scratch disk).
    devices = tuple(disks.backing_disks(["/", str(tmp_path)]).devices)
    if not devices:
        pytest.skip("neither the root nor the test's tmp dir is on a block device")
    cg = backend.create("io", cgroups.Limits(64 << 20, 0.5, 8, io_read_bps=1 << 20, io_write_bps=2 << 20,
                                             io_devices=devices))
    if backend.version == 1:
        blkio = cg.by_controller["blkio"]
        assert read(f"{blkio}/blkio.throttle.read_bps_device").split() == [devices[0], str(1 << 20)]
        assert read(f"{blkio}/blkio.throttle.write_bps_device").split() == [devices[0], str(2 << 20)]
    else:
        assert read(f"{cg.dir}/io.max").split()[:3] == [devices[0], f"rbps={1 << 20}", f"wbps={2 << 20}"]
    cg.remove()


def test_a_process_joins_through_the_descriptors_and_removal_kills_it(backend):
    cg = backend.create("join", cgroups.Limits(64 << 20, 0.25, 8))
    fds = cg.open_procs()
    joined_r, joined_w = os.pipe()
    park_r, park_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for fd in fds:
                os.write(fd, b"0")
            os.write(joined_w, b"j")
            os.read(park_r, 1)  # parked until killed
        finally:
            os._exit(0)
    for fd in (*fds, joined_w, park_r):
        os.close(fd)
    try:
        ready, _, _ = select.select([joined_r], [], [], 10)
        assert ready and os.read(joined_r, 1) == b"j"
        assert cg.pids() == {pid}
        cg.remove()  # kills what is left, then removes
        assert not cg.exists()
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        os.close(joined_r)
        os.close(park_w)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ChildProcessError, ProcessLookupError):
            pass


def test_instance_names_and_attach(backend):
    backend.create("one", cgroups.Limits(64 << 20, 0.5, 8))
    backend.create("two", cgroups.Limits(64 << 20, 0.5, 8))
    assert backend.instance_names() == ["one", "two"]
    backend.attach("one").remove()
    assert backend.instance_names() == ["two"]


def freezer_backends(backend) -> list:
    """This machine's backend and, on v1, one that freezes through the v1 freezer controller
    instead (the fallback for a machine without a v2 hierarchy), when both exist."""
    found = [backend]
    if backend.version == 1 and "unified" in backend.mounts and os.path.isdir("/sys/fs/cgroup/freezer"):
        from frazil.sandbox.cgroup_v1 import V1Backend

        mounts = {c: m for c, m in backend.mounts.items() if c != "unified"}
        v1 = V1Backend(backend.scope, {**mounts, "freezer": "/sys/fs/cgroup/freezer"})
        v1.prepare()
        found.append(v1)
    return found


def frozen_state(cg) -> bool:
    """Whether the kernel says every task of `cg` is frozen."""
    if cg.freeze_file == "cgroup.freeze":
        return "frozen 1" in read(os.path.join(cg._freezer_dir(), "cgroup.events"))
    return read(os.path.join(cg._freezer_dir(), "freezer.state")) == "FROZEN"


def test_freeze_stops_every_task_and_a_frozen_cgroup_is_killed_and_removed(backend):
    """A frozen cgroup's busy task makes no progress, runs again once thawed, and a frozen
    cgroup is removed (its task killed) like any other; for each freezer this machine has."""
    import ctypes
    import mmap
    import time

    for each in freezer_backends(backend):
        cg = each.create("frozen", cgroups.Limits(64 << 20, 0.5, 8))
        if not cg.can_freeze():
            cg.remove()
            pytest.skip("this machine's cgroups have no freezer")
        fds = cg.open_procs()
        clone_dir = cg.open_clone_dir()
        shared = mmap.mmap(-1, 8)
        counter = ctypes.c_uint64.from_buffer(shared)
        pid = os.fork()
        if pid == 0:
            try:
                for fd in fds:
                    os.write(fd, b"0")
                if clone_dir is not None:  # (the sandbox clones into it; here the child moves itself)
                    with open(os.path.join(cg.by_controller["unified"], "cgroup.procs"), "w") as f:
                        f.write("0")
                while True:
                    counter.value += 1
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        if clone_dir is not None:
            os.close(clone_dir)
        freeze_fd = cg.open_freeze()
        try:
            deadline = time.monotonic() + 10
            while counter.value == 0 or cg.pids() != {pid}:
                assert time.monotonic() < deadline, "the child did not start counting in its cgroup"
                time.sleep(0.005)
            cg.set_frozen(freeze_fd, True)
            while not frozen_state(cg):
                assert time.monotonic() < deadline, "the cgroup did not freeze"
                time.sleep(0.005)
            seen = counter.value
            watch_until = time.monotonic() + 0.2
            while time.monotonic() < watch_until:
                assert counter.value == seen, "a frozen task made progress"
                time.sleep(0.01)
            cg.set_frozen(freeze_fd, False)
            while counter.value == seen:
                assert time.monotonic() < deadline, "the thawed task did not run again"
                time.sleep(0.005)
            cg.set_frozen(freeze_fd, True)
            cg.remove()  # kills the frozen task, thaws (v1 needs it to act on SIGKILL), removes
            assert not cg.exists()
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        finally:
            os.close(freeze_fd)
            del counter
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass
        if each is not backend:
            each.remove_scope()
