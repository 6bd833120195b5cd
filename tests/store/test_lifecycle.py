"""The invocation record's state machine (frazil.store.lifecycle): which status changes are
allowed, which are refused, and that the refusal leaves the record as it was."""
from __future__ import annotations

import time

import pytest

from frazil.store.lifecycle import INITIAL, TRANSITIONS, ForbiddenTransition, started, step, transition
from frazil.store.models import InvocationRecord, InvocationStatus as S

ALLOWED = {
    (S.QUEUED, S.RUNNING),  # started (a sync call; an async claim)
    (S.QUEUED, S.THROTTLED),  # async: the tier stayed full for the retry window
    (S.QUEUED, S.FAILED),  # async: the function was deleted while it waited
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.TIMEOUT),
    (S.RUNNING, S.QUEUED),  # an async retry; a lapsed or orphaned claim taken back
    (S.RUNNING, S.THROTTLED),  # cluster async: a redelivered claimed record whose tier stayed full
}


def record(status: S) -> InvocationRecord:
    return InvocationRecord(id="inv-1", function="fn", version=1, mode="async", status=status, created_at=time.time())


class TestTransitions:
    @pytest.mark.parametrize("current, wanted", sorted(ALLOWED))
    def test_allowed_changes_move_the_record(self, current, wanted):
        rec = record(current)
        transition(rec, wanted)
        assert rec.status is wanted
        assert step(current, wanted) is wanted

    @pytest.mark.parametrize("current, wanted", sorted((a, b) for a in S for b in S if (a, b) not in ALLOWED))
    def test_every_other_change_is_refused_and_changes_nothing(self, current, wanted):
        rec = record(current)
        with pytest.raises(ForbiddenTransition) as caught:
            transition(rec, wanted)
        assert rec.status is current
        assert caught.value.current is current and caught.value.wanted is wanted
        assert f"from {current.value} to {wanted.value}" in str(caught.value) and "inv-1" in str(caught.value)

    def test_the_final_statuses_are_exactly_those_without_a_way_out(self):
        assert {s for s in S if s.final} == {s for s, out in TRANSITIONS.items() if not out}
        assert set(TRANSITIONS) == set(S)

    def test_a_record_starts_queued_and_can_reach_every_status(self):
        assert INITIAL is S.QUEUED
        reached, frontier = {INITIAL}, [INITIAL]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()] - reached:
                reached.add(nxt)
                frontier.append(nxt)
        assert reached == set(S)


class TestStarted:
    def test_a_claim_starts_a_queued_record_or_takes_a_running_one_over(self):
        assert started(S.QUEUED) is S.RUNNING
        assert started(S.RUNNING) is S.RUNNING  # a take-over: requeue and start in one

    @pytest.mark.parametrize("final", [s for s in S if s.final])
    def test_a_final_record_cannot_be_claimed(self, final):
        with pytest.raises(ForbiddenTransition):
            started(final, "inv-1")
