"""`http` inside functions, against a real server and a local upstream: requests go out
through the platform's proxy, at most 50 in flight per instance, with denied destinations
(checked after resolution and on every redirect), timeouts and a response size cap."""
from __future__ import annotations

import json
import threading

import pytest

PY_GET = {"index.py": (
    "from frazil_sdk import http, SdkError\n"
    "def main(event, context):\n"
    "    try:\n"
    "        r = http.request(event.get('method', 'GET'), event['url'], timeout=event.get('timeout', 10),\n"
    "                         **event.get('kw', {}))\n"
    "    except SdkError as exc:\n"
    "        return {'error': exc.type, 'message': str(exc), 'status': exc.status}\n"
    "    return {'status': r.status, 'url': r.url, 'text': r.text, 'headers': r.headers,\n"
    "            'content': list(r.content[:8]), 'size': len(r.content)}\n")}

NODE_GET = {"index.js": (
    "const { http } = require('frazil-sdk');\n"
    "exports.main = async (event) => {\n"
    "  try {\n"
    "    const r = await http.request(event.method || 'GET', event.url, { timeout: event.timeout || 10, ...(event.kw || {}) });\n"
    "    return { status: r.status, url: r.url, text: r.text, headers: r.headers, json: r.headers['content-type'] === 'application/json' ? r.json() : null };\n"
    "  } catch (e) {\n"
    "    return { error: e.type, name: e.name, message: e.message };\n"
    "  }\n"
    "};\n")}


def fetch(server, name: str, url: str, **event) -> dict:
    body = server.invoke(name, {"url": url, **event})
    assert body["success"] is True, body
    return body["result"]


class TestRequests:
    def test_get_post_and_binary(self, proxied, upstream, unique_name):
        """An allowed upstream answers; bodies, headers and status come back intact."""
        proxied.deploy(unique_name, PY_GET)
        got = fetch(proxied, unique_name, f"{upstream.url}/echo?x=1", kw={"headers": {"X-Test": "yes"}})
        assert got["status"] == 200 and got["headers"]["content-type"] == "application/json"
        echo = json.loads(got["text"])
        assert echo["method"] == "GET" and echo["path"] == "/echo?x=1"
        assert echo["headers"]["X-Test"] == "yes" and echo["headers"]["Host"] == f"127.0.0.1:{upstream.port}"
        posted = json.loads(fetch(proxied, unique_name, f"{upstream.url}/echo", method="POST",
                                  kw={"json": {"a": [1, "é"]}})["text"])
        assert posted["method"] == "POST" and json.loads(posted["body"]) == {"a": [1, "é"]}
        assert posted["headers"]["Content-Type"] == "application/json"
        binary = fetch(proxied, unique_name, f"{upstream.url}/bytes")
        assert binary["size"] == 256 and binary["content"] == list(range(8))
        missing = fetch(proxied, unique_name, f"{upstream.url}/nowhere")
        assert missing["status"] == 404  # an HTTP error status is an answer, not an exception

    def test_node_get_and_post(self, proxied, upstream, unique_name):
        proxied.deploy(unique_name, NODE_GET)
        got = fetch(proxied, unique_name, f"{upstream.url}/echo", method="POST", kw={"json": {"n": 1}})
        assert got["status"] == 200 and json.loads(got["json"]["body"]) == {"n": 1}

    def test_redirects_are_followed(self, proxied, upstream, unique_name):
        proxied.deploy(unique_name, PY_GET)
        got = fetch(proxied, unique_name, f"{upstream.url}/redirect?to=/echo%3Fafter%3D1")
        assert got["status"] == 200 and got["url"] == f"{upstream.url}/echo?after=1"
        assert json.loads(got["text"])["path"] == "/echo?after=1"


class TestInFlightLimit:
    def _measure(self, proxied, upstream, name: str, files: dict) -> list:
        proxied.deploy(name, files, timeout=60)
        answer: dict = {}

        def call():
            answer["body"] = proxied.invoke(name, {"url": f"{upstream.url}/hold", "n": 80})

        caller = threading.Thread(target=call)
        caller.start()
        try:
            assert upstream.when_in_flight(50).wait(30), f"only {upstream.in_flight} requests arrived"
            # Proving an absence needs a window: the 51st request must not arrive while 50 are held.
            assert not upstream.when_in_flight(51).wait(1.0), f"{upstream.in_flight} requests in flight"
            assert upstream.in_flight == 50
        finally:
            upstream.release()
            caller.join(60)
        body = answer["body"]
        assert body["success"] is True, body
        assert upstream.max_in_flight == 50 and upstream.held_total == 80
        return body["result"]

    def test_python_fifty_in_flight(self, proxied, upstream, unique_name):
        """80 concurrent requests from one async handler: 50 reach the upstream, 30 wait their turn."""
        statuses = self._measure(proxied, upstream, unique_name, {"index.py": (
            "import asyncio\nfrom frazil_sdk import aio\n"
            "async def main(event, context):\n"
            "    answers = await asyncio.gather(*(aio.http.get(event['url'], timeout=50) for _ in range(event['n'])))\n"
            "    return [r.status for r in answers]\n")})
        assert statuses == [200] * 80

    def test_node_fifty_in_flight(self, proxied, upstream, unique_name):
        statuses = self._measure(proxied, upstream, unique_name, {"index.js": (
            "const { http } = require('frazil-sdk');\n"
            "exports.main = async (event) => {\n"
            "  const answers = await Promise.all(Array.from({ length: event.n }, () => http.get(event.url, { timeout: 50 })));\n"
            "  return answers.map((r) => r.status);\n"
            "};\n")})
        assert statuses == [200] * 80


