"""The console driven by a real headless Chromium against a real server: sign in with the key,
deploy a small zip through the form, test-invoke it with a JSON event, see the result, its
logs and the history, deploy a second version from a folder (zipped in the page), watch the
dashboard, and sign out. Screenshots land in the test's tmp dir for a human to look at.

Needs the Debian `chromium` package (/usr/bin/chromium) and the Python `playwright` package
(the `test` extra; it never downloads a browser of its own here). Without them it skips.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from frazil.testing import zip_files

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _browser_problem() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: install the Debian package (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("the Python package 'playwright' is missing: pip install the 'test' extra "
                "(with PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1; the Debian chromium is used)")
    return None


pytestmark = pytest.mark.skipif(_browser_problem() is not None, reason=_browser_problem() or "")

# Output that would be dangerous if the console rendered it as HTML.
FUNCTION = {
    "index.py": (
        "import os\n"
        "def main(event, context):\n"
        "    print('greeting ' + event['name'] + ' from ' + os.environ['GREETER'])\n"
        "    return {'hello': event['name'], 'html': '<img src=x onerror=\"window.__pwned=1\">', 'cold': context.cold}\n"
    ),
}


@pytest.fixture
def browser_page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
        page = context.new_page()
        page.set_default_timeout(30_000)
        problems: list[str] = []

        def on_console(message):
            text = message.text
            # The wrong-key attempt is a deliberate 401; the browser logs every failed request.
            if message.type == "error" and "status of 401" not in text:
                problems.append(f"console {message.type}: {text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.problems = problems
        try:
            yield page
        finally:
            context.close()
            browser.close()


def test_sign_in_deploy_invoke_and_read_the_logs(server, unique_name, browser_page, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    shots = tmp_path / "screenshots"
    shots.mkdir()
    bundle = tmp_path / "greeter.zip"
    bundle.write_bytes(zip_files(FUNCTION))

    # --- sign in: a wrong key is refused, the right one is kept in localStorage -----------------
    page.goto(f"{server.url}/console")
    page.fill("#admin-key", "not-the-key")
    page.click("form.signin-card button[type=submit]")
    page.wait_for_selector("text=That key is not valid.")
    page.fill("#admin-key", server.admin_key)
    page.click("form.signin-card button[type=submit]")
    page.wait_for_selector(".sidebar .fn-list")
    assert page.evaluate("localStorage.getItem('frazil.adminKey')") == server.admin_key
    page.wait_for_selector(".chart canvas")

    # --- deploy a zip through the form -------------------------------------------------------
    page.click("a.nav-item:has-text('Deploy function')")
    page.set_input_files("#bundle-file", str(bundle))
    page.fill("#fn-name", unique_name)
    page.click("button:has-text('+ Add variable')")
    page.fill(".env-row input[aria-label='Variable name']", "GREETER")
    page.fill(".env-row input[aria-label='Variable value']", "the console")
    page.click("#memory-256 + span")
    page.click("form button[type=submit]")
    page.wait_for_selector(".alert-ok:has-text('is active')", timeout=120_000)
    assert "Version 1 is active" in page.inner_text(".deploy-output")
    listed = page.wait_for_selector(f".fn-list a.fn-item:has-text('{unique_name}')")
    assert "256 MB" in listed.inner_text()
    page.screenshot(path=str(shots / "1-deployed.png"))

    # --- test-invoke: a JSON error is pointed at, then a valid event runs ---------------------
    page.click("text=Test it →")
    page.wait_for_selector(".json-input")
    bad = '{\n  "name": "<b>frazil</b>",\n}'
    page.fill(".json-input", bad)
    status = page.inner_text(".json-status")
    assert "Line 3, column 1" in status and "trailing comma" in status
    assert page.is_disabled(".toolbar button:text-is('Invoke')")
    page.click("button:has-text('Format')")  # cannot format: selects the error instead
    assert page.evaluate("document.querySelector('.json-input').selectionStart") == len(bad) - 1
    page.fill(".json-input", '{"name": "<b>frazil</b>"}')
    assert "Valid JSON" in page.inner_text(".json-status")
    page.click("button:has-text('Format')")
    assert page.input_value(".json-input") == '{\n  "name": "<b>frazil</b>"\n}'
    page.click(".toolbar button:text-is('Invoke')")
    page.wait_for_selector(".result-head .badge:has-text('success')")
    result_text = page.inner_text(".result-card")
    assert '"hello": "<b>frazil</b>"' in result_text
    assert "cold" in page.inner_text(".result-head")
    assert re.search(r"duration\s*[\d.]+ (ms|s)", page.inner_text(".result-head"))
    # The logs come from GET /v1/invocations/{id}.
    page.wait_for_selector(".result-card pre.code-log")
    assert "greeting <b>frazil</b> from the console" in page.inner_text(".result-card pre.code-log")
    # Untrusted output stays text: no element was made from it, no script ran.
    assert page.locator(".result-card img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert "<img src=x onerror=" in result_text
    page.screenshot(path=str(shots / "2-test-invoke.png"))

    # An async invocation is followed to its final record.
    page.click("button:has-text('Invoke async')")
    page.wait_for_selector(".result-card .record .badge:has-text('succeeded')", timeout=60_000)
    assert "warm" in page.inner_text(".result-card .record")

    # --- history and logs -----------------------------------------------------------------------
    page.click("a.tab:has-text('Invocations')")
    page.wait_for_selector("table.table-hover tbody tr.clickable >> nth=1")
    rows = page.locator("table.table-hover tbody tr.clickable")
    assert rows.count() == 2
    assert "async" in rows.nth(0).inner_text() and "sync" in rows.nth(1).inner_text()
    rows.nth(1).click()
    page.wait_for_selector(".record pre.code-log")
    assert "greeting <b>frazil</b>" in page.inner_text(".record pre.code-log")
    page.click("a.tab:has-text('Logs')")
    expect(page.locator(".log-entry")).to_have_count(2)
    assert page.inner_text(".log-view").count("greeting <b>frazil</b> from the console") == 2
    page.screenshot(path=str(shots / "3-logs.png"))

    # --- a new version from a folder, zipped in the browser; the form keeps the settings -------
    folder = tmp_path / "greeter"
    (folder / "lib").mkdir(parents=True)
    (folder / "__pycache__").mkdir()
    (folder / "index.py").write_text(
        "import os\nfrom lib.shout import shout\n"
        "def main(event, context):\n    return shout(event['name']) + ' via ' + os.environ['GREETER']\n")
    (folder / "lib" / "__init__.py").write_text("")
    (folder / "lib" / "shout.py").write_text("def shout(s):\n    return s.upper() + '!'\n")
    (folder / "__pycache__" / "index.cpython-311.pyc").write_bytes(b"\0stale")
    page.click("a.btn:has-text('Deploy new version')")
    expect(page.locator(".env-row input[aria-label='Variable value']")).to_have_value("the console")
    assert page.is_checked("#memory-256")
    page.set_input_files("#bundle-folder", str(folder))
    expect(page.locator(".dropzone")).to_contain_text("3 files")
    expect(page.locator(".dropzone")).to_contain_text("1 left out")
    page.click("form button[type=submit]")
    page.wait_for_selector(".alert-ok:has-text('Version 2 is active')", timeout=120_000)
    assert server.invoke(unique_name, {"name": "ice"})["result"] == "ICE! via the console"

    # --- the dashboard has charted the invocations ---------------------------------------------
    page.click("a.nav-item:has-text('Dashboard')")
    page.wait_for_selector(".tile-value")
    # (No wait_for_function: it evaluates strings, which the console's CSP rightly refuses.)
    expect(page.locator(".tile-sub:has-text('since start')")).to_have_text(re.compile(r"^([3-9]|\d\d+) since start$"))
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / "4-dashboard.png"))

    # --- sign out clears the key ----------------------------------------------------------------
    page.click("button:has-text('Sign out')")
    page.wait_for_selector("#admin-key")
    assert page.evaluate("localStorage.getItem('frazil.adminKey')") is None

    assert page.problems == [], page.problems
    print(f"screenshots in {shots}")
