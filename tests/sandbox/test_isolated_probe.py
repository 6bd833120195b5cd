"""The start-up probe and cgroup discovery: what they find, and the messages they give."""
from __future__ import annotations

import os

import pytest

from frazil.sandbox import cgroup_v1, cgroupfs, cgroups, probe
from frazil.sandbox.base import SandboxUnavailable
from frazil.sandbox.select import make_sandbox
from frazil.settings import Settings

V1_MOUNTINFO = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


class TestCgroupDiscovery:
    def test_mountinfo_parsing(self):
        found = cgroupfs.cgroup_mounts(V1_MOUNTINFO)
        assert ("cgroup", "/sys/fs/cgroup/memory", {"rw", "memory"}) in found
        assert any(fstype == "cgroup2" for fstype, _, _ in found)

    def test_v1_with_comounted_cpu_and_cpuacct(self):
        found = [("cgroup", "/c/cpu,cpuacct", {"cpu", "cpuacct"}), ("cgroup", "/c/memory", {"memory"}),
                 ("cgroup", "/c/pids", {"pids"})]
        backend = cgroup_v1.V1Backend.discover("abc", found)
        assert backend.mounts == {"cpu": "/c/cpu,cpuacct", "cpuacct": "/c/cpu,cpuacct", "memory": "/c/memory",
                                  "pids": "/c/pids"}
        assert backend.scope_dirs() == ["/c/cpu,cpuacct/frazil/abc", "/c/memory/frazil/abc", "/c/pids/frazil/abc"]

    def test_v2_wins_when_it_has_the_controllers(self):
        found = [("cgroup2", "/c", {"memory", "cpu", "pids", "io"}), ("cgroup", "/c1/memory", {"memory"})]
        backend = probe.discover("abc", found)
        assert backend.version == 2 and backend.scope_dirs() == ["/c/frazil/abc"]

    def test_v2_with_only_hugetlb_falls_back_to_v1(self):
        found = [("cgroup2", "/u", {"hugetlb"}), ("cgroup", "/m", {"memory"}), ("cgroup", "/c", {"cpu"}),
                 ("cgroup", "/p", {"pids"})]
        assert probe.discover("abc", found).version == 1

    def test_v1_freezes_through_a_v2_hierarchy_when_there_is_one(self):
        """A hybrid machine: freezing uses the v2 hierarchy (SIGKILL reaches a task frozen
        there), not the v1 freezer controller."""
        found = [("cgroup2", "/u", set()), ("cgroup", "/m", {"memory"}), ("cgroup", "/c", {"cpu"}),
                 ("cgroup", "/p", {"pids"}), ("cgroup", "/f", {"freezer"})]
        backend = probe.discover("abc", found)
        assert backend.version == 1
        assert backend.mounts["unified"] == "/u" and "freezer" not in backend.mounts
        cg = backend.attach("x")
        assert cg.can_freeze() and cg.freeze_file == "cgroup.freeze"

    def test_v1_alone_freezes_through_its_freezer_controller(self):
        found = [("cgroup", "/m", {"memory"}), ("cgroup", "/c", {"cpu"}), ("cgroup", "/p", {"pids"}),
                 ("cgroup", "/f", {"freezer"})]
        cg = probe.discover("abc", found).attach("x")
        assert cg.freeze_file == "freezer.state" and cg._freezer_dir() == "/f/frazil/abc/x"

    def test_v1_without_any_freezer_cannot_freeze(self):
        found = [("cgroup", "/m", {"memory"}), ("cgroup", "/c", {"cpu"}), ("cgroup", "/p", {"pids"})]
        assert not probe.discover("abc", found).attach("x").can_freeze()

    def test_which_backends_limit_disk_bandwidth(self):
        v1 = [("cgroup", "/m", {"memory"}), ("cgroup", "/c", {"cpu"}), ("cgroup", "/p", {"pids"})]
        assert not probe.discover("abc", v1).limits_io()
        assert probe.discover("abc", v1 + [("cgroup", "/b", {"blkio"})]).limits_io()
        assert not probe.discover("abc", [("cgroup2", "/c", {"memory", "cpu", "pids"})]).limits_io()
        assert probe.discover("abc", [("cgroup2", "/c", {"memory", "cpu", "pids", "io"})]).limits_io()

    def test_nothing_usable(self):
        assert probe.discover("abc", [("cgroup", "/m", {"memory"})]) is None

    def test_scope_is_per_data_dir(self, tmp_path):
        assert cgroups.scope_for(tmp_path / "a") != cgroups.scope_for(tmp_path / "b")
        assert cgroups.scope_for(tmp_path / "a") == cgroups.scope_for(tmp_path / "x" / ".." / "a")


class TestProbe:
    def test_message_names_what_is_missing(self, monkeypatch):
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        monkeypatch.setattr(cgroupfs, "cgroup_mounts", lambda mountinfo=None: [])
        result = probe.probe("abc")
        assert not result.ok
        message = result.message()
        assert "root is required" in message and "uid 1000" in message
        assert "memory, cpu and pids" in message
        assert "FRAZIL_SANDBOX=plain" in message

    def test_select_raises_unavailable_with_the_message(self, monkeypatch, tmp_path):
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        with pytest.raises(SandboxUnavailable, match="root is required"):
            make_sandbox(Settings(data_dir=tmp_path, sandbox="isolated"))

    def test_this_machine(self):
        result = probe.probe("abc")
        if not result.ok:
            pytest.skip(result.message())
        assert result.cgroups is not None and result.message() == "the isolated sandbox can run here"

    def test_probe_has_no_side_effects(self, tmp_path):
        result = probe.probe(cgroups.scope_for(tmp_path))
        if result.ok:
            assert all(not os.path.exists(d) for d in result.cgroups.scope_dirs())
