"""Whole projects through a real server: dependencies built once at deploy into shared layers,
Python and Node, relative imports and handler paths, build caching, failures and time limits.
Packages come from the tests themselves (a wheel, an `npm pack` tarball), except the seed's
log4js example, which installs from the npm registry."""
import json
import shutil
import threading

import pytest

from tests.conftest import EXAMPLES

needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")

PY_PROJECT = {
    "src/app.py": "import tinypkg\nfrom .helpers import shout\n"
                  "def handle(event, context):\n    return shout(tinypkg.VALUE)\n",
    "src/__init__.py": "",
    "src/helpers.py": "def shout(text):\n    return text.upper() + '!'\n",
    "requirements.txt": "./wheels/tinypkg-1.0-py3-none-any.whl\n",
}

NODE_PROJECT = {
    "package.json": json.dumps({"name": "proj", "version": "1.0.0",
                                "dependencies": {"tiny-dep": "file:./deps/tiny-dep-1.0.0.tgz"}}),
    "cloud/api/index.js": "const tiny = require('tiny-dep');\nconst User = require('../../models/user');\n"
                          "const { fmt } = require('./lib/fmt');\n"
                          "exports.main = async (event) => fmt(tiny(User.name(event.id)));\n",
    "cloud/api/lib/fmt.js": "exports.fmt = (s) => `[${s}]`;\n",
    "models/user.js": "exports.name = (id) => `user-${id}`;\n",
}


def layer_of(server, name: str) -> str:
    return server.client().get(f"/v1/functions/{name}/versions").json()["versions"][0]["layer"]


def build_log(response) -> str:
    return response.json().get("build_log") or ""


def test_python_project_with_a_wheel_relative_imports_and_a_handler_path(server, unique_name, make_wheel):
    """requirements.txt is installed at deploy; the package, a sub-package and a relative
    import all resolve; the handler lives in src/app.py."""
    files = dict(PY_PROJECT, **{"wheels/tinypkg-1.0-py3-none-any.whl": make_wheel(body="VALUE = 'from a wheel'\n")})
    response = server.deploy(unique_name, files, handler="src/app.handle", runtime="python3.11")
    assert "building dependency layer" in build_log(response)
    assert server.invoke(unique_name)["result"] == "FROM A WHEEL!"


@needs_npm
def test_node_project_with_a_package_relative_requires_and_a_handler_path(server, unique_name, npm_tarball):
    """package.json is installed at deploy; require() of the package, of ../../models and of
    ./lib all resolve; the handler lives in cloud/api/index.js."""
    files = dict(NODE_PROJECT, **{"deps/tiny-dep-1.0.0.tgz": npm_tarball()})
    server.deploy(unique_name, files, handler="cloud/api/index.main")
    body = server.invoke(unique_name, {"id": 7})
    assert body["success"], body
    assert body["result"] == "[tiny:user-7]"


def test_unchanged_requirements_reuse_the_layer(server, unique_name, make_wheel):
    """A redeploy with new code and the same requirements reuses the layer (no installer
    run), and so does another function with the same manifest."""
    wheel = make_wheel(body="VALUE = 'cached'\n")
    files = dict(PY_PROJECT, **{"wheels/tinypkg-1.0-py3-none-any.whl": wheel})
    first = server.deploy(unique_name, files, handler="src/app.handle")
    changed = dict(files, **{"src/helpers.py": "def shout(text):\n    return text + '?'\n"})
    second = server.deploy(unique_name, changed, handler="src/app.handle")
    other = server.deploy(unique_name + "-b", files, handler="src/app.handle")
    assert "building dependency layer" in build_log(first)
    for response in (second, other):
        assert "reusing it" in build_log(response) and "pip" not in build_log(response)
    assert layer_of(server, unique_name) == layer_of(server, unique_name + "-b")
    assert server.invoke(unique_name)["result"] == "cached?"


