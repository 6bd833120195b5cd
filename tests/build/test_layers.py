"""Dependency layers: built once per manifest, shared, time-limited, isolated, failing clearly.
(What a hostile build cannot do is in test_build_sandbox.py.)"""
from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from frazil.build.layers import ensure_layer
from frazil.build.manifest import read_manifest
from frazil.errors import BuildFailed
from frazil.runtimes import NODE, PYTHON
from frazil.settings import Settings

WHEEL = "tinypkg-1.0-py3-none-any.whl"
needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")


class Log(list):
    """A build log that a test can read: log(line) appends."""

    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self)

    @property
    def built(self) -> bool:
        return any(line.startswith("building dependency layer") for line in self)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", build_timeout_s=120)


@pytest.fixture
def python_project(tmp_path, write_tree, make_wheel):
    """A Python project whose requirements.txt installs a vendored wheel, offline."""
    def make(name: str = "code", requirements: str = "tinypkg==1.0\n", wheel_body: str = "VALUE = 'tiny'\n") -> Path:
        return write_tree(tmp_path / name, {
            "index.py": "import tinypkg\ndef main(e, c):\n    return tinypkg.VALUE\n",
            "requirements.txt": "--no-index\n--find-links ./wheels\n" + requirements,
            f"wheels/{WHEEL}": make_wheel(body=wheel_body),
        })
    return make


@pytest.fixture
def node_project(tmp_path, write_tree, npm_tarball):
    def make(name: str = "ncode", lock: bool = False) -> Path:
        code = write_tree(tmp_path / name, {
            "index.js": "const tiny = require('tiny-dep'); exports.main = (e) => tiny(e.s);",
            "package.json": json.dumps({"name": "fn", "version": "1.0.0",
                                        "dependencies": {"tiny-dep": "file:./vendor/tiny-dep-1.0.0.tgz"},
                                        "devDependencies": {"dev-tool": "file:./vendor/dev-tool-1.0.0.tgz"}}),
            "vendor/tiny-dep-1.0.0.tgz": npm_tarball(),
            "vendor/dev-tool-1.0.0.tgz": npm_tarball("dev-tool"),
        })
        if lock:
            subprocess.run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund", "--silent"], cwd=code,
                           check=True, capture_output=True, timeout=120)
        return code
    return make


def isolated() -> bool:
    return os.geteuid() == 0


# --- Python ---------------------------------------------------------------------------------------


