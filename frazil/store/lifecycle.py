"""The invocation record's state machine: every status change goes through `step()`.

    queued ──start──▶ running ──outcome──▶ succeeded | failed | timeout
      │  ▲                │
      │  └──── requeue ───┘   (an async retry after a failure; a lapsed or orphaned claim
      │                        taken back; a redelivered claim taken over)
      └──▶ throttled | failed  (async: the tier stayed full for the whole retry window; the
                                function was deleted while the invocation waited)
    running ──▶ throttled | failed  (cluster async: the same, found by the invoker that
                                     received a redelivery of a claimed record whose holder
                                     stopped, frazil.cluster.consumer)

A record is made `queued` (frazil.scheduler.entry); the final statuses have no way out. Code
that changes a record in memory calls `transition(record, new)`; a compare-and-set in SQL
(frazil.store.invocations: a claim, a take-back) writes `step(expected, new)` under a condition
on the expected status, so the same table checks it. A take-over (the JetStream queue claims a
record still running under an older claim) is a requeue and a start in one write: `started()`.
"""
from __future__ import annotations

from frazil.store.models import InvocationRecord, InvocationStatus as S

INITIAL = S.QUEUED

TRANSITIONS: dict[S, frozenset[S]] = {
    S.QUEUED: frozenset({S.RUNNING, S.THROTTLED, S.FAILED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.TIMEOUT, S.QUEUED, S.THROTTLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.TIMEOUT: frozenset(),
    S.THROTTLED: frozenset(),
}


class ForbiddenTransition(Exception):
    """A status change the state machine does not allow (a bug in the caller)."""

    def __init__(self, current: S, wanted: S, record_id: str | None = None):
        where = f"invocation {record_id}: " if record_id else ""
        super().__init__(f"{where}an invocation cannot go from {current.value} to {wanted.value}")
        self.current = current
        self.wanted = wanted
        self.record_id = record_id


def step(current: S, wanted: S, record_id: str | None = None) -> S:
    """`wanted`, if a record may go there from `current`; else ForbiddenTransition."""
    if wanted not in TRANSITIONS[current]:
        raise ForbiddenTransition(current, wanted, record_id)
    return wanted


def transition(record: InvocationRecord, wanted: S) -> None:
    """Move `record` to `wanted` (ForbiddenTransition, and the record unchanged, if it may not)."""
    record.status = step(record.status, wanted, record.id)


def started(current: S, record_id: str | None = None) -> S:
    """The status a claim writes over a record read as `current`: running. From running that
    is a take-over (frazil.cluster.consumer: the older claim's holder stopped), checked as the
    requeue and the start it stands for."""
    if current is S.RUNNING:
        current = step(S.RUNNING, S.QUEUED, record_id)
    return step(current, S.RUNNING, record_id)
