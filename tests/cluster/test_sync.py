"""Sync invocations routed from gateways to invokers over NATS (frazil.cluster.router,
frazil.cluster.invoker_service), with real `frazil server` processes on the real PostgreSQL and
NATS: each test its own database and cluster name (tests/cluster/conftest.py)."""
from __future__ import annotations

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor

from frazil.cluster import placement
from frazil.cluster.names import invoke_subject
from frazil.settings import Settings
from frazil.testing import wait_until
from tests.cluster.conftest import NATS_URL, cluster_env
from tests.cluster.test_nodes import nodes, nodes_counted

ECHO = ("import time\n"
        "def main(event, context):\n"
        "    if event.get('raise'):\n"
        "        raise ValueError('asked to fail')\n"
        "    time.sleep(event.get('sleep', 0))\n"
        "    return {'version': VERSION, 'size': len(event.get('pad', '')), 'pad': event.get('pad', '')[:8]}\n")


def echo(version: int) -> dict[str, str]:
    return {"index.py": f"VERSION = {version}\n" + ECHO}


def started(node_factory, nodes: list[tuple[dict, str]]) -> list:
    """The nodes (env, role), started at the same time (each start waits for its /healthz)."""
    with ThreadPoolExecutor(len(nodes)) as pool:
        return list(pool.map(lambda node: node_factory(*node), nodes))


def node_id(srv) -> str:
    return srv.client().get("/healthz").json()["node"]


def stored(gateway, invocation_id: str) -> dict:
    """The invocation's record once the invoker's record writer has stored it (polled)."""
    def found():
        response = gateway.client().get(f"/v1/invocations/{invocation_id}")
        return response.json()["invocation"] if response.status_code == 200 else None
    return wait_until(found, 10, interval=0.05, what=f"the record of {invocation_id}")


def idle_on(gateway, invoker_ids: list[str]) -> dict[str, int]:
    return {n["id"]: n["instances"]["idle"] for n in nodes(gateway) if n["id"] in invoker_ids}


def name_ranked_first(invoker: str, others: list[str], prefix: str) -> str:
    """A function name whose version 1 the rendezvous order gives to `invoker` first."""
    for i in range(1000):
        name = f"{prefix}-{i}"
        if placement.rendezvous([invoker, *others], (name, 1))[0] == invoker:
            return name
    raise AssertionError("no name found")


