"""The demand policy of generic instances, in process: how many of a shape recent cold starts
ask for, how the pool builds up to it within its ceiling, cap and memory budget, and how it
decays back to the floor. Builds are instant stand-ins (the real ones: test_isolated_prebuilt);
time is the pool's clock, moved on by the test."""
from __future__ import annotations

import asyncio

import pytest

from frazil.runtimes import NODE, PYTHON
from frazil.sandbox.base import InstanceShape
from frazil.sandbox.demand import DemandEstimate
from frazil.sandbox.prebuilt import GenericPool
from tests.inproc.harness import eventually

NODE_128 = InstanceShape(NODE, 128)
NODE_256 = InstanceShape(NODE, 256)
PY_128 = InstanceShape(PYTHON, 128)
COST_MB = {"python": 2.0, "node": 40.0}


class StandIn:
    """What the pool needs of a generic instance."""

    exited = False
    go_fd = None

    def __init__(self, shape: InstanceShape):
        self.shape = shape
        self.destroyed = False

    def greeted(self) -> bool:
        return True

    def on_exit(self, callback) -> None:
        pass

    async def destroy(self) -> None:
        self.destroyed = True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_pool(clock: Clock, budget_mb: float = 10_000, cap: int = 32, window_s: float = 10.0,
              idle_ttl_s: float = 600.0) -> tuple[GenericPool, list[StandIn]]:
    built: list[StandIn] = []

    async def build(shape: InstanceShape) -> StandIn:
        built.append(StandIn(shape))
        return built[-1]

    pool = GenericPool(build, cap=cap, delay_s=0.0, idle_ttl_s=idle_ttl_s, window_s=window_s, budget_mb=budget_mb,
                       cost_mb=lambda shape: COST_MB[shape.runtime.language], clock=clock)
    return pool, built


@pytest.fixture
async def started():
    """`started(keep=(shape, n), **make_pool_options)` -> (pool, built, clock): a pool started
    now (keeping n of shape, if asked), closed at the end of the test."""
    pools = []

    def start(keep: tuple[InstanceShape, int] | None = None, **options):
        clock = Clock()
        pool, built = make_pool(clock, **options)
        if keep is not None:
            pool.keep(*keep)
        pool.start()
        pools.append(pool)
        return pool, built, clock

    yield start
    for pool in pools:
        await pool.close()


def cold_start(pool: GenericPool, shape: InstanceShape, floor: int = 1, ceiling: int = 16):
    """What IsolatedSandbox does for one cold create: take one if any, then record the use."""
    taken = pool.take(shape)
    pool.used(shape, floor, ceiling)
    return taken


async def filled(pool: GenericPool, shape: InstanceShape, count: int) -> None:
    await eventually(lambda: pool.ready_count(shape) == count and pool.building_count() == 0, 10,
                           what=f"{count} ready of {shape}")


class TestDemandEstimate:
    def test_recent_cold_starts_within_floor_and_ceiling(self):
        demand = DemandEstimate(window_s=10)
        assert demand.wanted(0, floor=1, ceiling=8) == 1
        for t in range(5):
            demand.record(float(t), ceiling=8)
        assert demand.wanted(5, floor=1, ceiling=8) == 5
        assert demand.wanted(5, floor=1, ceiling=3) == 3
        assert demand.wanted(5, floor=6, ceiling=3) == 6  # the floor the operator asked for wins

    def test_decays_as_cold_starts_age_out(self):
        demand = DemandEstimate(window_s=10)
        for t in (0.0, 1.0, 2.0, 3.0):
            demand.record(t, ceiling=8)
        assert demand.recent(10.5) == 3
        assert demand.recent(12.5) == 1
        assert demand.wanted(100, floor=1, ceiling=8) == 1

    def test_remembers_no_more_than_the_ceiling(self):
        demand = DemandEstimate(window_s=10)
        for i in range(10_000):
            demand.record(i * 0.0001, ceiling=4)
        assert len(demand._times) == 4 and demand.recent(1.0) == 4


