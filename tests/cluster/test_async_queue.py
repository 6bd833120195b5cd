"""The async queue on JetStream (frazil.cluster.queue, frazil.cluster.consumer), with real
`frazil server` processes - a gateway and invokers - on the real PostgreSQL and NATS: each test
its own database and cluster name (its stream and consumer deleted after it); the NATS restart
test runs a private nats-server of its own."""
from __future__ import annotations

import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import nats
import pytest

from frazil.cluster.names import async_consumer, async_stream, async_subject
from frazil.settings import Settings
from frazil.store.db import make_engine
from frazil.store.ids import new_id
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus, Trigger
from frazil.testing import wait_until
from tests.cluster.conftest import NATS_URL, cluster_env

WORK = {"index.py": "import time\n"
                    "def main(event, context):\n"
                    "    time.sleep(event.get('sleep', 0))\n"
                    "    if event.get('fail'):\n"
                    "        raise RuntimeError('asked to fail')\n"
                    "    return event.get('n')\n"}


def node_id(srv) -> str:
    return srv.client().get("/healthz").json()["node"]


def records_of(gateway, function: str, **filters) -> list[dict]:
    response = gateway.client().get("/v1/invocations", params={"function": function, "limit": 500, **filters})
    assert response.status_code == 200, response.text
    return response.json()["invocations"]


def run(coro):
    return asyncio.run(coro)


