"""Which way a call goes, decided at each call: on the instance's protocol channel when the
runtime loop has published its bridge (inside a function on frazil; `_transport`), otherwise
to a running server's HTTP API (a function's unit tests on a developer's machine; `_outside`).
Both answer the same values, so every operation's code is shared."""
from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable

from . import _transport


def _outside_call(op: str, fields: dict) -> Any:
    # Imported on first use: urllib pulls in ssl, email and http.client, which an instance
    # never needs, and every cold start would pay for.
    from . import _outside

    return _outside.call(op, fields)


def inside_platform() -> bool:
    """Whether this process is a frazil instance (its runtime loop published the bridge)."""
    return _transport.BRIDGE_MODULE in sys.modules


class _Sync:
    def run(self, op: str, fields: dict, decode: Callable[[Any], Any] | None = None) -> Any:
        if inside_platform():
            return _transport.SYNC.run(op, fields, decode)
        value = _outside_call(op, fields)
        return decode(value) if decode else value


class _Async:
    def run(self, op: str, fields: dict, decode: Callable[[Any], Any] | None = None) -> Any:
        if inside_platform():
            return _transport.ASYNC.run(op, fields, decode)
        return self._outside(op, fields, decode)

    @staticmethod
    async def _outside(op: str, fields: dict, decode):
        value = await asyncio.to_thread(_outside_call, op, fields)
        return decode(value) if decode else value


SYNC = _Sync()
ASYNC = _Async()
