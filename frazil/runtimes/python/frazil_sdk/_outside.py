"""The SDK outside the platform: the same operations over a running server's HTTP API.

A function's own unit tests import it and call `main(event, ctx)` on a developer's machine,
where there is no protocol channel. There each operation becomes a request to `FRAZIL_URL`
with the admin key (`FRAZIL_TOKEN`, else the key file the `frazil` CLI would read), and
answers the value the platform's SDK host would have answered, so `_db` and `_http` decode it
the same way:

  db.insert  POST   /v1/tables/{t}/records        db.get     GET    /v1/tables/{t}/records/{id}
  db.find    GET    /v1/tables/{t}/records        db.count   GET    /v1/tables/{t} (no filter), or
  db.drop    DELETE /v1/tables/{t}                           counting the pages of a find
  db.tables  GET    /v1/tables                    db.set_acl PUT    /v1/tables/{t}
  db.create_table   GET then PUT /v1/tables/{t}   (Conflict when the GET finds it)

`db.update` and `db.delete` by filter have no HTTP counterpart (the HTTP API changes one record
by id) and raise SdkError type "NotAvailableOutside" naming the call. `http.request` goes
straight to its destination (there is no proxy outside, and no allow-list either). `log`
writes to stderr as inside.

Standard library only, like the rest of the SDK.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlencode

from .errors import SdkError

# The names the frazil CLI reads too (frazil/settings.py); repeated here because the SDK
# installs and runs without frazil itself.
ENV_URL = "FRAZIL_URL"
ENV_TOKEN = "FRAZIL_TOKEN"
ENV_DATA_DIR = "FRAZIL_DATA_DIR"
KEY_FILE = "admin.key"
DEFAULT_DATA_DIR = ".frazil"
API_TIMEOUT_S = 30.0
PAGE = 1000  # the largest page the records route serves


def _settings() -> tuple[str, str]:
    """(base URL, admin key), read at each call so that a test may set them late."""
    url = os.environ.get(ENV_URL, "").strip().rstrip("/")
    if not url:
        raise SdkError(f"frazil_sdk is not running inside a frazil function: set {ENV_URL} (e.g. "
                       f"http://127.0.0.1:8080) and {ENV_TOKEN} (the admin key) to use a running "
                       f"`frazil server` from tests", "NotInFunction")
    if not url.startswith(("http://", "https://")):
        raise SdkError(f"{ENV_URL} must be an http:// or https:// URL, not {url!r}", "BadRequest")
    token = os.environ.get(ENV_TOKEN, "").strip()
    if not token:
        data_dir = os.environ.get(ENV_DATA_DIR, "").strip()
        key_file = Path(data_dir or DEFAULT_DATA_DIR) / KEY_FILE
        try:
            token = key_file.read_text().strip()
        except OSError:
            raise SdkError(f"no admin key: set {ENV_TOKEN} (or {ENV_DATA_DIR} to the server's data dir); "
                           f"{key_file} cannot be read", "Unauthorized", 401) from None
    return url, token


def _api(method: str, path: str, *, query: dict | None = None, body: Any = None) -> dict:
    """One request to the HTTP API; its JSON answer, or SdkError with the server's error type."""
    base, token = _settings()
    url = base + path + ("?" + urlencode(query) if query else "")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise _api_error(exc, method, path) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SdkError(f"cannot reach the frazil server at {base} ({ENV_URL}): {reason}", "ChannelClosed") from None


def _api_error(exc: urllib.error.HTTPError, method: str, path: str) -> SdkError:
    try:
        error = json.loads(exc.read()).get("error") or {}
    except (ValueError, AttributeError, OSError):
        error = {}
    message = error.get("message") or f"{method} {path} answered HTTP {exc.code}"
    return SdkError(str(message), str(error.get("type") or "SdkError"), exc.code)


def _table_path(fields: dict) -> str:
    table = fields.get("table")
    if not isinstance(table, str):
        raise TypeError(f"a table name is a string, not {type(table).__name__}")
    return "/v1/tables/" + quote(table, safe="")


def _records_query(fields: dict, limit: int, offset: int) -> dict:
    query = {"where": json.dumps(fields.get("where") or {}), "limit": limit}
    if offset:
        query["offset"] = offset
    if fields.get("order"):
        query["order"] = fields["order"]
    return query


# --- db -------------------------------------------------------------------------------------

def _insert(f: dict):
    return _api("POST", _table_path(f) + "/records", body=f.get("record"))["record"]


