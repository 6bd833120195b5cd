"""The build sandbox's rules, one unit at a time: references that leave the bundle, the
registries and the environment a build gets, the registry proxy's refusals, the capped log,
build uids and layer digests. (Hostile builds through a real server: test_build_sandbox.py.)"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket

import pytest

from frazil.build import integrity
from frazil.build.buildbox import BUILD_FIRST_UID, BuildLog, BuildUids
from frazil.build.manifest import read_manifest
from frazil.build.registries import Registries, build_env
from frazil.build.registry_proxy import RegistryProxy, denied_range
from frazil.errors import BuildFailed
from frazil.runtimes import NODE, PYTHON


class TestReferencesOutsideTheBundle:
    @pytest.mark.parametrize("line", [
        "-r /etc/passwd", "-r../../etc/passwd", "--requirement=/etc/passwd", "-c /etc/shadow", "-r ~/.netrc",
        "--index-url http://10.0.0.1/simple", "-i https://evil.example/simple", "--extra-index-url=http://x/",
        "--find-links /opt/wheels", "-f ../elsewhere", "--find-links https://evil.example/wheels",
        "-e /abs/project", "-e git+https://github.com/x/y#egg=y", "pkg @ file:///etc/passwd",
        "pkg @ https://evil.example/pkg.whl", "/abs/pkg.whl", "../outside.tar.gz", "file:../..",
    ])
    def test_python_line_is_refused_naming_it(self, tmp_path, line):
        (tmp_path / "requirements.txt").write_text(f"# a comment\n{line}\n")
        with pytest.raises(BuildFailed) as info:
            read_manifest(PYTHON, tmp_path, Registries.configured(environ={}))
        assert info.value.status == 400
        assert f"requirements.txt line 2 ({line!r})" in info.value.message

    @pytest.mark.parametrize("line", [
        "humanize==4.9.0", "--index-url https://pypi.org/simple", "-f ./wheels", "-r more.txt",
        "--find-links https://files.pythonhosted.org/x", "pkg @ https://files.pythonhosted.org/p/pkg.whl",
        "--extra-index-url https://mirror.internal.example/simple",
    ])
    def test_python_line_inside_the_bundle_or_on_a_registry_is_kept(self, tmp_path, line):
        (tmp_path / "wheels").mkdir()
        (tmp_path / "more.txt").write_text("tinypkg\n")
        (tmp_path / "requirements.txt").write_text(f"{line}\nsomething\n")
        registries = Registries.configured(("mirror.internal.example",), environ={})
        assert read_manifest(PYTHON, tmp_path, registries) is not None

    def test_a_nested_file_is_judged_too(self, tmp_path):
        (tmp_path / "requirements.txt").write_text("-r nested/more.txt\n")
        (tmp_path / "nested").mkdir()
        (tmp_path / "nested" / "more.txt").write_text("ok\n-r ../../../etc/passwd\n")
        with pytest.raises(BuildFailed, match=r"nested/more.txt line 2"):
            read_manifest(PYTHON, tmp_path, Registries.configured(environ={}))

    @pytest.mark.parametrize("spec", ["file:../..", "file:/etc", "../other", "/abs/dir", "~/x",
                                      "https://evil.example/x.tgz"])
    def test_node_dependency_is_refused_naming_it(self, tmp_path, spec):
        (tmp_path / "package.json").write_text(json.dumps({"name": "x", "dependencies": {"dep": spec}}))
        with pytest.raises(BuildFailed, match=r"package.json dependencies.dep"):
            read_manifest(NODE, tmp_path, Registries.configured(environ={}))

    def test_node_lockfile_outside_the_bundle_is_refused(self, tmp_path):
        (tmp_path / "package.json").write_text(json.dumps({"name": "x", "dependencies": {"dep": "1.0.0"}}))
        (tmp_path / "package-lock.json").write_text(json.dumps({"packages": {
            "": {"name": "x"}, "node_modules/dep": {"resolved": "file:../../etc/dep.tgz"}}}))
        with pytest.raises(BuildFailed, match=r"package-lock.json node_modules/dep"):
            read_manifest(NODE, tmp_path, Registries.configured(environ={}))


class TestRegistriesAndEnvironment:
    ENV = {
        "PIP_INDEX_URL": "https://user:pip-secret@pypi.internal.example:8443/simple",
        "PIP_EXTRA_INDEX_URL": "https://a:b@extra.example/simple https://plain.example/simple",
        "npm_config_registry": "https://tok:npm-secret@npm.internal.example/",
        "npm_config__authToken": "npm-token-secret", "NPM_TOKEN": "npm-token-secret",
        "PIP_CLIENT_CERT": "/root/client.pem", "PIP_FIND_LINKS": "/opt/wheels",
        "FRAZIL_ADMIN_KEY": "admin-secret", "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt", "LANG": "C.UTF-8",
    }

    def test_configured_hosts_and_ports(self):
        registries = Registries.configured(("more.example", "https://other.example:9443/x"), environ=self.ENV)
        for host in ("pypi.org", "files.pythonhosted.org", "registry.npmjs.org", "pypi.internal.example",
                     "extra.example", "plain.example", "npm.internal.example", "more.example"):
            assert registries.allows(host, 443), host
        assert registries.allows("pypi.internal.example", 8443) and registries.allows("other.example", 9443)
        assert not registries.allows("pypi.org", 22) and not registries.allows("evil.example", 443)
        assert not registries.allows("127.0.0.1", 443)

    def test_the_build_environment_holds_no_credential(self):
        registries = Registries.configured(environ=self.ENV)
        env = build_env(registries, home="/build/home", environ=self.ENV)
        text = json.dumps(env)
        for secret in ("pip-secret", "npm-secret", "npm-token-secret", "admin-secret", "aws-secret", "a:b@"):
            assert secret not in text, secret
        assert env["PIP_INDEX_URL"] == "https://pypi.internal.example:8443/simple"
        assert env["PIP_EXTRA_INDEX_URL"] == "https://extra.example/simple https://plain.example/simple"
        assert env["npm_config_registry"] == "https://npm.internal.example/"
        assert env["PIP_CONFIG_FILE"] == os.devnull and env["npm_config_globalconfig"] == os.devnull
        assert env["HTTPS_PROXY"] == env["PIP_PROXY"] == env["npm_config_https_proxy"] == "http://127.0.0.1:3128"
        assert "PIP_FIND_LINKS" not in env and "PIP_CLIENT_CERT" not in env
        assert env["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"


class TestRegistryProxy:
    @pytest.mark.parametrize("address,kind", [
        ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"), ("169.254.1.1", "link-local"), ("100.64.0.1", "shared (CGNAT)"),
        ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"), ("::1", "loopback"), ("fd00::1", "private"),
        ("fe80::1", "link-local"), ("::ffff:10.0.0.1", "private"), ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::", "loopback"), ("203.0.113.80", None), ("151.101.0.223", None), ("2a04:4e42::223", None),
    ])
    def test_denied_ranges(self, address, kind):
        assert denied_range(ipaddress.ip_address(address)) == kind

    async def _ask(self, request: bytes, registries: Registries | None = None) -> tuple[str, list[str]]:
        log: list[str] = []
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        proxy = RegistryProxy(registries or Registries.configured(environ={}), log.append)
        await proxy.serve(listener)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), 30)
            writer.close()
            return answer.decode().strip(), log
        finally:
            await proxy.close()

    @pytest.mark.parametrize("request_line,reason", [
        (b"CONNECT 127.0.0.1:8080 HTTP/1.1", "127.0.0.1:8080 is not a configured package registry"),
        (b"CONNECT evil.example:443 HTTP/1.1", "evil.example:443 is not a configured package registry"),
        (b"CONNECT pypi.org:22 HTTP/1.1", "pypi.org:22 is not a configured package registry"),
        (b"GET http://169.254.169.254/latest HTTP/1.1", "169.254.169.254:80 is not a configured"),
        (b"GET http://user:pw@pypi.org/ HTTP/1.1", "user info in a proxied URL"),
        (b"GET /simple/ HTTP/1.1", "only CONNECT and http:// requests are proxied"),
    ])
    async def test_refusals_answer_403_and_are_logged(self, request_line, reason):
        answer, log = await self._ask(request_line + b"\r\nHost: x\r\n\r\n")
        assert answer == "HTTP/1.1 403 Forbidden"
        assert len(log) == 1 and reason in log[0], log

    async def test_a_registry_resolving_to_a_denied_address_is_refused(self):
        registries = Registries.configured(("localhost",), environ={})
        answer, log = await self._ask(b"CONNECT localhost:443 HTTP/1.1\r\n\r\n", registries)
        assert answer == "HTTP/1.1 403 Forbidden" and "a loopback address" in log[0], log

    @pytest.mark.registry
    async def test_connect_to_a_registry_is_tunnelled(self):
        answer, log = await self._ask(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n")
        assert answer == "HTTP/1.1 200 Connection established" and log == []


class TestBuildLog:
    def test_capped_with_a_marker_and_the_tail_kept(self):
        lines: list[str] = []
        out = BuildLog(lines.append, cap=1000)
        for i in range(1000):
            out.line(f"line {i:04d} " + "x" * 40)
        out.close()
        assert sum(len(l) + 1 for l in lines[:-2]) <= 1000
        assert lines[-2].startswith("[frazil: the build log reached its cap")
        assert lines[-1].startswith("[frazil: build log truncated,") and "bytes dropped" in lines[-1]
        assert out.tail[-1].startswith("line 0999")  # the failure message still gets the end

    async def test_a_flooding_build_leaves_a_bounded_log(self, tmp_path, write_tree, backend_sdist):
        from frazil.build.layers import ensure_layer
        from frazil.settings import Settings

        flood = "import sys\nfor i in range(5000):\n    print('flood', i, 'x' * 100)\nraise SystemExit('END')\n"
        code = write_tree(tmp_path / "c", {"requirements.txt": "--no-index\n./vendor/flood-1.0.tar.gz\n",
                                           "vendor/flood-1.0.tar.gz": backend_sdist("flood", flood)})
        lines: list[str] = []
        with pytest.raises(BuildFailed) as info:
            await ensure_layer(Settings(data_dir=tmp_path / "data", log_cap_bytes=64 * 1024), "python3.11", code,
                               lines.append)
        assert sum(len(line) + 1 for line in lines) < 64 * 1024 + 4096  # the cap, plus the platform's own lines
        assert any(line.startswith("[frazil: build log truncated,") for line in lines)
        assert "END" in info.value.message and len(info.value.message) < 120 * 1024


class TestBuildUids:
    def test_live_builds_never_share_a_uid(self, tmp_path):
        one, two = BuildUids("abc123", str(tmp_path)), BuildUids("abc123", str(tmp_path))
        leases = [one.acquire(), two.acquire(), one.acquire()]
        uids = [uid for uid, _ in leases]
        assert len(set(uids)) == 3 and min(uids) >= BUILD_FIRST_UID
        os.close(leases[0][1])
        assert two.acquire()[0] == uids[0]  # released: reused
        for _, fd in leases[1:]:
            os.close(fd)


class TestLayerDigest:
    def test_a_changed_file_or_mode_fails_verification(self, tmp_path):
        layer = tmp_path / "layers" / "k1"
        built = tmp_path / "built"
        (built / "pkg").mkdir(parents=True)
        (built / "pkg" / "__init__.py").write_text("VALUE = 1\n")
        os.symlink("pkg", built / "alias")
        integrity.record(built, layer)
        os.rename(built, layer)
        integrity.forget(layer)
        integrity.verify(layer)
        (layer / "pkg" / "__init__.py").write_text("VALUE = 2\n")
        integrity.verify(layer)  # checked once per process: the cache answers
        integrity.forget(layer)
        with pytest.raises(integrity.LayerTampered, match="does not match its recorded digest"):
            integrity.verify(layer)
        (layer / "pkg" / "__init__.py").write_text("VALUE = 1\n")
        integrity.verify(layer)
        integrity.forget(layer)
        os.chmod(layer / "pkg" / "__init__.py", 0o666)
        with pytest.raises(integrity.LayerTampered):
            integrity.verify(layer)

    def test_a_layer_without_a_digest_is_refused(self, tmp_path):
        (tmp_path / "layers" / "old").mkdir(parents=True)
        with pytest.raises(integrity.LayerTampered, match="no recorded digest"):
            integrity.verify(tmp_path / "layers" / "old")


class TestWithoutTheBuildSandbox:
    """Where the build sandbox cannot run (no root, no cgroups), a build is refused, unless
    the operator chose FRAZIL_SANDBOX=plain (no isolation anywhere: development only)."""

    @pytest.fixture
    def no_sandbox(self, monkeypatch):
        from frazil.build.buildbox import BuildBox

        monkeypatch.setattr(BuildBox, "unavailable", lambda self: "missing for this test")

    @pytest.fixture
    def project(self, tmp_path, make_wheel):
        code = tmp_path / "code"
        (code / "wheels").mkdir(parents=True)
        (code / "wheels" / "tinypkg-1.0-py3-none-any.whl").write_bytes(make_wheel())
        (code / "requirements.txt").write_text("--no-index\n./wheels/tinypkg-1.0-py3-none-any.whl\n")
        return code

    async def test_refused_in_isolated_mode(self, no_sandbox, project, tmp_path):
        from frazil.build.layers import ensure_layer
        from frazil.settings import Settings

        with pytest.raises(BuildFailed, match="need the build sandbox, which cannot run here: missing for this test"):
            await ensure_layer(Settings(data_dir=tmp_path / "data"), "python3.11", project, lambda line: None)

    async def test_built_unisolated_in_plain_mode(self, no_sandbox, project, tmp_path):
        from frazil.build.layers import ensure_layer
        from frazil.settings import Settings

        lines: list[str] = []
        layer = await ensure_layer(Settings(data_dir=tmp_path / "data", sandbox="plain"), "python3.11", project,
                                   lines.append)
        assert (layer / "tinypkg" / "__init__.py").is_file()
        assert any(line.startswith("build sandbox: none (FRAZIL_SANDBOX=plain") for line in lines)
        integrity.verify(layer)


class TestLeftBuildFolders:
    def test_only_unheld_build_folders_are_swept(self, tmp_path, monkeypatch):
        """A platform killed mid-build leaves its build folder; the next one removes it, but
        never a folder another process is building in, nor one without a lock file."""
        import fcntl
        import tempfile

        from frazil.build import layers

        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        monkeypatch.setattr(layers, "_swept", [False])
        stale, busy, foreign = (tmp_path / f"frazil-build-{n}" for n in ("stale", "busy", "foreign"))
        for root in (stale, busy, foreign):
            (root / "box" / "work").mkdir(parents=True)
        (stale / ".lock").touch()
        held = layers._hold(busy)
        try:
            layers._sweep_build_roots()
            assert not stale.exists() and busy.exists() and foreign.exists()
        finally:
            os.close(held)
        with open(busy / ".lock") as f:  # released with its descriptor
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
