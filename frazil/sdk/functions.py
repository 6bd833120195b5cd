"""`functions.invoke` from inside a function: the SDK's calls between functions.

A call goes through the same entry as every other source (frazil.scheduler.entry) with trigger
`function`; a function acts with admin rights, so the callee's `access` rule does not apply,
and the end user who called the caller (if any) is the callee's `context.user` too.

Rules, each for a reason:
- a chain deeper than MAX_CHAIN_DEPTH calls is refused (ChainTooDeep): a function calling
  itself must not take every instance and slot there is;
- a sync callee's timeout, and its wait for a tier slot, are cut to the caller's remaining
  time: the caller cannot use an answer that comes after its own deadline;
- a sync callee that finds its tier full waits at most the sync retry window and then fails
  with TooManyRequests. The caller holds a slot while it waits, so waiting for longer could
  deadlock a tier full of callers each waiting for a slot to free.
"""
from __future__ import annotations

import dataclasses
import math
import time

import orjson

from frazil.deploy.config import check_name
from frazil.errors import BadRequest, PayloadTooLarge
from frazil.data.changes import Origin
from frazil.scheduler.entry import MAX_CHAIN_DEPTH, MAX_DELAY_S, Call, Mode
from frazil.scheduler.invoker import envelope_json
from frazil.sdk.errors import CallAborted
from frazil.store.models import Trigger



class ChainTooDeep(BadRequest):
    type = "ChainTooDeep"


def _delay(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= MAX_DELAY_S:
        raise BadRequest(f"delay_s must be a number more than 0 and at most {MAX_DELAY_S} seconds, not {value!r}")
    return float(value)


def caller_origin(platform, instance) -> Origin:
    """What the invocation running on `instance` starts (a call, a table change through the
    SDK) inherits from it: its end user, and a depth one more than its own."""
    caller = platform.invoker.inflight.get(instance.current_invocation)
    if caller is None:
        return Origin(depth=1)
    return Origin(user=orjson.loads(caller.caller) if caller.caller is not None else None, depth=caller.depth + 1)


async def invoke_function(host, instance, m: dict):
    """The `functions.invoke` SDK operation: the callee's envelope (sync) or its invocation id
    (async)."""
    platform = host._platform
    name = m.get("name")
    if not isinstance(name, str):
        raise BadRequest(f"a function name is a string, not {type(name).__name__}")
    check_name(name)
    mode = m.get("mode") or "sync"
    if mode not in {each.value for each in Mode}:
        raise BadRequest(f"mode must be 'sync' or 'async', not {mode!r}")
    delay_s = _delay(m.get("delay_s"))
    if delay_s is not None and mode != "async":
        raise BadRequest("delay_s is for async invocations: pass mode='async'")
    origin = caller_origin(platform, instance)
    if origin.depth > MAX_CHAIN_DEPTH:
        raise ChainTooDeep(f"this call would be {origin.depth} calls deep: a chain of calls between functions may "
                           f"be at most {MAX_CHAIN_DEPTH} deep")
    event = orjson.dumps(m.get("event"))
    if len(event) > platform.settings.max_payload_bytes:
        raise PayloadTooLarge(f"the event is {len(event)} bytes; the limit is {platform.settings.max_payload_bytes}")
    version = await platform.invoker.active_version(name)
    call = Call(Trigger.FUNCTION, Mode(mode), delay_s=delay_s, user=origin.user, depth=origin.depth)
    deadline = getattr(instance, "deadline", None)  # monotonic; None only between invocations
    if call.mode is Mode.SYNC and deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CallAborted("the calling invocation has no time left for a sync call")
        call = dataclasses.replace(call, timeout_s=remaining, slot_wait_s=remaining)
    started = await platform.entry.invoke(version, event, call)
    if started.outcome is None:
        return started.record.id
    return orjson.loads(envelope_json(started.record, started.outcome))
