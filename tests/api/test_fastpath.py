"""What the fast path serves itself and what it leaves to FastAPI: either way the answer is
the documented one, in frazil's JSON body."""
from __future__ import annotations

import pytest


async def test_healthz_alike(frazil):
    """/healthz from the fast path equals the documented route's answer."""
    fast = await frazil.fast.get("/healthz")
    documented = await frazil.documented.get("/healthz")
    assert fast.status_code == documented.status_code == 200
    assert fast.json() == documented.json()
    assert fast.json()["sandbox"] == "fake" and fast.json()["node"] == frazil.platform.node_id


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/v1/functions/echo/invoke", 405),  # only POST invokes
    ("POST", "/v1/functions/echo/extra/invoke", 404),  # a name never holds a slash
    ("POST", "/v1/functions//invoke", 404),  # nor is it empty
])
async def test_left_to_fastapi_alike(frazil, method, path, status):
    """Requests the fast path does not match reach FastAPI and get frazil's error body."""
    await frazil.deploy("echo")
    fast = await frazil.fast.request(method, path, content=b"{}")
    documented = await frazil.documented.request(method, path, content=b"{}")
    assert fast.status_code == documented.status_code == status
    assert fast.json() == documented.json()
    assert fast.json()["success"] is False and fast.json()["message"]
    assert frazil.sandbox.invocations == []
