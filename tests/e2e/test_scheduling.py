"""The scheduling rules of SPEC.md against a real server: tier limits, the sync retry window
(429), the async queue (overflow, retries, throttling, crash safety) and resident instances."""
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime


from frazil.testing import wait_until

SLEEPER = {"index.py": "import time\ndef main(event, context):\n    time.sleep(event.get('s', 0.3))\n"
                       "    return event.get('n')\n"}


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def max_overlap(records) -> int:
    """The most invocations whose [started_at, finished_at] intervals overlap at one instant."""
    edges = []
    for r in records:
        edges.append((ts(r["started_at"]), 1))
        edges.append((ts(r["finished_at"]), -1))
    running = peak = 0
    for _, delta in sorted(edges, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    return peak


class TestTierLimit:
    def test_sync_running_never_exceeds_the_tier_limit(self, server_factory):
        """12 concurrent calls on a tier limited to 3: all succeed, never more than 3 at once."""
        srv = server_factory(FRAZIL_TIER_LIMIT_128="3")
        srv.deploy("sleepy", SLEEPER)
        with ThreadPoolExecutor(12) as pool:
            bodies = list(pool.map(lambda n: srv.invoke("sleepy", {"n": n, "s": 0.2}), range(12)))
        assert sorted(b["result"] for b in bodies) == list(range(12))
        records = [srv.invocation(b["invocation_id"]) for b in bodies]
        assert max_overlap(records) <= 3

    def test_sync_gets_429_after_the_retry_window(self, server_factory):
        """With the tier full, a sync call waits about 2 s, then gets 429 TooManyRequests."""
        srv = server_factory(FRAZIL_TIER_LIMIT_256="1")
        srv.deploy("hog", SLEEPER, memory=256, timeout=30)
        with ThreadPoolExecutor(1) as pool:
            hog = pool.submit(srv.invoke, "hog", {"s": 4})
            wait_until(lambda: 'frazil_running_invocations{tier="256"} 1.0' in srv.metrics(), 10,
                       what="the first call to hold the tier's only slot")
            started = time.monotonic()
            response = srv.client().post("/v1/functions/hog/invoke", content=b'{"s": 0}')
            waited = time.monotonic() - started
            assert response.status_code == 429
            body = response.json()
            assert body["success"] is False and body["error"]["type"] == "TooManyRequests"
            assert "256 MB tier" in body["message"]
            assert 1.9 <= waited < 3.5
            assert hog.result()["success"] is True

    def test_a_waiting_sync_call_gets_the_freed_slot(self, server_factory):
        """A call that finds the tier full runs as soon as a slot frees within the window."""
        srv = server_factory(FRAZIL_TIER_LIMIT_128="1")
        srv.deploy("short", SLEEPER)
        # Warm first: the slot is then held for the 0.5 s sleep only, not also for a cold start
        # whose length (on a loaded machine) could outlast the window.
        assert srv.invoke("short", {"s": 0})["cold"] is True
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(srv.invoke, "short", {"s": 0.5, "n": 1})
            wait_until(lambda: 'frazil_running_invocations{tier="128"} 1.0' in srv.metrics(), 10)
            second = pool.submit(srv.invoke, "short", {"s": 0, "n": 2})
            assert first.result()["result"] == 1 and first.result()["cold"] is False
            assert second.result()["result"] == 2, second.result()


class TestAsyncQueue:
    def test_overflow_is_queued_and_all_succeed_within_the_limit(self, server_factory):
        """20 async calls on a tier of 2: all accepted at once, all succeed, never more than 2 run."""
        srv = server_factory(FRAZIL_TIER_LIMIT_128="2")
        srv.deploy("batch", SLEEPER)
        ids = [srv.invoke("batch", {"n": n, "s": 0.1}, mode="async", expect=202)["invocation_id"]
               for n in range(20)]
        records = [srv.wait_invocation(i, timeout=60) for i in ids]
        assert {r["status"] for r in records} == {"succeeded"}
        assert sorted(r["result"] for r in records) == list(range(20))
        assert max_overlap(records) <= 2

    def test_function_errors_are_retried_with_attempts_counted(self, server_factory):
        """A failing async call runs 1 + FRAZIL_ASYNC_MAX_RETRIES times; one that recovers stops."""
        srv = server_factory(FRAZIL_ASYNC_MAX_RETRIES="2", FRAZIL_ASYNC_RETRY_BACKOFF_S="0.05")
        srv.deploy("flaky", {"index.py": (
            "CALLS = 0\n"
            "def main(event, context):\n    global CALLS\n    CALLS += 1\n"
            "    if event.get('always') or CALLS < 2:\n        raise RuntimeError(f'attempt {CALLS}')\n"
            "    return CALLS\n")})
        failing = srv.invoke("flaky", {"always": True}, mode="async", expect=202)["invocation_id"]
        record = srv.wait_invocation(failing)
        assert record["status"] == "failed" and record["attempts"] == 3
        assert record["error"]["type"] == "RuntimeError"
        srv.deploy("flaky", {"index.py": (
            "CALLS = 0\n"
            "def main(event, context):\n    global CALLS\n    CALLS += 1\n"
            "    if CALLS < 2:\n        raise RuntimeError('first call fails')\n    return CALLS\n")})
        recovering = srv.invoke("flaky", {}, mode="async", expect=202)["invocation_id"]
        record = srv.wait_invocation(recovering)
        assert record["status"] == "succeeded" and record["attempts"] == 2 and record["result"] == 2

    def test_throttled_after_the_async_window(self, server_factory):
        """With the tier held for longer than the window, a queued call ends `throttled`."""
        srv = server_factory(FRAZIL_TIER_LIMIT_256="1", FRAZIL_ASYNC_RETRY_S="1")
        srv.deploy("busy", SLEEPER, memory=256, timeout=30)
        with ThreadPoolExecutor(1) as pool:
            hog = pool.submit(srv.invoke, "busy", {"s": 3})
            wait_until(lambda: 'frazil_running_invocations{tier="256"} 1.0' in srv.metrics(), 10)
            queued = srv.invoke("busy", {"s": 0}, mode="async", expect=202)["invocation_id"]
            record = srv.wait_invocation(queued, timeout=10)
            assert record["status"] == "throttled" and record["attempts"] == 0
            assert record["error"]["type"] == "TooManyRequests"
            assert hog.result()["success"] is True

    def test_kill_9_and_restart_lose_nothing(self, server_factory):
        """Accepted async calls survive a SIGKILL of the server: each completes, once recorded."""
        srv = server_factory(FRAZIL_TIER_LIMIT_128="2")
        srv.deploy("durable", SLEEPER)
        ids = [srv.invoke("durable", {"n": n, "s": 0.2}, mode="async", expect=202)["invocation_id"]
               for n in range(12)]
        wait_until(lambda: any(srv.invocation(i)["status"] == "succeeded" for i in ids), 20,
                   what="some invocations to finish before the crash")
        srv.stop(signal.SIGKILL)
        srv.start()
        records = [srv.wait_invocation(i, timeout=60) for i in ids]
        assert {r["status"] for r in records} == {"succeeded"}
        assert sorted(r["result"] for r in records) == list(range(12))
        listed = srv.client().get("/v1/functions/durable/invocations", params={"limit": 100}).json()
        assert sorted(r["id"] for r in listed["invocations"]) == sorted(ids)


class TestResident:
    def test_resident_instances_answer_warm_at_once(self, server_factory):
        """--resident N creates N instances at deploy: the first calls are warm."""
        srv = server_factory()
        srv.deploy("always-on", SLEEPER, resident=2)
        assert 'frazil_instances{state="idle"} 2.0' in srv.metrics()
        with ThreadPoolExecutor(2) as pool:
            bodies = list(pool.map(lambda n: srv.invoke("always-on", {"n": n, "s": 0.2}), range(2)))
        assert [b["cold"] for b in bodies] == [False, False]

    def test_resident_instances_are_not_reaped_and_are_replaced_when_they_die(self, server_factory):
        srv = server_factory(FRAZIL_KEEP_ALIVE_S="0.2")
        srv.deploy("keeper", {"index.py": "import os\ndef main(e, c):\n"
                                          "    if e.get('die'):\n        os._exit(1)\n    return os.getpid()\n"},
                   resident=1)
        srv.deploy("transient", SLEEPER)
        srv.invoke("transient", {"s": 0})
        # The transient instance is reaped after the keep-alive; the resident one stays.
        wait_until(lambda: 'frazil_instances{state="idle"} 1.0' in srv.metrics(), 10,
                   what="the non-resident instance to be reaped")
        assert srv.invoke("keeper")["cold"] is False
        died = srv.invoke("keeper", {"die": True})
        assert died["error"]["type"] == "RuntimeExited"
        wait_until(lambda: 'frazil_instances{state="idle"} 1.0' in srv.metrics(), 10,
                   what="the resident instance to be replaced")
        assert srv.invoke("keeper")["cold"] is False


def test_metrics_cover_invocations_cold_starts_tiers_queue_instances_and_sandboxes(server_factory):
    """/metrics exposes what the issue lists, with live values."""
    srv = server_factory(FRAZIL_KEEP_ALIVE_S="0.2")
    srv.deploy("measured", SLEEPER)
    srv.invoke("measured", {"s": 0})
    srv.invoke("measured", {"s": 0})
    wait_until(lambda: "frazil_sandbox_destroy_seconds_count 1.0" in srv.metrics(), 10,
               what="the idle instance to be reaped and its destroy time recorded")
    text = srv.metrics()
    for line in ('frazil_invocations_total{function="measured",status="succeeded"} 2.0',
                 'frazil_cold_starts_total{function="measured"} 1.0',
                 'frazil_invocation_duration_seconds_count{function="measured"} 2.0',
                 'frazil_running_invocations{tier="128"} 0.0', 'frazil_running_invocations{tier="256"} 0.0',
                 "frazil_async_queue_depth 0.0", 'frazil_instances{state="idle"} 0.0',
                 'frazil_instances{state="busy"} 0.0', "frazil_sandbox_create_seconds_count 1.0"):
        assert line in text, line


def test_idle_instances_are_capped_least_recently_used_first(server_factory):
    """With FRAZIL_MAX_IDLE_INSTANCES=2, a third idle instance evicts the least recently used."""
    srv = server_factory(FRAZIL_MAX_IDLE_INSTANCES="2")
    for name in ("lru-a", "lru-b", "lru-c"):
        srv.deploy(name, SLEEPER)
    for name in ("lru-a", "lru-b", "lru-c"):
        assert srv.invoke(name, {"s": 0})["cold"] is True
    wait_until(lambda: 'frazil_instances{state="idle"} 2.0' in srv.metrics(), 10)
    assert srv.invoke("lru-c", {"s": 0})["cold"] is False
    assert srv.invoke("lru-b", {"s": 0})["cold"] is False
    assert srv.invoke("lru-a", {"s": 0})["cold"] is True  # it was the least recently used
