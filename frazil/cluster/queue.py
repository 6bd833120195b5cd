"""The cluster's async queue on NATS JetStream: the stream, its consumer, and the door new async
invocations go through (`JetStreamQueue.enqueue`; the invokers' side is frazil.cluster.consumer).

The record in PostgreSQL is the invocation; a message is only its id, telling invokers that it
is there to run. One work-queue stream per cluster (`frazil_<cluster>_async`, a subject per
invocation: `frazil.<cluster>.async.<id>`), one durable pull consumer that every invoker
fetches from (explicit acks). A message stays in the stream until it is acked, which happens
only once its record is final: a queued record without a message was never published.

Accepting (a gateway, or any node whose Entry takes an async call):
1. the record is inserted, status `queued`, and committed;
2. its id is published with the id as `Nats-Msg-Id`: the stream drops a second copy within
   DEDUP_WINDOW_S, so a publish whose answer was lost is simply made again (PUBLISH_WINDOW_S);
3. published → 202. Not published within the window (NATS away) → the record is withdrawn (a
   delete that only succeeds while no invoker has claimed it) and the caller gets 503: nothing
   half-done stays. If an invoker had claimed it already, the publish did get through and the
   call is accepted after all. A message that arrives after its record was withdrawn finds no
   record and is dropped (frazil.cluster.consumer). Only when the database refuses the withdraw
   too (both services failing at once) is the record kept: it is accepted, and published by
   the republisher (below) once NATS is back.

Table events (frazil.scheduler.table_events) insert their records in the data change's own
transaction, so they are accepted when it commits; `committed` then publishes them in the
background.

Whatever was recorded and not published - NATS away for longer than a publish window, or the
node crashed between commit and publish - is published by the cluster's republisher
(frazil.cluster.republisher): a queued record with no message in the stream gets one.

Delays (`delay_s`, a retry's backoff) are the broker's: the message is published at once, and an
invoker that receives it before the record's `next_attempt_at` hands it back with a NAK delay
for the rest. Why not publish at due time from a PostgreSQL-side loop: that needs a "published"
mark on the record and a leader to scan for due rows, a second mechanism beside the broker's
delayed redelivery; with the NAK delay the record stays the one truth (an early redelivery, e.g.
after a NATS restart, is handed back again) and nothing but JetStream schedules.
"""
from __future__ import annotations

import asyncio
import logging
import math

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from frazil.cluster.names import async_consumer, async_stream, async_subject
from frazil.cluster.nats import shown
from frazil.errors import ServiceUnavailable, reason_of
from frazil.settings import Settings
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord

log = logging.getLogger(__name__)

# The stream forgets a message id after this: re-publishes of one invocation within it are dropped.
DEDUP_WINDOW_S = 120.0
# How long an accepting node keeps trying to publish before it refuses the call (503); each try
# waits PUBLISH_TIMEOUT_S for the stream's answer. Long enough to ride out a NATS restart.
PUBLISH_WINDOW_S = 6.0
PUBLISH_TIMEOUT_S = 2.0
# A tier-full invoker hands a message back for this long before it is tried again.
THROTTLE_RETRY_S = 1.0
# Deliveries that start nothing and decide nothing, allowed on top of those the settings explain:
# redeliveries after an invoker died, after a NATS restart, while the database was away.
SPARE_DELIVERIES = 100


def max_deliveries(settings: Settings) -> int:
    """The consumer's MaxDeliver: a tier-full hand-back every THROTTLE_RETRY_S for the whole
    throttle window, every retry, and SPARE_DELIVERIES. An invoker receiving the last delivery
    ends the record instead of running it (frazil.cluster.consumer), so no message ever stays
    in the stream undelivered."""
    return (math.ceil(settings.async_retry_s / THROTTLE_RETRY_S) + settings.async_max_retries + 1
            + SPARE_DELIVERIES)


def ack_wait_s(settings: Settings) -> float:
    """An invoker that has not signalled for this long has lost its message, which goes to
    another: the registry's liveness rule (a node silent for `node_ttl_s` is gone). A running
    invocation is signalled in progress every `heartbeat_s`, up to its timeout and margin."""
    return settings.node_ttl_s


