"""Every console view in headless Chromium at a desktop (1440x900) and a phone (390x844) size:
axe-core (shipped by the `axe-playwright-python` package, so it runs offline) finds no serious
or critical accessibility violation, and nothing scrolls sideways. Also: the curl snippet the
console shows works when pasted into a shell, and a function that does not exist says so."""
from __future__ import annotations

import os
from contextlib import contextmanager
import re
import subprocess

import pytest

from tests.console.test_console_browser import CHROMIUM, CHROMIUM_ARGS, _browser_problem

pytestmark = pytest.mark.skipif(_browser_problem() is not None, reason=_browser_problem() or "")

NONZERO_RATE = re.compile(r"(?<![\d.])(0\.\d*[1-9]|[1-9][\d.]*)/s")
VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
FUNCTION = {"index.py": "def main(event, context):\n"
                        "    if event.get('fail'):\n        raise ValueError('asked to fail')\n"
                        "    print('hello', event.get('name'))\n    return {'hello': event.get('name')}\n"}


@pytest.fixture(scope="module")
def console_server(tmp_path_factory):
    from tests.conftest import make_server

    srv = make_server(tmp_path_factory.mktemp("a11y") / "data", FRAZIL_STATS_INTERVAL_S=2).start()
    srv.deploy("greeter", FUNCTION)
    srv.invoke("greeter", {"name": "a"})
    srv.invoke("greeter", {"fail": True})
    admin = srv.client()
    assert admin.put("/v1/tables/notes", json={"acl": {"read": "public", "write": "owner"}}).status_code == 200
    assert admin.post("/v1/tables/notes/records", json={"text": "<b>hi</b>", "n": 1}).status_code == 200
    assert admin.post("/v1/auth/register", json={"username": "alice", "password": "correct horse"}).status_code == 200
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _views(name: str, invocation_id: str) -> dict[str, tuple[str, str]]:
    """view -> (hash, a selector present once it has rendered)."""
    fn = f"#/fn/{name}"
    return {
        "dashboard": ("#/", "text=kept by the server"),
        "deploy": ("#/deploy", "#bundle-file"),
        "overview": (fn, ".props"),
        "test": (f"{fn}/test", ".json-input"),
        "invocations": (f"{fn}/invocations", "tr.clickable"),
        "invocation": (f"{fn}/invocations/{invocation_id}", ".record"),
        "logs": (f"{fn}/logs", ".log-entry"),
        "metrics": (f"{fn}/metrics", ".chart"),
        "missing": ("#/fn/no-such-function", "text=This function does not exist"),
        "data": ("#/data", "text=alice"),
        "table": ("#/data/notes", ".record-fields"),
        "cluster": ("#/cluster", "text=Embedded: one node"),
    }


@contextmanager
def signed_in(browser, srv, size: str = "desktop", on_sign_in_page=None):
    """A page of a fresh browser context, signed in to the console; `on_sign_in_page(page)` is
    called on the sign-in screen first."""
    context = browser.new_context(viewport=VIEWPORTS[size])
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{srv.url}/console")
        page.wait_for_selector("#admin-key")
        if on_sign_in_page is not None:
            on_sign_in_page(page)
        page.fill("#admin-key", srv.admin_key)
        page.click("form.signin-card button[type=submit]")
        page.wait_for_selector(".sidebar .fn-list")
        yield page
    finally:
        context.close()


def _serious(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} - {[n['target'] for n in v['nodes']][:5]}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("size", VIEWPORTS)
def test_every_view_is_accessible_and_fits(console_server, browser, size):
    srv = console_server
    invocation_id = srv.client().get("/v1/functions/greeter/invocations").json()["invocations"][0]["id"]
    problems: dict[str, list[str]] = {}

    def check(view: str, page) -> None:
        problems[view] = _serious(page) + _overflow(page)

    with signed_in(browser, srv, size, on_sign_in_page=lambda page: check("sign-in", page)) as page:
        for view, (fragment, ready) in _views("greeter", invocation_id).items():
            page.goto(f"{srv.url}/console{fragment}")
            page.wait_for_selector(ready)
            check(view, page)
    found = {view: issues for view, issues in problems.items() if issues}
    assert found == {}, "\n".join(f"{view}: {issue}" for view, issues in found.items() for issue in issues)


def _overflow(page) -> list[str]:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    return [] if width <= inner else [f"scrolls sideways: {width} px wide in a {inner} px window"]


