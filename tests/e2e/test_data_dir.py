"""The data dir is the platform's alone: a real server on a fresh dir, and on a dir left open
(0755 folders, 0644 files) by an older frazil or by hand, ends up with the dir 0700 and every
database, key and blob file 0600 -- and its functions still deploy, build-free, and run."""
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from frazil.testing.server import HTTP_TIMEOUT_S
from tests.conftest import FRAZIL

HELLO = {"index.py": "def main(event, context):\n    return {'hello': event.get('name')}\n"}


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def private_files(data_dir: Path) -> list[Path]:
    """The files that must be 0600: databases (with SQLite's companions), the key, blobs."""
    files = [p for p in data_dir.iterdir() if p.name.startswith("frazil.db") or p.name == "admin.key"]
    return files + [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]


def assert_private(data_dir: Path) -> None:
    assert mode(data_dir) == 0o700
    files = private_files(data_dir)
    names = {p.name for p in files}
    # WAL mode: the companions exist while the server runs, and are covered too.
    assert {"frazil.db", "frazil.db-wal", "frazil.db-shm", "admin.key"} <= names, names
    assert any(p.parent.parent.name == "blobs" for p in files), "no blob was stored"
    wrong = {str(p.relative_to(data_dir)): oct(mode(p)) for p in files if mode(p) != 0o600}
    assert not wrong, f"not 0600: {wrong}"
    blob_dirs = [p for p in (data_dir / "blobs").rglob("*") if p.is_dir()] + [data_dir / "blobs"]
    assert all(mode(p) == 0o700 for p in blob_dirs), {str(p): oct(mode(p)) for p in blob_dirs}


def use(srv, name: str) -> None:
    """Deploy, invoke, and write the BaaS tables (a user), so every kind of file exists."""
    srv.deploy(name, HELLO)
    assert srv.invoke(name, {"name": "x"})["result"] == {"hello": "x"}
    r = httpx.post(f"{srv.url}/v1/auth/register", json={"username": f"{name}-user", "password": "password1"},
                   timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text


def test_a_fresh_data_dir_is_private(server_factory, unique_name):
    """A server on a data dir it creates: the dir 0700, databases, key and blobs 0600."""
    srv = server_factory()
    use(srv, unique_name)
    assert_private(srv.data_dir)


def test_an_open_data_dir_is_tightened_at_start(server_factory, unique_name):
    """A data dir left 0755/0644 is tightened when the server starts, and what it holds
    still works: the function deployed before still runs, new deploys work too."""
    srv = server_factory()
    use(srv, unique_name)
    srv.stop()
    os.chmod(srv.data_dir, 0o755)
    for path in private_files(srv.data_dir):
        os.chmod(path, 0o644)
    for path in (srv.data_dir / "blobs").rglob("*"):
        if path.is_dir():
            os.chmod(path, 0o755)
    os.chmod(srv.data_dir / "blobs", 0o755)
    assert mode(srv.data_dir / "admin.key") == 0o644

    srv.start()
    assert srv.invoke(unique_name, {"name": "again"})["result"] == {"hello": "again"}
    use(srv, unique_name + "-2")
    assert_private(srv.data_dir)


def test_a_precreated_open_data_dir_is_tightened(server_factory, tmp_path):
    """An operator's own empty 0755 data dir becomes 0700 at the first start."""
    data_dir = tmp_path / "mine"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    srv = server_factory(data_dir=data_dir)
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "admin.key") == 0o600
    assert mode(data_dir / "frazil.db") == 0o600
    srv.stop()


def test_a_data_dir_of_another_user_is_a_clear_error():
    """`frazil server` run by a user who cannot tighten the data dir stops at once, saying so."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a data dir that belongs to another user")
    parent = Path(tempfile.mkdtemp(prefix="frazil-owner-"))
    try:
        os.chmod(parent, 0o755)
        data_dir = parent / "data"
        data_dir.mkdir(mode=0o755)
        os.chmod(data_dir, 0o755)
        result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", FRAZIL, "server",
                                 "--port", "9", "--data-dir", str(data_dir)], capture_output=True, text=True,
                                timeout=60, env={**{k: v for k, v in os.environ.items() if not k.startswith("FRAZIL_")},
                                                 "FRAZIL_SANDBOX": "plain"})
        assert result.returncode == 2, result.stderr
        assert "cannot start" in result.stderr and "cannot be made private" in result.stderr, result.stderr
        assert mode(data_dir) == 0o755
    finally:
        shutil.rmtree(parent)
