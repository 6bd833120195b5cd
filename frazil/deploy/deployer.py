"""A deploy: store the bundle, unpack it once, build its dependency layer, activate it.

Every deploy that gets past unpacking is a new numbered version with a build log; only a
successful build becomes active, so a failed one never replaces what is serving.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path

from frazil.build.layers import ensure_layer
from frazil.build.detect import DEFAULT_HANDLER, check_handler, detect_runtime, parse_handler
from frazil.build.unpack import UnpackLimits, unpack_bundle
from frazil.deploy.config import DeployConfig, check_name
from frazil.errors import BadBundle, BuildFailed, PayloadTooLarge
from frazil.settings import Settings
from frazil.store.blobs import BlobStore
from frazil.store.catalog import FunctionCatalog
from frazil.store.functions import FunctionStore
from frazil.store.models import FunctionVersion

log = logging.getLogger(__name__)


class BuildLog:
    """The log of one build, readable while it runs."""

    def __init__(self):
        self.lines: list[str] = []
        self.done = asyncio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


class Deployer:
    def __init__(self, settings: Settings, functions: FunctionStore, blobs: BlobStore, catalog: FunctionCatalog,
                 on_activated=None):
        self.settings = settings
        self.functions = functions
        self.blobs = blobs
        self.catalog = catalog
        self.on_activated = on_activated  # async (FunctionVersion) -> None
        self.code_root = settings.data_dir / "code"
        self.builds: dict[tuple[str, int], BuildLog] = {}  # builds running now
        self.unpack_limits = UnpackLimits(max_files=settings.max_bundle_files,
                                          max_total_bytes=settings.max_unpacked_bytes,
                                          max_file_bytes=min(UnpackLimits.max_file_bytes, settings.max_unpacked_bytes))

    def code_dir(self, version: FunctionVersion) -> Path:
        """Where `version`'s code is unpacked (unpacking it again from its blob if needed)."""
        path = self.code_root / _code_key(version.bundle_hash, version.handler)
        if not path.is_dir():
            self._unpack(self.blobs.get(version.bundle_hash), path, version.handler)
        return path

    def layer_dirs(self, version: FunctionVersion) -> tuple[Path, ...]:
        if not version.layer_key:
            return ()
        return (self.settings.data_dir / "layers" / version.layer_key,)

    async def deploy(self, name: str, bundle: bytes, config: DeployConfig) -> FunctionVersion:
        check_name(name)
        if len(bundle) > self.settings.max_bundle_bytes:
            raise PayloadTooLarge(f"the bundle is {len(bundle)} bytes; the limit is {self.settings.max_bundle_bytes}")
        parse_handler(config.handler)
        digest = await asyncio.to_thread(self.blobs.put, bundle)
        code_dir = self.code_root / _code_key(digest, config.handler)
        if not code_dir.is_dir():
            await asyncio.to_thread(self._unpack, bundle, code_dir, config.handler)
        runtime = config.runtime or detect_runtime(code_dir, config.handler)
        if runtime is None:
            raise BadBundle("cannot tell the runtime from the bundle (no index.py, index.js or package.json "
                            f"for handler {config.handler!r}); give the runtime in the config")
        check_handler(code_dir, runtime, config.handler)
        number = await self.functions.begin_version(
            name, runtime=runtime, handler=config.handler, memory_mb=config.memory, timeout_s=config.timeout,
            env=config.env, resident=config.resident, public=config.public, bundle_hash=digest,
            bundle_bytes=len(bundle))
        build_log = self.builds[(name, number)] = BuildLog()
        try:
            layer_key = await self._build_layer(runtime, code_dir, build_log)
        except BuildFailed as exc:
            build_log(f"build failed: {exc.message}")
            await self.functions.finish_version(name, number, ok=False, build_log=build_log.text(), error=exc.message)
            raise BuildFailed(f"version {number} of {name!r} was not activated: {exc.message}", version=number) from None
        except BaseException as exc:
            await self.functions.finish_version(name, number, ok=False, build_log=build_log.text(),
                                                error=f"the build was interrupted: {type(exc).__name__}")
            raise
        finally:
            build_log.done.set()
            self.builds.pop((name, number), None)
        await self.functions.finish_version(name, number, ok=True, build_log=build_log.text(), layer_key=layer_key)
        self.catalog.invalidate(name)
        await self.catalog.active(name)  # cached now (whichever deploy won), not on the first call
        version = await self.functions.version(name, number)
        if self.on_activated is not None:
            await self.on_activated(version)
        log.info("deployed %s version %s (%s)", name, number, runtime)
        return version

    async def _build_layer(self, runtime: str, code_dir: Path, build_log: BuildLog) -> str | None:
        started = time.monotonic()
        layer = await ensure_layer(self.settings, runtime, code_dir, build_log)
        if layer is not None:
            build_log(f"dependency layer {layer.name} ready in {time.monotonic() - started:.1f} s")
        return layer.name if layer is not None else None

    def _unpack(self, bundle: bytes, code_dir: Path, handler: str) -> None:
        try:
            unpack_bundle(bundle, code_dir, self.unpack_limits, handler=handler)
        except FileExistsError:
            pass  # a concurrent deploy of the same bundle unpacked it first: same content


def _code_key(bundle_hash: str, handler: str) -> str:
    # The handler decides whether a lone top folder is stripped, so it is part of the key.
    if handler == DEFAULT_HANDLER:
        return bundle_hash
    return hashlib.sha256(f"{bundle_hash}\0{handler}".encode()).hexdigest()