def _find(f: dict):
    query = _records_query(f, f.get("limit", 100), f.get("offset", 0))
    return _api("GET", _table_path(f) + "/records", query=query)["records"]


def _get(f: dict):
    record_id = f.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise SdkError("a record id is a non-empty string", "BadRequest", 400)
    return _api("GET", _table_path(f) + "/records/" + quote(record_id, safe=""))["record"]


def _count(f: dict):
    if not f.get("where"):
        return _api("GET", _table_path(f))["table"]["records"]
    # No count route takes a filter: page through the matches (reads only, so exact).
    total, query = 0, _records_query(f, PAGE, 0)
    while True:
        page = _api("GET", _table_path(f) + "/records", query=query)
        total += page["count"]
        if not page.get("next_cursor"):
            return total
        query["cursor"] = page["next_cursor"]


def _create_table(f: dict):
    try:
        _api("GET", _table_path(f))
    except SdkError as exc:
        if exc.status != 404:
            raise
    else:
        raise SdkError(f"table {f['table']!r} already exists", "Conflict", 409)
    return _api("PUT", _table_path(f), body={"acl": f.get("acl")})["table"]


def _set_acl(f: dict):
    return _api("PUT", _table_path(f), body={"acl": f.get("acl")})["table"]


def _drop(f: dict):
    return _api("DELETE", _table_path(f))["deleted_records"]


def _tables(f: dict):
    return _api("GET", "/v1/tables")["tables"]


def _no_counterpart(op: str, instead: str) -> Callable[[dict], Any]:
    def refuse(f: dict):
        raise SdkError(f"{op} (by filter) has no counterpart in frazil's HTTP API, so it works only inside a "
                       f"function running on frazil; in tests outside the platform, {instead}",
                       "NotAvailableOutside", 501)
    return refuse


# --- http -----------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 3xx itself is the answer


def _http_request(f: dict):
    """A direct request; answers what the platform's proxy answers (status, header pairs, the
    final URL, the body in base64). An HTTP error status is an answer, not an error."""
    if f.get("body_b64") is not None:
        data = base64.b64decode(f["body_b64"])
    elif f.get("body") is not None:
        data = f["body"].encode()
    else:
        data = None
    request = urllib.request.Request(f["url"], data=data, method=f["method"], headers=dict(f.get("headers") or ()))
    handlers = [] if f.get("follow_redirects", True) else [_NoRedirect()]
    opener = urllib.request.build_opener(*handlers)
    try:
        try:
            response = opener.open(request, timeout=f.get("timeout"))
        except urllib.error.HTTPError as exc:
            response = exc  # a 4xx/5xx (or an unfollowed 3xx): still a response
        with response:
            body = response.read()
            return {"status": response.status if hasattr(response, "status") else response.code,
                    "headers": [[k, v] for k, v in response.headers.items()], "url": response.geturl(),
                    "base64": base64.b64encode(body).decode()}
    except (socket.timeout, TimeoutError):
        raise SdkError(f"{f['method']} {f['url']} timed out after {f.get('timeout')} s", "HttpTimeout", 504) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise SdkError(f"{f['method']} {f['url']} timed out after {f.get('timeout')} s", "HttpTimeout",
                           504) from None
        raise SdkError(f"{f['method']} {f['url']} failed: {exc.reason}", "HttpError", 502) from None
    except (ValueError, OSError) as exc:
        raise SdkError(f"{f['method']} {f['url']} failed: {exc}", "HttpError", 502) from None


OPS: dict[str, Callable[[dict], Any]] = {
    "db.insert": _insert,
    "db.find": _find,
    "db.get": _get,
    "db.count": _count,
    "db.update": _no_counterpart("db.table(...).update", "update records one at a time: find them, then "
                                 "PATCH /v1/tables/{table}/records/{id}"),
    "db.delete": _no_counterpart("db.table(...).delete", "delete records one at a time: find them, then "
                                 "DELETE /v1/tables/{table}/records/{id}"),
    "db.create_table": _create_table,
    "db.set_acl": _set_acl,
    "db.drop": _drop,
    "db.tables": _tables,
    "http.request": _http_request,
}


def call(op: str, fields: dict) -> Any:
    serve = OPS.get(op)
    if serve is None:
        raise SdkError(f"{op} works only inside a function running on frazil (it has no HTTP counterpart "
                       f"the SDK could use from {ENV_URL})", "NotAvailableOutside", 501)
    return serve(fields)
