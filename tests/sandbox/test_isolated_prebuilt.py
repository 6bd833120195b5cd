"""Generic instances built ahead of time: a create() only gives one its code, each gets
exactly its own code, the pool refills and stays bounded, and unused ones leave nothing
behind - after close() and after the platform is SIGKILLed."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from frazil.runtimes import GENERIC_FLAG, NODE, PYTHON
from frazil.sandbox.attach import ATTACH_ALL, AttachError, attach_trees
from frazil.sandbox.base import InstanceShape, SandboxError, SandboxSpec
from frazil.sandbox.helper import enter, launcher
from frazil.settings import Settings
from tests.conftest import alive
from tests.sandbox.conftest import CREATION_PATHS, RuntimeClient, instance_cgroups

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.parametrize("creation", ["prebuilt"])


async def poll(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def shape_of(settings, runtime=PYTHON, memory_mb=128, cpu=0.5) -> InstanceShape:
    return InstanceShape(runtime, memory_mb, cpu, settings.tmp_mb, settings.pids_max)


def generic_pids(sandbox) -> set[int]:
    return {p.pid for name, p in sandbox.table.live.items() if name.startswith("generic-")}


class TestSpecialization:
    async def test_a_prebuilt_cold_start_needs_no_launcher(self, sandbox, spec_factory, code_factory):
        """The platform attaches the code itself (`frazil.sandbox.attach`): with the launcher
        dead, a ready generic instance is still given its function and runs it."""
        await sandbox.generics.settled()
        launcher_pid = sandbox.launcher.pid
        os.kill(launcher_pid, signal.SIGKILL)
        await poll(lambda: not sandbox.launcher.alive, 5, "the launcher's death to be seen")
        code = code_factory({"index.py": "def main(event, context):\n    return 'no launcher'\n"})
        proc = sandbox._create_prebuilt(spec_factory(code_dir=code), b"")
        assert proc is not None and proc.stats["path"] == "prebuilt"
        try:
            client = RuntimeClient(proc)
            await client.start()
            assert (await client.invoke({}))["result"] == "no launcher"
        finally:
            await proc.destroy()

    async def test_each_instance_gets_exactly_its_own_code(self, sandbox, spec_factory, code_factory):
        await sandbox.generics.settled()
        made = []
        try:
            for value in ("one", "two"):
                code = code_factory({"index.py": f"def main(event, context):\n    return {value!r}\n",
                                     f"only_{value}.txt": value})
                proc = await sandbox.create(spec_factory(code_dir=code))
                made.append(proc)
                assert proc.stats["path"] == "prebuilt"
                client = RuntimeClient(proc)
                await client.start()
                reply = await client.invoke({})
                assert reply["result"] == value
            listing = [sorted(os.listdir(f"/proc/{p.pid}/root/code")) for p in made]
            assert listing == [["index.py", "only_one.txt"], ["index.py", "only_two.txt"]]
        finally:
            for proc in made:
                await proc.destroy()

    async def test_a_generic_instance_sees_no_code_and_holds_no_privilege(self, sandbox):
        await sandbox.generics.settled()
        pid = next(iter(generic_pids(sandbox)))
        assert os.listdir(f"/proc/{pid}/root/code") == []
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert int(status["Uid"].split()[0]) in sandbox.uids
        assert int(status["CapEff"], 16) == 0 and status["Seccomp"].strip() == "2"
        assert status["NoNewPrivs"].strip() == "1"

    async def test_generic_instances_get_cpu_nobody_else_wants_until_taken(self, sandbox, spec_factory):
        await sandbox.generics.settled()
        generic = next(p for name, p in sandbox.table.live.items() if name.startswith("generic-"))
        weight_file = Path(generic.cgroup._cpu_dir()) / generic.cgroup.weight_file
        assert weight_file.read_bytes().strip() == generic.cgroup.weight_low
        proc = await sandbox.create(spec_factory())
        try:
            assert proc.stats["path"] == "prebuilt"
            weight_file = Path(proc.cgroup._cpu_dir()) / proc.cgroup.weight_file
            assert weight_file.read_bytes().strip() == proc.cgroup.weight_default
        finally:
            await proc.destroy()

    async def test_the_launcher_serves_above_the_ordinary_priority_and_instances_run_at_it(
            self, sandbox, spec_factory, code_factory):
        """Every cold start waits for the launcher (mounts, go byte): it runs at SERVING_NICE; what
        it makes - a pre-started Node runtime, an exec'd instance - and the zygote's children run at 0."""
        shape = shape_of(sandbox.settings, runtime=NODE)
        sandbox.keep_ready(shape, 1)
        await sandbox.generics.settled(30)
        assert os.getpriority(os.PRIO_PROCESS, sandbox.launcher.pid) == launcher.SERVING_NICE
        generics = [p.pid for s in (shape, shape_of(sandbox.settings)) for p in sandbox.generics.ready(s)]
        assert generics and all(os.getpriority(os.PRIO_PROCESS, pid) == 0 for pid in generics)
        sandbox.keep_ready(shape, 0)
        while sandbox.generics.take(shape) is not None:  # none ready: the next Node create execs one
            pass
        code = code_factory({"index.js": "exports.main = () => 1;\n"})
        proc = await sandbox.create(spec_factory(runtime=NODE, code_dir=code))
        try:
            assert proc.stats["path"] == "exec" and os.getpriority(os.PRIO_PROCESS, proc.pid) == 0
        finally:
            await proc.destroy()

    async def test_layers_of_a_prebuilt_instance(self, sandbox, spec_factory, code_factory):
        await sandbox.generics.settled()
        layer = code_factory({"dep.py": "VALUE = 7\n"})
        proc = await sandbox.create(spec_factory(layer_dirs=(layer,)))
        try:
            assert proc.stats["path"] == "prebuilt" and proc.paths.layer_dirs == ("/layers/0",)
            client = RuntimeClient(proc)
            await client.start()
            assert await client.run("import dep\nresult = dep.VALUE") == 7
        finally:
            await proc.destroy()

    async def test_a_namespace_that_is_not_an_instances_is_refused(self, sandbox, code_factory):
        """Attaching code in the template (the zygote lives there) or in the host namespace
        would show it to others: both are refused, and the platform stays in its own."""
        launcher = sandbox.launcher
        await launcher.zygote_ready()
        own_namespace, cwd = os.readlink("/proc/thread-self/ns/mnt"), os.getcwd()
        for pid in (launcher.zygote_pid, os.getpid()):
            pidfd = os.pidfd_open(pid)
            tree = enter.readonly_tree(str(code_factory()))
            try:
                with pytest.raises(AttachError, match="refused"):
                    attach_trees(pidfd, [tree], ATTACH_ALL, sandbox.handover.refused_roots())
            finally:
                os.close(tree)
                os.close(pidfd)
            assert (os.readlink("/proc/thread-self/ns/mnt"), os.getcwd()) == (own_namespace, cwd)

    @pytest.mark.parametrize("runtime", [PYTHON, pytest.param(NODE, marks=pytest.mark.skipif(
        shutil.which("node") is None, reason="Node.js is not installed on this host"))], ids=lambda r: r.language)
    async def test_an_instance_whose_code_cannot_be_attached_ends_before_init(self, sandbox, code_factory, runtime):
        """...and is never given its first frame (the function's init, with its settings)."""
        shape = shape_of(sandbox.settings, runtime=runtime)
        sandbox.keep_ready(shape, 1)
        await sandbox.generics.settled(30)
        await poll(lambda: any(p.greeted() for p in sandbox.generics.ready(shape)), 30, "a runtime's hello")
        proc = sandbox.generics.take(shape, with_go=True)  # one that said hello (take prefers those)
        client = RuntimeClient(proc)
        not_a_tree = os.open(str(code_factory()), os.O_RDONLY | os.O_DIRECTORY)  # move_mount refuses it
        try:
            with pytest.raises(SandboxError, match="could not give the instance its code"):
                sandbox.handover._attach(proc, [not_a_tree], ATTACH_ALL, b"the function's init")
        finally:
            os.close(not_a_tree)
        assert proc.unsent_first is None  # never sent
        assert (await client.recv())["type"] == "hello"
        try:
            await client.send({"type": "init", "handler": "index.main", "code_dir": "/code", "layer_dirs": [],
                               "env": {}})
            reply = await client.recv()
        except (BrokenPipeError, ConnectionResetError):  # killed before "init" was sent, or with it unread
            reply = None
        assert reply is None  # no "ready": the runtime ended without its code
        info = await proc.wait()  # ended by the go pipe's EOF
        assert info.exit_code == 0, info
        await proc.destroy()


class TestPool:
    async def test_refills_after_takes(self, sandbox, spec_factory):
        shape = shape_of(sandbox.settings)
        await sandbox.generics.settled()
        target = sandbox.generics.target(shape)
        assert target == CREATION_PATHS["prebuilt"]["sandbox_prebuilt"]
        procs = [await sandbox.create(spec_factory()) for _ in range(target + 1)]  # the last one is a miss
        assert [p.stats["path"] for p in procs] == ["prebuilt"] * target + ["zygote"]
        await sandbox.generics.settled()
        assert sandbox.generics.ready_count(shape) == target
        for proc in procs:
            await proc.destroy()

    async def test_stays_bounded(self, sandbox_factory, settings):
        sandbox = sandbox_factory(Settings(**{**settings.__dict__, "sandbox_prebuilt": 0}))
        sandbox.generics.cap = 3
        await sandbox.start()
        try:
            for memory in (128, 192, 256):
                sandbox.keep_ready(shape_of(sandbox.settings, memory_mb=memory), 2)
            await poll(lambda: sandbox.generics.building_count() == 0 and sandbox.generics.ready_count() >= 3, 20,
                       "the pool to fill up to its cap")
            await asyncio.sleep(0.1)
            assert sandbox.generics.ready_count() + sandbox.generics.building_count() == 3
            assert len(generic_pids(sandbox)) == 3
        finally:
            await sandbox.close()

    async def test_a_generic_instance_that_dies_is_replaced(self, sandbox):
        shape = shape_of(sandbox.settings)
        await sandbox.generics.settled()
        victim = next(iter(generic_pids(sandbox)))
        os.kill(victim, signal.SIGKILL)
        await poll(lambda: victim not in generic_pids(sandbox), 10, "the dead instance to be dropped")
        await poll(lambda: sandbox.generics.ready_count(shape) == sandbox.generics.target(shape), 20,
                   "a replacement")
        assert sandbox.generics.stats["died"] == 1

    async def test_demanded_shapes_expire_when_unused(self, sandbox, spec_factory):
        sandbox.generics.idle_ttl_s = 0.2
        shape = shape_of(sandbox.settings, memory_mb=192)
        proc = await sandbox.create(spec_factory(memory_mb=192))  # not a tier: a miss, then kept ready
        await proc.destroy()
        assert sandbox.generics.target(shape) == CREATION_PATHS["prebuilt"]["sandbox_prebuilt"]
        sandbox.generics._trim_handle.cancel()
        sandbox.generics._trim_handle = None
        await asyncio.sleep(0.25)
        sandbox.generics._trim()
        assert sandbox.generics.target(shape) == 0
        await poll(lambda: sandbox.generics.ready_count(shape) == 0, 10, "the expired shape's instances to go")
        assert sandbox.generics.target(shape_of(sandbox.settings)) > 0  # tiers stay

    @pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed on this host")
    async def test_node_runtimes_are_pre_started_and_specialized(self, sandbox, spec_factory, code_factory):
        shape = shape_of(sandbox.settings, runtime=NODE)
        sandbox.keep_ready(shape, 1)
        await sandbox.generics.settled(30)
        await poll(lambda: any(p.greeted() for p in sandbox.generics.ready(shape)), 30, "the Node runtime's hello")
        pids = {p.pid for p in sandbox.generics.ready(shape)}
        code = code_factory({"index.js": "exports.main = async (event) => ({node: event.n, pid: process.pid});\n"})
        proc = await sandbox.create(spec_factory(runtime=NODE, code_dir=code))
        try:
            assert proc.stats["path"] == "prebuilt" and proc.pid in pids
            client = RuntimeClient(proc)
            await client.start()
            reply = await client.invoke({"n": 3})
            assert reply["ok"] and reply["result"] == {"node": 3, "pid": 1}
        finally:
            await proc.destroy()


NODE_LOOKS = r"""
const fs = require('fs');
const Module = require('module');
exports.main = async () => {
  // What each descriptor is (Node's own are numbered in the order it opened them: not compared)
  const kind = (fd) => { try { return fs.readlinkSync(`/proc/self/fd/${fd}`).replace(/\[\d+\]/, ''); } catch (_) { return 'gone'; } };
  const kinds = fs.readdirSync('/proc/self/fd').map(kind).sort();
  return {
    argv: process.argv, execArgv: process.execArgv, cwd: process.cwd(), env: process.env, kinds,
    std: [0, 1, 2, 3].map(kind),
    tmp: fs.readdirSync('/tmp'), cache: Object.keys(require.cache), pathCache: Object.keys(Module._pathCache),
    cmdline: fs.readFileSync('/proc/self/cmdline', 'utf8').split('\0'), pid: process.pid, title: process.title,
    listeners: process.eventNames().map((name) => [String(name), process.listenerCount(name)]),
    handles: process._getActiveHandles().length, requests: process._getActiveRequests().length, umask: process.umask(),
  };
};
"""


async def _look_node(box, code_dir) -> dict:
    await box.start()
    try:
        if box.settings.sandbox_prebuilt_node:
            shape = shape_of(box.settings, runtime=NODE)
            box.keep_ready(shape, 1)
            await box.generics.settled(30)
            await poll(lambda: any(p.greeted() for p in box.generics.ready(shape)), 30, "the Node runtime's hello")
        proc = await box.create(SandboxSpec(instance_id="look", runtime=NODE, code_dir=code_dir))
        try:
            client = RuntimeClient(proc)
            await client.start()
            reply = await client.invoke({})
            assert reply["ok"], reply
            return {**reply["result"], "created": proc.stats["path"]}
        finally:
            await proc.destroy()
    finally:
        await box.close()


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed on this host")
class TestNodeLikeAStartedRuntime:
    async def test_a_pre_started_runtime_shows_its_function_what_one_started_with_the_code_does(
            self, sandbox_factory, settings, code_factory, tmp_path):
        """It warmed up on a module of its own and waited for its go byte: neither shows."""
        code = code_factory({"index.js": NODE_LOOKS})
        started = await _look_node(sandbox_factory(Settings(**{**settings.__dict__, **CREATION_PATHS["exec"],
                                                              "data_dir": tmp_path / "exec"})), code)
        pre_started = await _look_node(sandbox_factory(Settings(**{**settings.__dict__, "data_dir": tmp_path / "pre"})),
                                       code)
        assert started.pop("created") == "exec" and pre_started.pop("created") == "prebuilt"
        # Only the kernel's copy of its command line says how it started (process.argv does not).
        assert pre_started.pop("cmdline") == started.pop("cmdline")[:-1] + [GENERIC_FLAG, ""]
        assert pre_started == started
        assert pre_started["tmp"] == [] and pre_started["cache"][-1] == "/code/index.js"
        assert not any("warm" in key for key in pre_started["cache"] + pre_started["pathCache"])


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed on this host")
class TestNodeBursts:
    BURST = 4

    async def test_a_burst_after_a_burst_is_all_prebuilt_and_idle_ones_decay_to_the_floor(
            self, sandbox_factory, settings, spec_factory, code_factory):
        box = sandbox_factory(Settings(**{**settings.__dict__, "sandbox_prebuilt": 0, "sandbox_prebuilt_max": 8,
                                          "sandbox_prebuilt_window_s": 3600.0, "keep_alive_s": 36000.0}))
        await box.start()
        shape = shape_of(box.settings, runtime=NODE)
        code = code_factory({"index.js": "exports.main = async (event) => ({n: event.n});\n"})
        made = []
        try:
            for _ in range(self.BURST):  # the first burst: one pre-started, the others exec'd
                made.append(await box.create(spec_factory(runtime=NODE, code_dir=code)))
            assert box.generics.target(shape) == self.BURST  # what the demand now asks for
            await box.generics.settled(120)
            for i in range(self.BURST):
                # Pre-built, though not necessarily one of those ready now: a take may hand
                # out a refill that said hello before an older one still starting.
                proc = await box.create(spec_factory(runtime=NODE, code_dir=code))
                made.append(proc)
                assert proc.stats["path"] == "prebuilt"
                client = RuntimeClient(proc)
                await client.start()
                assert (await client.invoke({"n": i}))["result"] == {"n": i}
            await box.generics.settled(120)
            surplus = {p.pid for p in box.generics.ready(shape)}  # this shape's (other shapes may have floors)
            assert len(surplus) == 2 * self.BURST  # both bursts are within the window
            box.generics.clock = lambda: time.monotonic() + box.settings.sandbox_prebuilt_window_s + 1
            box.generics._trim()  # its timer would, within window_s / 2
            assert box.generics.target(shape) == box.settings.sandbox_prebuilt_node
            await poll(lambda: len(box.generics.ready(shape)) == box.settings.sandbox_prebuilt_node, 20,
                       "the idle pre-started instances to decay to the floor")
            await poll(lambda: sum(alive(p) for p in surplus) == 1, 20, "their processes to end")
        finally:
            for proc in made:
                await proc.destroy()
            await box.close()
        assert all(not os.path.exists(d) for d in box.cgroups.scope_dirs())


class TestNothingLeftBehind:
    async def test_close_destroys_unused_generic_instances_and_helpers(self, sandbox_factory, settings):
        box = sandbox_factory(settings)
        await box.start()
        box.keep_ready(shape_of(settings), 2)
        await box.generics.settled()
        await box.launcher.zygote_ready()
        pids = generic_pids(box) | {box.launcher.pid, box.launcher.zygote_pid}
        assert len(pids) >= 4
        await box.close()
        assert not any(alive(p) for p in pids)
        assert all(not os.path.exists(d) for d in box.cgroups.scope_dirs())
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(settings.data_dir) not in mounts

    def test_sigkill_of_the_platform_leaves_nothing_after_restart(self, settings, sandbox_factory):
        box = sandbox_factory(settings)
        script = textwrap.dedent(f'''
            import asyncio, json, sys
            sys.path.insert(0, {str(REPO)!r})
            from frazil.runtimes import PYTHON
            from frazil.sandbox.base import InstanceShape
            from frazil.sandbox.isolated import IsolatedSandbox
            from frazil.settings import Settings

            async def main():
                box = IsolatedSandbox.probe_and_create(Settings(data_dir={str(settings.data_dir)!r},
                                                                **{CREATION_PATHS["prebuilt"]!r}))
                await box.start()
                for tier in box.settings.tiers.values():  # as the instance pool does
                    box.keep_ready(InstanceShape(PYTHON, tier.memory_mb, tier.cpu, box.settings.tmp_mb,
                                                 box.settings.pids_max), box.settings.sandbox_prebuilt)
                await box.generics.settled()
                await box.launcher.zygote_ready()
                pids = [p.pid for p in box.table.live.values()] + [box.launcher.pid, box.launcher.zygote_pid]
                print(json.dumps(pids), flush=True)
                await asyncio.sleep(3600)

            asyncio.run(main())
        ''')
        platform = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            pids = json.loads(platform.stdout.readline())
        finally:
            platform.kill()
            platform.wait()
        assert len(pids) >= 2 + 2 * len(settings.tiers)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids):
            assert time.monotonic() < deadline, "generic instances or helpers outlived their platform"
            time.sleep(0.01)
        names = box.cgroups.instance_names()
        assert names and instance_cgroups(box) == []  # only generic ones were left
        assert box.remove_stale() == len(names)
        assert box.cgroups.instance_names() == []
        box.cgroups.remove_scope()
