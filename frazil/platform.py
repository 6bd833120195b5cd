"""The running platform: builds every part from the settings and starts/stops them in order."""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from frazil.data.service import DataService
from frazil.deploy.deployer import Deployer
from frazil.metrics import Metrics
from frazil.pool.pool import InstancePool
from frazil.sandbox.select import make_sandbox
from frazil.scheduler.admission import Admission
from frazil.sdk.host import SdkHost
from frazil.scheduler.dispatcher import Dispatcher
from frazil.scheduler.invoker import Invoker
from frazil.settings import ADMIN_KEY_FILE, Settings
from frazil.store.blobs import BlobStore
from frazil.store.catalog import FunctionCatalog
from frazil.store.db import open_engine
from frazil.store.functions import FunctionStore
from frazil.store.ids import new_id
from frazil.store.invocations import InvocationStore
from frazil.store.record_writer import RecordWriter

log = logging.getLogger(__name__)


def load_admin_key(settings: Settings) -> str:
    """FRAZIL_ADMIN_KEY when set; else the key kept in <data-dir>/admin.key (made at first start)."""
    if settings.admin_key:
        return settings.admin_key
    path: Path = settings.data_dir / ADMIN_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


class Platform:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.node_id = new_id()[-12:]
        # The sandbox is made (and probed) first: a machine that cannot isolate fails at once.
        self.sandbox = make_sandbox(settings)
        self.admin_key = load_admin_key(settings)
        self.metrics = Metrics()

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = await open_engine(s)
        self.functions = FunctionStore(self.engine)
        self.invocations = InvocationStore(self.engine)
        self.records = RecordWriter(self.invocations)
        self.blobs = BlobStore(s.data_dir / "blobs")
        self.catalog = FunctionCatalog(self.functions)
        self.deployer = Deployer(s, self.functions, self.blobs, self.catalog, on_activated=self._activated)
        await self.sandbox.start()
        self.data = DataService(self.engine, s)
        self.sdk = SdkHost(self)
        self.pool = InstancePool(s, self.sandbox, code_dir=self.deployer.code_dir,
                                 layer_dirs=self.deployer.layer_dirs, sdk_handler=self.sdk.handle,
                                 on_event=self._instance_event)
        self.admission = Admission(s)
        self.invoker = Invoker(s, self.catalog, self.pool, self.admission, self.records, self.metrics)
        self.dispatcher = Dispatcher(s, self.invocations, self.catalog, self.admission, self.invoker,
                                     owner=self.node_id)
        self.metrics.bind(self.admission, self.pool)
        requeued = await self.invocations.requeue_orphans()
        if requeued:
            log.warning("re-queued %d async invocations that were running when the platform stopped", requeued)
        self.records.start()
        self.pool.start()
        self.dispatcher.start()
        for version in await self.functions.list_active():
            if version.resident:
                await self.pool.ensure_resident(version)

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.pool.close()
        await self.sdk.close()
        await self.sandbox.close()
        await self.records.close()
        await self.engine.dispose()

    async def _activated(self, version) -> None:
        self.pool.retire(version.function, keep_version=version.number)
        if version.resident:
            await self.pool.ensure_resident(version)

    async def delete_function(self, name: str) -> bool:
        deleted = await self.functions.delete(name)
        self.catalog.invalidate(name)
        self.pool.retire(name)
        return deleted

    def _instance_event(self, kind: str, instance) -> None:
        if kind == "created":
            self.metrics.sandbox_create.observe(instance.stats["create_ms"] / 1000)
        elif kind == "destroyed":
            self.metrics.sandbox_destroy.observe(instance.stats["destroy_ms"] / 1000)
