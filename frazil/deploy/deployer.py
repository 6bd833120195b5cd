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

from frazil.build.detect import DEFAULT_HANDLER, check_candidates, check_handler, detect_runtime, parse_handler
from frazil.build.handlers import InspectHandler, inspect_handler
from frazil.build.provided import notes as provided_notes
from frazil.build.unpack import UnpackLimits, unpack_bundle
from frazil.deploy.config import DeployConfig, check_name
from frazil.cluster.blobs import BlobError
from frazil.cluster.interfaces import LayerSource, SharedBlobs
from frazil.errors import BadBundle, BuildFailed, PayloadTooLarge
from frazil.runtimes import get_runtime
from frazil.sandbox.base import SandboxError
from frazil.settings import Settings
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


class CodeUnavailable(SandboxError):
    """A version's bundle cannot be had on this node (no store has it, or it arrived corrupt):
    its cold start fails with this message."""


class Deployer:
    def __init__(self, settings: Settings, functions: FunctionStore, blobs: SharedBlobs, catalog: FunctionCatalog,
                 layers: LayerSource, on_activated=None, inspect_handler: InspectHandler = inspect_handler):
        """`blobs` and `layers` are the node's (frazil.wiring): this data dir alone, or the
        cluster's, fetched on first use. `inspect_handler` looks at the function's module
        (in-process tests, whose fake sandbox runs no code, give one that runs none either)."""
        self.settings = settings
        self.inspect_handler = inspect_handler
        self.functions = functions
        self.blobs = blobs
        self.layers = layers
        self.catalog = catalog
        self.on_activated = on_activated  # async (FunctionVersion) -> None
        self.code_root = settings.data_dir / "code"
        self.builds: dict[tuple[str, int], BuildLog] = {}  # builds running now
        self.unpack_limits = UnpackLimits(max_files=settings.max_bundle_files,
                                          max_total_bytes=settings.max_unpacked_bytes,
                                          max_file_bytes=min(UnpackLimits.max_file_bytes, settings.max_unpacked_bytes))

    async def code_dir(self, version: FunctionVersion) -> Path:
        """Where `version`'s code is unpacked (unpacking it again from its blob if needed, the
        blob fetched first if this node lacks it). Raises CodeUnavailable."""
        path = self.code_root / _code_key(version.bundle_hash, version.handler)
        if not path.is_dir():
            try:
                blob = await self.blobs.local_path(version.bundle_hash)
            except BlobError as exc:
                raise CodeUnavailable(f"the code of {version.function!r} version {version.number} cannot be "
                                      f"had: {exc}") from None
            bundle = await asyncio.to_thread(blob.read_bytes)
            await asyncio.to_thread(self._unpack, bundle, path, version.handler)
        return path

    async def layer_dirs(self, version: FunctionVersion) -> tuple[Path, ...]:
        """The version's layers, each fetched if this node lacks it and checked against its
        recorded digest before its first use in this process (a mismatch raises
        LayerTampered, a SandboxError: the cold start fails with that message)."""
        if not version.layer_key:
            return ()
        return (await self.layers.local(version.layer_key),)

    async def deploy(self, name: str, bundle: bytes, config: DeployConfig) -> FunctionVersion:
        check_name(name)
        if len(bundle) > self.settings.max_bundle_bytes:
            raise PayloadTooLarge(f"the bundle is {len(bundle)} bytes; the limit is {self.settings.max_bundle_bytes}")
        requested = config.handler  # None: looked for at deploy (frazil.build.handlers)
        if requested is not None:
            parse_handler(requested)
        digest = await self.blobs.put(bundle)
        # Unpacked as for the default handler when none is given: the usual outcome, whose
        # code dir is then the one calls use (see the end of the build below).
        unpacked_for = requested or DEFAULT_HANDLER
        code_dir = self.code_root / _code_key(digest, unpacked_for)
        if not code_dir.is_dir():
            await asyncio.to_thread(self._unpack, bundle, code_dir, unpacked_for)
        runtime = config.runtime or detect_runtime(code_dir, requested)
        if runtime is None:
            raise BadBundle("cannot tell the runtime from the bundle (no index.py, index.js or package.json "
                            f"for handler {requested or DEFAULT_HANDLER!r}); give the runtime in the config")
        if requested is not None:
            check_handler(code_dir, runtime, requested)
        else:
            check_candidates(code_dir, runtime)
        number = await self.functions.begin_version(
            name, runtime=runtime, handler=requested or DEFAULT_HANDLER, memory_mb=config.memory,
            timeout_s=config.timeout, env=config.env, resident=config.resident, access=config.resolved_access,
            http=config.http, bundle_hash=digest, bundle_bytes=len(bundle),
            triggers=[t.model_dump(mode="json") for t in config.triggers])
        build_log = self.builds[(name, number)] = BuildLog()
        try:
            layer = await self._build_layer(runtime, code_dir, build_log)
            handler = await self.inspect_handler(self.settings, runtime, code_dir, layer, requested, config.env,
                                                 config.timeout, build_log)
            layer_key = layer.name if layer is not None else None
            chosen_dir = self.code_root / _code_key(digest, handler)
            if handler != unpacked_for and not chosen_dir.is_dir():  # ready before the first call
                await asyncio.to_thread(self._unpack, bundle, chosen_dir, handler)
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
        await self.functions.finish_version(name, number, ok=True, build_log=build_log.text(), layer_key=layer_key,
                                            handler=handler)
        self.catalog.invalidate(name)
        await self.catalog.active(name)  # cached now (whichever deploy won), not on the first call
        version = await self.functions.version(name, number)
        if self.on_activated is not None:
            await self.on_activated(version)
        log.info("deployed %s version %s (%s)", name, number, runtime)
        return version

    async def _build_layer(self, runtime: str, code_dir: Path, build_log: BuildLog) -> Path | None:
        started = time.monotonic()
        for line in await asyncio.to_thread(provided_notes, get_runtime(runtime), code_dir):
            build_log(line)
        layer = await self.layers.ensure(runtime, code_dir, build_log)
        if layer is not None:
            build_log(f"dependency layer {layer.name} ready in {time.monotonic() - started:.1f} s")
        return layer

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
