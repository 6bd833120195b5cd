"""The instance pool: warm reuse, cold starts, instances killed by their invocation, keep-alive
reaping and the idle cap, resident instances, and retiring old versions.

`TestPoolAlone` drives an InstancePool directly; the others go through the HTTP API of the
in-process platform. After each scenario `pool.check()` verifies the pool's invariants."""
from __future__ import annotations

import asyncio
import time

import pytest

from frazil.pool.instance import ForbiddenTransition, InstanceState
from frazil.pool.pool import PoolEvent as E
from tests.inproc.harness import eventually, make_version


class TestPoolAlone:
    """An InstancePool over the fake sandbox, without the platform around it."""

    async def test_events_of_a_life(self, pool_factory):
        """created -> idle (released) -> reaped -> destroyed, each an enum member, in order."""
        pool, sandbox, events = pool_factory(keep_alive_s=60)
        instance, cold = await pool.acquire(make_version())
        assert cold and instance.state is InstanceState.BUSY
        pool.release(instance)
        assert pool.reap(time.monotonic() + 61) == 1
        await eventually(lambda: len(events) == 4, what="the destroy to finish")
        assert events == [(E.CREATED, instance.id), (E.IDLE, instance.id), (E.REAPED, instance.id),
                          (E.DESTROYED, instance.id)]
        assert instance.stats["create_ms"] >= 0 and instance.stats["destroy_ms"] >= 0
        pool.check()

    async def test_busy_and_idle_are_read_from_the_instances(self, pool_factory):
        """counts() and FunctionPool.busy follow the leases, with no second record of them."""
        pool, sandbox, _ = pool_factory()
        version = make_version()
        a, _ = await pool.acquire(version)
        b, _ = await pool.acquire(version)
        assert pool.counts() == {"idle": 0, "busy": 2}
        assert set(pool._pools[version.key].busy) == {a, b}
        pool.check()
        pool.release(a)
        assert pool.counts() == {"idle": 1, "busy": 1}
        assert pool._pools[version.key].busy == [b]
        pool.check()
        pool.release(b)
        assert pool.counts() == {"idle": 2, "busy": 0}
        pool.check()

    async def test_the_warmest_instance_is_reused(self, pool_factory):
        """acquire() takes the most recently released instance of the version."""
        pool, sandbox, _ = pool_factory()
        version = make_version()
        a, _ = await pool.acquire(version)
        b, _ = await pool.acquire(version)
        pool.release(b)
        pool.release(a)
        again, cold = await pool.acquire(version)
        assert again is a and not cold
        pool.release(again)
        pool.check()

    async def test_an_instance_that_died_while_parked_is_skipped(self, pool_factory):
        """A parked instance whose runtime died is destroyed at the next acquire, which starts a new one."""
        pool, sandbox, _ = pool_factory()
        version = make_version()
        first, _ = await pool.acquire(version)
        pool.release(first)
        first.proc.kill()
        await eventually(lambda: not first.alive, what="the channel loss to be noticed")
        assert pool.counts() == {"idle": 0, "busy": 0}  # dead members count as neither
        pool.check()
        second, cold = await pool.acquire(version)
        assert cold and second is not first
        await eventually(lambda: first.id in sandbox.destroyed)
        pool.release(second)
        pool.check()

    async def test_idle_cap_evicts_the_least_recently_used(self, pool_factory):
        """With room for two idle instances, parking a third evicts the one parked longest ago."""
        pool, sandbox, events = pool_factory(max_idle_instances=2)
        instances = []
        for name in ("a", "b", "c"):
            instance, _ = await pool.acquire(make_version(name))
            instances.append(instance)
        for instance in instances:
            pool.release(instance)
        assert (E.REAPED, instances[0].id) in events
        assert {i.id for i in pool.instances()} == {instances[1].id, instances[2].id}
        await eventually(lambda: instances[0].id in sandbox.destroyed)
        pool.check()

    async def test_reaping_spares_the_recent_and_the_resident(self, pool_factory):
        """reap() destroys only non-resident instances idle for the keep-alive period."""
        pool, sandbox, _ = pool_factory(keep_alive_s=60)
        resident_version = make_version("res", resident=1)
        await pool.ensure_resident(resident_version)
        old, _ = await pool.acquire(make_version("old"))
        pool.release(old)
        assert pool.reap(time.monotonic() + 59) == 0
        assert pool.reap(time.monotonic() + 61) == 1
        [left] = pool.instances()
        assert left.resident and left.version.function == "res"
        pool.check()

    async def test_a_resident_count_below_the_versions_is_kept_and_follows_changes(self, pool_factory):
        """ensure_resident(version, count) keeps `count` (a cluster node's share): raised, the
        missing start; lowered, idle ones stop at once and a busy one when it is released; a
        dead one is replaced up to the count in force, not up to the version's."""
        pool, sandbox, _ = pool_factory()
        version = make_version("share", resident=5)
        await pool.ensure_resident(version, 2)
        assert pool.counts() == {"idle": 2, "busy": 0}
        await pool.ensure_resident(version, 3)
        assert pool.counts() == {"idle": 3, "busy": 0}
        busy, cold = await pool.acquire(version)
        assert not cold and busy.resident
        await pool.ensure_resident(version, 1)
        assert pool.counts() == {"idle": 0, "busy": 1}  # the busy one counts: the idle ones stopped now
        pool.check()
        pool.release(busy)
        assert pool.counts() == {"idle": 1, "busy": 0}
        busy, _ = await pool.acquire(version)
        await pool.ensure_resident(version, 0)
        assert pool.counts() == {"idle": 0, "busy": 1}
        pool.release(busy)  # one beyond the count leaves when it is released
        assert pool.counts() == {"idle": 0, "busy": 0}
        await pool.ensure_resident(version, 1)
        dying, _ = await pool.acquire(version)
        dying.proc.kill()
        await eventually(lambda: not dying.alive, what="the channel loss to be noticed")
        pool.release(dying)  # replaced, up to the count in force
        await eventually(lambda: pool.counts() == {"idle": 1, "busy": 0}, what="the replacement")
        await pool.ensure_resident(version, 0)
        assert [i for i in pool.instances() if i.resident] == []
        pool.check()

    async def test_overlapping_ensures_do_not_overshoot(self, pool_factory):
        """Two ensure_resident calls at once (a replacement and a placement pass) start the
        missing residents once, not twice."""
        pool, _, _ = pool_factory()
        version = make_version("twice", resident=3)
        await asyncio.gather(pool.ensure_resident(version), pool.ensure_resident(version, 3))
        assert pool.counts() == {"idle": 3, "busy": 0}
        assert all(i.resident for i in pool.instances())
        pool.check()

    async def test_no_pool_is_made_for_a_share_of_none(self, pool_factory):
        pool, _, _ = pool_factory()
        await pool.ensure_resident(make_version("elsewhere", resident=2), 0)
        assert pool._pools == {} and pool.instances() == []

    async def test_forbidden_release_of_an_unleased_instance(self, pool_factory):
        """Releasing an instance twice is a programmer error: the second end_lease() raises."""
        pool, _, _ = pool_factory()
        instance, _ = await pool.acquire(make_version())
        pool.release(instance)
        with pytest.raises(ForbiddenTransition):
            pool.release(instance)