class TestPythonLayers:
    async def test_build_then_reuse(self, settings, python_project):
        """The first call runs pip; the second, with the same manifest, does not (and is fast)."""
        code = python_project()
        log = Log()
        started = time.monotonic()
        layer = await ensure_layer(settings, "python3.11", code, log)
        first = time.monotonic() - started
        assert layer == settings.data_dir / "layers" / layer.name and len(layer.name) == 64
        assert (layer / "tinypkg" / "__init__.py").read_text() == "VALUE = 'tiny'\n"
        assert log.built and "Successfully installed tinypkg-1.0" in log.text
        again = Log()
        started = time.monotonic()
        assert await ensure_layer(settings, PYTHON, code, again) == layer
        second = time.monotonic() - started
        assert not again.built and "reusing" in again.text
        assert second < 0.2 < first, (first, second)

    async def test_same_manifest_shares_a_layer(self, settings, python_project):
        """Another project (another function) with the same manifest reuses the layer."""
        one = await ensure_layer(settings, "python3.11", python_project("one"), Log())
        log = Log()
        two = await ensure_layer(settings, "python3.11", python_project("two"), log)
        assert one == two and not log.built

    async def test_changed_vendored_wheel_is_a_new_layer(self, settings, python_project):
        """The key covers the files requirements.txt references, not only its text."""
        one = await ensure_layer(settings, "python3.11", python_project("one"), Log())
        two = await ensure_layer(settings, "python3.11", python_project("two", wheel_body="VALUE = 'v2'\n"), Log())
        assert one != two and (two / "tinypkg/__init__.py").read_text() == "VALUE = 'v2'\n"

    async def test_layer_files_are_the_platforms_and_not_writable(self, settings, python_project):
        layer = await ensure_layer(settings, "python3.11", python_project(), Log())
        for path in [layer, *layer.rglob("*")]:
            st = path.lstat()
            assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()), path
            assert not st.st_mode & 0o022 and not st.st_mode & (stat.S_ISUID | stat.S_ISGID), path

    @pytest.mark.parametrize("requirements", ["", "# only a comment\n\n", "--no-index\n"])
    async def test_no_requirements_no_layer(self, settings, tmp_path, write_tree, requirements):
        code = write_tree(tmp_path / "c", {"index.py": "", "requirements.txt": requirements})
        assert await ensure_layer(settings, "python3.11", code, Log()) is None
        code2 = write_tree(tmp_path / "d", {"index.py": ""})
        assert await ensure_layer(settings, "python3.11", code2, Log()) is None

    async def test_failed_build_carries_pips_message(self, settings, python_project):
        code = python_project(requirements="no-such-package-frazil-test==9.9\n")
        log = Log()
        with pytest.raises(BuildFailed) as info:
            await ensure_layer(settings, "python3.11", code, log)
        message = info.value.message
        assert info.value.status == 400
        assert "pip exited with status 1" in message
        assert "no-such-package-frazil-test" in message and "No matching distribution" in message
        assert not (settings.data_dir / "layers").exists() or not [
            p for p in (settings.data_dir / "layers").iterdir() if not p.name.startswith(".")]
        assert "No matching distribution" in log.text  # streamed to the build log too

    async def test_timeout_kills_the_whole_build(self, tmp_path, write_tree, backend_sdist):
        """A build backend that hangs is killed with its children after the time limit."""
        token = str(random.randrange(10**8, 10**9))
        backend = ("import subprocess, time\n"
                   f"subprocess.Popen(['sleep', '{token}'])\n"
                   "time.sleep(600)\n")
        code = write_tree(tmp_path / "c", {"index.py": "",
                                           "requirements.txt": "--no-index\n./vendor/slow-1.0.tar.gz\n",
                                           "vendor/slow-1.0.tar.gz": backend_sdist("slow", backend)})
        settings = Settings(data_dir=tmp_path / "data", build_timeout_s=4)
        started = time.monotonic()
        log = Log()
        with pytest.raises(BuildFailed) as info:
            await ensure_layer(settings, "python3.11", code, log)
        assert info.value.message.startswith("the dependency build timed out after 4 s")
        took = [i for i, line in enumerate(log) if line.startswith("Processing ./vendor/slow-1.0.tar.gz")]
        if took:  # pip got to the sdist within the 4 s (a loaded machine may not even start it)
            # The message names what pip was on, and the log said it compiles from source
            # right after pip took the sdist (frazil.build.progress).
            assert info.value.message.endswith("(pip was building slow from source)")
            assert "slow has no wheel for this platform" in log[took[0] + 1]
        assert time.monotonic() - started < 15
        assert not _processes_with(token), "the build's child survived the timeout"

    async def test_concurrent_calls_build_once(self, settings, python_project):
        """Concurrent deploys with one manifest: one build, everyone gets the layer."""
        code = python_project()
        logs = [Log() for _ in range(4)]
        layers = await asyncio.gather(*(ensure_layer(settings, "python3.11", code, log) for log in logs))
        assert len(set(layers)) == 1
        assert sum(log.built for log in logs) == 1
        assert all("reusing" in log.text for log in logs if not log.built)

    async def test_concurrent_processes_build_once(self, settings, python_project, tmp_path):
        """Two platform processes sharing a data dir serialise on the lock file."""
        code = python_project()
        script = ("import asyncio, sys\nfrom pathlib import Path\nfrom frazil.build.layers import ensure_layer\n"
                  "from frazil.settings import Settings\n"
                  "lines = []\n"
                  f"layer = asyncio.run(ensure_layer(Settings(data_dir=Path({str(settings.data_dir)!r})), 'python3.11',"
                  f" Path({str(code)!r}), lines.append))\n"
                  "print('BUILT' if any(l.startswith('building') for l in lines) else 'REUSED', layer)\n")
        procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=120)[0].split() for p in procs]
        assert sorted(o[0] for o in outputs) == ["BUILT", "REUSED"] and outputs[0][1] == outputs[1][1]

    async def test_build_cannot_see_the_platform(self, tmp_path, write_tree, backend_sdist, monkeypatch, request):
        """The installer sees no FRAZIL_* variable, cannot read the data dir, runs unprivileged."""
        # A data dir that any user could read, were it not hidden (pytest's tmp_path is 0700).
        open_dir = Path(tempfile.mkdtemp(prefix="frazil-test-data-"))
        request.addfinalizer(lambda: shutil.rmtree(open_dir, ignore_errors=True))
        os.chmod(open_dir, 0o755)
        settings = Settings(data_dir=open_dir / "data", build_timeout_s=60)
        settings.data_dir.mkdir(mode=0o755)
        (settings.data_dir / "admin.key").write_text("top-secret-key")
        os.chmod(settings.data_dir / "admin.key", 0o644)
        monkeypatch.setenv("FRAZIL_ADMIN_KEY", "env-secret")
        backend = ("import os\nseen = []\n"
                   f"data = {str(settings.data_dir)!r}\n"
                   "try:\n    seen.append('listing=' + repr(os.listdir(data)))\n"
                   "except OSError as e:\n    seen.append('listing=' + type(e).__name__)\n"
                   "try:\n    seen.append('key=' + open(data + '/admin.key').read())\n"
                   "except OSError as e:\n    seen.append('key=' + type(e).__name__)\n"
                   "seen.append('env=' + repr(sorted(k for k in os.environ if k.startswith('FRAZIL'))))\n"
                   "seen.append('uid=%d' % os.getuid())\n"
                   "seen.append('cwd=' + os.getcwd())\n"
                   "raise SystemExit('SPY ' + ' ; '.join(seen))\n")
        code = write_tree(tmp_path / "c", {"index.py": "", "requirements.txt": "--no-index\n./vendor/spy-1.0.tar.gz\n",
                                           "vendor/spy-1.0.tar.gz": backend_sdist("spy", backend)})
        with pytest.raises(BuildFailed) as info:
            await ensure_layer(settings, "python3.11", code, Log())
        message = info.value.message
        assert "SPY" in message, message
        assert "env-secret" not in message and "env=[]" in message
        assert "top-secret-key" not in message
        if isolated():
            from frazil.build.buildbox import BUILD_FIRST_UID
            assert "listing=FileNotFoundError" in message, message  # not even there: the host is not visible
            uid = int(message.split("uid=")[1].split()[0])
            assert uid >= BUILD_FIRST_UID, message
        assert str(settings.data_dir) not in message.split("cwd=")[1]


