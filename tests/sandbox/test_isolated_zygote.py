"""Python instances forked from the zygote: the same runtime an exec'd interpreter gives a
function, nothing of the launcher's or the zygote's to abuse, and a helper process that lives
and dies with the platform. (The isolation tests run on every creation path: see
test_isolated_isolation.py.)"""
from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from frazil.runtimes import PYTHON
from frazil.sandbox.base import SandboxSpec
from frazil.settings import Settings
from tests.sandbox.conftest import CREATION_PATHS, RuntimeClient

LOOKS = '''
import os, signal, sys, threading
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
result = {
    "argv": sys.argv, "orig_argv": sys.orig_argv, "path": sys.path[:], "executable": sys.executable,
    "flags": list(sys.flags), "environ": dict(os.environ), "cwd": os.getcwd(), "umask": os.umask(0o22),
    "main": [sys.modules["__main__"].__name__, sys.modules["__main__"].__file__],
    "fds": sorted(os.listdir("/proc/self/fd")), "cmdline": open("/proc/self/cmdline").read().rstrip("\\0").split("\\0"),
    "proc_environ": sorted(open("/proc/self/environ").read().rstrip("\\0").split("\\0")),
    "signals": {name: str(signal.getsignal(getattr(signal, name))) for name in ("SIGPIPE", "SIGXFSZ", "SIGINT", "SIGTERM", "SIGCHLD")},
    "kernel_signals": {k: status[k].strip() for k in ("SigIgn", "SigBlk", "SigCgt")},
    "stdout": [sys.stdout.encoding, sys.stdout.errors, sys.stdout.line_buffering, sys.stdout.name],
    "stderr": [sys.stderr.encoding, sys.stderr.errors, sys.stderr.line_buffering, sys.stderr.name],
    "stdin": [sys.stdin.name, sys.stdin.read()],
    "frazil_modules": sorted(m for m in sys.modules if m == "frazil" or m.startswith("frazil.")),
    "main_thread": threading.main_thread() is threading.current_thread(),
    "pid": os.getpid(), "ppid": os.getppid(), "tmp": sorted(os.listdir("/tmp")), "nice": os.getpriority(os.PRIO_PROCESS, 0),
    "gc": __import__("gc").isenabled(), "gc_frozen": __import__("gc").get_freeze_count() > 0,
}
'''


async def _look(sandbox_factory, settings: Settings, code_factory, **paths) -> dict:
    box = sandbox_factory(Settings(**{**settings.__dict__, **paths}))
    await box.start()
    try:
        if box.settings.sandbox_prebuilt:
            await box.generics.settled()
        proc = await box.create(SandboxSpec(instance_id="look", runtime=PYTHON, code_dir=code_factory()))
        client = RuntimeClient(proc)
        await client.start()
        result = await client.run(LOOKS)
        result["created"] = proc.stats["path"]
        await proc.destroy()
        return result
    finally:
        await box.close()


