"""GET /v1/stats: the JSON numbers the console charts (admin only), read from the platform."""
from __future__ import annotations

import httpx

FLAKY = {"index.py": "def main(event, context):\n"
                     "    if event.get('fail'):\n        raise ValueError('asked to fail')\n"
                     "    return 'ok'\n"}


def test_stats_needs_the_admin_key(server):
    assert httpx.get(f"{server.url}/v1/stats", timeout=10).status_code == 401
    wrong = httpx.get(f"{server.url}/v1/stats", headers={"Authorization": "Bearer not-the-key"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["success"] is False


def test_stats_count_invocations_cold_starts_and_latency(server, unique_name):
    """After a cold success and a warm failure, the function's counters, cold starts and latency
    histogram say so, and the installation's totals grew by at least as much."""
    client = server.client()
    server.deploy(unique_name, FLAKY)
    before = client.get("/v1/stats").json()
    assert before["success"] is True
    assert unique_name not in before["functions"]

    assert server.invoke(unique_name, {})["success"] is True
    assert server.invoke(unique_name, {"fail": True})["success"] is False

    after = client.get("/v1/stats").json()
    mine = after["functions"][unique_name]
    assert {status: n for status, n in mine["invocations"].items() if n} == {"succeeded": 1, "failed": 1}
    assert mine["cold_starts"] == 1
    duration = mine["duration"]
    assert duration["count"] == 2 and duration["sum"] > 0
    assert len(duration["buckets"]) == len(after["latency_buckets_s"]) + 1  # the last is +Inf
    assert duration["buckets"][-1] == 2 and duration["buckets"] == sorted(duration["buckets"])  # cumulative

    def total(snapshot):
        return sum(snapshot["totals"]["invocations"].values())

    assert total(after) >= total(before) + 2
    assert after["totals"]["cold_starts"] >= before["totals"]["cold_starts"] + 1
    assert after["totals"]["duration"]["count"] >= before["totals"]["duration"]["count"] + 2
    assert after["time"] > before["time"]
    # The warm instance waits idle for the next invocation.
    assert after["instances"]["idle"] >= 1 and after["instances"]["busy"] >= 0
    assert isinstance(after["queue_depth"], int)


def test_stats_tiers_report_running_against_the_configured_limit(server_factory):
    """Each tier's limit is the installation's setting; nothing runs when nothing is invoked."""
    srv = server_factory(FRAZIL_TIER_LIMIT_128=7, FRAZIL_TIER_LIMIT_256=3)
    stats = srv.client().get("/v1/stats").json()
    assert stats["tiers"] == {"128": {"running": 0, "limit": 7, "waiting": 0},
                              "256": {"running": 0, "limit": 3, "waiting": 0}}
    assert stats["queue_depth"] == 0 and stats["functions"] == {}


def test_stats_is_in_the_openapi_document(server):
    paths = httpx.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]
    assert "/v1/stats" in paths
    assert not any(p.startswith("/console") for p in paths)


def test_the_server_keeps_the_last_hour(server_factory, unique_name):
    """GET /v1/stats/history: samples taken by the server every FRAZIL_STATS_INTERVAL_S, with
    each interval's invocations as differences, per function too, whether or not a console
    was open meanwhile."""
    from frazil.testing.waiting import wait_until

    srv = server_factory(FRAZIL_STATS_INTERVAL_S=0.2)
    srv.deploy(unique_name, FLAKY)
    assert server_invoke_ok(srv, unique_name)

    def mine():
        history = srv.client().get("/v1/stats/history", params={"function": unique_name}).json()
        return [s for s in history["samples"] if s["functions"]] and history

    history = wait_until(mine, timeout=30, what="a sample with the invocation")
    assert history["interval_s"] == 0.2 and history["success"] is True
    ran = [s for s in history["samples"] if s["functions"]]
    assert sum(s["functions"][unique_name]["invocations"].get("succeeded", 0) for s in ran) == 1
    assert sum(s["functions"][unique_name]["cold_starts"] for s in ran) == 1
    assert all(set(s["functions"]) == {unique_name} for s in ran)
    assert sum(s["totals"]["invocations"].get("succeeded", 0) for s in history["samples"]) >= 1
    assert len(history["latency_buckets_s"]) + 1 == len(ran[0]["functions"][unique_name]["duration"]["buckets"])


def server_invoke_ok(srv, name) -> bool:
    return srv.invoke(name, {})["success"] is True
