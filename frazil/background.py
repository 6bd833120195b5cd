"""A loop the platform runs beside the requests: started once, cancelled at close.

A subclass names its task (`task_name`) and implements `_run()`, a coroutine that loops until
cancelled and writes its own error policy above the loop; its one-pass method (a drain for
tests) is its own.
"""
from __future__ import annotations

import asyncio
import logging

from frazil.errors import reason_of


class BackgroundLoop:
    task_name = "background"
    _task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def _run(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Cancel the loop and wait until it has stopped (idempotent)."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None


CANCEL_REPEAT_S = 0.5  # how long a cancelled task may run on before it is cancelled again


async def cancel_and_wait(*tasks: asyncio.Task) -> None:
    """Cancel `tasks` and wait until every one has ended, cancelling again any that runs on.
    Why again: in Python 3.11 `asyncio.wait_for` swallows a cancellation that arrives just as
    what it waits for completes (CPython gh-86296), and a loop around it then goes on as if
    never cancelled (a registry watch fed every few ms was seen to outlive its close)."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_REPEAT_S)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: an error at its end is the task's own to have logged


class FailureLog:
    """The logging half of a loop's error policy for a failure that repeats (a service away):
    one warning when it starts failing, one when it works again, nothing on the turns between.

    `doing` names the work ("reading the node registry"); `meanwhile` says what happens until it
    works again ("routing to the invokers known before")."""

    def __init__(self, logger: logging.Logger, doing: str, meanwhile: str):
        self.logger = logger
        self.doing = doing
        self.meanwhile = meanwhile
        self.failing = False

    def failed(self, exc: BaseException) -> None:
        if not self.failing:
            self.logger.warning("%s failed (%s); %s", self.doing, reason_of(exc), self.meanwhile)
        self.failing = True

    def worked(self) -> None:
        if self.failing:
            self.logger.warning("%s works again", self.doing)
        self.failing = False
