"""The invokers' side of the JetStream async queue (frazil.cluster.queue): fetch invocation ids
from the cluster's durable consumer, run them, and ack only once the record is final.

Ownership. The record in PostgreSQL says who runs an invocation (`owner`, for the attempt
numbered `attempts`: the claim, a compare-and-set that counts the attempt); the broker says
who may claim it: the holder of its un-acked message. Invariants:
- a node claims a record only while it holds the message's current delivery, and only from
  the state it read (queued, or running under an older claim);
- the claim holder alone touches the message afterwards: it signals progress (`+WIP`) every
  `heartbeat_s` while it runs, up to the function's timeout and the lease margin, then acks
  once the outcome is final, or NAKs with the backoff when it settled a retry. A node whose
  claim or outcome write was refused (another claim came first) leaves the message alone:
  acking it would drop the delivery the new holder depends on;
- a holder that stops signalling (killed, cut off, stuck past its timeout) loses the message
  after the consumer's AckWait; the next delivery takes the record over with a new claim, and
  the old holder's outcome, if it ever comes, is refused by the fence (`settle` compares owner
  and attempt). So an invocation may run twice, never ends with two outcomes, and is never
  lost while its message is in the stream; it leaves the stream only by an ack after a final
  record, or for a record that no longer exists (withdrawn, pruned).

Per delivery, in order: the record is final or gone → ack; claimed already although this is
the message's first delivery (a copy) → ack; not due yet (a delay, a retry's
backoff) → NAK for the rest of the wait; the last delivery MaxDeliver allows → end it failed;
its function gone → end it failed; its tier full (no slot within SLOT_WAIT_S) → NAK for
THROTTLE_RETRY_S, or end it `throttled` once the throttle window (`expires_at`) has passed, as
the database queue does.

Error policy: a fetch that fails (NATS away) is logged once per outage and tried again after a
pause; a delivery whose record cannot be read, or whose tier slot cannot be leased (PostgreSQL away),
is handed back with a delay;
an ack or NAK that is lost only means a redelivery, which finds the record as it was left.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from frazil.background import BackgroundLoop, FailureLog
from frazil.cluster.names import async_consumer, async_stream
from frazil.cluster.queue import THROTTLE_RETRY_S, max_deliveries
from frazil.errors import ServiceUnavailable
from frazil.scheduler.admission import Admission
from frazil.scheduler.attempt import Attempts, gone_error, lease_s, throttled_error
from frazil.settings import Settings
from frazil.store.catalog import FunctionCatalog
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus

log = logging.getLogger(__name__)

# A message's payload: an invocation id (frazil.store.ids).
_ID = re.compile(r"[0-9a-f]{28}")
# Messages fetched in one request, at most.
FETCH_BATCH = 10
# How long one fetch waits for messages at the server.
FETCH_WAIT_S = 5.0
# A delivery whose record could not be read comes back after this.
DATABASE_RETRY_S = 2.0
# How long a delivery waits for a tier slot before it is handed back as tier-full: on a cluster
# node the room is a lease (frazil.cluster.slots) that grows only when asked, so a slot that is
# free in the cluster but not leased here yet arrives within a ledger transaction, not at once.
SLOT_WAIT_S = 1.0


class JetStreamConsumer(BackgroundLoop):
    task_name = "async-consumer"

    def __init__(self, settings: Settings, nc: Client, store: InvocationStore, catalog: FunctionCatalog,
                 admission: Admission, attempts: Attempts, republisher: BackgroundLoop | None = None):
        self.settings = settings
        # Runs beside the consumer: publishes what was recorded and never published (frazil.cluster.republisher).
        self.republisher = republisher
        self.nc = nc
        self.store = store
        self.catalog = catalog
        self.admission = admission
        self.attempts = attempts
        self.max_deliver = max_deliveries(settings)
        # Messages this node works on at once: as many as its tiers may run. One being handed
        # back (not due, tier full) is held only for the moment that takes.
        self.capacity = max(1, sum(tier.concurrency for tier in settings.tiers.values()))
        self._handling: set[asyncio.Task] = set()
        self._room = asyncio.Event()
        # A delivery found its tier full: the next fetch waits until one of our runs gives its
        # slot back, or THROTTLE_RETRY_S. Without this a backlog behind a full tier would be
        # fetched, read from the database and handed back as fast as the loop goes.
        self._tier_full = False
        self._slot_back = asyncio.Event()
        # Invocation id -> the newest delivery of its message, for those this node runs (claimed).
        # A redelivery of one of them while it runs (its signals were late) replaces the handle.
        self._held: dict[str, Msg] = {}

    def start(self) -> None:
        super().start()
        if self.republisher is not None:
            self.republisher.start()

    async def _run(self) -> None:
        sub = None
        fetching = FailureLog(log, "fetching async invocations from NATS", "retrying")
        while True:
            if len(self._handling) >= self.capacity:
                self._room.clear()
                await self._room.wait()
                continue
            if self._tier_full:
                self._tier_full = False
                self._slot_back.clear()
                try:
                    await asyncio.wait_for(self._slot_back.wait(), THROTTLE_RETRY_S)
                except asyncio.TimeoutError:
                    pass
            try:
                if sub is None:
                    sub = await self.nc.jetstream().pull_subscribe_bind(durable=async_consumer(self.settings.cluster),
                                                                        stream=async_stream(self.settings.cluster))
                messages = await sub.fetch(min(FETCH_BATCH, self.capacity - len(self._handling)),
                                           timeout=FETCH_WAIT_S)
                fetching.worked()
            except nats.errors.TimeoutError:
                continue  # nothing to do for FETCH_WAIT_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                fetching.failed(exc)
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                task = asyncio.create_task(self._handle(message))
                self._handling.add(task)
                task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task) -> None:
        self._handling.discard(task)
        self._room.set()

    async def close(self) -> None:
        """Stop fetching and running; what this node was running goes back to the queue at
        once (a NAK without delay), for another invoker to take over, rather than after AckWait."""
        if self.republisher is not None:
            await self.republisher.close()
        await super().close()
        interrupted = list(self._held.values())
        for task in list(self._handling):
            task.cancel()
        await asyncio.gather(*self._handling, return_exceptions=True)
        for msg in interrupted:
            try:
                await msg.nak()
            except Exception:  # NATS away: AckWait hands it over instead
                pass

    async def _handle(self, msg: Msg) -> None:
        try:
            await self._deliver(msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handling an async invocation's message failed; its redelivery tries again")

    async def _deliver(self, msg: Msg) -> None:
        invocation_id = msg.data.decode("ascii", "replace")
        if not _ID.fullmatch(invocation_id):
            log.warning("dropping a message that names no invocation (%r)", msg.data[:64])
            await msg.term()
            return
        held = self._held.get(invocation_id)
        if held is not None:  # we run it
            if msg.metadata.sequence.stream == held.metadata.sequence.stream:
                self._held[invocation_id] = msg  # our own message, redelivered: keep the newest handle
            else:
                await msg.ack()  # a copy (see below)
            return
        try:
            record = await self.store.get(invocation_id)
        except Exception as exc:
            log.warning("reading async invocation %s failed (%s); handing it back for %g s", invocation_id,
                        exc, DATABASE_RETRY_S)
            await msg.nak(delay=DATABASE_RETRY_S)
            return
        if record is None or record.status.final or record.mode != "async":
            await msg.ack()  # done already, withdrawn, or pruned: nothing left to do
            return
        if record.status is InvocationStatus.RUNNING and msg.metadata.num_delivered == 1:
            # The first delivery of this message, yet the record is claimed: by the holder of
            # another message with the same id (a copy published after the dedup window). That
            # one's message stays in the stream until the record is final; this copy goes.
            await msg.ack()
            return
        now = time.time()
        if record.status is InvocationStatus.QUEUED and record.next_attempt_at and record.next_attempt_at > now:
            await msg.nak(delay=record.next_attempt_at - now)
            return
        if msg.metadata.num_delivered >= self.max_deliver:
            await self._end(msg, record, InvocationStatus.FAILED, {
                "type": "DeliveryLimit", "message": f"the invocation was delivered {msg.metadata.num_delivered} "
                                                    "times without an outcome", "stack": ""})
            return
        version = await self.catalog.active(record.function)
        if version is None:
            await self._end(msg, record, InvocationStatus.FAILED, gone_error(record.function))
            return
        slots = self.admission.slots(version.memory_mb)
        try:
            took = await slots.take(SLOT_WAIT_S)
        except ServiceUnavailable:  # no lease without PostgreSQL (logged by the slots): it stays queued
            await msg.nak(delay=DATABASE_RETRY_S)
            return
        if not took:
            if record.expires_at is not None and now >= record.expires_at:
                await self._end(msg, record, InvocationStatus.THROTTLED, throttled_error(self.settings, version))
            else:
                wait = THROTTLE_RETRY_S if record.expires_at is None else min(THROTTLE_RETRY_S,
                                                                                record.expires_at - now)
                await msg.nak(delay=max(wait, 0.01))
                self._tier_full = True
            return
        try:
            await self._run_claimed(msg, record, version)
        finally:
            slots.give()
            self._slot_back.set()

    async def _end(self, msg: Msg, record: InvocationRecord, status: InvocationStatus, error: dict) -> None:
        """End the unclaimed `record` without running it; ack when that was written."""
        if await self.attempts.finish(record, status, error=error):
            await msg.ack()

    async def _run_claimed(self, msg: Msg, record: InvocationRecord, version) -> None:
        started = time.time()
        lease_until = started + lease_s(version)
        if not await self.store.claim(record, self.attempts.owner, started, lease_until):
            return  # another delivery's holder claimed it first: the message is theirs
        self._held[record.id] = msg
        signals = asyncio.create_task(self._signal_progress(record.id, lease_until))
        try:
            settled = await self.attempts.run(record, version, started, lease_until)
        finally:
            signals.cancel()
            await asyncio.gather(signals, return_exceptions=True)
            msg = self._held.pop(record.id)
        if settled is None:
            return  # not ours any more (or not written: the redelivery after AckWait decides)
        try:
            if settled.status is InvocationStatus.QUEUED:
                await msg.nak(delay=max(0.01, (settled.next_attempt_at or 0) - time.time()))
            else:
                await msg.ack()
        except Exception as exc:  # NATS away: the redelivery finds the record as we left it
            log.warning("acknowledging async invocation %s failed (%s); its redelivery settles it", record.id, exc)

    async def _signal_progress(self, invocation_id: str, until: float) -> None:
        """Keep the message ours while the invocation runs, up to its lease: `+WIP` every
        heartbeat (the consumer's AckWait is `node_ttl_s`)."""
        while time.time() < until:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self._held[invocation_id].in_progress()
            except Exception:  # NATS away: the next heartbeat tries again
                pass
