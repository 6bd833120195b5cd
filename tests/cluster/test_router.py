"""A gateway's router and invokers' services on the real NATS, in-process: the invokers' engines
are stand-ins that say what they were asked, so each routing rule is seen at work
(frazil.cluster.router, frazil.cluster.invoker_service). The same with real processes and
sandboxes is in test_sync.py."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest

from frazil.cluster import placement
from frazil.cluster.interfaces import NodeInfo
from frazil.cluster.invoker_service import InvokerService
from frazil.cluster.nats import connect
from frazil.cluster.router import NatsRouter
from frazil.errors import FrazilError, NotFound, ServiceUnavailable, TooManyRequests
from frazil.settings import Role, Settings
from frazil.store.models import FunctionVersion, InvocationStatus
from tests.cluster.conftest import NATS_URL
from tests.cluster.test_wire import VERSION, new_record
from tests.inproc.harness import eventually


class StandIn:
    """An invoker's engine: answers per `mode` and remembers each call."""

    def __init__(self, node: str, mode: str = "ok"):
        self.node = node
        self.mode = mode
        self.calls: list[float] = []  # the slot wait of each call
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def invoke_sync(self, version, event_json, record, *, timeout_s=None, slot_wait_s=None):
        self.calls.append(slot_wait_s)
        self.started.set()
        if self.mode == "full":
            raise TooManyRequests(f"full on {self.node}")
        if self.mode == "missing":
            raise NotFound("no such code here")
        if self.mode == "hang":
            await self.release.wait()
        record.status, record.node, record.cold, record.attempts = InvocationStatus.SUCCEEDED, self.node, False, 1
        record.result = event_json.decode()
        return record, None


class Registry:
    def __init__(self, nodes: list[NodeInfo]):
        self.listed = nodes

    async def nodes(self):
        return self.listed

    def on_change(self, listener):
        pass  # the tests set `listed` and refresh the router themselves


def info(node_id: str, warm=()) -> NodeInfo:
    return NodeInfo(node_id, Role.INVOKER, f"http://{node_id}", 1.0, 1.0, warm=list(warm))


@pytest.fixture
async def cluster(nats_cluster):
    """`await cluster(standins, listed=None, **settings)` → a started router over invokers
    serving `standins` (listed in its registry: `listed`, default all of them)."""
    made = []

    async def make(standins: list[StandIn], listed: list[NodeInfo] | None = None, **overrides) -> NatsRouter:
        settings = Settings(nats_url=NATS_URL, cluster=nats_cluster, **{"sync_retry_s": 0.3, **overrides})
        for standin in standins:
            nc = await connect(settings)
            service = InvokerService(nc, settings, standin, standin.node, beat=lambda: asyncio.sleep(0))
            await service.start()
            made.append((service, nc))
        nc = await connect(settings)
        router = NatsRouter(nc, settings, Registry(listed or [info(s.node) for s in standins]))
        await router.start()
        made.append((router, nc))
        return router

    yield make
    for part, nc in reversed(made):
        await part.close()
        await nc.close()


async def call(router, event: bytes = b'{"n":1}', version=VERSION):
    record = new_record()
    await router.invoke(version, event, record, timeout_s=None, slot_wait_s=None)
    return record


def named_for(first: str, second: str) -> FunctionVersion:
    """VERSION under a name whose rendezvous order is [first, second]."""
    for i in range(1000):
        version = dataclasses.replace(VERSION, function=f"fn-{i}")
        if placement.rendezvous([first, second], version.key) == [first, second]:
            return version
    raise AssertionError("no name found")