async def queue_state(url: str, cluster: str) -> tuple[int, int]:
    """(messages in the cluster's stream, deliveries not acked yet)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        stream = await js.stream_info(async_stream(cluster))
        consumer = await js.consumer_info(async_stream(cluster), async_consumer(cluster))
        return stream.state.messages, consumer.num_ack_pending
    finally:
        await nc.close()


async def publish(url: str, cluster: str, invocation_id: str, *, with_id: bool):
    nc = await nats.connect(url)
    try:
        headers = {"Nats-Msg-Id": invocation_id} if with_id else None
        subject = async_subject(cluster, invocation_id.replace(" ", "_"))
        return await nc.jetstream().publish(subject, invocation_id.encode(), headers=headers)
    finally:
        await nc.close()


class TestInvokers:
    def test_thirty_calls_all_succeed_once_although_an_invoker_is_killed_running_some(
            self, node_factory, postgres_url, nats_cluster):
        # Eight slots per invoker: many calls wait their turn (tier full: handed back to the queue).
        env = cluster_env(postgres_url, nats_cluster, FRAZIL_TIER_LIMIT_128=8)
        with ThreadPoolExecutor(3) as pool:
            gateway, *started = pool.map(lambda role: node_factory(env, role), ["gateway", "invoker", "invoker"])
        invokers = {node_id(srv): srv for srv in started}
        gateway.deploy("work", WORK)
        ids = {gateway.invoke("work", {"n": n, "sleep": 2}, mode="async", expect=202)["invocation_id"]: n
               for n in range(30)}

        running = wait_until(lambda: records_of(gateway, "work", status="running"), 60,
                             what="an invoker to run some of the calls")
        victim = running[0]["node"]
        assert victim in invokers
        invokers[victim].stop(signal.SIGKILL)
        caught = {r["id"] for r in running if r["node"] == victim}

        finished = {i: gateway.wait_invocation(i, timeout=90) for i in ids}
        assert {i: (r["status"], r["result"]) for i, r in finished.items()} == \
               {i: ("succeeded", n) for i, n in ids.items()}
        assert sorted(r["id"] for r in records_of(gateway, "work")) == sorted(ids)  # one record each
        assert all(r["attempts"] >= 1 for r in finished.values())
        # What the dead invoker held ran again elsewhere, and counted the interrupted start.
        taken_over = [finished[i] for i in caught if finished[i]["node"] != victim]
        assert taken_over, "nothing the killed invoker was running came back"
        assert all(r["attempts"] >= 2 for r in taken_over)
        wait_until(lambda: run(queue_state(NATS_URL, nats_cluster)) == (0, 0), 15,
                   what="every message acked and gone from the stream")


class TestRetriesAndDuplicates:
    def test_retries_back_off_delays_wait_a_full_tier_throttles_and_duplicates_run_once(
            self, node_factory, postgres_url, nats_cluster):
        env = cluster_env(postgres_url, nats_cluster, FRAZIL_ASYNC_MAX_RETRIES=2, FRAZIL_ASYNC_RETRY_BACKOFF_S=1,
                          FRAZIL_ASYNC_RETRY_S=2)
        invoker_env = {**env, "FRAZIL_TIER_LIMIT_256": 0}  # the invokers' 256 MB tier never has room
        with ThreadPoolExecutor(3) as pool:
            gateway, _, _ = pool.map(node_factory, [env, invoker_env, invoker_env], ["gateway", "invoker", "invoker"])
        gateway.deploy("work", WORK)
        # Two calls run longer than the consumer's AckWait (node_ttl_s, 4 s) while the rest of the
        # test goes on: their progress signals keep their messages, so neither runs a second time.
        long = [gateway.invoke("work", {"n": n, "sleep": 6}, mode="async", expect=202)["invocation_id"]
                for n in (10, 11)]
        gateway.deploy("big", WORK, memory=256)
        crowded = gateway.invoke("big", {"n": 1}, mode="async", expect=202)["invocation_id"]

        failing = gateway.invoke("work", {"fail": True}, mode="async", expect=202)["invocation_id"]
        waits: dict[int, dict] = {}  # attempts so far -> the record while it waits for its retry

        def watch():
            record = gateway.invocation(failing)
            if record["status"] == "queued" and record["attempts"] > 0:
                waits.setdefault(record["attempts"], record)
            return record if record["status"] in ("succeeded", "failed", "timeout", "throttled") else None

        final = wait_until(watch, 60, interval=0.05, what="the failing invocation to run out of retries")
        assert final["status"] == "failed" and final["attempts"] == 3
        assert final["error"]["type"] == "RuntimeError"
        assert sorted(waits) == [1, 2]
        for attempts, record in waits.items():  # the backoff doubles: 1 s, then 2 s
            assert record["not_before"] is not None
            gap = iso_seconds(record["not_before"]) - iso_seconds(record["finished_at"])
            assert gap == pytest.approx(2 ** (attempts - 1), abs=0.25)
        assert iso_seconds(final["started_at"]) >= iso_seconds(waits[2]["not_before"])  # not redelivered early

        # A delayed call waits in the queue (handed back with a NAK delay) until its time.
        response = gateway.client().post("/v1/functions/work/invoke", params={"mode": "async", "delay_s": "1.5"},
                                         content=b'{"n": 3}')
        assert response.status_code == 202, response.text
        delayed = response.json()
        record = gateway.wait_invocation(delayed["invocation_id"])
        assert record["status"] == "succeeded" and record["result"] == 3 and record["trigger"] == "delay"
        assert iso_seconds(record["started_at"]) >= iso_seconds(delayed["not_before"])

        # Its function deleted while it waited: it ends failed, without running.
        gateway.deploy("gone", WORK)
        response = gateway.client().post("/v1/functions/gone/invoke", params={"mode": "async", "delay_s": "1"},
                                         content=b"{}")
        assert response.status_code == 202, response.text
        assert gateway.client().delete("/v1/functions/gone").status_code == 200
        record = gateway.wait_invocation(response.json()["invocation_id"])
        assert record["status"] == "failed" and record["error"]["type"] == "FunctionNotFound"
        assert record["attempts"] == 0

        # Handed back while its tier stayed full, then ended as the embedded mode ends it.
        throttled = gateway.wait_invocation(crowded)
        assert throttled["status"] == "throttled" and throttled["attempts"] == 0
        assert throttled["error"]["type"] == "TooManyRequests"

        # A gateway whose publish answer was lost publishes again: the stream drops the copy.
        once = gateway.invoke("work", {"n": 7, "sleep": 2}, mode="async", expect=202)["invocation_id"]
        assert run(publish(NATS_URL, nats_cluster, once, with_id=True)).duplicate is True
        # A copy the stream cannot recognise (published after the window), while it runs and
        # after it is final: each is delivered and dropped.
        gateway.wait_invocation(once, statuses=("running",))
        assert not run(publish(NATS_URL, nats_cluster, once, with_id=False)).duplicate
        record = gateway.wait_invocation(once)
        assert record["status"] == "succeeded" and record["attempts"] == 1
        assert not run(publish(NATS_URL, nats_cluster, once, with_id=False)).duplicate
        for invocation_id in long:
            kept = gateway.wait_invocation(invocation_id)
            assert (kept["status"], kept["attempts"]) == ("succeeded", 1), kept
        wait_until(lambda: run(queue_state(NATS_URL, nats_cluster)) == (0, 0), 15,
                   what="the copy to be delivered and dropped")
        assert gateway.invocation(once) == record
        # A message naming no record (withdrawn, pruned, or garbage) is dropped too.
        run(publish(NATS_URL, nats_cluster, "0" * 28, with_id=False))
        run(publish(NATS_URL, nats_cluster, "not an id", with_id=False))
        wait_until(lambda: run(queue_state(NATS_URL, nats_cluster)) == (0, 0), 15,
                   what="the stray messages to be dropped")


async def insert_unpublished(database_url: str, tmp_path, record: InvocationRecord) -> None:
    """Commit `record` as a table change's transaction does, and publish nothing: what a node
    that crashed between that commit and its publish leaves behind."""
    engine = make_engine(Settings(data_dir=tmp_path / "inserter", database_url=database_url))
    try:
        await InvocationStore(engine).insert(record)
    finally:
        await engine.dispose()


class TestRepublisher:
    def test_a_record_committed_but_never_published_runs_exactly_once(self, node_factory, postgres_url,
                                                                      nats_cluster, tmp_path):
        env = cluster_env(postgres_url, nats_cluster)
        with ThreadPoolExecutor(3) as pool:
            gateway, *_ = pool.map(lambda role: node_factory(env, role), ["gateway", "invoker", "invoker"])
        gateway.deploy("work", WORK)
        now = time.time()
        lost = InvocationRecord(id=new_id(), function="work", version=1, mode="async",
                                status=InvocationStatus.QUEUED, created_at=now - 60, event='{"n": 42}',
                                expires_at=now + 300, trigger=Trigger.TABLE)
        run(insert_unpublished(postgres_url, tmp_path, lost))
        assert run(queue_state(NATS_URL, nats_cluster)) == (0, 0)  # nothing in the queue names it

        record = gateway.wait_invocation(lost.id, timeout=90)
        assert (record["status"], record["result"], record["attempts"]) == ("succeeded", 42, 1), record
        # Published once (two invokers pass every few seconds, one at a time): the stream took
        # one message, and it is acked and gone.
        wait_until(lambda: run(queue_state(NATS_URL, nats_cluster)) == (0, 0), 15, what="the message acked")
        assert run(stream_sequence(NATS_URL, nats_cluster)) == 1
        assert [r["id"] for r in records_of(gateway, "work")] == [lost.id]


async def stream_sequence(url: str, cluster: str) -> int:
    """How many messages the cluster's stream has ever stored."""
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(async_stream(cluster))).state.last_seq
    finally:
        await nc.close()


