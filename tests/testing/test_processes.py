"""Session: stopping a process started in its own session leaves nothing of it."""
import signal
import subprocess

from frazil.testing import wait_until
from frazil.testing.processes import Session, descendants
from tests.conftest import alive


def start_shell(script: str) -> Session:
    """`sh -c script` in its own session; its stdout is a pipe the test reads to know it is ready."""
    return Session(subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True,
                                    start_new_session=True))


class TestSweep:
    def test_remembered_orphans_are_killed(self):
        """Children outlive a SIGKILLed leader; sweep() kills the ones noted while the tree was whole."""
        session = start_shell("sleep 300 & sleep 300 & echo ready; wait")
        assert session.popen.stdout.readline() == "ready\n"
        children = descendants(session.pid)
        assert len(children) == 2
        session.remember()
        session.signal(signal.SIGKILL)
        session.wait(10)
        assert all(alive(pid) for pid in children)  # orphans now: no longer below the leader
        session.sweep()
        wait_until(lambda: not any(alive(pid) for pid in children), 10, what="the orphans to die")

    def test_group_members_are_killed_without_being_remembered(self):
        """A process still in the leader's group is found by its group id after the leader is gone."""
        session = start_shell("sleep 300 & echo $!; wait")
        child = int(session.popen.stdout.readline())
        session.signal(signal.SIGKILL)
        session.wait(10)
        assert alive(child)
        session.sweep()
        wait_until(lambda: not alive(child), 10, what="the group member to die")


class TestEnd:
    def test_a_group_that_ignores_sigterm_is_killed(self):
        """end() escalates to SIGKILL of the whole group after its grace period."""
        session = start_shell("trap '' TERM; sleep 300 & echo $!; wait")
        child = int(session.popen.stdout.readline())
        assert session.end(term_timeout=0.5) == -signal.SIGKILL
        wait_until(lambda: not alive(child), 10, what="the child to die")
