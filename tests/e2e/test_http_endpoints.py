"""Functions' HTTP endpoints (/fn/{name}) and CORS, against a real server: the API Gateway
payload 2.0 event, results that are responses, failures as 502, limits and access."""
from __future__ import annotations

import base64
import json
import secrets

import httpx
import pytest

from frazil.settings import Settings
from frazil.testing.server import HTTP_TIMEOUT_S
from tests.conftest import make_server
from tests.e2e.test_access import end_user

ORIGIN = "http://page.example:8123"
MAX_PAYLOAD = 64 * 1024
PNG = bytes([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0xFF, 0xFE])

ECHO = {"index.py": "def main(event, context):\n    return event\n"}
RESPONDER = {"index.py": (
    "import base64, json\n"
    "def main(event, context):\n"
    "    kind = (event.get('queryStringParameters') or {}).get('kind')\n"
    "    if kind == 'binary':\n"
    f"        return {{'statusCode': 201, 'headers': {{'content-type': 'image/png', 'x-frazil-test': 'yes'}},\n"
    f"                'body': base64.b64encode({PNG!r}).decode(), 'isBase64Encoded': True}}\n"
    "    if kind == 'json':\n"
    "        return {'got': json.loads(event['body']), 'method': event['requestContext']['http']['method']}\n"
    "    if kind == 'status':\n"
    "        return {'statusCode': json.loads(event['body'])}\n"
    "    if kind == 'raise':\n"
    "        raise ValueError('no such thing')\n"
    "    return event\n")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("frazil-http") / "data", **{
        Settings.env_name("cors_origins"): ORIGIN, Settings.env_name("max_payload_bytes"): MAX_PAYLOAD}).start()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def responder(server):
    name = f"responder-{secrets.token_hex(3)}"
    server.deploy(name, RESPONDER, http=True, access="public")
    return name


class TestEvent:
    def test_event_has_the_payload_2_0_shape(self, server, unique_name):
        """Path, query, lower-cased headers, method, source IP; the admin key is not passed on."""
        server.deploy(unique_name, ECHO, http=True)
        response = server.client().get(f"/fn/{unique_name}/a/b?x=1&x=2&y=", headers={"X-Mixed-Case": "v"})
        assert response.status_code == 200, response.text
        event = response.json()
        assert event["version"] == "2.0"
        assert event["rawPath"] == f"/fn/{unique_name}/a/b" and event["rawQueryString"] == "x=1&x=2&y="
        assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
        assert event["headers"]["x-mixed-case"] == "v" and "authorization" not in event["headers"]
        http = event["requestContext"]["http"]
        assert (http["method"], http["path"], http["sourceIp"]) == ("GET", f"/fn/{unique_name}/a/b", "127.0.0.1")
        assert event["pathParameters"] == {"proxy": "a/b"} and event["isBase64Encoded"] is False
        assert "body" not in event and "user" not in event

    def test_binary_body_arrives_base64(self, server, unique_name):
        """A body that is not UTF-8 is base64 with isBase64Encoded."""
        server.deploy(unique_name, ECHO, http=True)
        event = server.client().put(f"/fn/{unique_name}", content=PNG).json()
        assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == PNG

    def test_record_says_http(self, server, unique_name):
        """The invocation is recorded with trigger `http`."""
        server.deploy(unique_name, ECHO, http=True)
        server.client().get(f"/fn/{unique_name}")
        records = server.client().get(f"/v1/functions/{unique_name}/invocations").json()["invocations"]
        assert [r["trigger"] for r in records] == ["http"]


