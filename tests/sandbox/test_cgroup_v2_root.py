"""V2Backend.prepare() at a root that holds processes (a container's cgroup namespace), on a
fake hierarchy: a directory whose cgroup.subtree_control refuses with EBUSY, as the kernel
does, while the root's cgroup.procs lists a process. The real case runs in the cgroup v2 VM
(scripts/vm/run.sh --layout container)."""
from __future__ import annotations

import errno

import pytest

from frazil.sandbox import cgroup_v2, cgroups
from frazil.sandbox.cgroup_v2 import PLATFORM_LEAF, V2Backend


class FakeHierarchy:
    """A cgroup2 mount in a directory. Writes go to plain files; writing a pid to a cgroup's
    cgroup.procs moves it there; enabling controllers in a cgroup with processes is EBUSY."""

    def __init__(self, root, procs: list[str], arrivals: int = 0):
        self.root = root
        self.arrivals = arrivals  # processes that appear in the root after each move
        self._write(root, "cgroup.procs", "".join(f"{p}\n" for p in procs))
        self._write(root, "cgroup.subtree_control", "")

    @staticmethod
    def _write(d, name: str, text: str) -> None:
        (d / name).write_text(text)

    def procs(self, d) -> list[str]:
        path = d / "cgroup.procs"
        return path.read_text().split() if path.exists() else []

    def write_file(self, path: str, value: str) -> None:
        import pathlib

        p = pathlib.Path(path)
        if p.name == "cgroup.subtree_control" and self.procs(p.parent):
            raise OSError(errno.EBUSY, "Device or resource busy")
        if p.name == "cgroup.procs":
            self._write(p.parent, "cgroup.procs", "".join(f"{x}\n" for x in self.procs(p.parent) + [value]))
            rest = [x for x in self.procs(self.root) if x != value]
            if self.arrivals and not rest:
                self.arrivals -= 1
                rest = ["999"]
            self._write(self.root, "cgroup.procs", "".join(f"{x}\n" for x in rest))
            return
        self._write(p.parent, p.name, value)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    def make(procs, arrivals=0) -> FakeHierarchy:
        hierarchy = FakeHierarchy(tmp_path, procs, arrivals)
        monkeypatch.setattr(cgroup_v2, "write_file", hierarchy.write_file)
        return hierarchy

    return make


def test_processes_of_the_root_move_to_the_leaf_before_controllers_are_enabled(fake, tmp_path):
    hierarchy = fake(["1", "42"])
    V2Backend("scope", str(tmp_path)).prepare()
    assert hierarchy.procs(tmp_path) == []
    assert hierarchy.procs(tmp_path / PLATFORM_LEAF) == ["1", "42"]
    assert (tmp_path / "cgroup.subtree_control").read_text() == " ".join(f"+{c}" for c in sorted(V2Backend.REQUIRED))


def test_a_root_that_keeps_getting_processes_is_a_clear_error(fake, tmp_path):
    fake(["1"], arrivals=10)  # a new one after every move
    with pytest.raises(cgroups.CgroupError, match="processes stay there"):
        V2Backend("scope", str(tmp_path)).prepare()


def test_a_root_without_processes_is_left_as_it_is(fake, tmp_path):
    fake([])
    V2Backend("scope", str(tmp_path)).prepare()
    assert not (tmp_path / PLATFORM_LEAF).exists()


def test_a_process_outside_our_pid_namespace_is_not_taken_for_ourselves(fake, tmp_path):
    """cgroup.procs shows such a process as 0, and writing "0" would move the writer: it is
    skipped (and, since it stays, the root cannot enable controllers: a clear error)."""
    hierarchy = fake(["0", "7"])
    with pytest.raises(cgroups.CgroupError, match="processes stay there"):
        V2Backend("scope", str(tmp_path)).prepare()
    assert hierarchy.procs(tmp_path / PLATFORM_LEAF) == ["7"]
