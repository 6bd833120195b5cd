"""`InvocationCalls`: the SDK calls one invocation has made, from their frame to their reply.

Invariants:
- every call being served is a task in `_tasks` until it has finished;
- no call outlives its invocation: each is cut off at the invocation's deadline, and `end()`
  (the invocation returned, timed out, or its instance died) cancels every call still
  running and waits for them, so that once an invocation is over none of its calls does any
  more work (no db insert after the invocation ended);
- every call gets exactly one reply while the channel is open: its answer, an error for an
  exception while serving it, or `CallAborted` when its deadline or its invocation's end cut
  it off (a thread of the function may still wait for it).
How many calls may wait is decided by the SDK host, which refuses calls beyond its lanes at
once (frazil/sdk/host.py), so `_tasks` is bounded by those lanes; how many bytes they may
hold is decided here: the frames of the calls being served add up to at most
`CALL_BYTES_HELD` (`has_room`), since each keeps its parsed message until it ends.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Awaitable, Callable

from frazil.errors import FrazilError

log = logging.getLogger(__name__)

Reply = Callable[[object, dict], None]  # (call id, sdk_reply fields) -> sent, if the channel is open


def error_reply(type_: str, message: str, status: int) -> dict:
    return {"ok": False, "error": {"type": type_, "message": message, "status": status}}


# The sdk_call bytes one invocation's calls may hold at once (a call may be 8 MB: without this,
# an invocation's running and waiting calls could hold a hundred of them).
CALL_BYTES_HELD = 32 * 1024 * 1024

ENDED = error_reply("CallAborted", "the invocation that made this SDK call has ended", 409)
PAST_DEADLINE = error_reply("CallAborted", "the SDK call did not finish before its invocation's deadline", 409)


class InvocationCalls:
    def __init__(self, deadline: float, reply: Reply):
        """`deadline`: when the invocation times out (time.monotonic()); `reply` sends an answer.
        The holder may move `deadline` (a cold instance's first invocation is sent before its
        clock starts): calls started from then on are bound by the new one."""
        self.deadline = deadline
        self._reply = reply
        self._tasks: set[asyncio.Task] = set()
        self._ended = False
        self.bytes_held = 0  # the frame sizes of the calls in `_tasks`

    def __len__(self) -> int:
        return len(self._tasks)

    def has_room(self, size: int) -> bool:
        """Whether a call whose frame is `size` bytes may be served now."""
        return self.bytes_held + size <= CALL_BYTES_HELD

    def start(self, call, pending: Awaitable[dict], size: int = 0) -> None:
        """Serve one call (`pending` answers its reply's fields; its frame was `size` bytes)
        as a task of this invocation."""
        if self._ended:  # cannot happen: the instance routes no call to an ended invocation
            asyncio.ensure_future(pending).cancel()
            self._reply(call, ENDED)
            return
        task = asyncio.ensure_future(self._serve(call, pending))
        self._tasks.add(task)
        self.bytes_held += size
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._release(size))
        task.add_done_callback(lambda _: _close_unstarted(pending))

    async def _serve(self, call, pending: Awaitable[dict]) -> None:
        try:
            async with asyncio.timeout(max(0.0, self.deadline - time.monotonic())):
                reply = await pending
        except TimeoutError:
            reply = PAST_DEADLINE
        except asyncio.CancelledError:
            self._reply(call, ENDED)
            raise
        except FrazilError as exc:
            reply = error_reply(exc.type, exc.message, exc.status)
        except Exception as exc:  # a bug serving it: still an answer, never a hung caller
            log.warning("an SDK call failed unexpectedly", exc_info=True)
            reply = error_reply(type(exc).__name__, str(exc) or type(exc).__name__, 500)
        self._reply(call, reply)

    def _release(self, size: int) -> None:
        self.bytes_held -= size

    def cancel(self) -> None:
        """Cut every call off now (the instance died); `end()` waits for them."""
        self._ended = True
        for task in self._tasks:
            task.cancel()

    async def end(self, grace_s: float = 5.0) -> None:
        """The invocation is over: cancel its calls and wait until none runs. A call that does
        not stop within `grace_s` (it should take milliseconds) is logged and left behind."""
        self.cancel()
        if not self._tasks:
            return
        _, stuck = await asyncio.wait(list(self._tasks), timeout=grace_s)
        if stuck:
            log.error("%d SDK calls did not stop within %g s of their invocation's end", len(stuck), grace_s)


def _close_unstarted(pending: Awaitable[dict]) -> None:
    """A call cancelled before its task first ran never awaited its coroutine: close it."""
    if inspect.iscoroutine(pending) and inspect.getcoroutinestate(pending) == inspect.CORO_CREATED:
        pending.close()
