"""frazil.background: the logging half of a loop's error policy."""
import logging

from frazil.background import FailureLog


def test_a_repeated_failure_is_logged_when_it_starts_and_when_it_ends(caplog):
    failures = FailureLog(logging.getLogger("frazil.test"), "reading the thing", "using the last one")
    with caplog.at_level(logging.WARNING, logger="frazil.test"):
        failures.worked()  # nothing failed: nothing to say
        for _ in range(3):
            failures.failed(OSError("connection refused\nmore detail"))
        failures.worked()
        failures.worked()
    assert [r.getMessage() for r in caplog.records] == [
        "reading the thing failed (OSError: connection refused); using the last one",
        "reading the thing works again"]
