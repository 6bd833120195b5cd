"""The whole platform in the test's own event loop: the real app (fast path in front), the
real store on SQLite, the real scheduler and pool, over a `FakeSandbox`; HTTP goes through
`httpx.ASGITransport`, and the app's lifespan runs as a server would run it.

`frazil_factory(**settings)` (a fixture) starts one and stops it after the test; `frazil`
is one with the defaults below. Import both into a folder's conftest.py to use them.

The async dispatcher runs in burst mode, as arq's worker does in tests: its background loop
is stopped after start, and a test runs the queue with `dispatcher.drain()`, which returns
what it did. `frazil_factory(dispatch_loop=True)` keeps the loop, as a server runs it.
"""
from __future__ import annotations

import asyncio
import functools
import io
import json
import ssl
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from frazil.api.app import create_app
from frazil.api.fastpath import FastPath
from frazil.platform import Platform
from frazil.settings import Settings
from frazil.store.models import Access, FunctionVersion, VersionStatus
from frazil.testing.waiting import SLOWDOWN
from tests.inproc.fake_sandbox import FakeSandbox, fake_inspect_handler

ADMIN_KEY = "test-admin-key"
CODE = {"index.py": "def main(event, context):\n    return event\n"}  # never run: the fake reads events
# Small windows so that refusals and expiries come within a test's few hundred ms.
DEFAULTS = dict(admin_key=ADMIN_KEY, sync_retry_s=0.2, async_retry_s=5.0, async_retry_backoff_s=0.01,
                tier_limit_128=4, tier_limit_256=1)


class Lifespan:
    """Runs an ASGI app's lifespan protocol, as a server does around serving requests."""

    def __init__(self, app):
        self._app = app
        self._to_app: asyncio.Queue = asyncio.Queue()
        self._from_app: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def _step(self, message: str) -> None:
        await self._to_app.put({"type": f"lifespan.{message}"})
        reply = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait([reply, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not reply.done():  # the app's lifespan ended without answering: show why
            reply.cancel()
            self._task.result()
            raise RuntimeError(f"the app's lifespan ended during {message}")
        if reply.result()["type"] != f"lifespan.{message}.complete":
            raise RuntimeError(f"lifespan {message} failed: {reply.result().get('message')}")

    async def __aenter__(self):
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.create_task(self._app(scope, self._to_app.get, self._from_app.put))
        await self._step("startup")
        return self

    async def __aexit__(self, *exc) -> None:
        await self._step("shutdown")
        await self._task


def make_version(function: str = "fn", number: int = 1, **fields) -> FunctionVersion:
    """A ready version as the store would hand it out, for tests that skip deploying."""
    values = dict(function=function, number=number, status=VersionStatus.READY, runtime="python3.11",
                  handler="index.main", memory_mb=128, timeout_s=10.0, env={}, resident=0, access=Access.ADMIN, http=False,
                  bundle_hash="0" * 64, bundle_bytes=0, layer_key=None, created_at=time.time())
    return FunctionVersion(**{**values, **fields})


def zip_files(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


@dataclass
class InProcess:
    platform: Platform
    sandbox: FakeSandbox
    fast: httpx.AsyncClient  # through the fast path, as the server is run
    documented: httpx.AsyncClient  # straight to the FastAPI app: the documented routes

    @property
    def pool(self):
        return self.platform.pool

    @property
    def dispatcher(self):
        return self.platform.dispatcher

    async def deploy(self, name: str, files: dict | None = None, **config) -> dict:
        response = await self.fast.put(f"/v1/functions/{name}", files={"bundle": ("b.zip", zip_files(files or CODE))},
                                       data={"config": json.dumps(config)})
        assert response.status_code == 200, response.text
        return response.json()

    async def invoke(self, name: str, event=None, *, mode: str = "sync", expect: int | None = 200) -> dict:
        response = await self.fast.post(f"/v1/functions/{name}/invoke", params={"mode": mode},
                                        content=json.dumps({} if event is None else event))
        if expect is not None:
            assert response.status_code == expect, response.text
        return response.json()

    async def record(self, invocation_id: str) -> dict:
        response = await self.fast.get(f"/v1/invocations/{invocation_id}")
        assert response.status_code == 200, response.text
        return response.json()["invocation"]


async def eventually(predicate, timeout_s: float = 5.0, what: str = "the condition"):
    """Poll `predicate` (cheap, no I/O) until truthy, or fail after `timeout_s`: for what
    happens in a task the test cannot await (e.g. a destroy the pool started on its own)."""
    timeout_s *= SLOWDOWN
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not (value := predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.002)  # a poll interval: let the loop run the tasks we wait for
    return value


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    return _create_ssl_context()


_create_ssl_context = httpx.create_ssl_context


@pytest.fixture
async def frazil_factory(tmp_path_factory, monkeypatch):
    """`await frazil_factory(**settings)`: a started in-process platform; stopped after the test."""
    stack: list[tuple[Lifespan, list[httpx.AsyncClient]]] = []
    # Each platform's SDK proxy loads the CA store at start (a tenth of a second here, most of
    # a platform's start); the fake runtimes never call out, so the platforms share one.
    monkeypatch.setattr(httpx, "create_ssl_context", _shared_ssl_context)

    async def start(dispatch_loop: bool = False, **overrides) -> InProcess:
        data_dir: Path = tmp_path_factory.mktemp("frazil") / "data"
        settings = Settings(**{**DEFAULTS, "data_dir": data_dir, **overrides})
        sandbox = FakeSandbox()
        platform = Platform(settings, sandbox=sandbox, inspect_handler=fake_inspect_handler)
        app = create_app(settings, platform)
        lifespan = Lifespan(FastPath(app))  # the fast path hands the lifespan to the app
        await lifespan.__aenter__()
        if not dispatch_loop:
            await platform.dispatcher.stop()  # nothing is queued yet: only the idle loop ends
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://frazil",
                                     headers=headers, timeout=10) for asgi in (FastPath(app), app)]
        stack.append((lifespan, clients))
        return InProcess(platform, sandbox, *clients)

    yield start
    for lifespan, clients in reversed(stack):
        for client in clients:
            await client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def frazil(frazil_factory) -> InProcess:
    return await frazil_factory()