class TestWarmAndCold:
    """Through the API: which invocations start an instance."""

    async def test_second_call_is_warm_on_the_same_instance(self, frazil):
        """The first call is cold; the next one reuses its instance."""
        await frazil.deploy("warm")
        first = await frazil.invoke("warm", {"return": 1})
        second = await frazil.invoke("warm", {"return": 2})
        assert (first["cold"], second["cold"]) == (True, False)
        records = [await frazil.record(b["invocation_id"]) for b in (first, second)]
        assert records[0]["instance_id"] == records[1]["instance_id"]
        assert len(frazil.sandbox.created) == 1
        assert [seen.cold for seen in frazil.sandbox.invocations] == [True, False]  # what the runtime was told
        frazil.pool.check()

    async def test_concurrent_calls_each_get_an_instance(self, frazil):
        """Three overlapping calls need three instances; afterwards all three are parked warm."""
        await frazil.deploy("wide")
        calls = [asyncio.create_task(frazil.invoke("wide", {"gate": "g"})) for _ in range(3)]
        await frazil.sandbox.gate("g").arrivals(3)
        assert frazil.pool.counts() == {"idle": 0, "busy": 3}
        frazil.sandbox.gate("g").open()
        bodies = await asyncio.gather(*calls)
        assert [b["cold"] for b in bodies] == [True] * 3
        assert frazil.pool.counts() == {"idle": 3, "busy": 0}
        frazil.pool.check()

    async def test_init_error_is_the_invocations_failure_and_nothing_is_kept(self, frazil):
        """A handler that fails to load fails the call (200, success false); no instance stays."""
        await frazil.deploy("noload", handler="index.broken")
        body = await frazil.invoke("noload")
        assert body["success"] is False and body["error"]["type"] == "AttributeError"
        assert frazil.pool.instances() == []
        await eventually(lambda: frazil.sandbox.live == set(), what="the failed instance to be gone")
        frazil.pool.check()

    async def test_created_and_destroyed_reach_the_metrics(self, frazil):
        """The platform's PoolEvent listener feeds the sandbox create/destroy histograms."""
        await frazil.deploy("metered")
        await frazil.invoke("metered")
        await frazil.deploy("metered")  # retires version 1: its idle instance is destroyed
        await eventually(lambda: len(frazil.sandbox.destroyed) == 1)
        metrics = (await frazil.fast.get("/metrics")).text
        assert "frazil_sandbox_create_seconds_count 1.0" in metrics
        assert "frazil_sandbox_destroy_seconds_count 1.0" in metrics


