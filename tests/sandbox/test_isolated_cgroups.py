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
