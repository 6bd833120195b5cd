"""One attempt of an async invocation, from its claim to its written outcome, and the final
outcomes no attempt produces: what both async queues share, so that a record ends the same
way whichever queue carried it (the database queue's frazil.scheduler.dispatcher, the
JetStream queue's frazil.cluster.consumer).

The queue claims the record first (`InvocationStore.claim`: a compare-and-set that counts
the attempt); `Attempts.run` then runs it, decides between a retry after a backoff and a
final status, and writes that under the claim's fence (`InvocationStore.settle`, which refuses
the outcome of a claim that was taken over meanwhile).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter

import orjson

from frazil.scheduler.invoker import Invoker
from frazil.store.invocations import InvocationStore
from frazil.store.lifecycle import transition
from frazil.store.models import FunctionVersion, InvocationRecord, InvocationStatus

log = logging.getLogger(__name__)

# A claim lasts the function's timeout plus this: room for a cold start and the outcome write's
# retries. Only a lost claim waits this long to be taken back.
LEASE_MARGIN_S = 30.0
# The outcome write's retries: the first pause, doubled up to the last.
SETTLE_RETRY_S = (0.05, 2.0)


@dataclasses.dataclass
class DispatchStats:
    """What a queue did with records (arq's jobs_complete/jobs_failed/jobs_retried)."""

    finished: Counter = dataclasses.field(default_factory=Counter)  # InvocationStatus -> final records written
    retried: int = 0  # failed attempts put back in the queue after a backoff
    stale: int = 0  # outcomes dropped: the claim had been taken back before they were written

    def copy(self) -> "DispatchStats":
        return DispatchStats(Counter(self.finished), self.retried, self.stale)

    def since(self, before: "DispatchStats") -> "DispatchStats":
        finished = Counter(self.finished)
        finished.subtract(before.finished)
        return DispatchStats(+finished, self.retried - before.retried, self.stale - before.stale)


def lease_s(version: FunctionVersion) -> float:
    """How long a claim of an invocation of `version` lasts."""
    return version.timeout_s + LEASE_MARGIN_S


def backoff(settings, attempts: int) -> float:
    """The pause before the retry that follows failed attempt number `attempts`."""
    return min(60.0, settings.async_retry_backoff_s * (2 ** (attempts - 1)))


def throttled_error(settings, version: FunctionVersion) -> dict:
    return {"type": "TooManyRequests",
            "message": f"the {version.memory_mb} MB tier stayed full for the whole retry window "
                       f"of {settings.async_retry_s:g} s", "stack": ""}


def gone_error(function: str) -> dict:
    return {"type": "FunctionNotFound", "message": f"function {function!r} no longer exists", "stack": ""}


class Attempts:
    def __init__(self, settings, store: InvocationStore, invoker: Invoker, owner: str):
        self.settings = settings
        self.store = store
        self.invoker = invoker
        self.owner = owner
        self.stats = DispatchStats()

    async def run(self, record: InvocationRecord, version: FunctionVersion, started: float,
                  lease_until: float) -> InvocationRecord | None:
        """Run `record` (as read before this node's claim, which counted attempt
        `record.attempts + 1`) and write its outcome. Answers the record as written - final,
        or QUEUED with `next_attempt_at` for a retry - or None when it was not written (the
        claim was taken over, or the database stayed away past the lease)."""
        attempt = record.attempts + 1
        claimed = dataclasses.replace(record, owner=self.owner, started_at=started, lease_until=lease_until)
        if claimed.status is InvocationStatus.RUNNING:
            # A take-over (frazil.cluster.consumer): the claim wrote the older attempt's requeue
            # and this one's start in one (lifecycle.started); the copy goes the same way.
            transition(claimed, InvocationStatus.QUEUED)
        event = (record.event or "null").encode()
        # `run` counts the attempt on `claimed` as the claim counted it on the row, moves the
        # copy to running as the claim moved the row, and back to queued for a retry.
        outcome = await self.invoker.run(claimed, version, event, retry=lambda outcome: (
            not outcome.ok and claimed.attempts <= self.settings.async_max_retries))
        if claimed.status is InvocationStatus.QUEUED:  # to be retried
            claimed.owner = None
            claimed.next_attempt_at = time.time() + backoff(self.settings, claimed.attempts)
        claimed.lease_until = None
        if not await self._settle(claimed, attempt, lease_until):
            return None
        if claimed.status is InvocationStatus.QUEUED:
            self.stats.retried += 1
        else:
            self.stats.finished[claimed.status] += 1
        return claimed

    async def _settle(self, record: InvocationRecord, attempt: int, lease_until: float) -> bool:
        """Write the outcome of our claim `attempt`, retrying a failed write (bounded backoff)
        while the lease lasts. False when it was not written: the claim was taken back
        (the outcome is stale), or the database stayed unreachable past the lease."""
        pause, longest = SETTLE_RETRY_S
        while True:
            try:
                settled = await self.store.settle(record, self.owner, attempt)
            except Exception:
                if time.time() + pause >= lease_until:
                    log.exception("writing the outcome of async invocation %s failed until its lease ran out; "
                                  "the lease brings it back", record.id)
                    return False
                log.warning("writing the outcome of async invocation %s failed; retrying in %.2f s",
                            record.id, pause, exc_info=True)
                await asyncio.sleep(pause)
                pause = min(longest, pause * 2)
                continue
            if not settled:
                log.warning("dropped the outcome of async invocation %s attempt %d: its claim was taken back",
                            record.id, attempt)
                self.stats.stale += 1
            return settled

    async def finish(self, record: InvocationRecord, status: InvocationStatus, *, error: dict) -> bool:
        """End `record` (unclaimed, as read) with a final `status` no attempt produced; false
        when the stored record had moved on meanwhile (a claim or an outcome came first)."""
        was = record.status
        final = dataclasses.replace(record, finished_at=time.time(), error=orjson.dumps(error).decode(),
                                    owner=None, lease_until=None)
        transition(final, status)
        if await self.store.finish_unclaimed(final, was):
            self.stats.finished[status] += 1
            return True
        return False