# --- Node -----------------------------------------------------------------------------------------


@needs_npm
class TestNodeLayers:
    async def test_npm_install_file_tarball(self, settings, node_project):
        """package.json with a `file:` npm pack tarball, no lockfile: npm install --omit=dev."""
        code = node_project()
        log = Log()
        layer = await ensure_layer(settings, "nodejs20", code, log)
        assert (layer / "node_modules" / "tiny-dep" / "index.js").is_file()
        assert not (layer / "node_modules" / "dev-tool").exists()  # --omit=dev
        assert "npm install" in log.text
        again = Log()
        started = time.monotonic()
        assert await ensure_layer(settings, NODE, code, again) == layer
        assert not again.built and time.monotonic() - started < 0.2

    async def test_npm_ci_with_lockfile(self, settings, node_project):
        code = node_project(lock=True)
        log = Log()
        layer = await ensure_layer(settings, "nodejs20", code, log)
        assert (layer / "node_modules" / "tiny-dep" / "package.json").is_file()
        assert not (layer / "node_modules" / "dev-tool").exists()
        assert "npm ci" in log.text

    async def test_lockfile_is_part_of_the_key(self, node_project):
        plain = read_manifest(NODE, node_project("a"))
        locked = read_manifest(NODE, node_project("b", lock=True))
        assert plain.key != locked.key and locked.lockfile == "package-lock.json"
        assert "vendor/tiny-dep-1.0.0.tgz" in plain.files

    async def test_no_dependencies_no_layer(self, settings, tmp_path, write_tree):
        code = write_tree(tmp_path / "c", {"index.js": "", "package.json": '{"name": "x", "devDependencies": {"a": "1"}}'})
        assert await ensure_layer(settings, "nodejs20", code, Log()) is None

    async def test_failed_build_carries_npms_message(self, settings, tmp_path, write_tree):
        code = write_tree(tmp_path / "c", {"index.js": "", "package.json": json.dumps(
            {"name": "x", "version": "1.0.0", "dependencies": {"gone": "file:./vendor/gone-1.0.0.tgz"}})})
        with pytest.raises(BuildFailed) as info:
            await ensure_layer(settings, "nodejs20", code, Log())
        assert "npm install exited with status" in info.value.message
        assert "gone-1.0.0.tgz" in info.value.message

    async def test_bad_package_json(self, settings, tmp_path, write_tree):
        code = write_tree(tmp_path / "c", {"index.js": "", "package.json": "{not json"})
        with pytest.raises(BuildFailed, match="package.json is not valid JSON"):
            await ensure_layer(settings, "nodejs20", code, Log())


# --- a layer serves a running function --------------------------------------------------------------


class TestLayersServeFunctions:
    """The layer works for the runtime's own interpreter, from where it was renamed to."""

    async def test_python_layer_imports(self, settings, python_project):
        layer = await ensure_layer(settings, "python3.11", python_project(), Log())
        out = subprocess.run([str(PYTHON.interpreter()), "-I", "-S", "-c",
                              f"import sys; sys.path.insert(0, {str(layer)!r}); import tinypkg; print(tinypkg.VALUE)"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout == "tiny\n", out.stderr

    @needs_npm
    async def test_node_layer_requires(self, settings, node_project):
        layer = await ensure_layer(settings, "nodejs20", node_project(), Log())
        out = subprocess.run(["node", "-e", "console.log(require('tiny-dep')('x'))"], capture_output=True, text=True,
                             timeout=30, env={"NODE_PATH": str(layer / "node_modules"), "PATH": os.environ["PATH"]})
        assert out.stdout == "tiny:x\n", out.stderr


# --- the real registry --------------------------------------------------------------------------------


@pytest.mark.registry
async def test_real_package_from_pypi(settings, tmp_path, write_tree):
    """One real install from PyPI (six), to prove the build reaches the registry."""
    code = write_tree(tmp_path / "c", {"index.py": "", "requirements.txt": "six==1.17.0\n"})
    log = Log()
    layer = await ensure_layer(settings, "python3.11", code, log)
    assert (layer / "six.py").is_file(), log.text


def _processes_with(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return [pid for pid in found if pid != os.getpid()]