class TestPoolFollowsDemand:
    async def test_a_burst_raises_the_target_and_the_next_burst_is_all_prebuilt(self, started):
        pool, _, _ = started()
        first = [cold_start(pool, NODE_128) for _ in range(6)]
        assert first == [None] * 6  # nothing was kept for a shape never used
        assert pool.target(NODE_128) == 6
        await filled(pool, NODE_128, 6)
        second = [cold_start(pool, NODE_128) for _ in range(6)]
        assert all(isinstance(p, StandIn) for p in second)
        assert pool.target(NODE_128) == 12  # both bursts are within the window
        await filled(pool, NODE_128, 12)

    async def test_idle_demand_decays_to_the_floor_then_the_shape_is_dropped(self, started):
        pool, built, clock = started(window_s=10, idle_ttl_s=600)
        for _ in range(5):
            cold_start(pool, NODE_128)
        await filled(pool, NODE_128, 5)
        clock.now += 11  # the burst is out of the window
        pool._trim()
        assert pool.target(NODE_128) == 1 and pool.ready_count(NODE_128) == 1
        await eventually(lambda: sum(p.destroyed for p in built) == 4, 10, what="the surplus destroyed")
        clock.now += 600  # unused for idle_ttl_s: nothing kept any more
        pool._trim()
        assert pool.target(NODE_128) == 0
        await eventually(lambda: all(p.destroyed for p in built), 10, what="all destroyed")

    async def test_a_pinned_shape_grows_with_demand_and_decays_to_its_pinned_floor(self, started):
        pool, built, clock = started(keep=(PY_128, 2))
        await filled(pool, PY_128, 2)
        taken = [cold_start(pool, PY_128, floor=2) for _ in range(5)]
        assert [p is not None for p in taken] == [True, True, False, False, False]
        assert pool.target(PY_128) == 5
        await filled(pool, PY_128, 5)
        clock.now += 10_000  # past the window and idle_ttl_s: a pinned shape keeps its floor
        pool._trim()
        assert pool.target(PY_128) == 2
        await filled(pool, PY_128, 2)

    async def test_cold_starts_in_a_burst_push_the_refill_back(self, started):
        pool, built, clock = started(keep=(NODE_128, 3))
        await filled(pool, NODE_128, 3)
        pool.delay_s = 3600.0
        cold_start(pool, NODE_128)
        first = pool._shapes[NODE_128].timer
        cold_start(pool, NODE_128)
        second = pool._shapes[NODE_128].timer
        assert first.cancelled() and not second.cancelled() and second.when() >= first.when()
        for _ in range(3):  # misses too: nothing is ready any more
            cold_start(pool, NODE_128)
        assert pool._shapes[NODE_128].timer.when() >= second.when()
        assert len(built) == 3  # nothing built while the burst goes on

    async def test_never_more_than_the_ceiling(self, started):
        pool, built, clock = started()
        for _ in range(20):
            cold_start(pool, NODE_128, ceiling=3)
        assert pool.target(NODE_128) == 3
        await filled(pool, NODE_128, 3)

    async def test_a_runtime_that_keeps_none_builds_none_whatever_the_demand(self, started):
        pool, built, clock = started()
        for _ in range(5):
            cold_start(pool, NODE_128, floor=0, ceiling=0)
        assert pool.target(NODE_128) == 0
        await asyncio.sleep(0)
        assert built == []

    async def test_the_memory_budget_bounds_all_shapes_together(self, started):
        pool, built, _ = started(budget_mb=200)  # 5 Node instances at 40 MB
        for _ in range(4):
            cold_start(pool, NODE_128)
            cold_start(pool, NODE_256)
        assert pool.target(NODE_128) == 4 and pool.target(NODE_256) == 4
        await eventually(lambda: pool.ready_count() == 5 and pool.building_count() == 0, 10,
                               what="the budget filled")
        for _ in range(3):  # nothing more is built while the budget is spent
            await asyncio.sleep(0)
        assert len(built) == 5
        cold_start(pool, NODE_128)  # one taken: room for one more
        await eventually(lambda: len(built) == 6 and pool.building_count() == 0, 10,
                         what="a replacement within the budget, built")
        assert pool.ready_count() == 5