class TestRouting:
    async def test_the_rendezvous_first_runs_it_and_the_record_comes_back_filled(self, cluster):
        a, b = StandIn("a"), StandIn("b")
        router = await cluster([a, b])
        version = named_for("b", "a")
        record = await call(router, version=version)
        assert (record.node, record.status, record.result) == ("b", InvocationStatus.SUCCEEDED, '{"n":1}')
        assert b.calls == [0.0] and a.calls == []

    async def test_an_invoker_with_the_version_warm_comes_first(self, cluster):
        a, b = StandIn("a"), StandIn("b")
        version = named_for("b", "a")
        router = await cluster([a, b], listed=[info("a", warm=[version.key]), info("b")])
        assert (await call(router, version=version)).node == "a"

    async def test_a_full_invoker_is_passed_over(self, cluster):
        a, b = StandIn("a", "full"), StandIn("b")
        router = await cluster([a, b])
        record = await call(router, version=named_for("a", "b"))
        assert record.node == "b" and a.calls == [0.0]

    async def test_all_full_waits_at_the_first_for_the_rest_of_the_window_then_429(self, cluster):
        a, b = StandIn("a", "full"), StandIn("b", "full")
        router = await cluster([a, b], sync_retry_s=0.3)
        with pytest.raises(TooManyRequests, match="full on a"):
            await call(router, version=named_for("a", "b"))
        assert a.calls[0] == 0.0 and 0 < a.calls[1] <= 0.3 and b.calls == [0.0]

    async def test_calls_beyond_an_invokers_bound_in_flight_go_to_the_next(self, cluster):
        """A version warm on a, calls that do not end: the first LOAD_FLOOR stay on a, the
        ones beyond a's bound go to b, and once a's calls end the next goes to a again."""
        a, b = StandIn("a", "hang"), StandIn("b", "hang")
        version = named_for("b", "a")
        router = await cluster([a, b], listed=[info("a", warm=[version.key]), info("b")])
        pending = [asyncio.ensure_future(call(router, version=version)) for _ in range(placement.LOAD_FLOOR + 2)]
        await eventually(lambda: len(a.calls) + len(b.calls) == len(pending), 10, "every call to start")
        assert (len(a.calls), len(b.calls)) == (placement.LOAD_FLOOR, 2)  # a's bound: 1.25 x 6 / 2 -> 4
        a.release.set()
        b.release.set()
        assert {record.node for record in await asyncio.gather(*pending)} == {"a", "b"}
        a.mode = b.mode = "ok"
        assert (await call(router, version=version)).node == "a"

    async def test_an_invoker_nobody_listens_for_is_skipped_and_set_aside(self, cluster):
        b = StandIn("b")
        router = await cluster([b], listed=[info("gone"), info("b")])
        version = named_for("gone", "b")
        assert (await call(router, version=version)).node == "b"
        assert [n.id for n in router.directory.order(version.key)] == ["b"]

    async def test_no_invoker_at_all_is_a_503(self, cluster):
        router = await cluster([], listed=[info("gone")])
        with pytest.raises(ServiceUnavailable):
            await call(router)

    async def test_an_invokers_refusal_is_relayed_and_not_tried_elsewhere(self, cluster):
        a, b = StandIn("a", "missing"), StandIn("b")
        router = await cluster([a, b])
        with pytest.raises(FrazilError) as caught:
            await call(router, version=named_for("a", "b"))
        assert (caught.value.status, caught.value.type, caught.value.message) == (404, "NotFound", "no such code here")
        assert b.calls == []

    async def test_an_invoker_that_leaves_while_running_fails_the_call_without_a_retry(self, cluster):
        a, b = StandIn("a", "hang"), StandIn("b")
        router = await cluster([a, b])
        pending = asyncio.ensure_future(call(router, version=named_for("a", "b")))
        await a.started.wait()
        router.registry.listed = [info("b")]  # a's heartbeats stopped
        await router.refresh()
        with pytest.raises(ServiceUnavailable, match="left the cluster"):
            await pending
        assert b.calls == []
        a.release.set()

    async def test_events_and_results_larger_than_a_nats_message_travel_whole(self, cluster):
        router = await cluster([StandIn("a")])
        event = b'{"pad":"' + b"z" * (3 * router.nc.max_payload) + b'"}'
        assert (await call(router, event=event)).result == event.decode()
