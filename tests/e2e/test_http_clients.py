"""Unchanged HTTP clients inside functions: HTTP_PROXY/HTTPS_PROXY lead to the platform's egress
proxy (frazil.sdk.egress), under the SDK's allow-list and SSRF rules, against a real server, real
sandboxes and local upstreams (plain HTTP, and TLS with a certificate the test makes)."""
from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading

import pytest

from tests.conftest import TEST_SANDBOX, make_server

needs_isolation = pytest.mark.skipif(TEST_SANDBOX != "isolated", reason="the egress proxy listens in an instance's "
                                     "own network namespace (the isolated sandbox)")
pytestmark = needs_isolation


class _Upstream(http.server.BaseHTTPRequestHandler):
    """Answers every GET with what it saw, as JSON."""

    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = json.dumps({"path": self.path, "tls": isinstance(self.connection, ssl.SSLSocket),
                           "host": self.headers.get("host")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(server: http.server.ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert path, key path)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture(scope="module")
def upstreams(certificate):
    """{"http": url, "https": url}: a plain and a TLS upstream on the host's 127.0.0.1."""
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    threads = [_serve(plain), _serve(secure)]
    yield {"http": f"http://127.0.0.1:{plain.server_address[1]}",
           "https": f"https://localhost:{secure.server_address[1]}",
           "ports": [plain.server_address[1], secure.server_address[1]]}
    for server in (plain, secure):
        server.shutdown()
        server.server_close()
    for thread in threads:
        thread.join(10)


@pytest.fixture(scope="module")
def egress_server(tmp_path_factory, upstreams):
    """A server whose allow-list lets functions reach the two local upstreams, and nothing else local."""
    allow = ",".join(f"127.0.0.1:{port}" for port in upstreams["ports"])
    srv = make_server(tmp_path_factory.mktemp("egress") / "data", FRAZIL_HTTP_ALLOW=allow)
    srv.log_level = "info"  # each egress request is logged with its invocation id
    srv.start()
    yield srv
    srv.close()


# A Lambda-style function (written for this test) using `requests`, unchanged.
LAMBDA_REQUESTS = '''
import requests

def lambda_handler(event, context):
    plain = requests.get(event["http"] + "/hello?x=1", timeout=10)
    secure = requests.get(event["https"] + "/over-tls", timeout=10, verify="cert.pem")
    denied = requests.get("http://10.0.0.1/", timeout=10)
    try:
        requests.get("https://10.0.0.1/", timeout=10)
        tunnel = "allowed"
    except requests.exceptions.ProxyError as exc:
        tunnel = str(exc)
    return {"statusCode": 200, "plain": plain.json(), "secure": secure.json(),
            "denied": [denied.status_code, denied.text], "tunnel": tunnel}
'''


@pytest.mark.registry
def test_lambda_python_with_requests(egress_server, unique_name, upstreams, certificate):
    """requests (built from PyPI) reaches a local upstream through HTTP_PROXY and the allow-list,
    HTTPS through CONNECT (TLS end to end: the function checks the upstream's own certificate);
    a denied destination answers at once with 403 naming FRAZIL_HTTP_ALLOW, for plain HTTP and for
    CONNECT. Each request is logged with its invocation id."""
    files = {"lambda_function.py": LAMBDA_REQUESTS, "requirements.txt": "requests\n",
             "cert.pem": open(certificate[0]).read()}
    egress_server.deploy(unique_name, files, runtime="python3.11")  # the handler is found
    body = egress_server.invoke(unique_name, {"http": upstreams["http"], "https": upstreams["https"]})
    assert body["success"], body
    out = body["result"]
    assert out["plain"] == {"path": "/hello?x=1", "tls": False, "host": upstreams["http"].removeprefix("http://")}
    assert out["secure"]["path"] == "/over-tls" and out["secure"]["tls"] is True
    assert out["denied"][0] == 403 and "FRAZIL_HTTP_ALLOW" in out["denied"][1]
    assert "403" in out["tunnel"]
    log = egress_server.log_text()
    assert f"for invocation {body['invocation_id']}" in log and "CONNECT localhost:" in log


AXIOS_HTTPS = r'''
const axios = require('axios');
const fs = require('fs');
const https = require('https');

exports.handler = async (event) => {
  // The upstream's certificate is self-signed: trusted here through the agent's `ca`. (Node reads
  // NODE_EXTRA_CA_CERTS when its process starts, before a function's environment is applied.)
  const httpsAgent = new https.Agent({ ca: fs.readFileSync(`${__dirname}/cert.pem`) });
  const ok = await axios.get(`${event.https}/from-axios`, { httpsAgent });
  let denied = null;
  try {
    await axios.get('https://169.254.169.254/latest/meta-data/', { timeout: 10000 });
  } catch (err) {
    denied = String(err.message);
  }
  return { data: ok.data, denied };
};
'''


@pytest.mark.registry
def test_node_axios_over_https_through_connect(egress_server, unique_name, upstreams, certificate):
    """axios (built from npm) tunnels HTTPS through CONNECT to a local TLS upstream; a cloud
    metadata address is refused, and the call fails rather than hangs."""
    files = {"index.js": AXIOS_HTTPS, "package.json": json.dumps({"dependencies": {"axios": "^1.7.0"}}),
             "cert.pem": open(certificate[0]).read()}
    egress_server.deploy(unique_name, files)  # exports.handler is found
    body = egress_server.invoke(unique_name, {"https": upstreams["https"]})
    assert body["success"], body
    assert body["result"]["data"]["path"] == "/from-axios" and body["result"]["data"]["tls"] is True
    assert body["result"]["denied"]
    assert "CONNECT 169.254.169.254:443" in egress_server.log_text()


# Raw requests to the proxy, as a hostile function would send them.
HOSTILE = r'''
import os, socket

def ask(raw):
    with socket.create_connection(("127.0.0.1", 3128), 10) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return head.split(b"\r\n")[0].decode() + " | " + rest.decode(errors="replace")[:300]

def main(event, context):
    out = {"proxy": os.environ.get("HTTPS_PROXY")}
    for target in event["targets"]:
        out[target] = ask(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    out["origin-form"] = ask(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    out["huge-head"] = ask(b"GET http://example.com/ HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
    out["chunked"] = ask(b"POST http://example.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    return out
'''

REFUSED = {
    "10.0.0.1:443": ("403", "private"),
    "169.254.169.254:80": ("403", "cloud metadata"),
    "127.0.0.1:22": ("403", "loopback"),
    "[::1]:443": ("403", "loopback"),
    "[::ffff:10.1.1.1]:443": ("403", "private"),
    "8.8.8.8:25": ("403", "port 443 only"),
    "example.com:0": ("400", "1 to 65535"),
    "example.com:99999": ("400", "1 to 65535"),
    "example.com:http": ("400", "not host:port"),
    ":443": ("400", "1 to 65535"),
}


def test_hostile_connect_targets_are_refused(egress_server, unique_name):
    """CONNECT to private, loopback, metadata and IPv4-mapped addresses is 403 naming
    FRAZIL_HTTP_ALLOW; a non-443 port needs the allow-list; a bad port or target is 400; an
    origin-form request, an oversized head and a chunked body are refused with their reason."""
    egress_server.deploy(unique_name, {"index.py": HOSTILE})
    body = egress_server.invoke(unique_name, {"targets": sorted(REFUSED)})
    assert body["success"], body
    out = body["result"]
    assert out["proxy"] == "http://127.0.0.1:3128"
    for target, (status, reason) in REFUSED.items():
        assert out[target].startswith(f"HTTP/1.1 {status} ") and reason in out[target], (target, out[target])
        if status == "403":
            assert "FRAZIL_HTTP_ALLOW" in out[target], out[target]
    assert out["origin-form"].startswith("HTTP/1.1 400 ") and "absolute URLs" in out["origin-form"]
    assert out["huge-head"].startswith("HTTP/1.1 431 ")
    assert out["chunked"].startswith("HTTP/1.1 411 ")
    counted = f'frazil_egress_requests_total{{function="{unique_name}",outcome="refused"}} {len(REFUSED) + 3}.0'
    assert counted in egress_server.metrics()


# What an SDK for another cloud does underneath (aws-sdk's Node handler): an HTTPS request with
# Node's own agent, which does not read HTTPS_PROXY.
FOREIGN_SDK_NODE = r'''
const https = require('https');

exports.main = async () => new Promise((resolve) => {
  const req = https.request('https://sts.us-east-1.amazonaws.com/', { method: 'POST', timeout: 20000 },
    (res) => resolve({ status: res.statusCode }));
  req.on('timeout', () => req.destroy(new Error('timed out')));
  req.on('error', (err) => resolve({ code: err.code || null, message: err.message }));
  req.end();
});
'''

# The same through the proxy, to a host that does not resolve (boto3 honours HTTPS_PROXY).
FOREIGN_SDK_PYTHON = r'''
import urllib.request

def main(event, context):
    try:
        urllib.request.urlopen("https://sts.frazil-test.invalid/", timeout=20)
        return "reached"
    except Exception as exc:
        return repr(exc)
'''


def test_a_foreign_cloud_sdk_deploys_and_fails_clearly(egress_server, unique_name):
    """Code that calls another cloud's endpoints deploys; its calls fail with an error the function
    sees (no network of its own; the proxy cannot resolve the host), rather than hang."""
    egress_server.deploy(f"{unique_name}-js", {"index.js": FOREIGN_SDK_NODE})
    node = egress_server.invoke(f"{unique_name}-js")
    assert node["success"], node
    assert node["result"].get("code") in {"ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ENETUNREACH"}, node["result"]
    egress_server.deploy(f"{unique_name}-py", {"index.py": FOREIGN_SDK_PYTHON})
    python = egress_server.invoke(f"{unique_name}-py")
    assert python["success"], python
    assert "Tunnel connection failed: 502" in python["result"], python["result"]


# A tunnel left open when the invocation returns; the next invocation looks at it.
LEFT_OPEN = r'''
import socket

held = []

def main(event, context):
    if held:
        held[0].settimeout(20)
        return {"after": held[0].recv(1).decode()}  # "" once the platform has closed it
    s = socket.create_connection(("127.0.0.1", 3128), 10)
    s.sendall(f"CONNECT {event['target']} HTTP/1.1\r\n\r\n".encode())
    answer = s.recv(100).decode()
    held.append(s)
    return {"opened": answer.split("\r\n")[0]}
'''


def test_a_tunnel_does_not_outlive_its_invocation(egress_server, unique_name, upstreams):
    """A CONNECT tunnel still open when its invocation returns is closed by the platform."""
    egress_server.deploy(unique_name, {"index.py": LEFT_OPEN})
    target = upstreams["https"].removeprefix("https://").replace("localhost", "127.0.0.1")
    first = egress_server.invoke(unique_name, {"target": target})
    assert first["result"] == {"opened": "HTTP/1.1 200 Connection established"}, first
    second = egress_server.invoke(unique_name, {"target": target})
    assert second["result"] == {"after": ""} and second["cold"] is False, second


# Connections opened and left idle, as many as the function can.
IDLE_CONNECTIONS = r'''
import socket

def main(event, context):
    held, answered = [], []
    for _ in range(event["n"]):
        s = socket.create_connection(("127.0.0.1", 3128), 10)
        held.append(s)
    for s in held[-5:]:  # the last ones, beyond the cap, are answered at once
        s.settimeout(10)
        answered.append(s.recv(200).decode().split("\r\n")[0])
    return answered
'''


def test_idle_connections_are_capped(egress_server, unique_name):
    """A function cannot hold more proxy connections than its lane admits (50 + 64): the rest are
    answered 429 at once, without waiting for a request."""
    egress_server.deploy(unique_name, {"index.py": IDLE_CONNECTIONS})
    body = egress_server.invoke(unique_name, {"n": 130})
    assert body["success"], body
    assert body["result"] == ["HTTP/1.1 429 Too Many Requests"] * 5


# An https:// URL sent to the proxy in the clear, as older axios versions do (no CONNECT).
ABSOLUTE_HTTPS = r'''
import socket

def main(event, context):
    with socket.create_connection(("127.0.0.1", 3128), 10) as s:
        s.sendall(f"GET {event['url']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode(errors="replace")
'''


def test_an_absolute_https_url_is_fetched_with_the_platforms_checks(egress_server, unique_name, upstreams):
    """Without CONNECT the platform makes the TLS connection itself and checks the certificate
    against its own trust store: the test's self-signed upstream is refused (502), not trusted."""
    egress_server.deploy(unique_name, {"index.py": ABSOLUTE_HTTPS})
    answer = egress_server.invoke(unique_name, {"url": upstreams["https"] + "/clear"})["result"]
    assert answer.startswith("HTTP/1.1 502 ") and "CERTIFICATE_VERIFY_FAILED" in answer, answer
