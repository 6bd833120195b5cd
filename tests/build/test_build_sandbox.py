"""Hostile dependency builds against a real server: a Python build backend (what a setup.py
runs as) and an npm install script, each attacking the platform, the host or other builds.
Every attack must end with a clear result, leave nothing behind, and the platform keeps
serving. Hostile code never runs without the build sandbox: the module skips, saying why."""
from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest

from frazil.build.buildbox import BUILD_FIRST_UID
from frazil.testing.waiting import wait_until
from tests.conftest import SANDBOX_PROBLEM

pytestmark = pytest.mark.skipif(SANDBOX_PROBLEM is not None or os.geteuid() != 0,
                                reason=SANDBOX_PROBLEM or "the build sandbox needs root")
needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
PG_SOCKET = "/run/postgresql/.s.PGSQL.5432"
PRIVATE_ADDRESS = "10.255.255.1"
SPY = "SPY-REPORT "


def build_processes() -> list[str]:
    """Processes of any build uid still alive on the machine (there must be none)."""
    out = subprocess.run(["ps", "-eo", "uid=,pid=,stat=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if int(line.split()[0]) >= BUILD_FIRST_UID and " Z" not in line]


def report(message: str) -> dict:
    """The JSON a spy printed (it is the last part of the failed build's message)."""
    line = next((l for l in message.splitlines() if SPY in l), None)
    assert line is not None, message
    return json.loads(line.split(SPY, 1)[1])


def layer_of(srv, name: str) -> str:
    return srv.client().get(f"/v1/functions/{name}/versions").json()["versions"][0]["layer"]


def python_spy(body: str) -> str:
    """A build backend whose import runs `body` (filling the dict `r`) and fails with r."""
    return ("import json, os, socket, subprocess, sys, time\nr = {}\n"
            "def attempt(name, fn):\n"
            "    try:\n        r[name] = fn()\n"
            "    except BaseException as e:\n        r[name] = type(e).__name__\n"
            + textwrap.dedent(body)
            + f"\nprint({SPY!r} + json.dumps(r), flush=True)\nraise SystemExit(1)\n")


def python_bundle(backend_sdist, source: str, name: str = "spy") -> dict:
    return {"index.py": "def main(e, c):\n    return 1\n",
            "requirements.txt": f"--no-index\n./vendor/{name}-1.0.tar.gz\n",
            f"vendor/{name}-1.0.tar.gz": backend_sdist(name, source)}


@pytest.fixture
def secret_dir(request):
    """Another platform's data dir, world-readable, holding a secret (a SQLite WAL stand-in)."""
    path = Path(tempfile.mkdtemp(prefix="frazil-other-data-"))
    os.chmod(path, 0o755)
    (path / "frazil.db-wal").write_text("secret-env=other-platform-secret")
    os.chmod(path / "frazil.db-wal", 0o644)
    request.addfinalizer(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


@pytest.fixture
def bystander(server_factory):
    """A server with one dependency-free function that must keep answering."""
    def check(srv) -> None:
        assert srv.client().get("/healthz").status_code == 200
        if srv.client().get("/v1/functions/bystander").status_code == 404:
            srv.deploy("bystander", {"index.py": "def main(e, c):\n    return 'still here'\n"})
        assert srv.invoke("bystander")["result"] == "still here"
        assert build_processes() == [], build_processes()
    return check


class TestPythonBuildBackend:
    def test_reaches_nothing_of_the_platform_or_the_host(self, server_factory, backend_sdist, secret_dir, bystander):
        """The platform's port, a private address, PostgreSQL's socket, another data dir, the
        credentials in the platform's environment, /root: none of them; a daemon it leaves
        is gone when the deploy returns."""
        token = secrets.token_hex(6)
        srv = server_factory(PIP_INDEX_URL="https://builder:pip-s3cret-pw@pypi.org/simple",
                             npm_config__authToken="npm-s3cret-token", FRAZIL_BUILD_TIMEOUT_S="45")
        body = f"""
        def tcp(host, port):
            s = socket.create_connection((host, port), timeout=3); s.close(); return 'connected'
        def unix(path):
            s = socket.socket(socket.AF_UNIX); s.connect(path); s.close(); return 'connected'
        def proxy(target):
            s = socket.create_connection(('127.0.0.1', 3128), timeout=10)
            s.sendall(('CONNECT %s HTTP/1.1\\r\\nHost: %s\\r\\n\\r\\n' % (target, target)).encode())
            answer = s.recv(200).split(b'\\r\\n')[0].decode(); s.close(); return answer
        def grep(root, needles):
            hits = []
            for d, _, names in os.walk(root):
                for n in names:
                    try:
                        data = open(os.path.join(d, n), 'rb').read(1 << 20)
                    except OSError:
                        continue
                    hits += [os.path.join(d, n) for x in needles if x.encode() in data]
            return hits
        attempt('platform_port', lambda: tcp('127.0.0.1', {srv.port}))
        attempt('private', lambda: tcp({PRIVATE_ADDRESS!r}, 80))
        attempt('postgres', lambda: unix({PG_SOCKET!r}))
        attempt('other_data', lambda: open({str(secret_dir / 'frazil.db-wal')!r}).read())
        attempt('own_data', lambda: os.listdir({str(srv.data_dir)!r}))
        attempt('run', lambda: os.listdir('/run'))
        attempt('root_home', lambda: os.listdir('/root'))
        attempt('proxy_platform', lambda: proxy('127.0.0.1:{srv.port}'))
        attempt('proxy_other_host', lambda: proxy('example.com:443'))
        attempt('proxy_registry', lambda: proxy('pypi.org:443'))
        # reversed here, so this very source (copied into the build) does not hold them
        secrets_seen = [x[::-1] for x in [{'pip-s3cret-pw'[::-1]!r}, {'npm-s3cret-token'[::-1]!r}, {srv.admin_key[::-1]!r}]]
        r['env_secrets'] = [k for k, v in os.environ.items() if any(s in v for s in secrets_seen)]
        r['env_frazil'] = [k for k in os.environ if k.startswith('FRAZIL')]
        r['pip_index'] = os.environ.get('PIP_INDEX_URL')
        r['file_secrets'] = grep('/build', secrets_seen) + grep('/etc', secrets_seen) + grep('/tmp', secrets_seen)
        r['uid'] = os.getuid()
        r['pid'] = os.getpid()
        subprocess.Popen(['sh', '-c', 'sleep 1000 # {token}'], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        """
        response = srv.deploy("spy", python_bundle(backend_sdist, python_spy(body)), expect=400)
        message = response.json()["message"]
        r = report(message)
        assert r["platform_port"] == "ConnectionRefusedError", r  # nothing listens on its own `lo`
        assert r["private"] == "OSError" or r["private"].endswith("Error") and r["private"] != "connected", r
        assert r["postgres"] == "FileNotFoundError", r
        assert r["other_data"] == "FileNotFoundError", r
        assert r["own_data"] == "FileNotFoundError", r
        assert r["run"] == "FileNotFoundError", r
        assert r["root_home"] == "PermissionError", r  # 0711: only the interpreter's prefix below it
        assert r["proxy_platform"].startswith("HTTP/1.1 403"), r
        assert r["proxy_other_host"].startswith("HTTP/1.1 403"), r
        assert r["proxy_registry"].startswith("HTTP/1.1 200"), r
        assert r["env_secrets"] == [] and r["env_frazil"] == [] and r["file_secrets"] == [], r
        assert r["pip_index"] == "https://pypi.org/simple", r  # user info removed
        assert r["uid"] >= BUILD_FIRST_UID and r["pid"] != os.getpid(), r
        assert "pip-s3cret-pw" not in message and "other-platform-secret" not in message
        log = srv.client().get("/v1/functions/spy/versions/1").json()["version"]["build_log"]
        assert f"refused CONNECT 127.0.0.1:{srv.port}" in log and "not a configured package registry" in log
        # the daemon (setsid, sleeping 1000 s) was killed with the build's cgroup
        assert not [line for line in build_processes() if token in line]
        bystander(srv)

    def test_fork_bomb_is_bounded_by_the_pids_limit(self, server_factory, backend_sdist, bystander):
        srv = server_factory(FRAZIL_BUILD_PIDS_MAX="48", FRAZIL_BUILD_TIMEOUT_S="45")
        body = """
        children = 0
        for _ in range(400):
            try:
                if os.fork() == 0:
                    os.closerange(0, 1024)  # not holding pip's output pipe open
                    time.sleep(1000); os._exit(0)
                children += 1
            except OSError as e:
                r['stopped_by'] = e.__class__.__name__
                break
        r['children'] = children
        """
        response = srv.deploy("forks", python_bundle(backend_sdist, python_spy(body)), expect=400)
        r = report(response.json()["message"])
        assert r["children"] < 48 and r.get("stopped_by") == "BlockingIOError", r
        bystander(srv)

    def test_memory_bomb_is_killed_in_its_cgroup(self, server_factory, backend_sdist, bystander):
        srv = server_factory(FRAZIL_BUILD_MEMORY_MB="192", FRAZIL_BUILD_TIMEOUT_S="45")
        body = """
        blocks = []
        for _ in range(64):  # at most 2 GB, far above the limit
            blocks.append(bytearray(32 * 1024 * 1024))
        r['survived'] = True
        """
        response = srv.deploy("memory", python_bundle(backend_sdist, python_spy(body)), expect=400)
        message = response.json()["message"]
        assert "the build ran out of memory (the build's limit is 192 MB)" in message, message
        bystander(srv)

    def test_cannot_touch_another_build_or_a_finished_layer(self, server_factory, backend_sdist, make_wheel,
                                                           bystander):
        """Two builds at once: one (running, paused by the test) and one that tries to write
        into the other's folder and into a finished layer. Each runs under its own uid."""
        srv = server_factory(FRAZIL_BUILD_TIMEOUT_S="45")
        srv.deploy("done", {"index.py": "import tinypkg\ndef main(e, c):\n    return tinypkg.VALUE\n",
                                   "requirements.txt": "./wheels/tinypkg-1.0-py3-none-any.whl\n",
                                   "wheels/tinypkg-1.0-py3-none-any.whl": make_wheel()})
        layer = srv.data_dir / "layers" / layer_of(srv, "done")
        marker = secrets.token_hex(6)
        paused = ("import os, time\n"
                  f"open('/build/work/running-{marker}', 'w').close()\n"
                  "deadline = time.monotonic() + 120\n"
                  "while not os.path.exists('/build/work/go') and time.monotonic() < deadline:\n"
                  "    time.sleep(0.05)\n"
                  "def get_requires_for_build_wheel(config_settings=None):\n    return []\n"
                  "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
                  "    raise SystemExit('paused build ends here')\n")
        results = {}
        first = threading.Thread(target=lambda: results.setdefault(
            "paused", srv.deploy("paused", python_bundle(backend_sdist, paused, "paused"), expect=None)))
        first.start()
        found = wait_until(lambda: glob.glob(f"/tmp/frazil-build-*/box/work/running-{marker}"), 60,
                           what="the paused build to start")
        other_box = Path(found[0]).parent.parent
        body = f"""
        def write(path):
            with open(path, 'w') as f:
                f.write('tampered')
            return 'written'
        attempt('other_work', lambda: write({str(other_box / 'work' / 'evil.txt')!r}))
        attempt('other_target', lambda: write({str(other_box / 'target' / 'evil.py')!r}))
        attempt('layer', lambda: write({str(layer / 'tinypkg' / '__init__.py')!r}))
        attempt('digest', lambda: write({str(layer.parent / '.digests' / layer.name)!r}))
        attempt('other_tmp', lambda: os.listdir('/tmp'))
        attempt('proc_uids', lambda: sorted(set(os.stat('/proc/' + p).st_uid for p in os.listdir('/proc') if p.isdigit())))
        r['uid'] = os.getuid()
        """
        response = srv.deploy("attacker", python_bundle(backend_sdist, python_spy(body)), expect=400)
        r = report(response.json()["message"])
        (other_box / "work" / "go").write_text("")
        first.join(120)
        assert r["other_work"] == r["other_target"] == "FileNotFoundError", r
        assert r["layer"] == r["digest"] == "FileNotFoundError", r
        assert r["other_tmp"] == [], r
        assert r["proc_uids"] == [r["uid"]], r  # its own PID namespace: only its own processes
        assert not (other_box / "work" / "evil.txt").exists()
        paused_log = results["paused"].json()["message"]
        assert "paused build ends here" in paused_log
        paused_uid = int(srv.client().get("/v1/functions/paused/versions/1").json()["version"]["build_log"]
                         .split("build sandbox: uid ")[1].split(",")[0])
        assert paused_uid != r["uid"] and min(paused_uid, r["uid"]) >= BUILD_FIRST_UID
        assert srv.invoke("done")["result"] == "tiny"
        bystander(srv)


@needs_npm
class TestNpmInstallScript:
    def test_install_script_reaches_nothing(self, server_factory, npm_tarball, secret_dir, bystander):
        token = secrets.token_hex(6)
        srv = server_factory(npm_config__authToken="npm-s3cret-token", FRAZIL_BUILD_TIMEOUT_S="45")
        probe = f"""
        const net = require('net'), fs = require('fs'), cp = require('child_process');
        const r = {{}};
        const tcp = (host, port) => new Promise((ok) => {{
          const s = net.connect({{host, port, timeout: 3000}});
          s.on('connect', () => {{ s.destroy(); ok('connected'); }});
          s.on('timeout', () => {{ s.destroy(); ok('timeout'); }});
          s.on('error', (e) => ok(e.code));
        }});
        const unix = (path) => new Promise((ok) => {{
          const s = net.connect(path); s.on('connect', () => {{ s.destroy(); ok('connected'); }});
          s.on('error', (e) => ok(e.code));
        }});
        const read = (p) => {{ try {{ return fs.readFileSync(p, 'utf8'); }} catch (e) {{ return e.code; }} }};
        (async () => {{
          r.platform_port = await tcp('127.0.0.1', {srv.port});
          r.private = await tcp({PRIVATE_ADDRESS!r}, 80);
          r.postgres = await unix({PG_SOCKET!r});
          r.other_data = read({str(secret_dir / 'frazil.db-wal')!r});
          r.admin_key = read({str(srv.data_dir / 'admin.key')!r});
          r.env_secrets = Object.entries(process.env).filter(([k, v]) => /s3cret|{srv.admin_key}/.test(v) || /authToken/i.test(k)).map(([k]) => k);
          r.uid = process.getuid();
          cp.spawn('sh', ['-c', 'sleep 1000 # {token}'], {{detached: true, stdio: 'ignore'}}).unref();
          console.log({SPY!r} + JSON.stringify(r));
          process.exit(1);
        }})();
        """
        files = {
            "index.js": "exports.main = async () => 1;",
            "package.json": json.dumps({"name": "fn", "version": "1.0.0",
                                        "dependencies": {"probe": "file:./probe",
                                                         "tiny-dep": "file:./vendor/tiny-dep-1.0.0.tgz"}}),
            "vendor/tiny-dep-1.0.0.tgz": npm_tarball(),
            "probe/package.json": json.dumps({"name": "probe", "version": "1.0.0",
                                              "scripts": {"install": "node probe.js"}}),
            "probe/probe.js": textwrap.dedent(probe),
        }
        response = srv.deploy("npmspy", files, expect=400)
        r = report(response.json()["message"])
        assert r["platform_port"] == "ECONNREFUSED", r
        assert r["private"] in ("ENETUNREACH", "EHOSTUNREACH", "timeout"), r
        assert r["postgres"] == "ENOENT" and r["other_data"] == "ENOENT" and r["admin_key"] == "ENOENT", r
        assert r["env_secrets"] == [] and r["uid"] >= BUILD_FIRST_UID, r
        assert not [line for line in build_processes() if token in line]
        bystander(srv)


def test_references_outside_the_bundle_are_refused_at_deploy(server, unique_name):
    """`-r /etc/passwd` and friends: 400 naming the line, before anything runs."""
    cases = {
        "-r /etc/passwd": "requirements.txt line 2",
        "-c /etc/shadow": "requirements.txt line 2",
        "--index-url http://10.0.0.1/simple": "must be a URL on a configured package registry",
        "--find-links /opt/wheels": "--find-links must name a folder inside the bundle",
        "pkg @ file:///etc/passwd": "a requirement may only come from",
        "../../outside.whl": "is not inside the bundle",
    }
    for line, expected in cases.items():
        response = server.deploy(unique_name, {"index.py": "def main(e, c):\n    return 1\n",
                                               "requirements.txt": f"# first\n{line}\n"}, expect=400)
        message = response.json()["message"]
        assert expected in message and line in message, (line, message)
        assert "/etc/passwd:" not in message and "root:x:0" not in message
    response = server.deploy(unique_name, {"index.js": "exports.main = async () => 1;",
                                           "package.json": json.dumps({"name": "x", "version": "1.0.0",
                                                                       "dependencies": {"up": "file:../../etc"}})},
                             runtime="nodejs20", expect=400)
    assert "package.json dependencies.up" in response.json()["message"]


def test_tampered_layer_is_refused_at_cold_start_and_rebuilt_at_deploy(server_factory, make_wheel):
    srv = server_factory()
    files = {"index.py": "import tinypkg\ndef main(e, c):\n    return tinypkg.VALUE\n",
             "requirements.txt": "./wheels/tinypkg-1.0-py3-none-any.whl\n",
             "wheels/tinypkg-1.0-py3-none-any.whl": make_wheel()}
    response = srv.deploy("fn", files)
    layer = srv.data_dir / "layers" / layer_of(srv, "fn")
    target = layer / "tinypkg" / "__init__.py"
    assert oct(target.stat().st_mode & 0o777) == "0o444" and target.stat().st_uid == 0
    srv.stop()
    os.chmod(target, 0o644)
    target.write_text("VALUE = 'evil'\n")
    os.chmod(target, 0o444)
    srv.start()
    body = srv.invoke("fn")
    assert not body["success"] and "does not match its recorded digest" in body["message"], body
    again = srv.deploy("fn", files)
    assert "building it again" in again.json()["build_log"]
    assert srv.invoke("fn")["result"] == "tiny"
