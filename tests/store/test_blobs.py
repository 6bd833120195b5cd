"""The content-addressed blob store."""
import hashlib
from concurrent.futures import ThreadPoolExecutor

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
