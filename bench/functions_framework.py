"""Google's functions-framework (the `bench` extra) serving the hello function without any
isolation: the baseline of warm throughput (issue 15). One module, used by `compare` and
`warm_throughput` alike."""
from __future__ import annotations

from pathlib import Path

from bench.client import check_status_200, http_request_bytes
from bench.functions import EVENT
from bench.paths import VENV_BIN
from bench.processes import OwnedProcess, start_listening
from frazil.testing import HOST, free_port

FF_SOURCE = '''\
def hello(request):
    """functions-framework default mode: a Flask request."""
    event = request.get_json(silent=True) or {}
    return {"hello": event.get("name", "world")}


async def hello_async(request):
    """functions-framework --asgi: a Starlette request (an async handler runs on the loop)."""
    body = await request.body()
    event = json.loads(body) if body else {}
    return {"hello": event.get("name", "world")}


import json  # noqa: E402
'''


class FunctionsFramework:
    """`functions-framework --target T --source S [--asgi]` on 127.0.0.1 (no isolation).
    `work` is a directory of the caller's: the source and the log go there."""

    def __init__(self, work: Path, asgi: bool):
        self.asgi = asgi
        self.source = work / "main.py"
        self.source.write_text(FF_SOURCE)
        self.port = free_port()
        self.target = "hello_async" if asgi else "hello"
        self.owned: OwnedProcess | None = None
        self.log_path = work / f"ff-{'asgi' if asgi else 'default'}.log"
        self.argv = [str(VENV_BIN / "functions-framework"), "--target", self.target, "--source", str(self.source),
                     "--host", HOST, "--port", str(self.port)] + (["--asgi"] if asgi else [])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.owned.popen.pid

    def start(self) -> "FunctionsFramework":
        self.owned = start_listening(self.argv, f"functions-framework on port {self.port}", self.port, self.log_path,
                                     self.source.parent)
        return self

    def stop(self) -> None:
        if self.owned is not None:
            self.owned.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def invoke_request(self) -> bytes:
        return http_request_bytes("POST", "/", self.port, body=EVENT, headers={"Content-Type": "application/json"})


def ff_check(status: int, body: bytes) -> None:
    check_status_200(status, body)
    if b'"hello"' not in body:
        raise RuntimeError(f"unexpected functions-framework answer: {body[:200]!r}")


def ff_version() -> str:
    try:
        from importlib.metadata import version

        return version("functions-framework")
    except Exception:
        return "?"
