"""`visit.inside`: the calling thread visits another process's mount or network namespace for
one step and always comes home (namespaces and working directory), also when the step raises;
the process's other threads never move."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

from frazil.sandbox.helper import syscalls as sc
from frazil.sandbox.helper.visit import Gone, inside

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="entering namespaces needs root and util-linux's unshare")


def where() -> tuple[str, str, str]:
    return (os.readlink("/proc/thread-self/ns/mnt"), os.readlink("/proc/thread-self/ns/net"), os.getcwd())


@pytest.fixture
def other():
    """A process in mount and network namespaces of its own (a tmpfs at /mnt marks its mounts)."""
    proc = subprocess.Popen(["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c",
                             "mount -t tmpfs visit-test /mnt && echo up && exec sleep 60"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        pidfd = os.pidfd_open(proc.pid)
        yield proc, pidfd
        os.close(pidfd)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("nstype", [sc.CLONE_NEWNS, sc.CLONE_NEWNET], ids=["mnt", "net"])
def test_the_thread_visits_and_comes_home_even_when_the_step_raises(other, nstype, tmp_path, monkeypatch):
    proc, pidfd = other
    monkeypatch.chdir(tmp_path)  # not the root: setns() would leave the thread there
    home = where()
    theirs = {sc.CLONE_NEWNS: os.readlink(f"/proc/{proc.pid}/ns/mnt"),
              sc.CLONE_NEWNET: os.readlink(f"/proc/{proc.pid}/ns/net")}[nstype]
    # A thread that runs already (as the server's do) looks while this one visits.
    look, looked, seen_by_another_thread = threading.Event(), threading.Event(), []

    def another_thread():
        look.wait(10)
        seen_by_another_thread.append(where())
        looked.set()

    worker = threading.Thread(target=another_thread)
    worker.start()
    with pytest.raises(RuntimeError, match="the step failed"):
        with inside(pidfd, nstype):
            assert theirs in where()
            look.set()
            assert looked.wait(10)
            raise RuntimeError("the step failed")
    worker.join()
    assert where() == home
    assert seen_by_another_thread == [home]


def test_a_visit_sees_the_other_mount_namespace(other):
    _, pidfd = other
    with inside(pidfd, sc.CLONE_NEWNS):
        with open("/proc/thread-self/mountinfo") as mountinfo:
            assert "visit-test" in mountinfo.read()
    with open("/proc/thread-self/mountinfo") as mountinfo:
        assert "visit-test" not in mountinfo.read()


def test_an_exited_process_is_gone(other):
    proc, pidfd = other
    proc.kill()
    proc.wait()
    home = where()
    with pytest.raises(Gone):
        with inside(pidfd, sc.CLONE_NEWNET):
            pass
    assert where() == home
