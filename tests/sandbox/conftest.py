"""Fixtures for the isolated sandbox: a started sandbox per test, and instances running the
real Python loop, driven over the protocol by a small client.

How instances are made is the `creation` fixture, one of CREATION_PATHS: "exec" (a fresh
interpreter exec'd in each sandbox), "zygote" (forked from the Python zygote, then given its
code), "prebuilt" (generic instances built ahead of time, given their code on create), "layer"
(every instance has a dependency layer, and is one that imported it ahead: `prime_layer`). A
test module runs on several with `pytestmark = pytest.mark.parametrize("creation", [...])`;
the default is "exec".

Every test here runs hostile code, so nothing runs unless the probe says the machine can
sandbox (the test is skipped with the probe's message otherwise). Fixtures destroy what they
made; waits poll with deadlines, never sleep.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import textwrap
import time
from pathlib import Path

import pytest

from frazil.runtimes import PYTHON, protocol
from frazil.sandbox.base import InstanceShape, SandboxSpec, SandboxUnavailable
from frazil.settings import Settings
from frazil.testing.waiting import SLOWDOWN

DISPATCH_HANDLER = '''
def main(event, context):
    namespace = {"event": event}
    exec(event["code"], namespace)
    return namespace.get("result")
'''


def make_code_dir(root: Path, files: dict[str, str] | None = None) -> Path:
    """A world-readable code dir (pytest's tmp dirs are 0700; instances run as other uids)."""
    code = root / f"code-{secrets.token_hex(4)}"
    code.mkdir(parents=True)
    for name, text in (files or {"index.py": DISPATCH_HANDLER}).items():
        path = code / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        path.chmod(0o644)
    for path in [code, *code.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    p = code
    while p != p.parent and p != Path("/tmp"):  # let the uid reach it: open the parents too
        p.chmod(p.stat().st_mode | 0o005)
        p = p.parent
    return code


def init_message(paths, handler: str = "index.main") -> dict:
    """The platform's init for a test function whose runtime sees its dirs at `paths`."""
    return {"type": protocol.INIT, "handler": handler, "code_dir": paths.code_dir,
            "layer_dirs": list(paths.layer_dirs), "env": {}, "function": "t", "version": 1, "memory_mb": 128}


class RuntimeClient:
    """The platform's side of one instance's channel, reduced to what tests need."""

    def __init__(self, proc):
        self.proc = proc
        self._decoder = protocol.FrameDecoder()
        self._frames: list[dict] = []
        self._loop = asyncio.get_running_loop()
        self.hello: dict | None = None

    async def recv(self, timeout: float = 10.0) -> dict | None:
        """The next message, or None when the runtime closed the channel (`timeout` s, times
        SLOWDOWN)."""
        deadline = self._loop.time() + timeout * SLOWDOWN
        while not self._frames:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise TimeoutError("no message from the runtime")
            data = await asyncio.wait_for(self._loop.sock_recv(self.proc.channel, 65536), remaining)
            if not data:
                return None
            self._frames += [json.loads(p) for p in self._decoder.feed(data)]
        return self._frames.pop(0)

    async def send(self, message: dict) -> None:
        await self._loop.sock_sendall(self.proc.channel, protocol.encode(message))

    async def start(self, handler: str = "index.main", timeout: float = 10.0, *, sent: bool = False) -> None:
        """Read hello, send init (`sent`: create() was given it as its first frame), read ready."""
        self.hello = await self.recv(timeout)
        assert self.hello and self.hello["type"] == protocol.HELLO, self.hello
        if not sent:
            await self.send(init_message(self.proc.paths, handler))
        ready = await self.recv(timeout)
        assert ready and ready["type"] == protocol.READY, ready

    async def invoke(self, event, timeout: float = 10.0) -> dict | None:
        """The result message, or None if the runtime died."""
        await self.send({"type": protocol.INVOKE, "id": secrets.token_hex(4), "event": event,
                         "deadline_ms": (time.time() + timeout) * 1000, "cold": False})
        return await self.recv(timeout)

    async def run(self, code: str, timeout: float = 10.0):
        """Execute `code` inside the instance; returns its `result` variable."""
        reply = await self.invoke({"code": textwrap.dedent(code)}, timeout)
        assert reply is not None, "the runtime died"
        assert reply["ok"], reply["error"]["stack"]
        return reply["result"]

    def output(self) -> str:
        chunks = []
        while True:
            try:
                data = os.read(self.proc.output_fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode(errors="replace")


# (Layers imported ahead only where the path is "layer": elsewhere a create with layers would
# take such an instance from the second one on.)
CREATION_PATHS = {
    "exec": dict(sandbox_zygote=False, sandbox_prebuilt=0, sandbox_prebuilt_node=0, sandbox_layer_prebuilt_mb=0),
    "zygote": dict(sandbox_zygote=True, sandbox_prebuilt=0, sandbox_prebuilt_node=0, sandbox_layer_prebuilt_mb=0),
    # At most the floor per shape: tests count on fixed targets (demand: test_prebuilt_demand).
    "prebuilt": dict(sandbox_zygote=True, sandbox_prebuilt=2, sandbox_prebuilt_node=1, sandbox_prebuilt_max=2,
                     sandbox_layer_prebuilt_mb=0),
    "layer": dict(sandbox_zygote=True, sandbox_prebuilt=0, sandbox_prebuilt_node=0, sandbox_layer_prebuilt_mb=256),
}
# The "layer" path's default layer: one package, with the dist-info pip would have written.
TEST_LAYER = {"testlayer/__init__.py": "import json\nVALUE = json.dumps({'layer': True})\n",
              "testlayer-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: testlayer\nVersion: 1.0\n",
              "testlayer-1.0.dist-info/RECORD": "testlayer/__init__.py,,\ntestlayer-1.0.dist-info/RECORD,,\n"}
ALL_PATHS = pytest.mark.parametrize("creation", list(CREATION_PATHS))
EXEC_AND_PREBUILT = pytest.mark.parametrize("creation", ["exec", "prebuilt"])


@pytest.fixture
def creation() -> str:
    return "exec"


@pytest.fixture
def settings(tmp_path, creation) -> Settings:
    return Settings(data_dir=tmp_path / "data", sandbox="isolated", **CREATION_PATHS[creation])


def instance_cgroups(sandbox) -> list[str]:
    """Cgroups of instances made for a spec (not the generic ones built ahead of time)."""
    from frazil.sandbox.instance import GENERIC_PREFIX

    return [n for n in sandbox.cgroups.instance_names() if not n.startswith(GENERIC_PREFIX)]


def probed_sandbox(settings: Settings):
    """An IsolatedSandbox (not started) for `settings`; skips the test when the machine cannot sandbox."""
    from frazil.sandbox.isolated import IsolatedSandbox

    try:
        box = IsolatedSandbox.probe_and_create(settings)
    except SandboxUnavailable as exc:
        pytest.skip(str(exc))
    keep_tiers_ready(box, settings)
    return box


def keep_tiers_ready(box, settings: Settings) -> None:
    """What the instance pool asks of the sandbox at its start (InstancePool._keep_tiers_ready)."""
    if settings.sandbox_prebuilt > 0:
        for tier in settings.tiers.values():
            box.keep_ready(InstanceShape(PYTHON, tier.memory_mb, tier.cpu, settings.tmp_mb, settings.pids_max),
                           settings.sandbox_prebuilt)


@pytest.fixture
def sandbox_factory():
    return probed_sandbox


@pytest.fixture
async def sandbox(settings):
    box = probed_sandbox(settings)
    await box.start()
    try:
        yield box
    finally:
        await box.close()


@pytest.fixture
def code_factory(tmp_path):
    """`code_factory({"index.py": "..."})` -> a world-readable code (or layer) directory."""
    return lambda files=None: make_code_dir(tmp_path, files)


@pytest.fixture
def spec_factory(tmp_path):
    def make(code_dir: Path | None = None, **overrides) -> SandboxSpec:
        values = dict(instance_id=f"t{secrets.token_hex(6)}", runtime=PYTHON,
                      code_dir=code_dir or make_code_dir(tmp_path))
        values.update(overrides)
        return SandboxSpec(**values)

    return make


async def prime_layer(sandbox, spec: SandboxSpec, timeout_s: float = 60.0) -> None:
    """Make sure an instance that imported `spec`'s layers is ready: a cold start with them
    (the plain path, destroyed at once) leaves one; wait for it."""
    shape = sandbox.layer_ready.shape_for(spec)
    if sandbox.layer_ready.pool.ready_count(shape):
        return
    await (await sandbox.create(dataclasses.replace(spec, instance_id=f"t{secrets.token_hex(6)}"))).destroy()
    timeout_s *= SLOWDOWN
    deadline = time.monotonic() + timeout_s
    while not sandbox.layer_ready.pool.ready_count(shape):
        assert time.monotonic() < deadline, f"no instance of layers {spec.layer_dirs} ready within {timeout_s:g} s"
        await asyncio.sleep(0.02)


@pytest.fixture
async def instance(sandbox, spec_factory, tmp_path):
    """`await instance(**spec_overrides)` -> a started RuntimeClient; destroyed at the end.
    Its init is create()'s first frame, as the pool gives it: written by the sandbox itself
    (a pre-built instance gets it before it is let go), never by the client."""
    made = []
    by_layer = sandbox.layer_ready.enabled

    async def make(**overrides) -> RuntimeClient:
        if by_layer:
            overrides.setdefault("layer_dirs", (make_code_dir(tmp_path, TEST_LAYER),))
        spec = spec_factory(**overrides)
        if by_layer:
            await prime_layer(sandbox, spec)
        proc = await sandbox.create(spec, protocol.encode(init_message(sandbox.runtime_paths(spec))))
        made.append(proc)
        if by_layer:
            assert proc.stats["path"] == "layer", proc.stats
        assert proc.unsent_first == b"", "create() wrote its first frame, whole"
        client = RuntimeClient(proc)
        await client.start(sent=True)
        return client

    if sandbox.settings.sandbox_prebuilt:
        await sandbox.generics.settled()  # so that creates take the pre-built path

    try:
        yield make
    finally:
        for proc in made:
            await proc.destroy()