def test_the_curl_snippet_works_when_pasted(console_server, browser):
    """The overview's snippet, run by a shell with FRAZIL_TOKEN set, invokes the function."""
    srv = console_server
    with signed_in(browser, srv) as page:
        page.goto(f"{srv.url}/console#/fn/greeter")
        snippet = page.locator("pre:has-text('curl -X POST')").inner_text()
    run = subprocess.run(["bash", "-c", snippet + " --silent --show-error"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "FRAZIL_TOKEN": srv.admin_key})
    assert run.returncode == 0, run.stderr
    assert '"success":true' in run.stdout and '"hello":"world"' in run.stdout, run.stdout


def test_the_first_start_says_where_the_admin_key_is(console_server):
    """The console asks for the key: the server's first start names the file it wrote."""
    key_file = (console_server.data_dir / "admin.key").resolve()
    assert f"generated the admin key into {key_file}" in console_server.log_text()


def test_the_dashboard_shows_the_last_hour_from_the_server(console_server, browser):
    """Invocations made before the page was opened are on its last-hour charts, readable as a
    table; the function's metrics tab has its own."""
    from playwright.sync_api import expect

    srv = console_server
    srv.invoke("greeter", {"name": "before the page"})
    with signed_in(browser, srv) as page:
        for fragment in ("#/", "#/fn/greeter/metrics"):
            page.goto(f"{srv.url}/console{fragment}")
            hour = page.locator("h2:text('Last hour') >> xpath=../..")
            expect(hour.locator(".section-head")).to_contain_text("kept by the server")
            rate = hour.locator("figure.chart").first
            rate.locator("summary:text('Show as a table')").click()
            # A recent sample saw invocations succeed: a rate above zero (the table follows the
            # samples as the page fetches them).
            expect(rate.locator("tbody")).to_contain_text(NONZERO_RATE)


def test_the_data_view_browses_records_changes_an_acl_and_lists_users(console_server, browser):
    srv = console_server
    with signed_in(browser, srv) as page:
        page.click("a.nav-item:has-text('Data tables and users')")
        page.wait_for_selector("text=alice")
        page.select_option("select[aria-label='write access of notes']", "admin")
        page.wait_for_selector("text=notes: write is now admin")
        assert srv.client().get("/v1/tables/notes").json()["table"]["acl"] == {"read": "public", "write": "admin"}
        page.click("a:text('notes')")
        fields = page.wait_for_selector(".record-fields")
        assert fields.inner_text() == '{"text":"<b>hi</b>","n":1}'  # shown as text, never as markup


def test_history_shows_errors_and_filters_by_status(console_server, browser):
    from playwright.sync_api import expect

    with signed_in(browser, console_server) as page:
        page.goto(f"{console_server.url}/console#/fn/greeter/invocations")
        page.wait_for_selector("tr.clickable")
        expect(page.locator("td.error-cell")).to_contain_text(["ValueError: asked to fail"])
        page.select_option("#history-status", "failed")
        rows = page.locator("tr.clickable")
        expect(rows).to_have_count(1)
        assert "failed" in rows.first.inner_text()
        page.select_option("#history-status", "succeeded")
        # The list is fetched again: wait for its rows (the failed one was the only row before).
        expect(page.locator("tr.clickable").first).to_contain_text("succeeded")
        expect(page.locator("tr.clickable td.error-cell")).to_have_count(0)



def test_the_cluster_view_shows_the_one_node_of_the_embedded_mode(console_server, browser):
    """Embedded: no sidebar entry for the cluster; its page (by address) says one node, and
    lists it with its role and its instances."""
    from playwright.sync_api import expect

    srv = console_server
    node = srv.client().get("/healthz").json()["node"]
    with signed_in(browser, srv) as page:
        expect(page.locator("a.nav-item:has-text('Cluster nodes')")).to_be_hidden()
        page.goto(f"{srv.url}/console#/cluster")
        expect(page.locator("#cluster-summary")).to_have_text("Embedded: one node, this process.")
        rows = page.locator("table tbody tr")
        expect(rows).to_have_count(1)
        cells = rows.first.locator("td")
        expect(cells.nth(0)).to_have_text(node)
        expect(cells.nth(1)).to_have_text("all")
        expect(cells.nth(2)).to_have_text(srv.url)
        expect(cells.nth(5)).to_have_text(re.compile(r"^\d+ / \d+$"))
        expect(cells.nth(6)).to_have_text(re.compile(r"128 MB: \d+ · 256 MB: \d+"))
