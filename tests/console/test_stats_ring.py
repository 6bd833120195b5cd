"""StatsRing (frazil.console.stats) in memory: differences per interval, only the functions that
ran, the busiest first within the cap, and a window that forgets the oldest."""
from __future__ import annotations

import copy

from frazil.console.stats import StatsRing


def _counters(ok=0, failed=0, cold=0, buckets=(0, 0)):
    return {"invocations": {"succeeded": ok, "failed": failed}, "cold_starts": cold, "throttled_sync": 0,
            "duration": {"count": ok + failed, "sum": 0.01 * (ok + failed), "buckets": list(buckets)}}


class Source:
    """A snapshot the test changes between ticks."""

    def __init__(self):
        self.now = {"time": 100.0, "tiers": {"128": {"running": 0, "limit": 4, "waiting": 0}},
                    "instances": {"idle": 0, "busy": 0}, "queue_depth": 0, "totals": _counters(), "functions": {}}

    async def __call__(self):
        self.now["time"] += 10  # each tick 10 s after the last
        return copy.deepcopy(self.now)

    def ran(self, name, ok=0, failed=0):
        before = self.now["functions"].get(name, _counters())
        after = _counters(before["invocations"]["succeeded"] + ok, before["invocations"]["failed"] + failed,
                          before["cold_starts"], [before["duration"]["buckets"][0] + ok + failed,
                                                  before["duration"]["buckets"][1] + ok + failed])
        self.now["functions"][name] = after
        t = self.now["totals"]
        self.now["totals"] = _counters(t["invocations"]["succeeded"] + ok, t["invocations"]["failed"] + failed, 0,
                                       [t["duration"]["buckets"][0] + ok + failed,
                                        t["duration"]["buckets"][1] + ok + failed])


class TestStatsRing:
    async def test_the_first_sample_counts_from_zero(self):
        """The ring is made when the platform starts, its counters at zero: what ran before the
        first tick is in the first sample."""
        source = Source()
        ring = StatsRing(source, interval_s=10, clock=lambda: 95.0)
        source.ran("a", ok=2)
        first = await ring.sample()
        assert first["interval_s"] == 15  # from 95 to the tick at 110
        assert first["functions"]["a"]["invocations"] == {"succeeded": 2}
        assert ring.samples() == [first]

    async def test_a_sample_holds_the_differences_of_the_functions_that_ran(self):
        source = Source()
        ring = StatsRing(source, interval_s=10)
        source.ran("a", ok=5)
        await ring.sample()  # the first, from zero
        source.ran("a", ok=2, failed=1)
        source.ran("b", ok=1)
        sample = await ring.sample()
        assert sample["interval_s"] == 10
        assert sample["functions"]["a"]["invocations"] == {"succeeded": 2, "failed": 1}
        assert sample["functions"]["a"]["duration"]["buckets"] == [3, 3]
        assert sample["totals"]["invocations"] == {"succeeded": 3, "failed": 1}
        source.ran("b", ok=1)
        quiet = await ring.sample()
        assert set(quiet["functions"]) == {"b"}  # a did not run in that interval
        assert [set(s["functions"]) for s in ring.samples("a")] == [{"a"}, {"a"}, set()]

    async def test_only_the_busiest_functions_are_kept_and_the_window_forgets(self):
        source = Source()
        ring = StatsRing(source, interval_s=10, window_s=20, max_functions=2)
        await ring.sample()
        for tick in range(3):
            for n, name in enumerate(["x", "y", "z"]):
                source.ran(name, ok=n + 1)
            await ring.sample()
        samples = ring.samples()
        assert len(samples) == 2  # 20 s of 10 s samples: the oldest two of four are gone
        assert all(set(s["functions"]) == {"y", "z"} for s in samples)
        assert samples[-1]["totals"]["invocations"]["succeeded"] == 6  # all three counted
