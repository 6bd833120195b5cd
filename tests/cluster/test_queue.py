"""The accepting side of the JetStream queue (frazil.cluster.queue.JetStreamQueue) and its
republisher (frazil.cluster.republisher), in process, on the real PostgreSQL and a private
nats-server that the test stops and starts."""
from __future__ import annotations

import time

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from sqlalchemy import text

from frazil.cluster.names import REPUBLISH_LOCK_KEY, async_consumer, async_stream, async_subject
from frazil.cluster.nats import connect
from frazil.cluster.queue import JetStreamQueue, ensure_stream
from frazil.cluster.republisher import REPUBLISH_AFTER_S, Republisher
from frazil.store.db import open_engine
from frazil.store.ids import new_id
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus
from tests.cluster.conftest import cluster_settings


def queued(age_s: float = 0.0) -> InvocationRecord:
    return InvocationRecord(id=new_id(), function="fn", version=1, mode="async", status=InvocationStatus.QUEUED,
                            created_at=time.time() - age_s, event="{}")


@pytest.fixture
async def queue(tmp_path, postgres_url, private_nats):
    settings = cluster_settings(tmp_path, postgres_url, "queue", nats_url=private_nats.url)
    engine = await open_engine(settings)
    nc = await connect(settings)
    await ensure_stream(nc, settings)
    queue = JetStreamQueue(nc, settings, InvocationStore(engine))
    yield queue
    await queue.close()
    try:
        await nc.close()
    except ConnectionError:  # the test stopped NATS: nothing to flush to
        pass
    await engine.dispose()


async def stream_messages(queue: JetStreamQueue) -> int:
    return (await queue.nc.jetstream().stream_info(async_stream(queue.settings.cluster))).state.messages


async def republished_until(queue: JetStreamQueue, messages: int) -> None:
    """Republishing passes (as an invoker makes them every few seconds) until the stream holds
    `messages`; then one more pass publishes nothing."""
    republisher = Republisher(queue.nc, queue.store.engine, queue.store, queue)

    async def enough():
        try:
            await republisher.pass_once()
        except Exception:  # NATS still reconnecting: the next pass
            return False
        return await stream_messages(queue) == messages
    await wait_for(enough, 60, f"{messages} messages in the stream")
    assert await republisher.pass_once() == 0
    assert await stream_messages(queue) == messages


async def wait_for(predicate, timeout: float, what: str):
    import asyncio

    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


class TestEnqueue:
    async def test_accepted_means_recorded_and_published(self, queue):
        record = queued()
        await queue.enqueue(record)
        assert (await queue.store.get(record.id)).status is InvocationStatus.QUEUED
        assert await stream_messages(queue) == 1

    async def test_a_record_the_database_would_not_withdraw_is_published_once_nats_is_back(
            self, queue, private_nats, monkeypatch):
        """NATS and PostgreSQL failing at once: the call is accepted (its record is durable),
        and the republisher publishes it when NATS is back - once, whatever the client had
        buffered. (Its record is made older than REPUBLISH_AFTER_S: the passes look at it now.)"""
        async def database_away(record):
            raise ConnectionError("the database is away")
        monkeypatch.setattr(queue.store, "withdraw", database_away)
        private_nats.stop()
        record = queued(age_s=REPUBLISH_AFTER_S + 60)
        await queue.enqueue(record)  # accepted
        assert (await queue.store.get(record.id)).status is InvocationStatus.QUEUED
        private_nats.start()
        await republished_until(queue, 1)


class TestCommitted:
    async def test_records_a_table_change_committed_are_published_even_after_an_outage(self, queue, private_nats):
        """Records inserted by another transaction (a table change's) are accepted already:
        published at once when NATS answers, and when NATS is back when it does not."""
        first = queued()
        await queue.store.insert_many([first])
        queue.committed([first])

        async def published(count):
            async def check():
                return await stream_messages(queue) == count
            return check
        await wait_for(await published(1), 30, "the committed record's message")

        private_nats.stop()
        second = queued(age_s=REPUBLISH_AFTER_S + 60)
        await queue.store.insert_many([second])
        queue.committed([second])

        async def given_up():  # the publish window passed: the republisher's now
            return not queue._publishing
        await wait_for(given_up, 30, "the publish to give up while NATS is away")
        private_nats.start()
        await republished_until(queue, 2)

    async def test_a_record_young_or_with_a_message_is_left_alone(self, queue):
        """A pass is skipped while another node's holds the lock, and it publishes neither a record whose own publish may still be on its way (younger
        than REPUBLISH_AFTER_S) nor one whose message is in the stream: one message per record."""
        republisher = Republisher(queue.nc, queue.store.engine, queue.store, queue)
        young, published, lost = queued(), queued(age_s=REPUBLISH_AFTER_S + 60), queued(age_s=REPUBLISH_AFTER_S + 60)
        await queue.store.insert_many([young, published, lost])
        await queue.publish(published.id, 5)
        async with queue.store.engine.connect() as other:  # another node's pass holds the lock
            await other.execute(text("SELECT pg_advisory_lock(:key)"), {"key": REPUBLISH_LOCK_KEY})
            assert await republisher.pass_once() == 0  # skipped, not waited for
            await other.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": REPUBLISH_LOCK_KEY})
        assert await republisher.pass_once() == 1  # `lost`
        assert await republisher.pass_once() == 0
        assert await stream_messages(queue) == 2


class TestUpgrade:
    async def test_an_earlier_releases_consumer_is_made_anew_and_its_queued_records_get_messages(
            self, tmp_path, postgres_url, private_nats):
        """The release before the subject per invocation published every id on one subject and
        filtered its consumer on it; nats-server 2.9 takes a changed filter in place and then
        delivers nothing. Started on that layout, a node makes the consumer anew, purges the
        old messages, and the republisher gives their queued records messages the consumer
        delivers."""
        settings = cluster_settings(tmp_path, postgres_url, "upgrade", nats_url=private_nats.url)
        engine = await open_engine(settings)
        nc = await connect(settings)
        js = nc.jetstream()
        name, durable, earlier = (async_stream(settings.cluster), async_consumer(settings.cluster),
                                  f"frazil.{settings.cluster}.async")
        try:
            await js.add_stream(StreamConfig(name=name, subjects=[earlier], retention=RetentionPolicy.WORK_QUEUE))
            await js.add_consumer(name, ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                                                       filter_subject=earlier))
            queue = JetStreamQueue(nc, settings, InvocationStore(engine))
            record = queued(age_s=REPUBLISH_AFTER_S + 60)
            await queue.store.insert_many([record])
            # (without the earlier release's Nats-Msg-Id: its dedup window would hold the new
            # message back for two minutes, the one-time wait ensure_stream documents)
            await js.publish(earlier, record.id.encode())

            await ensure_stream(nc, settings)
            assert (await js.consumer_info(name, durable)).config.filter_subject == async_subject(settings.cluster)
            assert await stream_messages(queue) == 0
            await republished_until(queue, 1)
            pulled = await js.pull_subscribe(async_subject(settings.cluster), durable=durable, stream=name)
            [message] = await pulled.fetch(1, timeout=10)
            assert message.data == record.id.encode()
            await ensure_stream(nc, settings)  # the next node's start changes nothing
            assert await stream_messages(queue) == 1
        finally:
            await nc.close()
            await engine.dispose()
