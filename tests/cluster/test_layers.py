"""Dependency layers in a cluster (frazil.cluster.layers): built once for the whole cluster
under a PostgreSQL advisory lock, then fetched, checked and used by every other node.

Each node here is a SharedLayers with its own data dir and engine on one real database, in
this process (the build itself runs in the real build sandbox). The end-to-end test of two
real servers sharing a layer is in test_nodes.py."""
from __future__ import annotations

import asyncio
import os

import pytest
from sqlalchemy import select, update

from frazil.build import integrity
from frazil.cluster.blobs import PostgresBlobs
from frazil.cluster.layers import SharedLayers
from frazil.settings import Settings
from frazil.store.blobs import BlobStore
from frazil.store.db import open_engine
from frazil.store.schema import shared_layers

WHEEL = "tinypkg-1.0-py3-none-any.whl"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dependency builds need root (the build sandbox)")


class Log(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def builds(self) -> int:
        return sum(line.startswith("building dependency layer") for line in self)


@pytest.fixture
def project(tmp_path, write_tree, make_wheel):
    """A Python project whose requirements install a wheel it carries (no index needed)."""
    return write_tree(tmp_path / "code", {
        "index.py": "import tinypkg\ndef main(e, c):\n    return tinypkg.VALUE\n",
        "requirements.txt": "--no-index\n--find-links ./wheels\ntinypkg==1.0\n",
        f"wheels/{WHEEL}": make_wheel(),
    })


@pytest.fixture
async def node_factory(postgres_url, tmp_path):
    """`await node_factory(name)` → a SharedLayers node with its own data dir and engine."""
    engines = []

    async def make(name: str) -> SharedLayers:
        settings = Settings(data_dir=tmp_path / name, database_url=postgres_url, build_timeout_s=120)
        engine = await open_engine(settings)
        engines.append(engine)
        return SharedLayers(settings, engine, PostgresBlobs(engine, BlobStore(settings.data_dir / "blobs")))

    yield make
    for engine in engines:
        await engine.dispose()


@needs_root
class TestSharedLayers:
    async def test_two_nodes_deploying_together_build_once(self, node_factory, project):
        """Both ask at once: one builds under the lock, the other waits and fetches what it
        stored; both end with the same, verified layer."""
        a, b = await node_factory("a"), await node_factory("b")
        log_a, log_b = Log(), Log()
        layer_a, layer_b = await asyncio.gather(a.ensure("python3.11", project, log_a),
                                                b.ensure("python3.11", project, log_b))
        assert log_a.builds + log_b.builds == 1, (log_a, log_b)
        assert layer_a.name == layer_b.name
        assert layer_a.parent != layer_b.parent  # each node's own data dir
        assert integrity.tree_digest(layer_a) == integrity.tree_digest(layer_b)
        assert (layer_b / "tinypkg" / "__init__.py").read_text() == "VALUE = 'tiny'\n"
        waiter = log_b if log_a.builds else log_a
        assert any("built for the cluster" in line for line in waiter), waiter

    async def test_a_node_that_lacks_a_layer_fetches_it_at_first_use(self, node_factory, project):
        a, c = await node_factory("a"), await node_factory("c")
        layer = await a.ensure("python3.11", project, Log())
        fetched = await c.local(layer.name)
        assert fetched == c.settings.data_dir / "layers" / layer.name
        assert integrity.digest_path(fetched).read_text() == integrity.digest_path(layer).read_text()
        assert list((c.settings.data_dir / "blobs").rglob("*.tar")) == []  # the tarball is not kept
        log = Log()
        assert await c.ensure("python3.11", project, log) == fetched  # a later deploy there: no build
        assert log.builds == 0

    async def test_a_layer_altered_in_the_database_is_never_used(self, node_factory, project):
        """The stored tarball no longer unpacks to the recorded tree: the node refuses the
        layer (LayerTampered, which fails a cold start) and leaves nothing in its layers folder."""
        a, c = await node_factory("a"), await node_factory("c")
        layer = await a.ensure("python3.11", project, Log())
        async with a.engine.begin() as conn:
            row = (await conn.execute(select(shared_layers).where(shared_layers.c.key == layer.name))).first()
            # A tarball of another tree, stored under the right digest's name, would fail its
            # hash; here the recorded tree digest is what changes.
            await conn.execute(update(shared_layers).where(shared_layers.c.key == layer.name)
                               .values(tree_digest="0" * 64))
        with pytest.raises(integrity.LayerTampered, match="does not match"):
            await c.local(layer.name)
        assert not (c.settings.data_dir / "layers" / layer.name).exists()
        assert row.blob

    async def test_an_unpublished_layer_cannot_be_had(self, node_factory):
        c = await node_factory("c")
        with pytest.raises(integrity.LayerTampered, match="not stored in the cluster"):
            await c.local("f" * 64)