class TestRouting:
    def test_two_gateways_two_invokers(self, node_factory, postgres_url, nats_cluster):
        env = cluster_env(postgres_url, nats_cluster)
        a, b, *invokers = started(node_factory, [(env, "gateway"), (env, "gateway"),
                                                 (env, "invoker"), (env, "invoker")])
        ids = [node_id(srv) for srv in invokers]
        for gateway in (a, b):
            nodes_counted(gateway, 4, 15, what="both gateways and both invokers")

        # Deployed through A, invoked through B: cold on one invoker, then warm there through either.
        a.deploy("echo", echo(1))
        first = b.invoke("echo", {"pad": "x"})
        assert first["success"] is True and first["cold"] is True
        assert first["result"] == {"version": 1, "size": 1, "pad": "x"}
        record = stored(a, first["invocation_id"])  # A did not relay it: read from the database
        assert record["node"] in ids and record["cold"] is True and record["status"] == "succeeded"
        for gateway in (a, b):
            again = gateway.invoke("echo")
            assert again["cold"] is False, again
            assert stored(gateway, again["invocation_id"])["node"] == record["node"]

        # The contract of the embedded mode: a function's error is a 200 with its error, an
        # unknown function a 404, and an event and a result larger than a NATS message travel whole.
        failed = a.invoke("echo", {"raise": True})
        assert failed["success"] is False and failed["error"]["type"] == "ValueError"
        assert a.invoke("nothing-here", expect=404)["success"] is False
        pad = "y" * (2 * 1024 * 1024 + 17)
        large = b.invoke("echo", {"pad": pad})
        assert large["result"]["size"] == len(pad) and large["success"] is True
        # Async invocations go from a gateway through the JetStream queue to an invoker.
        queued = a.invoke("echo", {"pad": "async"}, mode="async", expect=202)
        ran = b.wait_invocation(queued["invocation_id"])
        assert ran["status"] == "succeeded" and ran["node"] in ids, ran
        assert ran["result"] == {"version": 1, "size": 5, "pad": "async"}

        # Deleted through A: the idle instance of `echo` is retired on its invoker at once.
        a.client().delete("/v1/functions/echo").raise_for_status()
        wait_until(lambda: all(n == 0 for n in idle_on(b, ids).values()), 10,
                   what="echo's idle instance retired")

        # Two calls at once through both gateways both run. (An invoker is "full" only when the
        # cluster's tier is, test_a_burst_beyond_an_invokers_leased_slots_stays_on_it; the
        # router's fall-through on a refusal is covered in process, tests/cluster/test_router.py.)
        busy = name_ranked_first(ids[0], ids[1:], "busy")
        a.deploy(busy, echo(1))
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda gw: gw.invoke(busy, {"sleep": 1.5}), (a, b)))
        assert all(answer["success"] for answer in answers), answers
        ran_on = {stored(a, answer["invocation_id"])["node"] for answer in answers}
        assert ran_on <= set(ids)

        # The invokers that ran v1 hold an idle instance of it; activating v2 through B retires
        # them on every invoker at once (the keep-alive is 10 minutes: only the announcement can).
        wait_until(lambda: all(idle_on(a, ids)[n] >= 1 for n in ran_on), 10,
                   what="an idle instance of v1 on the invokers that ran it, in the registry")
        b.deploy(busy, echo(2), timeout=1)
        wait_until(lambda: all(n == 0 for n in idle_on(a, ids).values()), 10,
                   what="v1's idle instances retired on every invoker")
        assert a.invoke(busy)["result"]["version"] == 2
        timed_out = a.invoke(busy, {"sleep": 3})  # v2's timeout is 1 s: the invoker's Timeout, relayed
        assert timed_out["success"] is False and timed_out["error"]["type"] == "Timeout"

    def test_a_burst_beyond_an_invokers_leased_slots_stays_on_it(self, node_factory, postgres_url, nats_cluster):
        """As many calls at once of a version invoker A holds warm as the router lets stay
        on one invoker (`placement.LOAD_FLOOR`), A's leased block of tier slots smaller than
        that (a block of one) and the tier's room large: A's lease grows to hold them all.
        None is refused and sent to B to start cold there (issue 12: the router's refusals
        made cluster throughput grow far less than the invokers)."""
        env = cluster_env(postgres_url, nats_cluster, **{Settings.env_name("slot_block"): 1})
        gateway, *invokers = started(node_factory, [(env, "gateway"), (env, "invoker"), (env, "invoker")])
        ids = [node_id(srv) for srv in invokers]
        nodes_counted(gateway, 3, 15, what="the gateway and both invokers")
        name = name_ranked_first(ids[0], ids[1:], "burst")
        gateway.deploy(name, echo(1))
        assert stored(gateway, gateway.invoke(name)["invocation_id"])["node"] == ids[0]
        burst = placement.LOAD_FLOOR
        with ThreadPoolExecutor(burst) as pool:
            answers = list(pool.map(lambda _: gateway.invoke(name, {"sleep": 1}), range(burst)))
        assert all(answer["success"] for answer in answers), answers
        assert {stored(gateway, answer["invocation_id"])["node"] for answer in answers} == {ids[0]}
        metrics = gateway.metrics()
        assert "# TYPE frazil_router_refusals_total counter" in metrics
        assert "frazil_router_refusals_total{" not in metrics, metrics  # not one ask refused

    def test_a_killed_invoker_leaves_routing_and_calls_go_on(self, node_factory, postgres_url, nats_cluster):
        env = cluster_env(postgres_url, nats_cluster)
        gateway, *invokers = started(node_factory, [(env, "gateway"), (env, "invoker"), (env, "invoker")])
        nodes_counted(gateway, 3, 15, what="the gateway and both invokers")
        gateway.deploy("echo", echo(1))
        first = gateway.invoke("echo")
        ran_on = stored(gateway, first["invocation_id"])["node"]
        [victim] = [srv for srv in invokers if node_id(srv) == ran_on]
        [survivor] = [node_id(srv) for srv in invokers if srv is not victim]

        victim.stop(signal.SIGKILL)
        # Once NATS has read the end of the dead invoker's connection (it does so on its own
        # time: a call sent before lands on the dead subscription and ends in a 503 "may have
        # run", the router's invariant), it says nobody listens there, and the gateway goes on at
        # once, long before the registry's TTL.
        wait_until(lambda: nobody_listens(nats_cluster, ran_on), 10,
                   what="NATS to see the killed invoker's connection end")
        for _ in range(3):
            answer = gateway.invoke("echo")
            assert answer["success"] is True
            assert stored(gateway, answer["invocation_id"])["node"] == survivor
        # Within the registry's TTL it leaves the list altogether, and calls still succeed.
        remaining = nodes_counted(gateway, 2, 10, what="the killed invoker to drop out")
        assert ran_on not in {n["id"] for n in remaining}
        assert gateway.invoke("echo")["cold"] is False


class TestNatsOutage:
    def test_sync_calls_answer_503_while_nats_is_away_and_work_again_after(self, node_factory, postgres_url,
                                                                          private_nats):
        env = {**cluster_env(postgres_url, "outage"), "FRAZIL_NATS_URL": private_nats.url}
        gateway, _ = started(node_factory, [(env, "gateway"), (env, "invoker")])
        nodes_counted(gateway, 2, 15, what="the gateway and the invoker")
        gateway.deploy("echo", echo(1))
        assert gateway.invoke("echo")["success"] is True

        private_nats.stop()
        body = wait_until(lambda: _refused(gateway), 15, what="a 503 while NATS is away")
        assert "connection to NATS at" in body["error"]["message"] and "is lost" in body["error"]["message"]

        private_nats.start()  # same port, same store: the nodes reconnect by themselves
        answer = wait_until(lambda: _answered(gateway), 30, what="sync calls to work again")
        assert answer["success"] is True and answer["result"]["version"] == 1


def nobody_listens(cluster: str, node: str) -> bool:
    """Whether NATS answers "no responders" for `node`'s invoke subject (probed with an empty
    request: only ever sent to a node the test killed)."""
    import nats
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

    async def probe() -> bool:
        nc = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
        try:
            await nc.request(invoke_subject(cluster, node), b"", timeout=0.2)
        except NoRespondersError:
            return True
        except NatsTimeout:
            return False
        finally:
            await nc.close()
        return False

    return asyncio.run(probe())


def _refused(gateway):
    response = gateway.client().post("/v1/functions/echo/invoke", content=b"{}")
    return response.json() if response.status_code == 503 else None


def _answered(gateway):
    response = gateway.client().post("/v1/functions/echo/invoke", content=b"{}")
    return response.json() if response.status_code == 200 else None
