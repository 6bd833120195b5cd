"""Bad input gets a clear error and loses nothing: bundles, configs, events, auth, names."""
import io
import json
import os
import stat
import tarfile
import zipfile

import httpx
import pytest

from frazil.testing import tar_files, zip_files
from frazil.testing.server import HTTP_TIMEOUT_S

HELLO = {"index.py": "def main(event, context):\n    return 'still here'\n"}


def zip_with(entries) -> bytes:
    """entries: (ZipInfo or name, data)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def symlink_zip(name: str, target: str) -> bytes:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_with([("index.py", HELLO["index.py"]), (info, target)])


def tar_with_symlink(name: str, target: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = HELLO["index.py"].encode()
        info = tarfile.TarInfo("index.py")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(name)
        link.type = tarfile.SYMTYPE
        link.linkname = target
        tf.addfile(link)
    return buf.getvalue()


BAD_BUNDLES = {
    "not an archive": (b"this is not a zip", "neither a zip nor a tar.gz"),
    "corrupt zip": (b"PK\x03\x04" + b"\x00" * 100, ""),
    "zip slip": (zip_files({"index.py": HELLO["index.py"], "../../escape.py": "x"}), ".."),
    "absolute path": (zip_files({"index.py": HELLO["index.py"], "/etc/evil": "x"}), "absolute"),
    "tar slip": (tar_files({"index.py": HELLO["index.py"], "../escape.py": "x"}), ".."),
    "zip symlink leaving the tree": (symlink_zip("leak", "../../../etc/shadow"), "leak"),
    "tar symlink to an absolute path": (tar_with_symlink("leak", "/etc/shadow"), "leak"),
    "NUL in a name": (zip_with([("index.py", HELLO["index.py"]), ("bad\x01name.py", "x")]), ""),
    "empty zip": (zip_with([]), "empty"),
    "no handler file": (zip_files({"other.py": "x = 1"}), "index"),
}


@pytest.mark.parametrize("case", list(BAD_BUNDLES))
def test_bad_bundle_is_refused_with_400_and_the_active_version_stays(server, unique_name, case):
    """Each hostile or broken bundle answers 400 with the reason; the function keeps serving v1."""
    server.deploy(unique_name, HELLO)
    bundle, reason = BAD_BUNDLES[case]
    response = server.deploy(unique_name, bundle, expect=400)
    body = response.json()
    assert body["success"] is False and reason.lower() in body["message"].lower()
    fn = server.client().get(f"/v1/functions/{unique_name}").json()["function"]
    assert fn["version"] == 1
    assert server.invoke(unique_name)["result"] == "still here"


def test_nothing_is_written_outside_the_function_directory(server_factory):
    """A zip-slip bundle leaves no file anywhere above the code directory."""
    srv = server_factory()
    srv.deploy("slip", zip_files({"index.py": HELLO["index.py"], "../../../slipped.txt": "x"}), expect=400)
    for root, _dirs, files in os.walk(srv.data_dir.parent):
        assert "slipped.txt" not in files, root


def test_too_many_files_and_zip_bomb(server_factory):
    """File-count and unpacked-size limits stop bundles early, with the reason."""
    srv = server_factory(FRAZIL_MAX_BUNDLE_FILES="50", FRAZIL_MAX_UNPACKED_BYTES=str(1024 * 1024))
    many = zip_files({"index.py": HELLO["index.py"], **{f"f{i}.txt": "x" for i in range(100)}})
    assert "more than 50 entries" in srv.deploy("many", many, expect=400).json()["message"]
    bomb = zip_files({"index.py": HELLO["index.py"], "zeros.bin": b"\0" * (20 * 1024 * 1024)})
    assert len(bomb) < 100_000
    message = srv.deploy("bomb", bomb, expect=400).json()["message"]
    assert "MiB" in message or "bytes" in message
    code = srv.data_dir / "code"
    assert not code.exists() or not any(code.iterdir()), "a refused bundle left files behind"


def test_oversized_bundle_is_413(server_factory):
    """A bundle over the upload limit is refused before it is read."""
    srv = server_factory(FRAZIL_MAX_BUNDLE_BYTES="10000")
    big = zip_with([("index.py", HELLO["index.py"]), ("noise.bin", os.urandom(50_000))])
    assert srv.deploy("big", big, expect=413).json()["success"] is False


@pytest.mark.parametrize("config,needle", [
    ({"memory": 512}, "memory"),
    ({"timeout": 901}, "timeout"),
    ({"timeout": 0}, "timeout"),
    ({"runtime": "ruby"}, "runtime"),
    ({"handler": "../index.main"}, "handler"),
    ({"handler": "nodot"}, "handler"),
    ({"env": {"1BAD": "x"}}, "env"),
    ({"env": {"FRAZIL_ADMIN_KEY": "x"}}, "reserved"),
    ({"resident": -1}, "resident"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_config_is_400(server, unique_name, config, needle):
    """Invalid deploy settings answer 400 naming the setting."""
    body = server.deploy(unique_name, HELLO, expect=400, **config).json()
    assert needle in body["message"]


def test_config_that_is_not_json(server, unique_name):
    response = server.client().put(f"/v1/functions/{unique_name}", files={"bundle": ("b.zip", zip_files(HELLO))},
                                   data={"config": "{not json"})
    assert response.status_code == 400 and "config" in response.json()["message"]


def test_deploy_without_bundle_or_multipart(server, unique_name):
    client = server.client()
    no_bundle = client.put(f"/v1/functions/{unique_name}", data={"config": "{}"}, files={"x": ("x", b"1")})
    assert no_bundle.status_code == 400 and "bundle" in no_bundle.json()["message"]
    not_multipart = client.put(f"/v1/functions/{unique_name}", content=b"{}")
    assert not_multipart.status_code == 400 and "multipart" in not_multipart.json()["message"]


@pytest.mark.parametrize("name", ["Upper", "1starts-with-digit", "under_score", "x" * 64, "-dash"])
def test_bad_function_names(server, name):
    body = server.deploy(name, HELLO, expect=400).json()
    assert "invalid function name" in body["message"]


def test_unknown_function_is_404(server):
    for method, path in [("POST", "/v1/functions/nope/invoke"), ("GET", "/v1/functions/nope"),
                         ("DELETE", "/v1/functions/nope"), ("GET", "/v1/functions/nope/logs"),
                         ("GET", "/v1/invocations/nope")]:
        response = server.client().request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json()["success"] is False and "nope" in response.json()["message"]


def test_broken_json_event_is_400(server, unique_name):
    server.deploy(unique_name, HELLO)
    response = server.client().post(f"/v1/functions/{unique_name}/invoke", content=b'{"name": ')
    assert response.status_code == 400 and "not valid JSON" in response.json()["message"]


def test_oversized_event_is_413(server_factory):
    srv = server_factory(FRAZIL_MAX_PAYLOAD_BYTES="1000")
    srv.deploy("small", HELLO)
    payload = json.dumps({"blob": "x" * 2000})
    response = srv.client().post("/v1/functions/small/invoke", content=payload)
    assert response.status_code == 413 and response.json()["error"]["type"] == "PayloadTooLarge"

    def chunks():
        yield payload[:500].encode()
        yield payload[500:].encode()

    chunked = srv.client().post("/v1/functions/small/invoke", content=chunks())
    assert chunked.status_code == 413


def test_auth_is_required_and_checked(server, unique_name):
    """No key → 401; a wrong key → 401; a private function cannot be invoked without the key."""
    server.deploy(unique_name, HELLO)
    anon = server.client(token=None)
    assert anon.get("/v1/functions").status_code == 401
    assert server.client(token="wrong").get("/v1/functions").status_code == 401
    assert anon.post(f"/v1/functions/{unique_name}/invoke", content=b"{}").status_code == 401
    bad_scheme = httpx.get(f"{server.url}/v1/functions", headers={"Authorization": "Basic abc"}, timeout=HTTP_TIMEOUT_S)
    assert bad_scheme.status_code == 401 and bad_scheme.json()["success"] is False


def test_public_function_needs_no_key(server, unique_name):
    server.deploy(unique_name, HELLO, public=True)
    assert server.invoke(unique_name, token=None)["result"] == "still here"


def test_hostile_result_sizes_and_crashes_do_not_hurt_the_server(server, unique_name):
    """A function that exits the process mid-call answers RuntimeExited; the server goes on."""
    server.deploy(unique_name, {"index.py": "import os\ndef main(e, c):\n"
                                            "    if e.get('exit'):\n        os._exit(3)\n    return 'fine'\n"})
    body = server.invoke(unique_name, {"exit": True})
    assert body["success"] is False and body["error"]["type"] == "RuntimeExited"
    assert "status 3" in body["message"]
    assert server.invoke(unique_name)["result"] == "fine"
