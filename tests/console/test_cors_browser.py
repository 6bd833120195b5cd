"""A page on another origin reaches a function's HTTP endpoint and the data tables from a real
headless Chromium, because the server names that origin in FRAZIL_CORS_ORIGINS; a page on an
origin it does not name is stopped by the browser. The page is served by a second local
server on another port (another origin to the browser).

Needs /usr/bin/chromium and the Python `playwright` package, as test_console_browser.py does.
"""
from __future__ import annotations

import functools
import http.server
import json
import secrets
import threading

import pytest

from frazil.settings import Settings
from frazil.testing import HOST, free_port
from tests.conftest import make_server
from tests.console.test_console_browser import CHROMIUM, CHROMIUM_ARGS, _browser_problem

pytestmark = pytest.mark.skipif(_browser_problem() is not None, reason=_browser_problem() or "")

# What the page does: call the endpoint (a custom status and header), register an end user,
# write and read a table with that user's token. Each step's outcome lands in window.__result.
PAGE = """<!doctype html><meta charset="utf-8"><title>cors</title><script>
(async () => {
  const api = %(api)s, out = {};
  try {
    const fn = await fetch(`${api}/fn/%(function)s/hello?name=page`, { method: 'POST',
      headers: { 'content-type': 'application/json' }, body: JSON.stringify({ from: 'page' }) });
    out.fn = { status: fn.status, header: fn.headers.get('x-frazil-test'), body: await fn.json() };
    const reg = await fetch(`${api}/v1/auth/register`, { method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: %(username)s, password: 'password-1' }) });
    const { token } = await reg.json();
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const put = await fetch(`${api}/v1/tables/%(table)s/records`, { method: 'POST', headers: auth,
      body: JSON.stringify({ text: 'from the page' }) });
    out.insert = put.status;
    const rows = await fetch(`${api}/v1/tables/%(table)s/records`, { headers: auth });
    out.rows = (await rows.json()).records.map((r) => r.text);
  } catch (err) {
    out.error = String(err);
  }
  window.__result = out;
})();
</script>"""

ENDPOINT = {"index.py": (
    "import json\n"
    "def main(event, context):\n"
    "    return {'statusCode': 202, 'headers': {'content-type': 'application/json', 'x-frazil-test': 'seen'},\n"
    "            'body': json.dumps({'path': event['rawPath'], 'name': event['queryStringParameters']['name'],\n"
    "                                'got': json.loads(event['body'])})}\n")}


@pytest.fixture
def page_site(tmp_path):
    """A static site on its own port (another origin): (its origin, the folder it serves)."""
    root = tmp_path / "site"
    root.mkdir()
    port = free_port()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer((HOST, port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{port}", root
    httpd.shutdown()
    httpd.server_close()


def run_page(site, root, api: str, function: str, table: str) -> dict:
    from playwright.sync_api import sync_playwright

    (root / "index.html").write_text(PAGE % {"api": json.dumps(api), "function": function, "table": table,
                                             "username": json.dumps(f"p{secrets.token_hex(4)}")})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{site}/index.html")
            page.wait_for_function("window.__result !== undefined", timeout=30_000)
            return page.evaluate("window.__result")
        finally:
            browser.close()


def start_server(tmp_path, origin: str):
    return make_server(tmp_path / "data", **{Settings.env_name("cors_origins"): origin}).start()


def prepare(srv, unique_name: str) -> str:
    srv.deploy(unique_name, ENDPOINT, http=True, access="public")
    table = f"notes_{secrets.token_hex(3)}"
    srv.client().put(f"/v1/tables/{table}", json={"acl": {"read": "owner", "write": "authenticated"}}) \
        .raise_for_status()
    return table


def test_page_on_allowed_origin_reaches_endpoint_and_tables(page_site, tmp_path, unique_name):
    """Preflighted POSTs and authorised reads from the allowed origin all succeed."""
    site, root = page_site
    srv = start_server(tmp_path, site)
    try:
        table = prepare(srv, unique_name)
        result = run_page(site, root, srv.url, unique_name, table)
        assert "error" not in result, result
        assert result["fn"] == {"status": 202, "header": "seen", "body": {
            "path": f"/fn/{unique_name}/hello", "name": "page", "got": {"from": "page"}}}
        assert result["insert"] == 200 and result["rows"] == ["from the page"]
    finally:
        srv.close()


def test_page_on_another_origin_is_stopped(page_site, tmp_path, unique_name):
    """The browser refuses the answers when the server does not name the page's origin."""
    site, root = page_site
    srv = start_server(tmp_path, "http://elsewhere.example")
    try:
        table = prepare(srv, unique_name)
        result = run_page(site, root, srv.url, unique_name, table)
        assert "Failed to fetch" in result.get("error", ""), result
    finally:
        srv.close()