class TestLikeAnExecdRuntime:
    """What a function sees of its runtime is the same whether it was exec'd or forked."""

    @pytest.mark.parametrize("path", ["zygote", "prebuilt"])
    async def test_same_view_as_an_execd_interpreter(self, sandbox_factory, settings, code_factory, tmp_path, path):
        exec_view = await _look(sandbox_factory, settings, code_factory, **CREATION_PATHS["exec"],
                                data_dir=tmp_path / "exec")
        forked = await _look(sandbox_factory, settings, code_factory, **CREATION_PATHS[path], data_dir=tmp_path / "fork")
        assert exec_view.pop("created") == "exec" and forked.pop("created") == path
        # a fork keeps the zygote's frozen objects out of the collector's way; an exec'd one has none
        assert exec_view.pop("gc_frozen") is False and forked.pop("gc_frozen") is True
        assert forked == exec_view
        assert forked["frazil_modules"] == [] and forked["tmp"] == [] and forked["gc"] is True
        assert forked["fds"] == ["0", "1", "2", "3", forked["fds"][-1]]  # + the listing's own
        assert forked["signals"]["SIGPIPE"] == str(int(signal.SIG_IGN)) and forked["pid"] == 1

    @pytest.mark.parametrize("creation", ["zygote", "prebuilt"])
    async def test_random_state_is_reseeded_in_every_child(self, instance):
        code = "import random, tempfile\nresult = [random.getrandbits(64), tempfile.mktemp()]"
        a, b = await instance(), await instance()
        ra, rb = await a.run(code), await b.run(code)
        assert ra[0] != rb[0] and ra[1] != rb[1]

    @pytest.mark.parametrize("creation", ["zygote", "prebuilt"])
    async def test_threads_and_subprocesses_work(self, instance):
        client = await instance()
        result = await client.run('''
import subprocess, threading
out = []
t = threading.Thread(target=lambda: out.append(threading.get_native_id()))
t.start(); t.join()
result = [len(out), threading.active_count(), subprocess.run(["/bin/echo", "hi"], capture_output=True, text=True).stdout]
''')
        assert result == [1, 1, "hi\n"]

    @pytest.mark.parametrize("creation", ["zygote", "prebuilt"])
    async def test_the_stack_above_the_loop_holds_nothing_of_the_platform(self, instance, settings):
        """A function can walk up its stack into the zygote's and the launcher's frames (it is
        their fork): they must not hold the platform's configuration (host paths)."""
        client = await instance()
        seen = await client.run(STACK_WALK)
        text = "\n".join(seen)
        assert "_main" in text and "serve" in text  # the zygote's frames are there...
        assert str(settings.data_dir) not in text and "mountpoint" not in text  # ...without the config

    @pytest.mark.parametrize("creation", ["exec", "zygote", "prebuilt"])
    async def test_system_exit_ends_the_runtime_with_its_status(self, instance):
        client = await instance()
        assert await client.invoke({"code": "raise SystemExit(5)"}) is None
        assert (await client.proc.wait()).exit_code == 5


@pytest.mark.parametrize("creation", ["zygote", "prebuilt"])
class TestZygoteProcess:
    """The zygote is the platform's child, looks like what it is, and dies with its helpers."""

    async def test_zygote_is_a_child_of_the_platform(self, sandbox):
        await sandbox.launcher.zygote_ready()
        pid = sandbox.launcher.zygote_pid
        stat = Path(f"/proc/{pid}/stat").read_text()
        assert int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()
        assert b"frazil-python-zygote" in Path(f"/proc/{pid}/cmdline").read_bytes()

    async def test_instances_are_children_of_the_platform_and_named_like_runtimes(self, instance):
        client = await instance()
        stat = Path(f"/proc/{client.proc.pid}/stat").read_text()
        assert int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()
        assert Path(f"/proc/{client.proc.pid}/cmdline").read_bytes().split(b"\0")[1:5] == [
            b"-I", b"-S", b"-B", b"/runtime/python/loop.py"]

    async def test_a_dead_zygote_brings_new_helpers_and_instances_live_on(self, instance, sandbox):
        first = await instance()
        old_zygote, old_launcher = sandbox.launcher.zygote_pid, sandbox.launcher.pid
        os.kill(old_zygote, signal.SIGKILL)
        deadline = asyncio.get_running_loop().time() + 5
        while sandbox.launcher.alive:
            assert asyncio.get_running_loop().time() < deadline, "the platform did not notice the zygote's death"
            await asyncio.sleep(0.01)
        second = await instance()  # made by new helpers, or pre-built (the refill starts new helpers)
        while not (sandbox.launcher is not None and sandbox.launcher.alive and sandbox.launcher.pid != old_launcher):
            assert asyncio.get_running_loop().time() < deadline + 10, "no new helpers"
            await asyncio.sleep(0.01)
        assert sandbox.launcher.zygote_pid != old_zygote
        assert await first.run("result = 'first'") == "first"
        assert await second.run("result = 'second'") == "second"
        assert not Path(f"/proc/{old_launcher}").exists() or "Z" in Path(f"/proc/{old_launcher}/stat").read_text()


STACK_WALK = '''
import sys
frame, seen = sys._getframe(), []
while frame is not None:
    seen.append(frame.f_code.co_name + " " + repr(frame.f_locals))
    frame = frame.f_back
result = seen
'''
