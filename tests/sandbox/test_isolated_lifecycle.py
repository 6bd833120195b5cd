"""Creating, killing and destroying isolated instances leaves nothing behind: no process,
no cgroup, no mount; a restarted platform removes what a dead one left; two platforms with
different data dirs never touch each other's instances."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from frazil.sandbox.base import SandboxError
from frazil.sandbox.cgroups import Limits
from frazil.settings import Settings
from tests.conftest import alive, host_mounts_mentioning

from tests.sandbox.conftest import CREATION_PATHS, EXEC_AND_PREBUILT, instance_cgroups

pytestmark = EXEC_AND_PREBUILT

REPO = Path(__file__).resolve().parents[2]

LINGER = '''
import os, subprocess
subprocess.Popen(["sleep", "300"])                       # a child
if os.fork() == 0:                                      # an orphan daemon
    if os.fork() == 0:
        os.setsid()
        os.execv("/usr/bin/sleep", ["sleep", "300"])
    os._exit(0)
open("/tmp/scratch", "w").write("x" * 1000)
result = "lingering"
'''


async def poll(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class TestDestroy:
    async def test_destroy_leaves_no_process_cgroup_or_mount(self, instance, settings):
        client = await instance()
        assert await client.run(LINGER) == "lingering"
        proc = client.proc
        await poll(lambda: len(proc.cgroup.pids()) >= 3, 5, "the runtime and its two sleepers")
        pids = proc.cgroup.pids()
        assert proc.pid in pids  # the runtime is our direct child and PID 1 inside
        info = await proc.destroy()
        assert info.signal == signal.SIGKILL and not info.oom_killed
        assert not any(alive(p) for p in pids)
        assert not proc.cgroup.exists()
        assert proc.channel.fileno() == -1
        with pytest.raises(OSError):
            os.fstat(proc.output_fd)
        assert host_mounts_mentioning(str(settings.data_dir)) == []
        assert host_mounts_mentioning("/code") == []

    async def test_destroy_is_idempotent_and_concurrent(self, instance):
        client = await instance()
        first, second = await asyncio.gather(client.proc.destroy(), client.proc.destroy())
        assert first == second == await client.proc.destroy()
        client.proc.kill()  # after destroy: a no-op, never raises

    async def test_exit_status_of_the_runtime_is_reported(self, instance):
        client = await instance()
        assert await client.invoke({"code": "import os\nos._exit(3)"}) is None
        info = await client.proc.wait()
        assert info.exit_code == 3 and info.signal is None and not info.oom_killed

    async def test_close_destroys_every_instance_and_the_launcher(self, sandbox, spec_factory):
        procs = [await sandbox.create(spec_factory()) for _ in range(3)]
        launcher = sandbox.launcher.pid
        await sandbox.close()
        for proc in procs:
            assert (await proc.wait()).signal == signal.SIGKILL
            assert not alive(proc.pid)
            assert not proc.cgroup.exists()
        assert not alive(launcher)
        assert all(not os.path.exists(d) for d in sandbox.cgroups.scope_dirs())

    async def test_cancelled_create_leaves_nothing(self, sandbox, spec_factory):
        spec = spec_factory()
        task = asyncio.ensure_future(sandbox.create(spec))
        await asyncio.sleep(0)  # let it start, then give up on it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await poll(lambda: not sandbox.table.ids and not instance_cgroups(sandbox), 10,
                   "the abandoned instance to be destroyed")


class TestLauncher:
    async def test_a_dead_launcher_is_replaced_and_instances_live_on(self, instance, sandbox):
        client = await instance()
        old = sandbox.launcher.pid
        os.kill(old, signal.SIGKILL)
        # None: a refill of the pre-built pool noticed first and is starting a new launcher
        await poll(lambda: sandbox.launcher is None or not sandbox.launcher.alive, 5,
                   "the platform to notice the launcher's death")
        # Made by a new launcher, or (pre-built) given its code without one: then the pool's
        # refill starts the new launcher.
        second = await instance()
        await poll(lambda: sandbox.launcher is not None and sandbox.launcher.alive and sandbox.launcher.pid != old,
                   10, "a new launcher")
        assert not alive(old)
        assert await client.run("result = 'first'") == "first"
        assert await second.run("result = 'second'") == "second"

    async def test_instances_are_children_of_the_platform(self, instance):
        client = await instance()
        stat = Path(f"/proc/{client.proc.pid}/stat").read_text()
        assert int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()


class TestCreateErrors:
    async def test_code_dir_not_readable_by_others(self, sandbox, spec_factory, tmp_path):
        private = tmp_path / "private"
        private.mkdir(mode=0o700)
        with pytest.raises(SandboxError, match="readable by others"):
            await sandbox.create(spec_factory(code_dir=private))
        assert instance_cgroups(sandbox) == []

    async def test_missing_code_dir(self, sandbox, spec_factory, tmp_path):
        with pytest.raises(SandboxError, match="cannot be used"):
            await sandbox.create(spec_factory(code_dir=tmp_path / "nope"))

    async def test_too_many_layers(self, sandbox, spec_factory, code_factory):
        layer = code_factory({"x.py": ""})
        with pytest.raises(SandboxError, match="layers"):
            await sandbox.create(spec_factory(layer_dirs=(layer,) * 17))
        assert instance_cgroups(sandbox) == []

    async def test_duplicate_instance_id(self, sandbox, spec_factory):
        spec = spec_factory()
        proc = await sandbox.create(spec)
        try:
            with pytest.raises(SandboxError, match="already exists"):
                await sandbox.create(spec)
        finally:
            await proc.destroy()

    async def test_concurrent_creates(self, sandbox, spec_factory):
        procs = await asyncio.gather(*(sandbox.create(spec_factory()) for _ in range(6)))
        try:
            assert len({p.uid for p in procs}) == 6
            assert len({p.pid for p in procs}) == 6
        finally:
            await asyncio.gather(*(p.destroy() for p in procs))
        assert instance_cgroups(sandbox) == []


class TestRestart:
    async def test_start_removes_what_a_dead_platform_left(self, settings, tmp_path, sandbox_factory):
        box = sandbox_factory(settings)
        # A leftover: a cgroup of this scope with a live process in it, and another
        # platform's cgroup (different data dir) that must survive.
        stale = box.cgroups
        stale.prepare()
        cg = stale.create("stale-instance", Limits(64 << 20, 0.5, 8))
        sleeper = subprocess.Popen(["sleep", "300"])
        for fd in cg.open_procs():
            os.write(fd, str(sleeper.pid).encode())
            os.close(fd)
        other = sandbox_factory(Settings(data_dir=tmp_path / "other-platform"))
        other.cgroups.prepare()
        other_cg = other.cgroups.create("other-instance", Limits(64 << 20, 0.5, 8))
        try:
            await box.start()
            assert sleeper.wait(timeout=5) == -signal.SIGKILL
            assert not cg.exists()
            assert other_cg.exists()
        finally:
            await box.close()
            other_cg.remove()
            other.cgroups.remove_scope()
            if sleeper.poll() is None:
                sleeper.kill()
                sleeper.wait()

    async def test_empty_scopes_of_dead_platforms_are_removed(self, settings, tmp_path, sandbox_factory):
        box = sandbox_factory(settings)
        dead = sandbox_factory(Settings(data_dir=tmp_path / "dead-platform"))
        dead.cgroups.prepare()  # an empty scope, as a SIGKILLed platform leaves it
        busy = sandbox_factory(Settings(data_dir=tmp_path / "busy-platform"))
        busy.cgroups.prepare()
        busy_cg = busy.cgroups.create("live-instance", Limits(64 << 20, 0.5, 8))
        try:
            await box.start()
            assert all(not os.path.exists(d) for d in dead.cgroups.scope_dirs())
            assert busy_cg.exists()
            # a platform whose empty scope was removed under it recreates it on its next create
            busy_cg.remove()
            busy.cgroups.remove_empty_scopes()  # (it spares its own scope)
            box.cgroups.remove_empty_scopes()
            assert all(not os.path.exists(d) for d in busy.cgroups.scope_dirs())
            again = busy.cgroups.create("after", Limits(64 << 20, 0.5, 8))
            assert again.exists()
            again.remove()
        finally:
            await box.close()
            busy.cgroups.remove_scope()

    async def test_two_platforms_do_not_touch_each_other(self, instance, tmp_path, sandbox_factory):
        client = await instance()
        other = sandbox_factory(Settings(data_dir=tmp_path / "second"))
        await other.start()
        try:
            assert other.scope != client.proc.cgroup.name
            assert await client.run("result = 'untouched'") == "untouched"
        finally:
            await other.close()
        assert await client.run("result = 'still untouched'") == "still untouched"

    def test_platform_killed_with_sigkill_leaves_nothing_after_restart(self, settings, code_factory,
                                                                          sandbox_factory, creation):
        """A platform SIGKILLed mid-flight: its instances and launcher die with it (parent
        death signal), and the next start on the same data dir removes its cgroups."""
        box = sandbox_factory(settings)
        code = code_factory()
        script = textwrap.dedent(f'''
            import asyncio, json, sys
            sys.path.insert(0, {str(REPO)!r})
            from frazil.runtimes import PYTHON
            from frazil.sandbox.base import InstanceShape, SandboxSpec
            from frazil.sandbox.isolated import IsolatedSandbox
            from frazil.settings import Settings

            async def main():
                box = IsolatedSandbox.probe_and_create(Settings(data_dir={str(settings.data_dir)!r},
                                                                **{CREATION_PATHS[creation]!r}))
                for tier in box.settings.tiers.values():  # as the instance pool does
                    if box.settings.sandbox_prebuilt > 0:
                        box.keep_ready(InstanceShape(PYTHON, tier.memory_mb, tier.cpu, box.settings.tmp_mb,
                                                     box.settings.pids_max), box.settings.sandbox_prebuilt)
                await box.start()
                procs = [await box.create(SandboxSpec(instance_id=f"dead{{i}}", runtime=PYTHON,
                                                      code_dir={str(code)!r})) for i in range(2)]
                print(json.dumps({{"launcher": box.launcher.pid, "pids": [p.pid for p in procs]}}), flush=True)
                await asyncio.sleep(3600)

            asyncio.run(main())
        ''')
        platform = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            started = json.loads(platform.stdout.readline())
        finally:
            platform.kill()
            platform.wait()
        pids = [started["launcher"], *started["pids"]]
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids):
            assert time.monotonic() < deadline, "instances outlived their platform"
            time.sleep(0.01)

        names = box.cgroups.instance_names()
        if creation == "exec":
            assert sorted(names) == ["dead0", "dead1"]
        else:  # the two instances, by their id or (not renamed yet) generic names, and the generic ones
            assert len(names) >= 2
        assert box.remove_stale() == len(names)
        assert box.cgroups.instance_names() == []
        box.cgroups.remove_scope()
        assert host_mounts_mentioning(str(settings.data_dir)) == []

