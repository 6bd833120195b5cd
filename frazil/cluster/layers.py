"""Dependency layers: the LayerSource implementations.

`LocalLayers` is the embedded mode's: `frazil.build.layers.ensure_layer` as it is, and a
layer is used only from this data dir.

`SharedLayers` is the cluster's. A layer is built once for the whole cluster:
- the builder holds a PostgreSQL advisory lock keyed by the layer key
  (frazil.cluster.names.layer_lock_key) on a connection of its own, for the whole build and
  publication; whoever waits on the lock looks again when it gets it, finds the layer
  published and fetches it instead of building;
- publishing = the layer's tarball stored as a blob (PostgresBlobs: streamed, in chunks) and
  then its `shared_layers` row (key, blob, tree digest) inserted; the row is the mark of a
  layer every node may use, written only after its blob is complete;
- a node that lacks a published layer fetches the tarball, unpacks it with tarfile's `data`
  filter beside its layers folder, seals it as the builder did (frazil.build.layers.seal_tree),
  checks its tree digest against the recorded one, and renames it into place: a layer that
  does not match is never used (LayerTampered);
- a builder that dies mid-build loses its connection, and PostgreSQL releases its lock with
  it: the next deploy of the same dependencies gets the lock, finds no row, and builds.
  The lock's connection is closed after every use (never returned to the pool), so a lock can
  never outlive its holder's intent, even if the holder is cancelled between lock and unlock.
Nodes must run as the same user: the tree digest covers the owner of every entry.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from frazil.build import integrity
from frazil.build.layers import (INCOMING_DIR, ensure_layer, layers_root, local_layer_lock, manifest_key,
                                 seal_tree, set_aside)
from frazil.cluster.blobs import BlobError, PostgresBlobs
from frazil.cluster.names import layer_lock_key
from frazil.settings import Settings
from frazil.store.schema import shared_layers

log = logging.getLogger(__name__)

TAR_ROOT = "layer"  # the one top folder of a layer's tarball


class LocalLayers:
    """Layers built and used in this data dir (the embedded mode)."""

    def __init__(self, settings: Settings):
        self.settings = settings

    async def ensure(self, runtime: str, code_dir: Path, log: Callable[[str], None]) -> Path | None:
        return await ensure_layer(self.settings, runtime, code_dir, log)

    async def local(self, key: str) -> Path:
        layer = layers_root(self.settings) / key
        await asyncio.to_thread(integrity.verify, layer)  # once per process; LayerTampered if it fails
        return layer


class SharedLayers:
    """Layers built once for the cluster and shared through PostgreSQL (module docstring)."""

    def __init__(self, settings: Settings, engine: AsyncEngine, blobs: PostgresBlobs):
        self.settings = settings
        self.engine = engine
        self.blobs = blobs

    async def ensure(self, runtime: str, code_dir: Path, log: Callable[[str], None]) -> Path | None:
        key = await manifest_key(self.settings, runtime, code_dir)
        if key is None:
            return None
        layer = await self._fetch(key)
        if layer is not None:
            log(f"dependency layer {key[:12]} is already built for the cluster; reusing it")
            return layer
        async with self._build_lock(key, log):
            layer = await self._fetch(key)
            if layer is not None:
                log(f"dependency layer {key[:12]} was built for the cluster meanwhile; reusing it")
                return layer
            layer = await ensure_layer(self.settings, runtime, code_dir, log)
            await self._publish(key, layer)
            log(f"dependency layer {key[:12]} stored for the cluster")
            return layer

    async def local(self, key: str) -> Path:
        layer = await self._fetch(key)
        if layer is None:
            raise integrity.LayerTampered(f"the dependency layer {key[:12]} is not stored in the cluster "
                                          "(redeploy to build it)")
        return layer

    # --- the build lock -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _build_lock(self, key: str, log: Callable[[str], None]):
        conn = await self.engine.connect()
        try:
            lock = layer_lock_key(key)
            got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock})
            if not got:
                log(f"another node is building dependency layer {key[:12]}; waiting for it")
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock})
            await conn.commit()  # the lock is the session's, not a transaction's
            yield
        finally:
            # Closing the connection ends the session, which releases the lock whatever
            # happened (an unlock that a cancellation skipped cannot leave it held).
            await conn.invalidate()
            await conn.close()

    # --- publish and fetch --------------------------------------------------------------------

    async def _publish(self, key: str, layer: Path) -> None:
        tree_digest = integrity.digest_path(layer).read_text().strip()
        fd, tar_path = tempfile.mkstemp(prefix=f"frazil-layer-{key[:12]}-", suffix=".tar")
        os.close(fd)
        try:
            await asyncio.to_thread(_write_tar, layer, Path(tar_path))
            blob = await self.blobs.put_file(Path(tar_path))
        finally:
            os.unlink(tar_path)
        async with self.engine.begin() as conn:
            await conn.execute(pg_insert(shared_layers).values(key=key, blob=blob, tree_digest=tree_digest,
                                                               created_at=time.time()).on_conflict_do_nothing())

    async def _fetch(self, key: str) -> Path | None:
        """The published layer `key` in this data dir (unpacked from its blob if missing or
        not intact here); None when the cluster has not published it."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(shared_layers.c.blob, shared_layers.c.tree_digest)
                                      .where(shared_layers.c.key == key))).first()
        if row is None:
            return None
        async with local_layer_lock(self.settings, key) as final:
            if final.is_dir():
                try:
                    await asyncio.to_thread(integrity.verify, final)
                    return final
                except integrity.LayerTampered as exc:
                    log.warning("%s; fetching it again from the cluster", exc.args[0])
                    await asyncio.to_thread(set_aside, final)
            try:
                tarball = await self.blobs.local_path(row.blob)
            except BlobError as exc:
                raise integrity.LayerTampered(f"the dependency layer {key[:12]} cannot be fetched: {exc}") from None
            try:
                await asyncio.to_thread(_unpack, tarball, final, row.tree_digest)
            finally:
                # The unpacked layer is what this node keeps; its tarball would only double the disk.
                Path(tarball).unlink(missing_ok=True)
            return final


def _write_tar(layer: Path, tar_path: Path) -> None:
    with tarfile.open(tar_path, "w") as tar:
        tar.add(layer, arcname=TAR_ROOT, recursive=True)


def _unpack(tarball: Path, final: Path, expected: str) -> None:
    incoming = final.parent / INCOMING_DIR
    incoming.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=incoming))
    try:
        with tarfile.open(tarball, "r") as tar:
            # `data`: no absolute paths, no escaping links, no devices, no setuid bits.
            tar.extractall(staging, filter="data")
        tree = staging / TAR_ROOT
        seal_tree(tree)
        found = integrity.tree_digest(tree)
        if found != expected:
            raise integrity.LayerTampered(f"the dependency layer {final.name[:12]} fetched from the cluster does "
                                          "not match its recorded digest; it will not be used")
        integrity.record_value(found, final)  # and counts as verified in this process: it just matched
        os.rename(tree, final)
    finally:
        for dirpath, _, _ in os.walk(staging):
            os.chmod(dirpath, 0o755)
        shutil.rmtree(staging, ignore_errors=True)
