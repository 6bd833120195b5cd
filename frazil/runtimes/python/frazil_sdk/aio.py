"""The SDK for `async def` handlers: the same names as `frazil_sdk`, as coroutines.

    from frazil_sdk import aio
    rows = await aio.db.table("notes").find({"seen": False})
    pages = await asyncio.gather(*(aio.http.get(u) for u in urls))   # many in flight

Calls are sent at once and their replies are delivered by one helper thread, so a handler
can have many in flight without a thread each.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import _runner
from ._db import Database, Table
from .errors import SdkError
from ._functions import Functions
from ._http import Http, Response
from ._log import Logger

if TYPE_CHECKING:
    from ._aio_types import AsyncDatabase, AsyncHttp

db: AsyncDatabase = Database(_runner.ASYNC)  # type: ignore[assignment]
http: AsyncHttp = Http(_runner.ASYNC)  # type: ignore[assignment]
functions = Functions(_runner.ASYNC)
log = Logger()

__all__ = ["db", "http", "functions", "log", "SdkError", "Table", "Response"]
