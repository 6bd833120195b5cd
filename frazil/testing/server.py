"""`LocalServer`: a real `frazil server` process on 127.0.0.1, for tests and benchmarks.

    with LocalServer(env={"FRAZIL_SANDBOX": "plain"}) as srv:
        srv.deploy("hello", {"index.py": "def main(event, context):\\n    return 'hi'\\n"})
        assert srv.invoke("hello")["result"] == "hi"

Lifecycle: `start()` launches the server in its own session on a free port and returns once
`GET /healthz` answers 200 (polled with a deadline; a server that exits meanwhile fails at once
with its log's tail). `stop(sig)` signals the server process alone and waits, as an operator or
a crash would: what the server leaves behind is the server's business, and tests check it.
`start()` again restarts it on the same port and data dir. `close()` is the cleanup: HTTP
clients closed, the server stopped, then every process left of its session killed; a data dir
the harness made itself is removed with the log, unless `keep_log`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from frazil.settings import ENV_TOKEN, ENV_URL, Settings
from frazil.testing.bundles import folder_files, zip_files
from frazil.testing.processes import Session
from frazil.testing.waiting import SLOWDOWN, TimedOut, wait_until

HOST = "127.0.0.1"
# The timeout of a test's API call (httpx's own default, 5 s, is too short on a loaded machine:
# a registration or a login hashes a password with argon2id, 64 MiB and 3 passes).
HTTP_TIMEOUT_S = 60.0 * SLOWDOWN
# Invocation states after which a record no longer changes.
FINAL_STATUSES = frozenset({"succeeded", "failed", "timeout", "throttled"})


class ServerFailed(RuntimeError):
    """The server exited, or did not answer /healthz in time. The message ends with the tail of
    its log (its last line is usually the reason); the whole log stays at `log_path`."""

    def __init__(self, message: str, log_path: Path):
        super().__init__(message)
        self.log_path = log_path


class UnexpectedStatus(AssertionError):
    """An API call answered another status than the caller expected. An AssertionError, as the
    `assert` it replaces in a test: the test fails with the response in its message."""

    def __init__(self, response: httpx.Response, expected: int):
        super().__init__(f"{response.request.method} {response.request.url.path}: expected {expected}, "
                         f"got {response.status_code}: {response.text[:2000]}")
        self.response = response
        self.expected = expected


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def default_command() -> list[str]:
    """The `frazil` script installed beside the running interpreter."""
    return [str(Path(sys.executable).parent / "frazil")]


def hermetic_environ() -> dict[str, str]:
    """This process's environment without FRAZIL_* variables: a server's settings are only
    those its creator passes, whatever the shell that runs the tests has set."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FRAZIL_")}


