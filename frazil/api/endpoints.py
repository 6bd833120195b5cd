"""Functions' HTTP endpoints: `/fn/{name}` and `/fn/{name}/{path...}`, every method.

A request becomes an event in the shape of AWS API Gateway's HTTP API payload 2.0, runs as a
sync invocation (trigger `http`) under the function's `access` rule, and the function's result
becomes the response:
- `{"statusCode", "headers", "cookies", "body", "isBase64Encoded"}` (a dict with `statusCode`)
  is that response; a `statusCode` that is not an integer from 100 to 599, or a body marked
  base64 that is not, is 502 naming the field;
- any other result is sent as JSON with 200;
- a failed invocation is 502 with the error envelope.
"""
from __future__ import annotations

import base64
import binascii
import time
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from frazil.api.bodies import read_limited
from frazil.api.clientaddr import scope_client
from frazil.api.deps import platform_of
from frazil.api.invoking import admit
from frazil.errors import BadGateway, NotFound
from frazil.scheduler.entry import Call, Mode
from frazil.scheduler.invoker import envelope_json
from frazil.store.models import Trigger

PREFIX = "/fn"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Headers the platform consumed or that describe the hop, not the request: the function never
# sees the caller's credentials (the admin key must not reach function code; an end user is
# given as `user` instead).
_HIDDEN_HEADERS = {"authorization"}
# Response headers the server sets itself from the body it sends.
_COMPUTED_HEADERS = {"content-length", "transfer-encoding", "connection"}

router = APIRouter(prefix=PREFIX, tags=["http endpoints"])


async def endpoint_root(name: str, request: Request):
    return await serve(name, "", request)


async def endpoint_path(name: str, path: str, request: Request):
    return await serve(name, path, request)


# Whatever the function answers, any status: documented as the default response. The platform's
# own refusals (404 no such function or no endpoint, 401/403 its access rule, 413, 429, 502 for a
# failed invocation or a malformed result) carry the error body.
ENDPOINT_ANSWERS = {"default": {"description": "The function's response: its `statusCode`, `headers` and `body`, "
                                               "or its result as JSON with 200. The platform's own refusals "
                                               "(401, 403, 404, 413, 429, 502, 503) have frazil's error body."}}
ENDPOINT_DOC = {"security": [{"bearer": []}, {}]}

# One route per method: OpenAPI needs an operation id per method and path.
for _method in METHODS:
    router.add_api_route("/{name}", endpoint_root, methods=[_method], operation_id=f"fn_{_method.lower()}",
                         summary="A function's HTTP endpoint (deployed with http = true)",
                         responses=ENDPOINT_ANSWERS, openapi_extra=ENDPOINT_DOC)
    router.add_api_route("/{name}/{path:path}", endpoint_path, methods=[_method],
                         operation_id=f"fn_path_{_method.lower()}", summary="A function's HTTP endpoint, below it",
                         responses=ENDPOINT_ANSWERS, openapi_extra=ENDPOINT_DOC)


async def serve(name: str, path: str, request: Request) -> Response:
    plat = platform_of(request)
    version = await plat.invoker.active_version(name)
    if not version.http:
        raise NotFound(f"function {name!r} has no HTTP endpoint (deploy it with http = true)")
    user = await admit(plat, version, request.headers.get("authorization"))
    body = await read_limited(request, plat.settings.max_payload_bytes, "the request body")
    event = request_event(request, path, body, user, scope_client(request.scope, plat.settings.trusted_proxies))
    started = await plat.entry.invoke(version, orjson.dumps(event), Call(Trigger.HTTP, Mode.SYNC, user=user))
    if not started.outcome.ok:
        return Response(envelope_json(started.record, started.outcome), status_code=502,
                        media_type="application/json")
    return result_response(started.outcome.result, started.record.id)


def request_event(request: Request, path: str, body: bytes, user: dict | None, source_ip: str | None) -> dict:
    """The API Gateway HTTP API (payload 2.0) event for `request` from the client at `source_ip`."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for key, value in request.headers.items():  # already lower-cased by Starlette
        if key in _HIDDEN_HEADERS:
            continue
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        # Repeated headers are joined with commas, as API Gateway does.
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    raw_query = request.scope.get("query_string", b"").decode("latin-1")
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    event: dict = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.url.path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "http": {"method": request.method, "path": request.url.path,
                     "protocol": f"HTTP/{request.scope.get('http_version', '1.1')}",
                     "sourceIp": source_ip,
                     "userAgent": headers.get("user-agent", "")},
            "domainName": headers.get("host", ""),
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "pathParameters": {"proxy": path},
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:  # binary: base64, as API Gateway sends it
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    if user is not None:
        event["user"] = user
    return event


def result_response(result, invocation_id: str) -> Response:
    """The HTTP response a function's result asks for (see the module's docstring)."""
    if not (isinstance(result, dict) and "statusCode" in result):
        return Response(orjson.dumps(result), status_code=200, media_type="application/json")
    status = result["statusCode"]
    # bool is an int in Python; `true` is not a status code.
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise BadGateway(f"the function's result has statusCode {status!r}: it must be an integer from 100 to 599",
                         field="statusCode", invocation_id=invocation_id)
    headers = result.get("headers") or {}
    if not isinstance(headers, dict):
        raise BadGateway("the function's result has headers that are not an object of names to values",
                         field="headers", invocation_id=invocation_id)
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise BadGateway("the function's result has cookies that are not a list of strings",
                         field="cookies", invocation_id=invocation_id)
    body = result.get("body")
    if body is None:
        content = b""
    elif result.get("isBase64Encoded"):
        try:
            content = base64.b64decode(body if isinstance(body, str) else "", validate=True)
        except (binascii.Error, ValueError):
            raise BadGateway("the function's result has isBase64Encoded true but a body that is not base64",
                             field="body", invocation_id=invocation_id) from None
    elif isinstance(body, str):
        content = body.encode("utf-8")
    else:  # lenient: a structured body is sent as JSON
        content = orjson.dumps(body)
        headers = {"content-type": "application/json", **headers}
    response = Response(content, status_code=status)
    if content and not any(str(key).lower() == "content-type" for key in headers):
        # Without one a browser guesses; text is the safe guess for a string body.
        response.headers["content-type"] = ("application/octet-stream" if result.get("isBase64Encoded")
                                            else "text/plain; charset=utf-8")
    for key, value in headers.items():
        if str(key).lower() not in _COMPUTED_HEADERS:
            response.headers[str(key)] = str(value)
    for cookie in cookies:
        response.headers.append("set-cookie", str(cookie))
    return response
