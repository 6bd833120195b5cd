"""/docs (Swagger UI) and /redoc (ReDoc) come from files installed with frazil: in a headless
Chromium whose every request off the server is blocked, both render every operation of
/openapi.json under the console's CSP, and nothing tried to leave 127.0.0.1."""
from __future__ import annotations

import re

import httpx
import pytest

from frazil.api.docs import ASSETS, REDOC_CSP, SWAGGER_CSP
from frazil.console.router import CSP
from frazil.testing.server import HTTP_TIMEOUT_S
from tests.console.test_console_browser import CHROMIUM, CHROMIUM_ARGS, _browser_problem

# ReDoc's sidebar shows a vendor logo from its CDN; the page's img-src refuses it before any
# request is made, and the image hides itself when it fails to load.
REDOC_LOGO = "cdn.redoc.ly/redoc/logo-mini.svg"


def operations(server) -> int:
    doc = httpx.get(f"{server.url}/openapi.json", timeout=HTTP_TIMEOUT_S).json()
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sum(1 for item in doc["paths"].values() for method in item if method in methods)


class TestPages:
    def test_pages_name_only_same_origin_files_and_carry_the_csp(self, server):
        assert SWAGGER_CSP.replace(" data:", "") == CSP  # the console's, with data: images
        for path, csp in (("/docs", SWAGGER_CSP), ("/redoc", REDOC_CSP)):
            response = httpx.get(server.url + path, timeout=HTTP_TIMEOUT_S)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
            assert response.headers["content-security-policy"] == csp
            assert not re.search(r"(src|href)=\"(https?:)?//", response.text), response.text
            assert "<script>" not in response.text  # no inline code: script-src is 'self'

    def test_the_bundles_are_installed_and_served(self, server):
        for name, path in ASSETS.items():
            assert path.is_file(), path
            response = httpx.get(f"{server.url}/docs/assets/{name}", timeout=HTTP_TIMEOUT_S)
            assert response.status_code == 200 and response.content == path.read_bytes()

    def test_only_listed_assets(self, server):
        for name in ("nope.js", "..%2F..%2Fsettings.py", "%2Fetc%2Fpasswd"):
            response = httpx.get(f"{server.url}/docs/assets/{name}", timeout=HTTP_TIMEOUT_S)
            assert response.status_code == 404 and response.json()["success"] is False


@pytest.mark.skipif(_browser_problem() is not None, reason=_browser_problem() or "")
class TestInABrowser:
    @pytest.fixture
    def offline_browser(self, server):
        """A page factory in a browser context where every request not to `server` is aborted
        and recorded; console errors and page errors are recorded too."""
        from playwright.sync_api import sync_playwright

        blocked: list[str] = []
        problems: list[str] = []

        def route(request_route):
            url = request_route.request.url
            if url.startswith(server.url + "/"):
                request_route.continue_()
            else:
                blocked.append(url)
                request_route.abort()

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", route)

            def new_page():
                page = context.new_page()
                page.set_default_timeout(30_000)
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                return page

            try:
                yield new_page, blocked, problems
            finally:
                context.close()
                browser.close()

    def test_swagger_ui_renders_every_operation_offline(self, server, offline_browser, tmp_path):
        from playwright.sync_api import expect

        new_page, blocked, problems = offline_browser
        page = new_page()
        page.goto(f"{server.url}/docs")
        expect(page.locator(".opblock")).to_have_count(operations(server))
        deploy = page.locator(".opblock-put", has_text="/v1/functions/{name}").first
        deploy.locator(".opblock-summary").click()  # an operation opens: its parameters render
        expect(deploy.locator(".parameters-container")).to_be_visible()
        page.screenshot(path=str(tmp_path / "docs.png"))
        assert blocked == []
        assert problems == []

    def test_swagger_authorize_then_try_an_admin_route(self, server, offline_browser):
        """The document's bearer scheme gives Swagger UI its Authorize button: with the admin key
        entered there, "Try it out" on an admin route answers 200."""
        from playwright.sync_api import expect

        new_page, blocked, problems = offline_browser
        page = new_page()
        page.goto(f"{server.url}/docs")
        page.click("button.authorize")
        page.fill(".auth-container input", server.admin_key)
        page.click(".auth-btn-wrapper button.authorize")
        page.click(".auth-btn-wrapper button.btn-done")
        listing = page.locator(".opblock-get", has=page.locator(".opblock-summary-path[data-path='/v1/functions']"))
        listing.locator(".opblock-summary").click()
        listing.locator("button.try-out__btn").click()
        listing.locator("button.execute").click()
        expect(listing.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")
        assert blocked == [] and problems == []

    def test_redoc_renders_every_operation_offline(self, server, offline_browser, tmp_path):
        from playwright.sync_api import expect

        new_page, blocked, problems = offline_browser
        page = new_page()
        page.goto(f"{server.url}/redoc")
        expect(page.locator("[data-section-id^='operation/']")).to_have_count(operations(server))
        expect(page.get_by_role("heading", name=re.compile(r"^frazil"))).to_be_visible()
        page.get_by_placeholder("Search...").fill("deploy")  # the search index runs in its worker (worker-src)
        page.screenshot(path=str(tmp_path / "redoc.png"))
        assert blocked == []
        assert [p for p in problems if REDOC_LOGO not in p] == []