class LocalServer:
    """A `frazil server` process on 127.0.0.1 with its own data dir (see the module docstring).

    `env` is the server's settings (FRAZIL_* variables; values are str()-ed), laid over
    `base_env` (default: `hermetic_environ()`). `command` runs the frazil CLI (default: the
    `frazil` script beside this interpreter); `role` is its `--role` (cluster mode). Without `data_dir` the harness makes a temporary
    one and `close()` removes it. The log is `<data dir>.log`, beside the data dir, appended
    to across restarts. `http_timeout` is the API clients' default timeout (seconds)."""

    def __init__(self, data_dir: Path | None = None, *, env: Mapping[str, object] | None = None,
                 base_env: Mapping[str, str] | None = None, command: Sequence[str] | None = None,
                 port: int | None = None, http_timeout: float = HTTP_TIMEOUT_S, role: str | None = None,
                 log_level: str = "warning"):
        self.owns_data_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="frazil-server-")) if data_dir is None else Path(data_dir)
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self.port = free_port() if port is None else port
        base = hermetic_environ() if base_env is None else dict(base_env)
        self.env = {**base, **{k: str(v) for k, v in (env or {}).items()}}
        self.command = list(command or default_command())
        self.http_timeout = http_timeout
        self.role = role  # `--role` (None: the server's default, all)
        self.log_level = log_level  # `--log-level`: "info" shows each invocation's egress requests
        self.admin_key = ""
        self.session: Session | None = None  # the current run's; a restart makes a new one
        self._past_sessions: list[Session] = []  # runs before a restart: swept by close() too
        # One keep-alive client per (token, timeout, thread): httpx clients are not shared
        # between threads, and a test's calls reuse one connection.
        self._clients: dict[tuple, httpx.Client] = {}

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def process(self) -> subprocess.Popen:
        if self.session is None:
            raise RuntimeError("the server was never started")
        return self.session.popen

    @property
    def what(self) -> str:
        return f"frazil server on port {self.port}"

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> "LocalServer":
        """Launch the server and wait until /healthz answers 200 (`timeout` s, stretched by
        SLOWDOWN); on failure nothing of it is left running and `ServerFailed` says why."""
        with open(self.log_path, "ab") as log:
            popen = subprocess.Popen(
                [*self.command, "server", "--port", str(self.port), "--data-dir", str(self.data_dir),
                 "--log-level", self.log_level, *(["--role", self.role] if self.role else [])],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.data_dir.parent)
        if self.session is not None:
            self._past_sessions.append(self.session)
        self.session = Session(popen)
        try:
            wait_until(self._healthy, timeout, what=f"{self.what} to answer /healthz")
        except TimedOut:
            self._abandon()
            raise ServerFailed(f"{self.what} did not answer /healthz within {timeout * SLOWDOWN:g} s"
                               + self._log_tail(), self.log_path) from None
        except BaseException:
            self._abandon()
            raise
        self.admin_key = self.env.get(Settings.env_name("admin_key")) or (self.data_dir / "admin.key").read_text().strip()
        return self

    def _healthy(self) -> bool:
        if not self.session.running():
            raise ServerFailed(f"{self.what} exited with {self.process.returncode}" + self._log_tail(),
                               self.log_path)
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Send `sig` to the server process alone and wait for it to exit (SIGKILL to it after
        `timeout` s). Returns its exit code; None if it was never started."""
        if self.session is None:
            return None
        if self.session.running():
            self.session.signal(sig)
            if self.session.wait(timeout) is None:
                self.session.signal(signal.SIGKILL)
                self.session.wait(5)
        return self.process.returncode

    def close(self, keep_log: bool = False) -> None:
        """Clean up after the server: clients closed, server stopped, every process left of its
        session killed, and a data dir the harness made removed (with the log unless `keep_log`)."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self.session is not None:
            self.session.remember()  # its tree while whole: orphans leave it when the server exits
            self.stop()
            for session in [*self._past_sessions, self.session]:
                session.sweep()
            remove_sandbox_leftovers(self.data_dir)
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            if not keep_log:
                self.log_path.unlink(missing_ok=True)

    def _abandon(self) -> None:
        """After a failed start: every process of the server killed, a data dir the harness
        made removed; the log stays, for the reader of the failure."""
        self.session.remember()
        self.stop(signal.SIGKILL)
        for session in [*self._past_sessions, self.session]:
            session.sweep()
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(keep_log=exc_type is not None)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _log_tail(self, lines: int = 20) -> str:
        return "".join("\n" + line for line in self.log_text().splitlines()[-lines:])

    # --- HTTP API ----------------------------------------------------------------------------

    def client(self, token: str | None = "admin", timeout: float | None = None) -> httpx.Client:
        """A keep-alive client for `token` ("admin": the admin key; None: anonymous), shared
        by every call with the same token and timeout on this thread."""
        timeout = self.http_timeout if timeout is None else timeout
        if token == "admin":
            token = self.admin_key
        key = (token, timeout, threading.get_ident())
        client = self._clients.get(key)
        if client is None:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            client = self._clients[key] = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        return client

    def deploy(self, name: str, bundle: dict[str, str | bytes] | bytes | Path, expect: int | None = 200,
               **config) -> httpx.Response:
        """Deploy `bundle` (files, a zip or tar.gz, or a folder) with the deploy settings `config`."""
        if isinstance(bundle, Path):
            bundle = folder_files(bundle)
        data = bundle if isinstance(bundle, bytes) else zip_files(bundle)
        response = self.client().put(f"/v1/functions/{name}", files={"bundle": ("b.zip", data)},
                                     data={"config": json.dumps(config)})
        return _expect(response, expect)

    def invoke(self, name: str, event=None, *, mode: str = "sync", token: str | None = "admin",
               expect: int | None = 200) -> dict:
        """Invoke `name` with `event` (JSON-encoded; {} by default); the answer's JSON."""
        body = json.dumps({} if event is None else event)
        response = self.client(token).post(f"/v1/functions/{name}/invoke", params={"mode": mode}, content=body)
        return _expect(response, expect).json()

    def invocation(self, invocation_id: str) -> dict:
        response = self.client().get(f"/v1/invocations/{invocation_id}")
        return _expect(response, 200).json()["invocation"]

    def wait_invocation(self, invocation_id: str, timeout: float = 30.0, statuses=None) -> dict:
        """The invocation's record once its status is one of `statuses` (default: final)."""
        final = statuses or FINAL_STATUSES

        def done():
            record = self.invocation(invocation_id)
            return record if record["status"] in final else None

        return wait_until(done, timeout, interval=0.05, what=f"invocation {invocation_id} to finish")

    def metrics(self) -> str:
        """The Prometheus text of /metrics (read as the admin)."""
        return httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {self.admin_key}"},
                         timeout=10).text

    def cli(self, *args: str, cwd: Path | None = None, input: str | None = None, timeout: float = 120) \
            -> subprocess.CompletedProcess:
        """Run the `frazil` CLI against this server as the admin."""
        env = dict(os.environ, **{ENV_URL: self.url, ENV_TOKEN: self.admin_key})
        return subprocess.run([*self.command, *args], cwd=cwd, env=env, capture_output=True, text=True,
                              input=input, timeout=timeout)


def _expect(response: httpx.Response, expected: int | None) -> httpx.Response:
    if expected is not None and response.status_code != expected:
        raise UnexpectedStatus(response, expected)
    return response


def remove_sandbox_leftovers(data_dir: Path) -> int:
    """Remove the instance cgroups a server on `data_dir` left when it was killed (its next start
    would; a test that SIGKILLs a server and never restarts it must not leave them behind).
    Answers how many there were; nothing to do without the isolated sandbox's cgroups."""
    from frazil.sandbox.cgroups import scope_for
    from frazil.sandbox.probe import discover

    try:
        backend = discover(scope_for(data_dir))
    except OSError:
        return 0
    if backend is None:
        return 0
    names = backend.instance_names()
    for name in names:
        cgroup = backend.attach(name)
        cgroup.kill_all()
        cgroup.remove(timeout_s=5.0)
    backend.remove_scope()
    return len(names)