def iso_seconds(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- NATS restarted under load ---------------------------------------------------------------

class Load:
    """Async calls through a gateway, one after another on a thread, until stopped (or MOST
    were made): the ids answered 202, and those answered 503."""

    MOST = 400

    def __init__(self, gateway):
        self.gateway = gateway
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.gateway.url, timeout=60,
                          headers={"Authorization": f"Bearer {self.gateway.admin_key}"}) as client:
            n = 0
            while not self._stop.is_set() and n < self.MOST:
                n += 1
                response = client.post("/v1/functions/work/invoke", params={"mode": "async"},
                                       content=f'{{"n": {n}}}'.encode())
                if response.status_code == 202:
                    self.accepted.append(response.json()["invocation_id"])
                elif response.status_code == 503:
                    self.refused.append(response.json()["error"]["message"])
                else:
                    self.errors.append(f"{response.status_code} {response.text}")

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(90)


class TestNatsRestart:
    def test_nothing_accepted_is_lost_when_nats_restarts_under_load(self, postgres_url, private_nats, node_factory):
        env = {**cluster_env(postgres_url, "restart"), "FRAZIL_NATS_URL": private_nats.url}
        with ThreadPoolExecutor(2) as pool:
            gateway, _ = pool.map(lambda role: node_factory(env, role), ["gateway", "invoker"])
        gateway.deploy("work", WORK)
        with Load(gateway) as load:
            wait_until(lambda: len(load.accepted) >= 5, 60, what="calls accepted before the restart")
            private_nats.stop()
            # Down for longer than a gateway tries to publish: a call is refused (503), and the
            # publish its client had buffered reaches the stream after the restart, to find
            # that its record was withdrawn.
            wait_until(lambda: load.refused, 60, what="a call refused while NATS is down")
            before = len(load.accepted)
            private_nats.start()
            wait_until(lambda: len(load.accepted) >= before + 5, 60, what="calls accepted after the restart")
        assert not load.errors, load.errors
        assert load.refused
        for message in load.refused:
            assert "the async queue (NATS JetStream" in message and "not accepted" in message
        for invocation_id in load.accepted:
            record = gateway.wait_invocation(invocation_id, timeout=60)
            assert record["status"] == "succeeded", record
        listed = {r["id"] for r in records_of(gateway, "work")}
        assert listed == set(load.accepted)  # one record each; nothing refused was kept (or ran)
        wait_until(lambda: run(queue_state(private_nats.url, "restart")) == (0, 0), 15,
                   what="every message acked and gone from the stream")
