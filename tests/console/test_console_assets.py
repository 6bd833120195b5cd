"""The web console is served by the platform itself: the page and every asset it loads, with
the right content types and a strict Content-Security-Policy, no data and no key inside, and
nothing outside the console's static folder reachable through it."""
from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

STATIC = Path(__file__).resolve().parents[2] / "frazil" / "console" / "static"

TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _check_security_headers(response: httpx.Response) -> None:
    csp = response.headers.get("content-security-policy", "")
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == "default-src 'self'", csp
    assert directives.get("script-src") == "script-src 'self'", csp  # no 'unsafe-inline', no eval
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp and "*" not in csp, csp
    assert directives.get("object-src") == "object-src 'none'"
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'"
    assert response.headers.get("x-content-type-options") == "nosniff"


def _imports(js: str) -> list[str]:
    """The relative module specifiers a JS module imports."""
    return re.findall(r"""(?:^|\n)\s*import\s[^;]*?from\s+['"](\.{1,2}/[^'"]+)['"]""", js)


def _resolve(base: str, spec: str) -> str:
    parts = base.split("/")[:-1]
    for piece in spec.split("/"):
        if piece == "..":
            parts.pop()
        elif piece != ".":
            parts.append(piece)
    return "/".join(parts)


def test_console_page_and_every_asset_it_loads(server):
    """GET /console is HTML that loads its script and stylesheet from /console; following every
    module import from there reaches only files served 200 with their content type and the CSP."""
    client = httpx.Client(base_url=server.url, timeout=10)
    page = client.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    _check_security_headers(page)
    html = page.text
    # No inline code at all: every script has a src, no event-handler or style attributes.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert not re.search(r"\son[a-z]+\s*=", html) and " style=" not in html

    srcs = re.findall(r'<script[^>]+src="([^"]+)"', html)
    links = re.findall(r'<link[^>]+href="([^"]+)"', html)
    assert srcs == ["/console/app.js"] and "/console/style.css" in links

    seen: set[str] = set()
    todo = list(srcs) + links
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        response = client.get(path)
        assert response.status_code == 200, path
        suffix = Path(path).suffix
        assert response.headers["content-type"].startswith(TYPES[suffix]), (path, response.headers["content-type"])
        _check_security_headers(response)
        if suffix == ".js":
            todo.extend(_resolve(path, spec) for spec in _imports(response.text))
    served_js = {p for p in seen if p.endswith(".js")}
    on_disk = {"/console/" + p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*.js")}
    assert served_js == on_disk, "every module on disk is reachable from app.js (and nothing else is loaded)"
    # A trailing slash lands on the same page; HEAD works too.
    assert client.get("/console/", follow_redirects=True).text == html
    assert client.head("/console").status_code == 200


def test_console_holds_no_key_and_needs_none(server):
    """The page and assets are public (they hold no data) and never contain the admin key."""
    client = httpx.Client(base_url=server.url, timeout=10)
    for path in ["/console", "/console/app.js", "/console/api.js", "/console/style.css"]:
        response = client.get(path)
        assert response.status_code == 200
        assert server.admin_key not in response.text


@pytest.mark.parametrize("path", [
    "/console/nope.js",
    "/console/router.py",  # in the package, but not a static asset
    "/console/__init__.py",
    "/console/%2e%2e/router.py",
    "/console/..%2frouter.py",
    "/console/static/app.js",
    "/console/views",
])
def test_nothing_else_is_reachable(server, path):
    """Only the files in the console's static folder are served; the answer is a JSON 404."""
    response = httpx.get(server.url + path, timeout=10)
    assert response.status_code == 404
    assert response.json()["success"] is False


def test_renders_untrusted_data_only_as_text():
    """Function output is untrusted: the console builds the DOM from text nodes, never from HTML."""
    offenders = []
    for path in STATIC.rglob("*.js"):
        text = path.read_text()
        for pattern in (r"\binnerHTML\b", r"\bouterHTML\b", r"\binsertAdjacentHTML\b", r"\bdocument\.write",
                        r"\beval\s*\(", r"\bnew Function\s*\(", r"\bcreateContextualFragment\b"):
            if re.search(pattern, text):
                offenders.append(f"{path.name}: {pattern}")
    assert offenders == []


def test_no_third_party_or_remote_assets():
    """Everything is served by frazil itself: no URL to another origin in any asset."""
    for path in STATIC.rglob("*"):
        if path.suffix in TYPES:
            text = path.read_text()
            remote = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|@import\s+url\(\s*["']?https?:""", text)
            assert remote == [], path