async def ensure_stream(nc: Client, settings: Settings) -> None:
    """Make the cluster's stream and consumer, or bring their settings up to this node's
    (every node does this at start; it is idempotent).

    A consumer made by an earlier release with another subject filter (one subject for all
    invocations, before the subject per invocation) is made anew rather than updated: nats-server
    2.9 accepts the new filter and then delivers nothing. The earlier release's messages are
    purged; their records are still `queued`, so the republisher gives each one a message
    (once the old publish's id has left the DEDUP_WINDOW_S: a one-time wait of at most two
    minutes at the upgrade). Upgrade every node of a cluster, not some: a node of the earlier
    release would keep pulling with the filter it knows."""
    js = nc.jetstream()
    name, durable = async_stream(settings.cluster), async_consumer(settings.cluster)
    subject = async_subject(settings.cluster)
    stream = StreamConfig(name=name, subjects=[subject], retention=RetentionPolicy.WORK_QUEUE,
                          storage=StorageType.FILE, duplicate_window=DEDUP_WINDOW_S)
    try:
        await js.add_stream(stream)
    except BadRequestError:  # there with other settings (another release): bring them up to ours
        await js.update_stream(stream)
    try:
        earlier = (await js.consumer_info(name, durable)).config.filter_subject
    except NotFoundError:
        earlier = subject
    if earlier != subject:
        log.warning("the async queue's consumer filters %r (an earlier release's): made anew for %r, and the "
                    "earlier messages purged (their queued records get new ones from the republisher)",
                    earlier, subject)
        await js.delete_consumer(name, durable)
        if earlier:  # (an empty filter: the consumer took every subject, all of them ours now)
            await js.purge_stream(name, subject=earlier)
    # max_ack_pending -1: messages handed back with a delay stay pending at the server; a cap
    # would let delayed invocations block the queue. Each invoker bounds what it holds itself.
    await js.add_consumer(name, ConsumerConfig(
        durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait_s(settings),
        max_deliver=max_deliveries(settings), max_ack_pending=-1, filter_subject=subject))


class JetStreamQueue:
    """The AsyncQueue of a cluster node (frazil.cluster.interfaces)."""

    def __init__(self, nc: Client, settings: Settings, store: InvocationStore):
        self.nc = nc
        self.settings = settings
        self.store = store
        self.stream = async_stream(settings.cluster)
        self._publishing: set[asyncio.Task] = set()  # committed() records being published

    async def enqueue(self, record: InvocationRecord) -> None:
        """Accept one new async invocation: recorded and published when this returns;
        ServiceUnavailable (and nothing recorded) when NATS would not take it."""
        await self.store.insert(record)
        try:
            await self.publish(record.id, PUBLISH_WINDOW_S)
            return
        except Exception as exc:
            reason = reason_of(exc)
        try:
            withdrawn = await self.store.withdraw(record)
        except Exception:
            log.exception("async invocation %s: NATS did not take it (%s) and the database refused to withdraw "
                          "it; it stays accepted and is published again when NATS is back", record.id, reason)
            return
        if not withdrawn:
            return  # an invoker claimed it already: the publish had got through
        raise ServiceUnavailable(f"the async queue (NATS JetStream at {shown(self.settings)}) did not answer "
                                 f"({reason}); the invocation was not accepted, try again")

    def committed(self, records: list[InvocationRecord]) -> None:
        """Records a table change committed in its own transaction: accepted already (nothing
        can be withdrawn), so they are published in the background; those NATS does not take
        (or all of them, if this node crashes first) are the republisher's."""
        if records:
            task = asyncio.create_task(self._publish_committed([record.id for record in records]))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def _publish_committed(self, ids: list[str]) -> None:
        for invocation_id in ids:
            try:
                await self.publish(invocation_id, PUBLISH_WINDOW_S)
            except Exception as exc:
                log.warning("async invocation %s: NATS did not take it (%s); it is published again when NATS is "
                            "back", invocation_id, reason_of(exc))

    async def publish(self, invocation_id: str, window_s: float) -> None:
        """Publish one invocation's message, trying again (the same message id: a duplicate is
        dropped by the stream) until it is stored or `window_s` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window_s
        while True:
            try:
                await self.nc.jetstream().publish(async_subject(self.settings.cluster, invocation_id),
                                                  invocation_id.encode(), timeout=PUBLISH_TIMEOUT_S,
                                                  stream=self.stream, headers={"Nats-Msg-Id": invocation_id})
                return
            except Exception:
                if loop.time() + 0.2 >= deadline:
                    raise
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        tasks = list(self._publishing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