class TestDuration:
    """duration_ms is the handler's run time as its runtime measured it, within what the
    platform saw: a runtime may make its own figure smaller, never larger."""

    async def test_the_runtimes_figure_cold_and_warm_and_on_failure(self, frazil):
        """(Figures of a few µs: less than any round trip the platform can see.)"""
        await frazil.deploy("timed")
        cold = await frazil.invoke("timed", {"report_ms": 0.003})
        warm = await frazil.invoke("timed", {"report_ms": 0.002})
        failed = await frazil.invoke("timed", {"report_ms": 0.001, "raise": "no"})
        assert (cold["cold"], warm["cold"], failed["success"]) == (True, False, False)
        assert [b["duration_ms"] for b in (cold, warm, failed)] == [0.003, 0.002, 0.001]
        assert (await frazil.record(cold["invocation_id"]))["duration_ms"] == 0.003

    async def test_never_more_than_the_platform_saw(self, frazil):
        await frazil.deploy("boastful")
        for event in ({"report_ms": 3_600_000}, {"report_ms": 1e300}):
            started = time.perf_counter()
            body = await frazil.invoke("boastful", event)
            assert 0 <= body["duration_ms"] <= (time.perf_counter() - started) * 1000, body

    @pytest.mark.parametrize("reported", [-5, "soon", True, None, [1]])
    async def test_a_figure_that_is_no_duration_is_ignored(self, frazil, reported):
        """The platform's own figure then: a number of ms within the call."""
        await frazil.deploy("garbled")
        for _ in range(2):  # cold, then warm
            started = time.perf_counter()
            body = await frazil.invoke("garbled", {"report_ms": reported})
            assert body["success"] is True, body
            assert isinstance(body["duration_ms"], float), body
            assert 0 <= body["duration_ms"] <= (time.perf_counter() - started) * 1000, body


class TestKilledByItsInvocation:
    """An invocation that times out or crashes takes its instance with it (STYLE habit 6)."""

    async def test_timeout_kills_the_instance(self, frazil):
        """A call past its timeout answers Timeout; its instance is destroyed and the next call is cold."""
        await frazil.deploy("slow", timeout=0.05)
        body = await frazil.invoke("slow", {"gate": "never"})
        assert body["success"] is False and body["error"]["type"] == "Timeout"
        record = await frazil.record(body["invocation_id"])
        assert record["status"] == "timeout"
        await eventually(lambda: record["instance_id"] in frazil.sandbox.destroyed)
        again = await frazil.invoke("slow", {"return": "fine"})
        assert again["cold"] is True and again["result"] == "fine"
        assert len(frazil.sandbox.created) == 2
        frazil.pool.check()

    async def test_a_crash_kills_the_instance(self, frazil):
        """A runtime that exits mid-call fails it with RuntimeExited and is not reused."""
        await frazil.deploy("crashy")
        body = await frazil.invoke("crashy", {"exit": 3})
        assert body["error"]["type"] == "RuntimeExited" and "status 3" in body["message"]
        assert (await frazil.invoke("crashy"))["cold"] is True
        frazil.pool.check()

    async def test_a_function_error_keeps_the_instance(self, frazil):
        """A handler that raises is the function's failure; its instance stays warm."""
        await frazil.deploy("raises")
        body = await frazil.invoke("raises", {"raise": "nope"})
        assert body["success"] is False and body["error"] == {"type": "ValueError", "message": "nope", "stack": ""}
        assert (await frazil.invoke("raises"))["cold"] is False
        frazil.pool.check()