DENIED = [
    ("http://127.0.0.1:{port}/echo", "loopback"),
    ("http://localhost:{port}/echo", "loopback"),  # a name that resolves to loopback
    ("http://[::1]:{port}/echo", "loopback"),
    ("http://[::ffff:127.0.0.1]:{port}/echo", "loopback"),
    ("http://0.0.0.0:{port}/echo", "unspecified"),
    ("http://10.1.2.3/", "private"),
    ("http://192.168.0.1/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://100.64.0.1/", "CGNAT"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[fd00:ec2::254]/", "cloud metadata"),
    ("http://[fe80::1]/", "link-local"),
    ("http://224.0.0.1/", "multicast"),
]


class TestDenied:
    @pytest.mark.parametrize("template,kind", DENIED, ids=[d[0].split("/")[2] for d in DENIED])
    def test_denied_destination(self, server, upstream, unique_name, template, kind):
        """Loopback, private, link-local, metadata... are refused by default, before any connection."""
        server.deploy(unique_name, PY_GET)
        got = fetch(server, unique_name, template.format(port=upstream.port))
        assert got["error"] == "HttpDenied" and got["status"] == 403, got
        assert kind in got["message"] and "FRAZIL_HTTP_ALLOW" in got["message"]
        assert upstream.requests == []

    def test_schemes_other_than_http_are_denied(self, server, unique_name):
        server.deploy(unique_name, PY_GET)
        for url in ("file:///etc/passwd", "ftp://example.com/", "gopher://example.com/"):
            got = fetch(server, unique_name, url)
            assert got["error"] == "HttpDenied" and "only http and https" in got["message"], got

    def test_allow_list_admits_only_its_port(self, proxied, upstream, unique_name):
        """FRAZIL_HTTP_ALLOW=127.0.0.1:<port> lets that port through, not another one."""
        proxied.deploy(unique_name, PY_GET)
        assert fetch(proxied, unique_name, f"{upstream.url}/echo")["status"] == 200
        other = fetch(proxied, unique_name, f"http://127.0.0.1:{upstream.port + 1}/")
        assert other["error"] == "HttpDenied"

    @pytest.mark.parametrize("target", ["http://127.0.0.1:{other}/", "http://localhost:{other}/echo",
                                        "http://169.254.169.254/latest/meta-data/", "http://[::1]:{port}/echo"])
    def test_redirect_to_a_denied_destination(self, proxied, upstream, unique_name, target):
        """Every redirect hop is checked like the first: an allowed upstream cannot bounce a
        request to loopback or the metadata service."""
        proxied.deploy(unique_name, PY_GET)
        to = target.format(port=upstream.port, other=upstream.port + 1)
        got = fetch(proxied, unique_name, f"{upstream.url}/redirect?to={to}")
        assert got["error"] == "HttpDenied", got
        assert upstream.requests == [f"/redirect?to={to}"]

    def test_node_denied_is_an_sdk_error(self, server, unique_name):
        server.deploy(unique_name, NODE_GET)
        got = fetch(server, unique_name, "http://169.254.169.254/latest/meta-data/")
        assert got["name"] == "SdkError" and got["error"] == "HttpDenied" and "metadata" in got["message"]


class TestLimits:
    def test_response_size_cap(self, proxied, upstream, unique_name):
        """The proxied server caps responses at 100 kB: one byte more is an error."""
        proxied.deploy(unique_name, PY_GET)
        assert fetch(proxied, unique_name, f"{upstream.url}/big?n=100000")["size"] == 100_000
        got = fetch(proxied, unique_name, f"{upstream.url}/big?n=100001")
        assert got["error"] == "ResponseTooLarge" and "100000" in got["message"]

    def test_timeout(self, proxied, upstream, unique_name):
        """A request the upstream does not answer in time raises HttpTimeout."""
        proxied.deploy(unique_name, PY_GET)
        try:
            got = fetch(proxied, unique_name, f"{upstream.url}/hold", timeout=0.3)
        finally:
            upstream.release()
        assert got["error"] == "HttpTimeout" and "0.3 s" in got["message"], got

    def test_request_left_behind_is_aborted_when_its_invocation_ends(self, proxied, upstream, unique_name):
        """A request still in flight when its invocation returned is cancelled then (no call
        outlives its invocation): the task that made it gets CallAborted."""
        proxied.deploy(unique_name, {"index.py": (
            "import asyncio\nfrom frazil_sdk import aio\n"
            "LEFT = []\n"
            "async def main(event, context):\n"
            "    if event.get('leave'):\n"
            "        LEFT.append(asyncio.ensure_future(aio.http.get(event['url'], timeout=60)))\n"
            "        await asyncio.sleep(0)  # the task sends its call\n"
            "        return 'left'\n"
            "    status = (await aio.http.get(event['url'])).status\n"
            "    await asyncio.wait(LEFT, timeout=10)\n"
            "    return [status, type(LEFT[0].exception()).__name__, LEFT[0].exception().type]\n")}, timeout=30)
        try:
            assert proxied.invoke(unique_name, {"url": f"{upstream.url}/hold", "leave": True})["result"] == "left"
            body = proxied.invoke(unique_name, {"url": f"{upstream.url}/echo"})
            assert body["result"] == [200, "SdkError", "CallAborted"], body
        finally:
            upstream.release()
