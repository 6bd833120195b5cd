"""The platform's own failures answer 503 (issue 11, item 3): a server on a PostgreSQL database
of its own, which the test makes unreachable and then restores; error responses keep the
keep-alive connection usable."""
from __future__ import annotations

import os

import pytest

from frazil.settings import Settings
from frazil.testing import wait_until
from tests.reliability.conftest import RawConnection

HELLO = {"index.py": "def main(event, context):\n    return 'hi'\n"}
READER = {"index.py": """
from frazil_sdk import db
from frazil_sdk.errors import SdkError

def main(event, context):
    try:
        return {"found": len(db.table("t").find({}))}
    except SdkError as exc:
        return {"error": exc.type, "message": exc.message}
"""}


@pytest.fixture
def conn_factory():
    made: list[RawConnection] = []

    def make(port: int, token: str | None = None) -> RawConnection:
        made.append(RawConnection(port, token))
        return made[-1]

    yield make
    for c in made:
        c.close()


def health(srv) -> tuple[int, dict]:
    response = srv.client(None, timeout=10).get("/healthz")
    return response.status_code, response.json()


def test_an_unreachable_database_is_503_then_recovers(private_database, server_factory, conn_factory):
    """While the database refuses connections: API calls that need it answer 503 with
    Retry-After and a message naming the cause, /healthz is 503 `degraded` with the reason, and
    the keep-alive connection survives every one of those answers; once it is back, the same
    server answers normally again without a restart."""
    srv = server_factory(**{Settings.env_name("database_url"): private_database.url})
    srv.deploy("hello", HELLO)
    srv.deploy("reader", READER, timeout=60)
    assert srv.invoke("hello")["result"] == "hi"
    assert srv.invoke("reader")["result"] == {"error": "NotFound", "message": "no table 't'"}
    conn = conn_factory(srv.port, srv.admin_key)
    assert conn.request("GET", "/v1/functions")[0] == 200

    private_database.cut()
    try:
        for path in ("/v1/functions", "/v1/tables", "/v1/functions/hello/invocations",
                     "/v1/tables/t/records", "/v1/functions/hello/versions/1"):
            status, headers, body = conn.request("GET", path)  # the same connection each time
            assert status == 503, (path, body)
            assert int(headers["retry-after"]) > 0
            assert b"database is unreachable" in body and b"internal error" not in body
        status, headers, body = conn.request("POST", "/v1/tables/t/records", b'{"a": 1}')
        assert status == 503 and "retry-after" in headers
        status, body = wait_until(lambda: (lambda h: h if h[0] == 503 else None)(health(srv)), 15,
                                  what="/healthz to report degraded")
        assert body["status"] == "degraded" and body["success"] is False
        assert any("database unreachable" in r for r in body["reasons"])
        assert conn.request("GET", "/healthz", token=None)[0] == 503
        # A function's SDK call is answered with the outage at once, not left hanging.
        during = srv.invoke("reader")
        assert during["result"]["error"] == "ServiceUnavailable", during
        assert "database is unreachable" in during["result"]["message"]
        assert during["duration_ms"] < 30_000
    finally:
        private_database.restore()

    wait_until(lambda: health(srv)[0] == 200, 15, what="/healthz to report ok again")
    assert health(srv)[1]["status"] == "ok"
    assert conn.request("GET", "/v1/functions")[0] == 200  # still the same connection
    assert srv.invoke("hello")["result"] == "hi"
    assert srv.client().post("/v1/tables/t/records", json={"a": 1}).status_code == 200
    # The record of the invocation that ran during the outage was kept, and is stored now.
    listed = srv.client().get("/v1/functions/reader/invocations").json()["invocations"]
    assert during["invocation_id"] in {r["id"] for r in listed}


def test_error_responses_keep_the_connection(server, unique_name, conn_factory):
    """Every kind of error answer (400, 401, 403-free admin refusals, 404, 405, 413, 422) leaves
    the keep-alive connection usable for the next request."""
    server.deploy(unique_name, HELLO)
    conn = conn_factory(server.port, server.admin_key)
    answers = [
        conn.request("GET", "/v1/functions", token="wrong")[0],
        conn.request("GET", "/v1/functions/nope")[0],
        conn.request("GET", f"/v1/functions/{unique_name}/versions/{2**70}")[0],
        conn.request("DELETE", "/healthz")[0],
        conn.request("POST", f"/v1/functions/{unique_name}/invoke", b"{not json")[0],
        conn.request("POST", f"/v1/functions/{unique_name}/invoke", b"[" * 100 + b"]" * 100)[0],
        conn.request("POST", "/v1/tables/t/records", b'{"n": 1e20}')[0],
        conn.request("GET", "/v1/functions/x/invocations?limit=0")[0],
        conn.request("GET", "/v1/tables/t/records?where=%7B")[0],
    ]
    assert answers == [401, 404, 404, 405, 400, 400, 400, 422, 400]
    status, _, body = conn.request("POST", f"/v1/functions/{unique_name}/invoke", b"{}")
    assert status == 200 and b'"hi"' in body


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MiB tmpfs of its own (root only): a disk the test can fill."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_503_then_recovers(small_disk, server_factory):
    """A server whose data dir fills up answers writes with 503 naming the full disk and reports
    `degraded`; once space is freed it is ok again, without a restart."""
    srv = server_factory(small_disk / "data", **{Settings.env_name("sandbox"): "plain"})
    api = srv.client()
    assert api.post("/v1/tables/t/records", json={"a": 1}).status_code == 200
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # fill the disk to the last block: big writes, then small ones
        for size in (1 << 20, 4096):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    responses = [api.post("/v1/tables/t/records", json={"a": "x" * 100_000}) for _ in range(5)]
    assert 503 in {r.status_code for r in responses}, [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 503)
    assert "disk is full" in refused.json()["message"] and int(refused.headers["retry-after"]) > 0
    status, body = health(srv)
    assert status == 503 and any("disk full" in r for r in body["reasons"])

    filler.unlink()
    wait_until(lambda: health(srv)[0] == 200, 15, what="/healthz to report ok again")
    assert api.post("/v1/tables/t/records", json={"a": 2}).status_code == 200
