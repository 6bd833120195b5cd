"""frazil.background: the logging half of a loop's error policy, and stopping its tasks."""
import asyncio
import logging

from frazil.background import FailureLog, cancel_and_wait


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


async def test_a_task_that_runs_on_after_its_cancel_is_cancelled_again():
    """What asyncio.wait_for does in Python 3.11 when the cancel arrives as its inner wait
    completes (the cancellation is lost), reduced to a loop that swallows the first one."""
    swallowed = []

    async def loop():
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)  # goes on as if never cancelled

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), 10)
    assert swallowed and task.cancelled()


async def test_cancel_and_wait_reads_a_failed_tasks_error():
    async def fails():
        raise ValueError("its own to log")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # no "exception was never retrieved" at collection
    assert isinstance(task.exception(), ValueError)