class TestResident:
    """`resident` instances: started at deploy, never reaped, replaced when they die."""

    async def test_started_at_deploy_and_warm(self, frazil):
        """resident=2: two instances exist before any call, and calls are warm."""
        await frazil.deploy("hot", resident=2)
        assert len(frazil.sandbox.created) == 2
        assert frazil.pool.counts() == {"idle": 2, "busy": 0}
        assert (await frazil.invoke("hot"))["cold"] is False
        assert frazil.pool.reap(time.monotonic() + 10 * frazil.platform.settings.keep_alive_s) == 0
        frazil.pool.check()

    async def test_a_dead_resident_is_replaced(self, frazil):
        """A resident that crashes is destroyed and a new resident takes its place."""
        await frazil.deploy("hot", resident=1)
        [original] = frazil.pool.instances()
        body = await frazil.invoke("hot", {"exit": 1})
        assert body["error"]["type"] == "RuntimeExited"
        await eventually(lambda: len(frazil.sandbox.created) == 2 and frazil.pool.counts()["idle"] == 1,
                         what="a replacement resident")
        [replacement] = frazil.pool.instances()
        assert replacement is not original and replacement.resident
        assert original.id in frazil.sandbox.destroyed
        assert (await frazil.invoke("hot"))["cold"] is False
        frazil.pool.check()


class TestRetire:
    """A new version retires the old one's instances: idle ones now, busy ones when released."""

    async def test_redeploy_retires_the_old_version(self, frazil):
        """Idle v1 instances are destroyed at once; a busy one finishes its call on v1, then goes."""
        await frazil.deploy("evolving")
        await frazil.invoke("evolving")  # leaves one idle v1 instance
        [idle_v1] = frazil.pool.instances()
        busy_call = asyncio.create_task(frazil.invoke("evolving", {"gate": "g"}))
        await frazil.sandbox.gate("g").arrivals(1)
        busy_v1 = next(i for i in frazil.pool.instances() if i.state is InstanceState.BUSY)
        assert busy_v1 is idle_v1  # the call took the warm instance
        second_call = asyncio.create_task(frazil.invoke("evolving", {"gate": "g"}))
        await frazil.sandbox.gate("g").arrivals(2)
        await frazil.invoke("evolving", {"return": "parks a third v1 instance"})
        parked_v1 = next(i for i in frazil.pool.instances() if i.state is InstanceState.IDLE)

        await frazil.deploy("evolving")  # version 2
        await eventually(lambda: parked_v1.id in frazil.sandbox.destroyed, what="the idle v1 instance to go")
        assert busy_v1.alive
        frazil.pool.check()
        frazil.sandbox.gate("g").open()
        bodies = await asyncio.gather(busy_call, second_call)
        assert all(b["success"] for b in bodies)
        assert [(await frazil.record(b["invocation_id"]))["version"] for b in bodies] == [1, 1]
        await eventually(lambda: busy_v1.id in frazil.sandbox.destroyed, what="the released v1 instances to go")
        assert frazil.pool.instances() == []

        after = await frazil.invoke("evolving")
        assert after["cold"] is True and (await frazil.record(after["invocation_id"]))["version"] == 2
        frazil.pool.check()

    async def test_delete_retires_every_version(self, frazil):
        """Deleting a function destroys its idle instances."""
        await frazil.deploy("doomed")
        await frazil.invoke("doomed")
        assert (await frazil.fast.delete("/v1/functions/doomed")).status_code == 200
        assert frazil.pool.instances() == []
        await eventually(lambda: frazil.sandbox.live == set())
        frazil.pool.check()

    async def test_a_name_deployed_again_after_delete_is_warm_again(self, frazil):
        """Delete while a call runs, deploy the same name again (its versions count from 1
        again): the new version 1 reuses its instances like any version."""
        await frazil.deploy("phoenix")
        running = asyncio.create_task(frazil.invoke("phoenix", {"gate": "g"}))
        await frazil.sandbox.gate("g").arrivals(1)
        assert (await frazil.fast.delete("/v1/functions/phoenix")).status_code == 200
        frazil.sandbox.gate("g").open()
        assert (await running)["success"] is True
        assert (await frazil.deploy("phoenix"))["version"] == 1
        first = await frazil.invoke("phoenix")
        second = await frazil.invoke("phoenix")
        assert (first["cold"], second["cold"]) == (True, False)
        frazil.pool.check()

