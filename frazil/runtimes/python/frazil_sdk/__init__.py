"""frazil_sdk: the platform's services inside a function (standard library only).

    from frazil_sdk import db, http, log
    notes = db.table("notes")
    rec = notes.insert({"text": "hi"})          # the stored record, with "id"
    rows = notes.find({"text": "hi"}, limit=10)
    n = notes.update({"seen": {"ne": True}}, {"seen": True})
    r = http.get("https://example.com/", timeout=10)
    log.info("visible in the invocation's logs")

`db` has admin rights over the BaaS tables (ACLs do not apply); `http` goes out through the
platform's proxy (the function has no network of its own). Every call blocks until the
platform answers; from `async def` handlers use `frazil_sdk.aio`, which has the same names as
coroutines. A failed call raises `SdkError` with the platform's message. Calls work only while
an invocation runs: the credential they carry dies when it ends.
"""
from .errors import SdkError
from ._db import Database, Table
from ._http import Http, Response
from ._log import Logger
from . import _transport

db = Database(_transport.SYNC)
http = Http(_transport.SYNC)
log = Logger()

__all__ = ["db", "http", "log", "SdkError", "Database", "Table", "Http", "Response", "Logger"]
