"""How SDK calls reach the platform: as sdk_call frames on the instance's protocol channel,
through the bridge the runtime loop publishes in sys.modules. Two runners share every
operation's code: SYNC blocks for the reply, ASYNC returns a coroutine."""
import asyncio
import sys

from .errors import SdkError

BRIDGE_MODULE = "_frazil_sdk_bridge"  # published by the runtime loop (runtimes/python/loop.py)


def _bridge_and_token():
    bridge = sys.modules.get(BRIDGE_MODULE)
    if bridge is None:
        raise SdkError("frazil_sdk works only inside a function running on frazil", "NotInFunction")
    token = bridge.token
    if token is None:
        raise SdkError("no invocation is running: the SDK can be used only while the function's "
                       "invocation runs (not after main returned)", "NoInvocation")
    return bridge, token


def _unwrap(reply):
    if reply is None:
        raise SdkError("the platform closed the channel before answering", "ChannelClosed")
    if reply.get("ok"):
        return reply.get("value")
    error = reply.get("error") or {}
    raise SdkError(str(error.get("message") or "the SDK call failed"), str(error.get("type") or "SdkError"),
                   error.get("status"))


def call(op, fields):
    """Send one call and wait for its value; raises SdkError."""
    bridge, token = _bridge_and_token()
    message = dict(fields, op=op, sdk_token=token)
    try:
        reply = bridge.channel.call(message)
    except ValueError as exc:  # too large to send (the loop's CallTooLarge), or not JSON
        raise _unsendable(exc) from None
    except Exception as exc:  # ChannelClosed, or the channel broke
        raise SdkError(f"the platform channel is closed: {exc or type(exc).__name__}", "ChannelClosed") from None
    return _unwrap(reply)


async def acall(op, fields):
    """Like `call`, awaited on the running event loop (many may be in flight)."""
    bridge, token = _bridge_and_token()
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def deliver(reply):  # on the runtime's pump thread
        try:
            loop.call_soon_threadsafe(_settle, future, reply)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    try:
        bridge.channel.call_async(dict(fields, op=op, sdk_token=token), deliver)
    except ValueError as exc:  # too large to send (the loop's CallTooLarge), or not JSON
        raise _unsendable(exc) from None
    except Exception as exc:
        raise SdkError(f"the platform channel is closed: {exc or type(exc).__name__}", "ChannelClosed") from None
    return _unwrap(await future)


def _unsendable(exc):
    if type(exc).__name__ == "CallTooLarge":
        return SdkError(str(exc), "PayloadTooLarge", 413)
    return SdkError(f"the SDK call cannot be sent: {exc}", "BadRequest", 400)


def _settle(future, reply):
    if not future.done():
        future.set_result(reply)


class _Sync:
    def run(self, op, fields, decode=None):
        value = call(op, fields)
        return decode(value) if decode else value


class _Async:
    def run(self, op, fields, decode=None):
        return self._run(op, fields, decode)

    async def _run(self, op, fields, decode):
        value = await acall(op, fields)
        return decode(value) if decode else value


SYNC = _Sync()
ASYNC = _Async()