class TestResponses:
    def test_get_with_status_headers_and_binary_body(self, server, responder):
        """A result with statusCode, headers and a base64 body is that response."""
        response = httpx.get(f"{server.url}/fn/{responder}?kind=binary", timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 201
        assert response.headers["content-type"] == "image/png" and response.headers["x-frazil-test"] == "yes"
        assert response.content == PNG

    def test_post_json_result_is_json_200(self, server, responder):
        """Any other result is sent as JSON with 200."""
        response = httpx.post(f"{server.url}/fn/{responder}/orders?kind=json", json={"n": 3}, timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.json() == {"got": {"n": 3}, "method": "POST"}

    def test_failed_invocation_is_502_with_envelope(self, server, responder):
        """A function that raises answers 502 with the error envelope."""
        response = httpx.get(f"{server.url}/fn/{responder}?kind=raise", timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 502
        body = response.json()
        assert body["success"] is False and body["error"]["type"] == "ValueError" and body["invocation_id"]

    @pytest.mark.parametrize("status", ["200", 99, 600, True, 200.5, None])
    def test_bad_status_code_is_502_naming_it(self, server, responder, status):
        """A statusCode that is not an integer from 100 to 599 is 502 naming the field."""
        response = httpx.post(f"{server.url}/fn/{responder}?kind=status", content=json.dumps(status),
                              timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 502, response.text
        body = response.json()
        assert body["error"]["type"] == "BadGateway" and body["error"]["field"] == "statusCode"
        assert "statusCode" in body["message"]


class TestRefusals:
    def test_over_the_payload_limit_is_413(self, server, responder):
        """A request body over the payload limit is refused before anything runs."""
        response = httpx.post(f"{server.url}/fn/{responder}", content=b"x" * (MAX_PAYLOAD + 1), timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 413 and response.json()["error"]["type"] == "PayloadTooLarge"

    def test_function_without_endpoint_is_404(self, server, unique_name):
        """A function deployed without http = true has no endpoint."""
        server.deploy(unique_name, ECHO, access="public")
        response = httpx.get(f"{server.url}/fn/{unique_name}", timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 404 and "http = true" in response.json()["message"]

    def test_access_rule_applies(self, server, unique_name):
        """A user endpoint: 401 without a token; an end user arrives as `user`. An admin
        endpoint refuses an end user with 403."""
        user = end_user(server)
        server.deploy(unique_name, ECHO, http=True, access="user")
        assert httpx.get(f"{server.url}/fn/{unique_name}", timeout=HTTP_TIMEOUT_S).status_code == 401
        event = httpx.get(f"{server.url}/fn/{unique_name}", headers={"Authorization": f"Bearer {user['token']}"},
                          timeout=HTTP_TIMEOUT_S).json()
        assert event["user"] == {"id": user["id"], "username": user["username"]}
        server.deploy(unique_name, ECHO, http=True, access="admin")
        denied = httpx.get(f"{server.url}/fn/{unique_name}", headers={"Authorization": f"Bearer {user['token']}"},
                           timeout=HTTP_TIMEOUT_S)
        assert denied.status_code == 403


def test_node_endpoint(server, unique_name):
    """A Node function answers at its endpoint too, with its own status and headers."""
    server.deploy(unique_name, {"index.js": (
        "exports.main = async (event) => ({ statusCode: 418, headers: { 'x-path': event.rawPath },\n"
        "  body: `hello ${event.queryStringParameters.name}` });\n")}, http=True, access="public")
    response = httpx.get(f"{server.url}/fn/{unique_name}/x?name=node", timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 418 and response.text == "hello node"
    assert response.headers["x-path"] == f"/fn/{unique_name}/x"


class TestCors:
    def test_preflight_and_actual_request(self, server, responder):
        """An allowed origin gets a preflight answer and the CORS header on the real request."""
        preflight = httpx.options(f"{server.url}/fn/{responder}", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in preflight.headers["access-control-allow-methods"]
        actual = httpx.post(f"{server.url}/fn/{responder}?kind=json", json={"n": 1}, headers={"Origin": ORIGIN},
                            timeout=HTTP_TIMEOUT_S)
        assert actual.status_code == 200 and actual.headers["access-control-allow-origin"] == ORIGIN

    def test_auth_and_tables_routes_and_other_origins(self, server):
        """The auth and table routes allow the origin too; another origin and the admin API get nothing."""
        for path in ("/v1/auth/login", "/v1/tables/notes/records"):
            preflight = httpx.options(f"{server.url}{path}", headers={
                "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
            assert preflight.headers.get("access-control-allow-origin") == ORIGIN, path
        other = httpx.get(f"{server.url}/v1/tables/notes/records", headers={"Origin": "http://evil.example"},
                          timeout=HTTP_TIMEOUT_S)
        assert "access-control-allow-origin" not in other.headers
        admin = httpx.get(f"{server.url}/v1/functions", headers={"Origin": ORIGIN}, timeout=HTTP_TIMEOUT_S)
        assert "access-control-allow-origin" not in admin.headers


def test_cli_deploy_http_flag(server, unique_name, tmp_path):
    """`frazil deploy --http` turns the endpoint on."""
    folder = tmp_path / unique_name
    folder.mkdir()
    (folder / "index.py").write_text(ECHO["index.py"])
    done = server.cli("deploy", str(folder), "--http", "--access", "public", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["function"]["http"] is True
    assert httpx.get(f"{server.url}/fn/{unique_name}", timeout=HTTP_TIMEOUT_S).status_code == 200
