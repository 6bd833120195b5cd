"""The content-addressed blob store."""
import errno
import hashlib
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from frazil.store.blobs import BlobStore


def test_put_is_content_addressed_and_idempotent(tmp_path):
    store = BlobStore(tmp_path)
    digest = store.put(b"bundle")
    assert digest == hashlib.sha256(b"bundle").hexdigest()
    assert store.put(b"bundle") == digest and store.get(digest) == b"bundle"


def test_concurrent_puts_of_one_blob_do_not_collide(tmp_path):
    """Many threads storing the same bytes at once all succeed and leave one whole blob."""
    store = BlobStore(tmp_path)
    data = b"x" * 1_000_000
    with ThreadPoolExecutor(8) as pool:
        digests = set(pool.map(lambda _: store.put(data), range(32)))
    assert digests == {hashlib.sha256(data).hexdigest()}
    assert store.get(digests.pop()) == data
    assert not [p for p in tmp_path.rglob(".*.tmp")], "a staging file was left behind"


# A child process that stores a blob larger than its file-size limit (RLIMIT_FSIZE): the write
# fails with EFBIG, as a full disk fails with ENOSPC (Python ignores SIGXFSZ). With SIGXFSZ
# back at its default action the kernel kills the child mid-write instead, as a crash would.
PUT_OVER_LIMIT = """
import resource, signal, sys
from pathlib import Path
from frazil.store.blobs import BlobStore
store = BlobStore(Path(sys.argv[1]))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN if sys.argv[2] == "fail" else signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
try:
    store.put(b"x" * 1_000_000)
except OSError as exc:
    print(exc.errno)
"""


def put_over_limit(root: Path, mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PUT_OVER_LIMIT, str(root), mode], capture_output=True, text=True,
                          timeout=60)


def staging_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_a_failed_put_removes_its_staging_file(tmp_path):
    """A write that fails (EFBIG here, ENOSPC on a full disk) raises and leaves nothing behind."""
    done = put_over_limit(tmp_path, "fail")
    assert done.stdout.strip() == str(errno.EFBIG), done.stderr
    assert staging_files(tmp_path) == []


def test_sweep_removes_what_a_crashed_put_left(tmp_path):
    """A process killed mid-write leaves its staging file; the sweep removes it and only it."""
    store = BlobStore(tmp_path)
    kept = store.put(b"kept")
    done = put_over_limit(tmp_path, "crash")
    assert done.returncode == -signal.SIGXFSZ, done
    assert len(staging_files(tmp_path)) == 1
    assert store.sweep_staging() == 1
    assert staging_files(tmp_path) == [] and store.get(kept) == b"kept"


def test_server_start_sweeps_staging_leftovers(tmp_path, server_factory):
    """A server started on a data dir with a crashed put's leftover removes it, and serves."""
    data_dir = tmp_path / "data"
    assert put_over_limit(data_dir / "blobs", "crash").returncode == -signal.SIGXFSZ
    assert len(staging_files(data_dir)) == 1
    srv = server_factory(data_dir=data_dir)
    assert staging_files(data_dir) == []
    srv.deploy("after-sweep", {"index.py": "def main(event, context):\n    return 1\n"})
    assert srv.invoke("after-sweep")["result"] == 1
