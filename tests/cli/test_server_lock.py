"""One `frazil server` per data dir: a second one on a dir in use refuses to start, naming the
dir and the first one's pid, and the first one goes on serving with its warm instances."""
import os
import signal
import subprocess

from frazil.server_lock import LOCK_FILE, DataDirInUse, DataDirLock
from frazil.testing.server import free_port
from tests.conftest import FRAZIL

HELLO = {"index.py": "def main(event, context):\n    return 'hi'\n"}


def second_server(first, port=None):
    """`frazil server` on the first one's data dir and settings; it should stop at once."""
    return subprocess.run([FRAZIL, "server", "--port", str(port or free_port()), "--data-dir", str(first.data_dir),
                           "--log-level", "warning"], env=first.env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_a_second_server_on_a_data_dir_in_use_refuses(server_factory):
    first = server_factory()
    first.deploy("warm", HELLO)
    assert first.invoke("warm")["cold"] is True
    result = second_server(first)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: frazil cannot start: the data dir {first.data_dir} is in use by another frazil server "
        f"(pid {first.pid}); stop it first, or give this server another --data-dir"]
    # The first server's warm instance was not touched: the next invocation is warm.
    assert first.invoke("warm")["cold"] is False
    assert (first.data_dir / LOCK_FILE).read_text().strip() == str(first.pid)


def test_the_lock_goes_with_the_server_however_it_ends(server_factory):
    """Killed or stopped, the first server's lock is gone with it: the dir can be used again."""
    srv = server_factory()
    srv.stop(signal.SIGKILL)
    srv.start()  # the same data dir, after a SIGKILL
    assert srv.invoke("nothing", expect=404)["success"] is False
    srv.stop()
    srv.start()  # and after a clean stop
    assert (srv.data_dir / LOCK_FILE).read_text().strip() == str(srv.pid)


class TestDataDirLock:
    def test_held_until_released(self, tmp_path):
        data_dir = tmp_path / "new" / "data"
        lock = DataDirLock.acquire(data_dir)
        try:
            assert (data_dir / LOCK_FILE).read_text() == f"{os.getpid()}\n"
            try:
                DataDirLock.acquire(data_dir)
            except DataDirInUse as exc:
                assert exc.pid == os.getpid() and exc.data_dir == data_dir
            else:
                raise AssertionError("a second lock on the same dir was granted")
        finally:
            lock.release()
        DataDirLock.acquire(data_dir).release()

    def test_a_stale_file_without_a_holder_does_not_block(self, tmp_path):
        (tmp_path / LOCK_FILE).write_text("999999999\n")
        lock = DataDirLock.acquire(tmp_path)
        assert lock.held and (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        lock.release()
        assert not lock.held
