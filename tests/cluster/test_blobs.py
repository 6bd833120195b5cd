"""Shared blobs in PostgreSQL (frazil.cluster.blobs): stored once, fetched by a node that lacks
them, checked against their digest, streamed a chunk at a time. Two nodes here are two
PostgresBlobs, each with its own engine and its own cache folder, on one real database."""
from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from sqlalchemy import update

from frazil.cluster.blobs import CHUNK_BYTES, BlobCorrupt, BlobMissing, PostgresBlobs
from frazil.settings import Settings
from frazil.store.blobs import BlobStore
from frazil.store.db import open_engine
from frazil.store.schema import blob_chunks


@pytest.fixture
async def node_factory(postgres_url, tmp_path):
    """`await node_factory(name)` → a PostgresBlobs with its own engine and cache folder."""
    engines = []

    async def make(name: str) -> PostgresBlobs:
        engine = await open_engine(Settings(data_dir=tmp_path / name, database_url=postgres_url))
        engines.append(engine)
        return PostgresBlobs(engine, BlobStore(tmp_path / name / "blobs"))

    yield make
    for engine in engines:
        await engine.dispose()


class TestPostgresBlobs:
    async def test_a_blob_put_on_one_node_is_fetched_by_another(self, node_factory):
        """Node B has nothing cached; it fetches A's bundle from PostgreSQL, and caches it."""
        a, b = await node_factory("a"), await node_factory("b")
        data = os.urandom(1000)
        digest = await a.put(data)
        assert digest == hashlib.sha256(data).hexdigest()
        assert not b.cache.exists(digest)
        assert await b.exists(digest)
        path = await b.local_path(digest)
        assert path.read_bytes() == data
        assert b.cache.exists(digest)

    async def test_a_large_file_goes_in_chunks_and_comes_back_whole(self, node_factory, tmp_path):
        """A file of several chunks (not a multiple of the chunk size) is streamed both ways."""
        a, b = await node_factory("a"), await node_factory("b")
        source = tmp_path / "big.tar"
        with open(source, "wb") as f:
            for _ in range(3):
                f.write(os.urandom(CHUNK_BYTES))
            f.write(os.urandom(12345))
        digest = await a.put_file(source)
        assert not a.cache.exists(digest)  # put_file does not copy what its caller already has
        fetched = await b.local_path(digest)
        assert hashlib.sha256(fetched.read_bytes()).hexdigest() == digest
        assert fetched.stat().st_size == source.stat().st_size

    async def test_putting_twice_and_from_two_nodes_at_once_stores_one_blob(self, node_factory):
        a, b = await node_factory("a"), await node_factory("b")
        data = os.urandom(CHUNK_BYTES + 10)
        digests = await asyncio.gather(a.put(data), b.put(data), a.put(data))
        assert len(set(digests)) == 1
        assert await a.count() == 1

    async def test_an_unknown_digest_is_missing(self, node_factory):
        a = await node_factory("a")
        with pytest.raises(BlobMissing):
            await a.local_path("0" * 64)

    async def test_a_blob_altered_in_the_database_is_refused_and_not_cached(self, node_factory):
        """A chunk changed behind the platform's back: the fetch fails, nothing stays cached
        (not even a staging file), and a later fetch fails again rather than serve it."""
        a, b = await node_factory("a"), await node_factory("b")
        digest = await a.put(os.urandom(CHUNK_BYTES * 2))
        async with a.engine.begin() as conn:
            await conn.execute(update(blob_chunks).where(blob_chunks.c.sha256 == digest, blob_chunks.c.seq == 1)
                               .values(data=os.urandom(CHUNK_BYTES)))
        for _ in range(2):
            with pytest.raises(BlobCorrupt):
                await b.local_path(digest)
        assert not b.cache.exists(digest)
        assert [p for p in b.cache.root.rglob("*") if p.is_file()] == []
