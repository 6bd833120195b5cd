"""The numbers the console charts: `stats_snapshot` (cumulative counters, the latency histogram,
tiers, instances, queue, read from the platform) and `StatsRing`, the last hour of them kept by
the server so that a dashboard opened now shows what happened before it.

The ring holds one sample per `interval_s`: the counters' *differences* over that interval (the
same shape as the snapshot's counters: invocations by status, cold starts, throttled calls and
the latency histogram's bucket counts), and the gauges (running per tier, instances, queue) at
its end. Only functions that ran in an interval appear in its sample, at most `max_functions`
of them (the busiest); the totals count all. Memory is bounded by `window_s / interval_s`
samples of at most `max_functions` entries each.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from frazil.background import BackgroundLoop
from frazil.metrics import LATENCY_BUCKETS

log = logging.getLogger(__name__)

WINDOW_S = 3600.0
MAX_FUNCTIONS = 50

def _metric_samples(collector):
    for metric in collector.collect():
        yield from metric.samples


def _function_entry(table: dict, name: str, n_buckets: int) -> dict:
    entry = table.get(name)
    if entry is None:
        entry = table[name] = {"invocations": {}, "cold_starts": 0, "throttled_sync": 0,
                               "duration": {"count": 0, "sum": 0.0, "buckets": [0] * n_buckets}}
    return entry


def stats_snapshot(plat) -> dict:
    """The counters, the latency histogram (cumulative buckets, per function and in all), the
    tiers' running invocations against their limits, and the instances, read from the platform."""
    metrics = plat.metrics
    bounds = [float(b) for b in LATENCY_BUCKETS]
    n_buckets = len(bounds) + 1  # the last one is +Inf
    index = {b: i for i, b in enumerate(bounds)}
    per_function: dict[str, dict] = {}
    for sample in _metric_samples(metrics.invocations):
        if sample.name.endswith("_total"):
            entry = _function_entry(per_function, sample.labels["function"], n_buckets)
            entry["invocations"][sample.labels["status"]] = int(sample.value)
    for sample in _metric_samples(metrics.cold_starts):
        if sample.name.endswith("_total"):
            _function_entry(per_function, sample.labels["function"], n_buckets)["cold_starts"] = int(sample.value)
    for sample in _metric_samples(metrics.throttled_sync):
        if sample.name.endswith("_total"):
            _function_entry(per_function, sample.labels["function"], n_buckets)["throttled_sync"] = int(sample.value)
    for sample in _metric_samples(metrics.duration):
        duration = _function_entry(per_function, sample.labels["function"], n_buckets)["duration"]
        if sample.name.endswith("_bucket"):
            le = float(sample.labels["le"])
            duration["buckets"][index.get(le, n_buckets - 1)] = int(sample.value)
        elif sample.name.endswith("_count"):
            duration["count"] = int(sample.value)
        elif sample.name.endswith("_sum"):
            duration["sum"] = sample.value

    totals = {"invocations": {}, "cold_starts": 0, "throttled_sync": 0,
              "duration": {"count": 0, "sum": 0.0, "buckets": [0] * n_buckets}}
    for entry in per_function.values():
        for status, n in entry["invocations"].items():
            totals["invocations"][status] = totals["invocations"].get(status, 0) + n
        totals["cold_starts"] += entry["cold_starts"]
        totals["throttled_sync"] += entry["throttled_sync"]
        totals["duration"]["count"] += entry["duration"]["count"]
        totals["duration"]["sum"] += entry["duration"]["sum"]
        totals["duration"]["buckets"] = [a + b for a, b in zip(totals["duration"]["buckets"],
                                                                entry["duration"]["buckets"])]
    return {
        "time": time.time(),
        "tiers": {str(mb): {"running": slots.running, "limit": slots.limit, "waiting": slots.waiting}
                  for mb, slots in sorted(plat.admission.tiers.items())},
        "instances": plat.pool.counts(),
        "latency_buckets_s": bounds,  # upper bounds; every "buckets" list has one more entry, +Inf
        "totals": totals,
        "functions": per_function,
    }




async def full_snapshot(plat) -> dict:
    """`stats_snapshot` with the async queue's depth (a query)."""
    snapshot = stats_snapshot(plat)
    snapshot["queue_depth"] = await plat.invocations.count_queued()
    return snapshot


def _empty_counters(n_buckets: int) -> dict:
    return {"invocations": {}, "cold_starts": 0, "throttled_sync": 0,
            "duration": {"count": 0, "sum": 0.0, "buckets": [0] * n_buckets}}


def _difference(now: dict, before: dict | None) -> dict:
    """The counters of `now` minus those of `before` (None: nothing before)."""
    before = before or _empty_counters(len(now["duration"]["buckets"]))
    statuses = set(now["invocations"]) | set(before["invocations"])
    return {
        "invocations": {st: now["invocations"].get(st, 0) - before["invocations"].get(st, 0) for st in statuses
                        if now["invocations"].get(st, 0) - before["invocations"].get(st, 0)},
        "cold_starts": now["cold_starts"] - before["cold_starts"],
        "throttled_sync": now["throttled_sync"] - before["throttled_sync"],
        "duration": {"count": now["duration"]["count"] - before["duration"]["count"],
                     "sum": now["duration"]["sum"] - before["duration"]["sum"],
                     "buckets": [a - b for a, b in zip(now["duration"]["buckets"], before["duration"]["buckets"])]},
    }


def _activity(counters: dict) -> int:
    return sum(counters["invocations"].values()) + counters["throttled_sync"]


class StatsRing(BackgroundLoop):
    task_name = "stats-ring"

    def __init__(self, snapshot, *, interval_s: float, window_s: float = WINDOW_S,
                 max_functions: int = MAX_FUNCTIONS, clock=time.time):
        """`snapshot`: an async callable answering a `full_snapshot`. Made with the platform,
        before it serves: the counters are all zero then, which the first sample subtracts."""
        self.interval_s = interval_s
        self._snapshot = snapshot
        self._max_functions = max_functions
        self._samples: deque[dict] = deque(maxlen=max(1, int(window_s / interval_s)))
        self._last: dict = {"time": clock(), "functions": {}, "totals": None}

    async def sample(self) -> dict:
        """One tick (the loop's step, and a test's drain): the sample since the previous tick
        (the first: since the ring was made)."""
        now = await self._snapshot()
        before, self._last = self._last, now
        functions = {}
        for name, counters in now["functions"].items():
            delta = _difference(counters, before["functions"].get(name))
            if _activity(delta):
                functions[name] = delta
        busiest = sorted(functions, key=lambda name: _activity(functions[name]), reverse=True)
        sample = {
            "time": now["time"],
            "interval_s": now["time"] - before["time"],
            "tiers": {tier: t["running"] for tier, t in now["tiers"].items()},
            "instances": now["instances"],
            "queue_depth": now["queue_depth"],
            "totals": _difference(now["totals"], before["totals"]),  # None: from zero
            "functions": {name: functions[name] for name in busiest[:self._max_functions]},
        }
        self._samples.append(sample)
        return sample

    def samples(self, function: str | None = None) -> list[dict]:
        """The samples, oldest first; with `function`, each sample's functions only that one."""
        if function is None:
            return list(self._samples)
        return [{**s, "functions": {k: v for k, v in s["functions"].items() if k == function}} for s in self._samples]

    async def _run(self) -> None:
        # Error policy: a tick that fails (the database unreachable for the queue depth) is
        # skipped and logged; the next one subtracts from the last good snapshot.
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sample()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one tick
                log.warning("stats sample skipped: %s", exc)
