"""LocalServer: a real server that starts, answers, and leaves nothing once closed."""
import sys

import pytest

from frazil.testing import LocalServer, ServerFailed, UnexpectedStatus, wait_until
from frazil.testing.processes import descendants
from tests.conftest import TEST_SANDBOX, alive

HELLO = "def main(event, context):\n    return 'hello ' + event.get('name', 'world')\n"


def test_deploy_invoke_and_close_leave_nothing(tmp_path):
    """Files and a folder deploy; close() ends every process and removes the data dir it made."""
    folder = tmp_path / "project"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "index.py").write_text(HELLO)
    (folder / "__pycache__" / "junk.pyc").write_bytes(b"not python")
    with LocalServer(env={"FRAZIL_SANDBOX": TEST_SANDBOX}) as srv:
        srv.deploy("from-files", {"index.py": HELLO})
        srv.deploy("from-folder", folder)
        assert srv.invoke("from-files", {"name": "files"})["result"] == "hello files"
        assert srv.invoke("from-folder")["result"] == "hello world"
        with pytest.raises(UnexpectedStatus) as refused:
            srv.invoke("no-such-function")
        assert refused.value.response.status_code == 404
        processes = [srv.pid, *descendants(srv.pid)]
        assert len(processes) > 1  # the server and what it started for the instances
        data_dir, log_path = srv.data_dir, srv.log_path
    wait_until(lambda: not any(alive(pid) for pid in processes), 10, what="every process to end")
    assert not data_dir.exists() and not log_path.exists()


def test_a_server_that_exits_fails_at_once_with_its_log():
    """start() does not wait out its deadline for a server that has exited; the log says why
    and is kept, the data dir the harness made is not."""
    srv = LocalServer(command=[sys.executable, "-c", "print('no luck here'); raise SystemExit(3)"])
    try:
        with pytest.raises(ServerFailed) as failed:
            srv.start(timeout=60)
        assert "exited with 3" in str(failed.value)
        assert str(failed.value).splitlines()[-1] == "no luck here"
        assert failed.value.log_path.read_text() == "no luck here\n"
        assert not srv.data_dir.exists()
    finally:
        srv.log_path.unlink(missing_ok=True)
