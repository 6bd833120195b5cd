"""Content-addressed blob store for code bundles: blobs/<h[:2]>/<sha256>.

A blob is written to a staging file next to its target (`.<sha256>.<random>.tmp`) and renamed
into place. A put that fails removes its staging file; one that never finished (the process
died mid-write) leaves it, and `sweep_staging()` at start removes those.
Folders are 0700 and blobs 0600 (made by mkstemp): bundles are the platform's alone
(frazil.store.datadir).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


STAGING_PREFIX = "."
STAGING_SUFFIX = ".tmp"


class BlobStore:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.exists(digest):
            with self.staging(digest) as f:
                f.write(data)
        return digest

    @contextlib.contextmanager
    def staging(self, digest: str):
        """A file to write the blob `digest` into; renamed into place when the block ends
        without an error, removed when it raises. The caller vouches that what it wrote
        hashes to `digest` (frazil.cluster.blobs checks a fetched blob before it ends)."""
        target = self.path(digest)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        # A staging file of its own: concurrent puts of one blob (same process, other
        # threads) must not write into each other's file.
        fd, staging = tempfile.mkstemp(prefix=f"{STAGING_PREFIX}{digest}.", suffix=STAGING_SUFFIX,
                                       dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(staging, target)  # atomic: readers never see half a blob
        except BaseException:  # ENOSPC, EFBIG, a bad hash, cancellation: the half-written copy must not stay
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)
            raise

    def sweep_staging(self) -> int:
        """Delete the staging files of puts that never finished; answers how many. Only while
        no put runs in this directory (at start): a running put's file looks the same."""
        removed = 0
        for shard in self.root.iterdir():
            if not shard.is_dir():
                continue
            for path in shard.iterdir():
                if path.name.startswith(STAGING_PREFIX) and path.name.endswith(STAGING_SUFFIX) and path.is_file():
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()
