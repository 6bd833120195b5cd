"""The SDK for `async def` handlers: the same names as `frazil_sdk`, as coroutines.

    from frazil_sdk import aio
    rows = await aio.db.table("notes").find({"seen": False})
    pages = await asyncio.gather(*(aio.http.get(u) for u in urls))   # many in flight

Calls are sent at once and their replies are delivered by one helper thread, so a handler
can have many in flight without a thread each.
"""
from . import _transport
from ._db import Database, Table
from .errors import SdkError
from ._http import Http, Response
from ._log import Logger

db = Database(_transport.ASYNC)
http = Http(_transport.ASYNC)
log = Logger()

__all__ = ["db", "http", "log", "SdkError", "Table", "Response"]
