"""frazil_sdk: the platform's services inside a function (standard library only).

    from frazil_sdk import db, functions, http, log
    notes = db.table("notes")
    rec = notes.insert({"text": "hi"})          # the stored record, with "id"
    rows = notes.find({"text": "hi"}, limit=10)
    n = notes.update({"seen": {"ne": True}}, {"seen": True})
    r = http.get("https://example.com/", timeout=10)
    log.info("visible in the invocation's logs")
    env = functions.invoke("other", {"x": 1})   # the callee's envelope

`db` has admin rights over the BaaS tables (ACLs do not apply); `http` goes out through the
platform's proxy (the function has no network of its own). Every call blocks until the
platform answers; from `async def` handlers use `frazil_sdk.aio`, which has the same names as
coroutines. A failed call raises `SdkError` with the platform's message. Calls work only while
an invocation runs: the credential they carry dies when it ends.

Outside the platform (a function's own unit tests), the same calls go to a running
`frazil server` over its HTTP API, configured by FRAZIL_URL and FRAZIL_TOKEN (see `_outside`):
`db` with the admin key, `http` straight to the destination, `log` to stderr.
"""
from .errors import SdkError
from ._db import Database, Table
from ._functions import Functions
from ._http import Http, Response
from ._log import Logger
from . import _runner

db = Database(_runner.SYNC)
http = Http(_runner.SYNC)
functions = Functions(_runner.SYNC)
log = Logger()

__all__ = ["db", "http", "functions", "log", "SdkError", "Database", "Table", "Http", "Response", "Logger",
           "Functions"]
