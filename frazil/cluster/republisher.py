"""The JetStream queue's safety net: an async invocation recorded but never published gets its
message (frazil.cluster.queue says how that can happen: a node that crashed between a table
change's commit and its publish, or NATS away for longer than a publish window).

A pass, every REPUBLISH_EVERY_S on each node that consumes the queue:
1. in one PostgreSQL transaction, under the advisory lock REPUBLISH_LOCK_KEY taken without
   waiting (so one node of the cluster does a pass at a time, and the others skip theirs),
2. read the ids of the async records still `queued` that were created more than
   REPUBLISH_AFTER_S ago (their own publish has had its chance), a batch at a time,
3. ask the stream which invocations have a message (a subject per invocation),
4. publish those without one, with the invocation id as `Nats-Msg-Id`.

Why a queued record without a message was never published: a message leaves the stream only
by an ack, and an invoker acks only once the record is final (or gone). Why publishing it is
safe even when that publish races another: a publish of the same id within the stream's
dedup window is dropped, and a message arriving for a record that is final by then is acked
and dropped (frazil.cluster.consumer). A record that has a message is never given a second
one here: two messages of one queued record could both be claimed in turn.

Error policy: a failed pass (NATS or PostgreSQL away) is logged once per outage and tried again
at the next tick; a pass that cannot read every subject in the stream publishes nothing.
"""
from __future__ import annotations

import asyncio
import logging
import time

import orjson
from nats.aio.client import Client
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from frazil.background import BackgroundLoop, FailureLog
from frazil.cluster.names import REPUBLISH_LOCK_KEY, async_stream, async_subject
from frazil.cluster.queue import PUBLISH_TIMEOUT_S, JetStreamQueue
from frazil.store.invocations import InvocationStore

log = logging.getLogger(__name__)

REPUBLISH_AFTER_S = 10.0  # a record younger than this may still be on its way to the stream
REPUBLISH_EVERY_S = 5.0
REPUBLISH_BATCH = 1000  # records looked at per pass; the next pass goes on after the last


class Republisher(BackgroundLoop):
    task_name = "async-republisher"

    def __init__(self, nc: Client, engine: AsyncEngine, store: InvocationStore, queue: JetStreamQueue):
        self.nc = nc
        self.engine = engine
        self.store = store
        self.queue = queue
        self.cluster = queue.settings.cluster
        self._after = ""  # the last id the previous pass looked at ("": from the start)

    async def _run(self) -> None:
        # Error policy: a failed pass is logged once per outage and made again at the next tick;
        # `pass_once` is the drain mode (tests).
        republishing = FailureLog(log, "republishing async invocations", "retrying")
        while True:
            await asyncio.sleep(REPUBLISH_EVERY_S)
            try:
                await self.pass_once()
                republishing.worked()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next tick tries again
                republishing.failed(exc)

    async def pass_once(self) -> int:
        """One pass (the module docstring); how many invocations were published again (0 also
        when another node holds the pass)."""
        async with self.engine.begin() as conn:
            if not (await conn.execute(select(func.pg_try_advisory_xact_lock(REPUBLISH_LOCK_KEY)))).scalar_one():
                return 0
            ids = await self.store.queued_async(time.time() - REPUBLISH_AFTER_S, self._after, REPUBLISH_BATCH, conn)
            self._after = ids[-1] if len(ids) == REPUBLISH_BATCH else ""
            if not ids:
                return 0
            published = await self._with_messages()
            if published is None:
                return 0
            missing = [invocation_id for invocation_id in ids if invocation_id not in published]
            for invocation_id in missing:
                await self.queue.publish(invocation_id, PUBLISH_TIMEOUT_S)
                log.warning("async invocation %s was recorded but never published; published it now", invocation_id)
            return len(missing)

    async def _with_messages(self) -> set[str] | None:
        """The invocations that have a message in the stream; None when the stream's info did
        not list them all in one answer (it pages beyond 100,000 subjects, and pages read one
        after another can skip a subject as acks shift them: nothing is published on a guess).
        Asked of the JetStream API itself: nats-py's stream_info leaves the total out."""
        pattern = async_subject(self.cluster)
        reply = await self.nc.request(f"$JS.API.STREAM.INFO.{async_stream(self.cluster)}",
                                      orjson.dumps({"subjects_filter": pattern}), timeout=PUBLISH_TIMEOUT_S)
        info = orjson.loads(reply.data)
        if "error" in info:
            raise RuntimeError(f"the stream's info was refused: {info['error'].get('description')}")
        state = info.get("state") or {}
        subjects = state.get("subjects") or {}
        total = int(info.get("total", state.get("num_subjects", 0)))
        if len(subjects) < total:
            log.warning("the async stream listed %d of its %d subjects; not republishing this pass", len(subjects),
                        total)
            return None
        prefix = pattern[:-1]  # "frazil.<cluster>.async."
        return {subject[len(prefix):] for subject in subjects}
