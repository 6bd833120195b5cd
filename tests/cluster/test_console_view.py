"""The console's cluster view on a real cluster (a gateway and an invoker, real processes on
the real PostgreSQL and NATS) in headless Chromium: the sidebar has the entry, and the page
lists both nodes with their roles, addresses and the invoker's instances."""
from __future__ import annotations

import pytest

from concurrent.futures import ThreadPoolExecutor

from tests.cluster.conftest import cluster_env
from tests.cluster.test_nodes import nodes_counted
from tests.cluster.test_sync import echo, node_id, started
from tests.console.test_console_a11y import signed_in
from tests.console.test_console_browser import CHROMIUM, CHROMIUM_ARGS, _browser_problem

pytestmark = pytest.mark.skipif(_browser_problem() is not None, reason=_browser_problem() or "")


def in_browser(check) -> None:
    """`check(browser)` with a headless Chromium, in a thread of its own: Playwright's sync API
    cannot run in the thread whose event loop ran the test's async fixtures."""
    from playwright.sync_api import sync_playwright

    def run():
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                check(browser)
            finally:
                browser.close()

    with ThreadPoolExecutor(1) as thread:
        thread.submit(run).result()


def test_the_cluster_view_lists_the_live_nodes(node_factory, postgres_url, nats_cluster):
    env = cluster_env(postgres_url, nats_cluster)
    gateway, invoker = started(node_factory, [(env, "gateway"), (env, "invoker")])
    nodes_counted(gateway, 2, 30, what="the gateway and the invoker")
    assert gateway.client().get("/v1/cluster").json()["mode"] == "cluster"
    gateway.deploy("kept", echo(1), resident=2)
    ids = {srv: node_id(srv) for srv in (gateway, invoker)}
    in_browser(lambda browser: _check_view(browser, gateway, invoker, ids))


def _check_view(browser, gateway, invoker, ids) -> None:
    from playwright.sync_api import expect

    with signed_in(browser, gateway) as page:
        page.click("a.nav-item:has-text('Cluster nodes')")
        expect(page.locator("#cluster-summary")).to_have_text("Cluster: 2 live nodes, 1 gateway, 1 invoker.")
        gateway_row = page.locator("tbody tr", has_text=ids[gateway])
        invoker_row = page.locator("tbody tr", has_text=ids[invoker])
        expect(gateway_row.locator("td").nth(1)).to_have_text("gateway")
        expect(gateway_row.locator("td").nth(2)).to_have_text(gateway.url)
        expect(gateway_row.locator("td").nth(5)).to_have_text("—")  # a gateway holds no instances
        expect(invoker_row.locator("td").nth(1)).to_have_text("invoker")
        expect(invoker_row.locator("td").nth(2)).to_have_text(invoker.url)
        # The view refreshes itself: the two residents appear once the invoker has started them.
        expect(invoker_row.locator("td").nth(5)).to_have_text("2 / 0", timeout=60_000)
        expect(invoker_row.locator("td").nth(6)).to_have_text("128 MB: 0 · 256 MB: 0")
