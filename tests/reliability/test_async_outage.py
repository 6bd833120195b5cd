"""Nothing accepted is lost or stuck (issue 11): async invocations accepted (202) before and
during a database outage all end final once the database is back, without a restart - claims
and outcome writes that failed come back through retries and leases."""
from __future__ import annotations

import time

import httpx

from frazil.settings import Settings
from frazil.testing import wait_until

SLOW = {"index.py": "import time\n\ndef main(event, context):\n    time.sleep(0.5)\n    return event\n"}
FINAL = {"succeeded", "failed", "timeout", "throttled"}
OUTAGE_S = 10  # how long the database stays unreachable (the "stopped for 10 s")


def test_every_accepted_async_invocation_ends_final_after_an_outage(private_database, server_factory):
    """Async load on a server whose PostgreSQL database becomes unreachable for OUTAGE_S:
    every invocation answered 202 is final within a minute after the database is back, one
    record each, each with at least one attempt."""
    srv = server_factory(**{Settings.env_name("database_url"): private_database.url,
                            Settings.env_name("sandbox"): "plain"})
    srv.deploy("slow", SLOW, timeout=5)
    api = srv.client(timeout=10)
    accepted: list[str] = []

    def post(n: int) -> None:
        try:
            response = api.post("/v1/functions/slow/invoke", params={"mode": "async"}, json={"n": n})
        except httpx.TransportError:
            return
        if response.status_code == 202:
            accepted.append(response.json()["invocation_id"])
        else:
            assert response.status_code == 503, response.text  # refused: never accepted

    for n in range(16):
        post(n)
    # Some are running, some queued, when the database goes away.
    wait_until(lambda: any(r["status"] == "running" for r in
                           api.get("/v1/functions/slow/invocations").json()["invocations"]), 30,
               what="an async invocation to start")
    private_database.cut()
    try:
        cut_at = time.monotonic()
        wait_until(lambda: srv.client(None, timeout=10).get("/healthz").status_code == 503, 15,
                   what="the server to notice the outage")
        sent = iter(range(16, 10_000))

        def load_until_the_outage_has_lasted() -> bool:
            post(next(sent))  # refused with 503 (or accepted, if it slipped in)
            return time.monotonic() - cut_at >= OUTAGE_S

        wait_until(load_until_the_outage_has_lasted, OUTAGE_S * 2, interval=0.1,
                   what=f"{OUTAGE_S} s of outage under load")
    finally:
        private_database.restore()

    def all_final():
        records = api.get("/v1/functions/slow/invocations", params={"limit": 100})
        if records.status_code != 200:
            return None
        listed = records.json()["invocations"]
        mine = [r for r in listed if r["id"] in set(accepted)]
        return mine if len(mine) == len(accepted) and all(r["status"] in FINAL for r in mine) else None

    try:
        records = wait_until(all_final, 60, interval=0.2, what="every accepted invocation to be final")
    except Exception:
        listed = api.get("/v1/functions/slow/invocations", params={"limit": 100}).json()["invocations"]
        print([(r["id"], r["status"], r["attempts"]) for r in listed if r["id"] in set(accepted)])
        print(srv.log_path.read_text()[-6000:])
        raise
    assert len(accepted) >= 16
    assert len({r["id"] for r in records}) == len(accepted)  # one record each
    assert all(r["attempts"] >= 1 for r in records), records
    assert all(r["status"] == "succeeded" for r in records), [(r["id"], r["status"], r.get("error")) for r in records]
