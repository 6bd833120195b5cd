"""The console shows what fires a function and lets a record be run again, in a real headless
Chromium against a real server: a function's access, HTTP endpoint URL and triggers (a
schedule with its next fire time, a table trigger) on its page; the history's trigger column;
a table-triggered record's event, and "Run again with this event" starting a `retry` of it."""
from __future__ import annotations

from tests.console.test_console_browser import browser_page, pytestmark  # noqa: F401 - fixture, skip rule
from frazil.testing.waiting import wait_until

ECHO = {"index.py": "def main(event, context):\n    return {'op': event.get('op'), 'n': event['record']['n']}\n"}


def test_function_page_shows_access_endpoint_and_triggers_and_history_runs_a_record_again(
        server, unique_name, browser_page, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    table = unique_name.replace("-", "_")
    server.deploy(unique_name, ECHO, access="user", http=True, triggers=[
        {"type": "table", "table": table, "on": ["insert", "update"]},
        {"type": "schedule", "cron": "0 0 1 1 *"}])
    assert server.client().post(f"/v1/tables/{table}/records", json={"n": 7}).status_code == 200

    def fired():
        listed = server.client().get("/v1/invocations", params={"function": unique_name}).json()["invocations"]
        return listed if listed and listed[0]["status"] == "succeeded" else None

    (original,) = wait_until(fired, timeout=60, what="the table-triggered invocation")

    page.goto(f"{server.url}/console")
    page.fill("#admin-key", server.admin_key)
    page.click("form.signin-card button[type=submit]")
    page.wait_for_selector(".sidebar .fn-list")
    page.goto(f"{server.url}/console#/fn/{unique_name}/overview")
    expect(page.locator(".page-meta")).to_contain_text("access user")
    expect(page.locator(".fn-access")).to_contain_text("any logged-in end user")
    expect(page.locator(".fn-endpoint code")).to_have_text(f"{server.url}/fn/{unique_name}")
    triggers = page.locator(".fn-triggers li")
    expect(triggers).to_have_count(2)
    expect(triggers.nth(0)).to_contain_text(f"table {table} · on insert, update")
    expect(triggers.nth(1)).to_contain_text("schedule 0 0 1 1 * UTC · next")
    assert page.locator(".fn-next-fire").get_attribute("title").endswith("-01-01T00:00:00.000Z")
    page.screenshot(path=str(tmp_path / "function-overview.png"))

    page.click("a.tab:has-text('Invocations')")
    row = page.locator("table.table-hover tbody tr.clickable")
    expect(row).to_have_count(1)
    expect(row.nth(0)).to_contain_text("table")
    row.nth(0).click()
    expect(page.locator(".record")).to_contain_text('"op": "insert"')
    page.screenshot(path=str(tmp_path / "table-record.png"))
    page.click("button:has-text('Run again with this event')")

    expect(page.locator(".record .badge:has-text('succeeded')")).to_be_visible(timeout=60_000)
    expect(page.locator(".record")).to_contain_text(f"Run again from{original['id']}")
    replayed = page.locator(".card-head code").inner_text()
    assert replayed != original["id"]
    record = server.invocation(replayed)
    assert (record["trigger"], record["retry_of"], record["result"]) == ("retry", original["id"], {"op": "insert", "n": 7})
    assert record["event"] == server.invocation(original["id"])["event"]

    page.click("a.btn:has-text('← History')")
    expect(row).to_have_count(2)
    expect(row.nth(0)).to_contain_text("retry")
    assert page.problems == [], page.problems
    print(f"screenshots in {tmp_path}")
