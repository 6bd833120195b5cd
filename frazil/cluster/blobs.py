"""Content-addressed blobs (code bundles, layer tarballs): the SharedBlobs implementations.

`LocalBlobs` is the embedded mode's: the data dir's blob folder (frazil.store.blobs) and
nothing else. `PostgresBlobs` is the cluster's: PostgreSQL holds every blob, in chunks of
`CHUNK_BYTES` (tables `blobs` and `blob_chunks`, frazil.store.schema), and each node keeps the
blobs it used in its own blob folder as a cache.

Invariants of PostgresBlobs:
- PostgreSQL owns the blobs; a node's folder is only a cache, which may lose any file;
- a blob is complete in PostgreSQL once its `blobs` row exists: the row is inserted in the
  transaction that inserts its chunks, so a crash mid-upload leaves nothing visible (the
  rolled-back chunks vanish with it);
- an upload or a download never holds a whole blob in memory: one chunk at a time;
- a download is hashed as it arrives and lands in the cache only when it matches its digest
  (BlobCorrupt otherwise, and nothing is cached);
- two nodes uploading the same blob at once: the second waits on the first's rows (primary
  keys) and then inserts nothing; the content is the same by construction.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from frazil.store.blobs import BlobStore
from frazil.store.schema import blob_chunks, blobs

CHUNK_BYTES = 1 << 20


class BlobError(Exception):
    def __init__(self, message: str, digest: str):
        super().__init__(message)
        self.digest = digest


class BlobMissing(BlobError):
    """No store has the blob."""


class BlobCorrupt(BlobError):
    """What a store gave does not hash to the blob's digest."""


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read a chunk at a time."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class LocalBlobs:
    """Blobs in this node's data dir only (the embedded mode)."""

    def __init__(self, cache: BlobStore):
        self.cache = cache

    async def put(self, data: bytes) -> str:
        return await asyncio.to_thread(self.cache.put, data)

    async def put_file(self, path: Path) -> str:
        return await asyncio.to_thread(_copy_into, self.cache, path)

    async def local_path(self, digest: str) -> Path:
        if not self.cache.exists(digest):
            raise BlobMissing(f"blob {digest[:12]} is not in the data dir's blob folder", digest)
        return self.cache.path(digest)

    async def exists(self, digest: str) -> bool:
        return self.cache.exists(digest)


def _copy_into(cache: BlobStore, path: Path) -> str:
    digest, _ = file_digest(path)
    if not cache.exists(digest):
        with cache.staging(digest) as out, open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                out.write(chunk)
    return digest


class PostgresBlobs:
    """Blobs in PostgreSQL, cached in this node's blob folder (see the module docstring)."""

    def __init__(self, engine: AsyncEngine, cache: BlobStore):
        self.engine = engine
        self.cache = cache

    async def put(self, data: bytes) -> str:
        digest = await asyncio.to_thread(self.cache.put, data)  # this node has it cached at once
        await self._upload(digest, self.cache.path(digest))
        return digest

    async def put_file(self, path: Path) -> str:
        """Upload a file (a layer tarball) without caching it: the node that made it has what
        it was made from."""
        digest, _ = await asyncio.to_thread(file_digest, path)
        await self._upload(digest, path)
        return digest

    async def exists(self, digest: str) -> bool:
        async with self.engine.connect() as conn:
            found = await conn.scalar(select(blobs.c.sha256).where(blobs.c.sha256 == digest))
        return found is not None

    async def _upload(self, digest: str, path: Path) -> None:
        if await self.exists(digest):
            return
        with open(path, "rb") as f:
            async with self.engine.begin() as conn:
                seq = size = 0
                hasher = hashlib.sha256()
                while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
                    hasher.update(chunk)
                    await conn.execute(pg_insert(blob_chunks).values(sha256=digest, seq=seq, data=chunk)
                                       .on_conflict_do_nothing())
                    seq += 1
                    size += len(chunk)
                if hasher.hexdigest() != digest:  # the file changed under us: store nothing
                    raise BlobCorrupt(f"{path} changed while it was stored as blob {digest[:12]}", digest)
                await conn.execute(pg_insert(blobs).values(sha256=digest, size=size, chunks=seq,
                                                           created_at=time.time()).on_conflict_do_nothing())

    async def local_path(self, digest: str) -> Path:
        if self.cache.exists(digest):
            return self.cache.path(digest)
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(blobs.c.size, blobs.c.chunks).where(blobs.c.sha256 == digest))).first()
            if row is None:
                raise BlobMissing(f"blob {digest[:12]} is neither in this node's cache nor in PostgreSQL", digest)
            with self.cache.staging(digest) as out:  # renamed into place only if the block ends well
                hasher = hashlib.sha256()
                size = 0
                for seq in range(row.chunks):
                    chunk = await conn.scalar(select(blob_chunks.c.data).where(
                        blob_chunks.c.sha256 == digest, blob_chunks.c.seq == seq))
                    if chunk is None:
                        raise BlobCorrupt(f"blob {digest[:12]} lacks its chunk {seq} in PostgreSQL", digest)
                    hasher.update(chunk)
                    size += len(chunk)
                    await asyncio.to_thread(out.write, chunk)
                if hasher.hexdigest() != digest or size != row.size:
                    raise BlobCorrupt(f"blob {digest[:12]} from PostgreSQL does not match its digest", digest)
        return self.cache.path(digest)

    async def count(self) -> int:
        """Blobs stored (for tests and status)."""
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(blobs)))


__all__ = ["BlobCorrupt", "BlobError", "BlobMissing", "CHUNK_BYTES", "LocalBlobs", "PostgresBlobs", "file_digest"]
