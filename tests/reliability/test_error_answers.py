"""Errors are answered in one place (frazil.api.errors) and never cost the client its
keep-alive connection: a tiny app with frazil's error handling, served by uvicorn with
frazil's protocol, whose routes fail in each way there is."""
from __future__ import annotations

import threading

import pytest
import uvicorn
from fastapi import FastAPI

from frazil.api.errors import install_error_handlers
from frazil.api.responses import JSONResponse
from frazil.errors import NotFound
from frazil.serving import protocol_class
from frazil.testing import free_port, wait_until
from tests.reliability.conftest import RawConnection


def tiny_app() -> FastAPI:
    app = FastAPI(default_response_class=JSONResponse)
    install_error_handlers(app)

    @app.get("/bug")
    async def bug():
        raise RuntimeError("a bug")

    @app.get("/refusal")
    async def refusal():
        raise NotFound("nothing here")

    @app.get("/disk")
    async def disk():
        raise OSError(28, "No space left on device")

    @app.get("/ok")
    async def ok():
        return {"success": True}

    return app


@pytest.fixture
def served():
    """The tiny app on a real uvicorn server in a thread; stopped after the test."""
    config = uvicorn.Config(tiny_app(), host="127.0.0.1", port=free_port(), log_level="critical",
                            http=protocol_class(10.0, 100), lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, what="uvicorn to start")
    yield config.port
    server.should_exit = True
    thread.join(10)


def test_a_500_keeps_the_connection(served):
    """Ten unexpected exceptions in a row on one connection: ten 500s with the JSON body, and
    the connection still serves the next request (it was closed after each before)."""
    conn = RawConnection(served)
    try:
        for _ in range(10):
            status, _, body = conn.request("GET", "/bug")
            assert status == 500 and b'"internal error: RuntimeError"' in body
        assert conn.request("GET", "/refusal")[0] == 404
        status, headers, body = conn.request("GET", "/disk")
        assert status == 503 and headers["retry-after"] and b"disk is full" in body
        assert conn.request("GET", "/ok")[0] == 200
    finally:
        conn.close()
