"""The fast path (frazil.api.fastpath) and the documented FastAPI route answer alike.

Each request is sent twice: through `FastPath(app)`, as the server runs, and straight to
the FastAPI app, which reaches the documented `POST /v1/functions/{name}/invoke` route.
Both must give the same status, headers that matter and body."""
from __future__ import annotations

import pytest

from tests.inproc.harness import ADMIN_KEY

MAX_PAYLOAD = 1024


@pytest.fixture
async def frazil(frazil_factory):
    platform = await frazil_factory(max_payload_bytes=MAX_PAYLOAD)
    await platform.deploy("guarded")
    await platform.deploy("open", public=True)
    return platform


async def both(frazil, path: str, content, *, token: str | None = ADMIN_KEY, authorization: str | None = None,
               headers: dict | None = None):
    """(fast path response, documented route response) for the same request. `token` None:
    no Authorization header; `authorization`: that header as given; `content` may be a
    callable making a fresh streamed body for each path."""
    responses = []
    for client in (frazil.fast, frazil.documented):
        request = client.build_request("POST", path, content=content() if callable(content) else content)
        del request.headers["Authorization"]
        if authorization or token:
            request.headers["Authorization"] = authorization or f"Bearer {token}"
        request.headers.update(headers or {})
        responses.append(await client.send(request))
    return responses


def assert_alike(fast, documented, status: int) -> dict:
    assert (fast.status_code, documented.status_code) == (status, status), (fast.text, documented.text)
    assert fast.headers["content-type"] == documented.headers["content-type"] == "application/json"
    assert fast.headers.get("www-authenticate") == documented.headers.get("www-authenticate")
    assert fast.json() == documented.json()
    return fast.json()


def oversized_stream():
    """A body with no Content-Length (chunked), larger than the limit."""
    async def chunks():
        for _ in range(4):
            yield b" " * (MAX_PAYLOAD // 2)
    return chunks()


BAD_INPUTS = {
    # name: (request, status, error type, words in the message)
    "bad mode": (dict(path="/v1/functions/guarded/invoke?mode=later", content=b"{}"),
                 400, "BadRequest", "mode must be"),
    "empty mode": (dict(path="/v1/functions/guarded/invoke?mode=", content=b"{}"), 400, "BadRequest", "mode must be"),
    "bad mode twice, the last wins": (dict(path="/v1/functions/guarded/invoke?mode=sync&mode=nope", content=b"{}"),
                                      400, "BadRequest", "'nope'"),
    "bad JSON body": (dict(path="/v1/functions/guarded/invoke", content=b"{not json"),
                      400, "BadRequest", "not valid JSON"),
    "unknown function": (dict(path="/v1/functions/nobody/invoke", content=b"{}"), 404, "NotFound", "'nobody'"),
    "no token": (dict(path="/v1/functions/guarded/invoke", content=b"{}", token=None),
                 401, "Unauthorized", "not public"),
    "wrong token": (dict(path="/v1/functions/guarded/invoke", content=b"{}", token="not-the-key"),
                    401, "Unauthorized", "not valid"),
    "not a bearer token": (dict(path="/v1/functions/guarded/invoke", content=b"{}", authorization="Basic eDp5"),
                           401, "Unauthorized", "Bearer"),
    "oversized body": (dict(path="/v1/functions/open/invoke", content=b" " * (MAX_PAYLOAD + 1)),
                       413, "PayloadTooLarge", "limit"),
    "oversized body without a length": (dict(path="/v1/functions/open/invoke", content=oversized_stream),
                                        413, "PayloadTooLarge", "limit"),
    "bad Content-Length": (dict(path="/v1/functions/open/invoke", content=b"{}", headers={"Content-Length": "x"}),
                           400, "BadRequest", "Content-Length"),
}


class TestBadInput:
    """Refusals: the same status and the one error body on both paths."""

    @pytest.mark.parametrize("case", list(BAD_INPUTS))
    async def test_refused_alike(self, frazil, case):
        """Each bad request gets the same refusal from both paths, in frazil's error body."""
        request, status, error_type, words = BAD_INPUTS[case]
        fast, documented = await both(frazil, **request)
        body = assert_alike(fast, documented, status)
        assert body["success"] is False
        assert body["error"]["type"] == error_type
        assert words in body["message"] and body["message"] == body["error"]["message"]

    async def test_nothing_ran(self, frazil):
        """No refused request reached a runtime (the fake counts every invoke it receives)."""
        for request, *_ in BAD_INPUTS.values():
            await both(frazil, **request)
        assert frazil.sandbox.invocations == []


class TestGoodInput:
    """Accepted requests: the same kind of answer on both paths."""

    async def test_sync_envelope_alike(self, frazil):
        """A sync call answers the same envelope (ids and timings aside) on both paths."""
        fast, documented = await both(frazil, "/v1/functions/guarded/invoke", content=b'{"return": [1, "two"]}')
        assert fast.status_code == documented.status_code == 200
        a, b = fast.json(), documented.json()
        assert a.keys() == b.keys() == {"success", "message", "result", "invocation_id", "cold", "duration_ms"}
        assert (a["success"], a["message"], a["result"]) == (b["success"], b["message"], b["result"]) \
            == (True, "success", [1, "two"])
        assert a["invocation_id"] != b["invocation_id"]

    async def test_async_and_empty_body_alike(self, frazil):
        """?mode=async answers 202 on both paths; an empty body is the event {}."""
        fast, documented = await both(frazil, "/v1/functions/open/invoke?mode=async", content=b"", token=None)
        assert fast.status_code == documented.status_code == 202
        assert fast.json().keys() == documented.json().keys() == {"success", "message", "invocation_id", "status"}
        stats = await frazil.dispatcher.drain(5)
        assert stats.finished == {"succeeded": 2}
        for response in (fast, documented):
            record = await frazil.record(response.json()["invocation_id"])
            assert record["result"] == {}  # the fake answers with the event it received

    async def test_openapi_still_documents_the_modes(self, frazil):
        """The mode is no longer validated by FastAPI, but the OpenAPI document still lists it."""
        spec = (await frazil.documented.get("/openapi.json")).json()
        params = spec["paths"]["/v1/functions/{name}/invoke"]["post"]["parameters"]
        mode = next(p for p in params if p["name"] == "mode")
        assert mode["schema"]["enum"] == ["sync", "async"] and mode["schema"]["default"] == "sync"
