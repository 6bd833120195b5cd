"""Shared fixtures: real `frazil server` processes, and helpers to deploy and invoke.

`server_factory(**env)` starts a server in its own data dir on a free port and stops it
(and everything it started) at the end of the test; `server` is one shared default server
for tests that only deploy and invoke. Nothing here sleeps to wait: readiness is polled
with a deadline.
"""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from frazil.settings import ENV_REQUIRE_SERVICES

VENV_BIN = Path(sys.executable).parent
FRAZIL = str(VENV_BIN / "frazil")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def isolated_sandbox_problem() -> str | None:
    """Why the isolated sandbox cannot run here, or None when it can."""
    from frazil.sandbox.select import make_sandbox
    from frazil.settings import Settings

    try:
        make_sandbox(Settings(sandbox="isolated"))
    except Exception as exc:  # SandboxUnavailable, with the probe's message
        return f"the isolated sandbox is not available: {exc}"
    return None


SANDBOX_PROBLEM = isolated_sandbox_problem()
# Ordinary tests run in the real sandbox wherever it works; hostile tests demand it.
TEST_SANDBOX = os.environ.get("FRAZIL_TEST_SANDBOX") or ("plain" if SANDBOX_PROBLEM else "isolated")
needs_sandbox = pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=SANDBOX_PROBLEM or "")


def require_service(reason: str):
    """Skip for a missing external service, unless CI demands the services exist."""
    if os.environ.get(ENV_REQUIRE_SERVICES) == "1":
        pytest.fail(f"{reason} (and {ENV_REQUIRE_SERVICES}=1)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def host_mounts_mentioning(text: str) -> list[str]:
    """This process's mount table lines that mention `text` (a leaked mount shows here)."""
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if text in line]


def zip_files(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def tar_files(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class RunningServer:
    data_dir: Path
    port: int
    env: dict
    process: subprocess.Popen | None = None
    admin_key: str = ""
    _clients: dict = field(default_factory=dict)  # (token, timeout) -> client: one connection each

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "RunningServer":
        log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")
        self.process = subprocess.Popen(
            [FRAZIL, "server", "--port", str(self.port), "--data-dir", str(self.data_dir), "--log-level", "warning"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"frazil server exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, what="frazil server to answer /healthz")
        self.admin_key = self.env.get("FRAZIL_ADMIN_KEY") or (self.data_dir / "admin.key").read_text().strip()
        return self

    def log_text(self) -> str:
        path = self.data_dir.parent / f"server-{self.port}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> "RunningServer":
        self.stop()
        return self.start()

    # --- HTTP -------------------------------------------------------------------------------

    def client(self, token: str | None = "admin", timeout: float = 60.0) -> httpx.Client:
        """A keep-alive client for `token` ("admin": the admin key; None: anonymous), shared
        by every call with the same token on this thread."""
        if token == "admin":
            token = self.admin_key
        key = (token, timeout, threading.get_ident())
        client = self._clients.get(key)
        if client is None:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            client = self._clients[key] = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        return client

    def deploy(self, name: str, files: dict | bytes, expect: int | None = 200, **config) -> httpx.Response:
        bundle = files if isinstance(files, bytes) else zip_files(files)
        response = self.client().put(f"/v1/functions/{name}", files={"bundle": ("b.zip", bundle)},
                                     data={"config": json.dumps(config)})
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    def invoke(self, name: str, event=None, *, mode: str = "sync", token: str | None = "admin",
               expect: int | None = 200) -> dict:
        body = json.dumps({} if event is None else event)
        response = self.client(token).post(f"/v1/functions/{name}/invoke", params={"mode": mode}, content=body)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response.json()

    def invocation(self, invocation_id: str) -> dict:
        response = self.client().get(f"/v1/invocations/{invocation_id}")
        assert response.status_code == 200, response.text
        return response.json()["invocation"]

    def wait_invocation(self, invocation_id: str, timeout: float = 30.0, statuses=None) -> dict:
        final = statuses or {"succeeded", "failed", "timeout", "throttled"}

        def done():
            record = self.invocation(invocation_id)
            return record if record["status"] in final else None

        return wait_until(done, timeout, interval=0.05, what=f"invocation {invocation_id} to finish")

    def cli(self, *args: str, cwd: Path | None = None, input: str | None = None, timeout: float = 120) \
            -> subprocess.CompletedProcess:
        env = dict(os.environ, FRAZIL_URL=self.url, FRAZIL_TOKEN=self.admin_key)
        return subprocess.run([FRAZIL, *args], cwd=cwd, env=env, capture_output=True, text=True, input=input,
                              timeout=timeout)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self.stop()


def _server_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAZIL_")}
    env["FRAZIL_SANDBOX"] = TEST_SANDBOX
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def server_factory(tmp_path_factory):
    """Start real servers: `server_factory(FRAZIL_KEEP_ALIVE_S=1, ...)`; all stopped after the test."""
    started: list[RunningServer] = []

    def start(data_dir: Path | None = None, **env) -> RunningServer:
        base = tmp_path_factory.mktemp("frazil")
        srv = RunningServer(data_dir=data_dir or base / "data", port=free_port(), env=_server_env(env))
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One default server shared by the tests that only deploy and invoke."""
    base = tmp_path_factory.mktemp("frazil-shared")
    srv = RunningServer(data_dir=base / "data", port=free_port(), env=_server_env({}))
    srv.start()
    yield srv
    srv.close()


@pytest.fixture
def unique_name(request) -> str:
    """A function name unique to this test (the shared server outlives tests)."""
    import re
    import secrets

    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    return f"t-{base}-{secrets.token_hex(3)}"