def test_failed_build_answers_400_with_the_installer_error_and_keeps_the_active_version(server, unique_name,
                                                                                      make_wheel):
    files = dict(PY_PROJECT, **{"wheels/tinypkg-1.0-py3-none-any.whl": make_wheel()})
    server.deploy(unique_name, files, handler="src/app.handle")
    broken = dict(files, **{"requirements.txt": "--no-index\n./wheels/tinypkg-1.0-py3-none-any.whl\n"
                                                "no-such-package-frazil==0.0.1\n"})
    response = server.deploy(unique_name, broken, handler="src/app.handle", expect=400)
    body = response.json()
    assert body["error"]["type"] == "BuildFailed" and "version 2" in body["message"]
    assert "no-such-package-frazil" in body["message"]  # pip's own words
    versions = server.client().get(f"/v1/functions/{unique_name}/versions").json()["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(2, "failed"), (1, "ready")]
    log = server.client().get(f"/v1/functions/{unique_name}/versions/2").json()["version"]["build_log"]
    assert "no-such-package-frazil" in log
    assert server.client().get(f"/v1/functions/{unique_name}").json()["function"]["version"] == 1
    assert server.invoke(unique_name)["result"] == "TINY!"


def test_build_that_exceeds_its_time_limit_is_stopped(server_factory, backend_sdist):
    """A dependency whose build hangs is killed at FRAZIL_BUILD_TIMEOUT_S: 400, nothing active."""
    srv = server_factory(FRAZIL_BUILD_TIMEOUT_S="3")
    hang = backend_sdist("hangpkg", "import time\n"
                                    "def build_wheel(*a, **k):\n    time.sleep(600)\n"
                                    "def get_requires_for_build_wheel(*a, **k):\n    time.sleep(600)\n    return []\n")
    files = {"index.py": "def main(e, c):\n    return 1\n", "requirements.txt": "--no-index\n./vendor/hangpkg-1.0.tar.gz\n",
             "vendor/hangpkg-1.0.tar.gz": hang}
    response = srv.deploy("hangs", files, expect=400)
    assert "timed out after 3 s" in response.json()["message"]
    assert srv.client().get("/v1/functions/hangs").status_code == 404


def test_concurrent_deploys_share_one_build(server_factory, make_wheel):
    """Deploys racing on one manifest build the layer once; all of them work."""
    srv = server_factory()
    files = dict(PY_PROJECT, **{"wheels/tinypkg-1.0-py3-none-any.whl": make_wheel(body="VALUE = 'raced'\n")})
    responses = {}

    def deploy(name):
        responses[name] = srv.deploy(name, files, handler="src/app.handle", expect=None)

    threads = [threading.Thread(target=deploy, args=(f"race-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert {n: r.status_code for n, r in responses.items()} == {f"race-{i}": 200 for i in range(4)}
    built = [n for n, r in responses.items() if "building dependency layer" in build_log(r)]
    assert len(built) == 1, {n: build_log(r) for n, r in responses.items()}
    assert len({layer_of(srv, f"race-{i}") for i in range(4)}) == 1
    assert {srv.invoke(f"race-{i}")["result"] for i in range(4)} == {"RACED!"}


class TestSeedExamples:
    def test_hello_world_node(self, server):
        """`exports.main = () => 'HelloWorld'` answers exactly the seed's envelope."""
        result = server.cli("deploy", str(EXAMPLES / "node-hello"))
        assert result.returncode == 0, result.stderr
        body = server.invoke("node-hello")
        assert {k: body[k] for k in ("success", "message", "result")} == \
            {"success": True, "message": "success", "result": "HelloWorld"}

    @needs_npm
    @pytest.mark.registry
    def test_log4js_example_from_the_registry(self, server):
        """The seed's log4js function, unchanged: an npm package and require('../models/user')."""
        result = server.cli("deploy", str(EXAMPLES / "node-log4js"))
        assert result.returncode == 0, result.stderr
        assert server.invoke("node-log4js")["result"] == [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}]

    def test_thumbnail_with_imagemagick_in_tmp(self, server):
        if shutil.which("convert") is None:
            pytest.skip("ImageMagick is not installed on this machine (scripts/setup.sh installs it)")
        result = server.cli("deploy", str(EXAMPLES / "thumbnail"))
        assert result.returncode == 0, result.stderr
        body = server.invoke("thumbnail", {"size": 64})
        assert body["success"], body
        assert body["result"]["size"] == "64x48" and body["result"]["bytes"] > 0


class TestNodeRuntime:
    def test_errors_carry_name_message_and_stack(self, server, unique_name):
        server.deploy(unique_name, {"index.js": "class Boom extends Error { constructor(m) { super(m); "
                                                "this.name = 'Boom'; } }\n"
                                                "exports.main = async () => { throw new Boom('kaput'); };\n"})
        body = server.invoke(unique_name)
        assert body["success"] is False and body["error"]["type"] == "Boom" and body["message"] == "kaput"
        assert "index.js" in body["error"]["stack"]

    def test_logs_warm_reuse_and_timeout(self, server, unique_name):
        server.deploy(unique_name, {"index.js": "let n = 0;\nexports.main = (event) => {\n"
                                                "  n += 1; console.log('call', n); console.error('err', n);\n"
                                                "  if (event.hang) { while (true) {} }\n  return n;\n};\n"},
                      timeout=1)
        first, second = server.invoke(unique_name), server.invoke(unique_name)
        assert (first["result"], second["result"], second["cold"]) == (1, 2, False)
        assert server.invocation(second["invocation_id"])["logs"] == "call 2\nerr 2\n"
        hung = server.invoke(unique_name, {"hang": True})
        assert hung["error"]["type"] == "Timeout"
        assert server.invoke(unique_name)["result"] == 1  # a fresh instance after the timeout
