"""The frazil server a benchmark measures: `frazil.testing.LocalServer` (the harness the tests
use too), started the benchmarks' way, with the views a measurement needs."""
from __future__ import annotations

import os
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench.client import http_request_bytes
from bench.functions import EVENT
from bench.metrics import parse_prometheus
from bench.processes import register, unregister
from bench.procfs import is_runtime_process, is_spare_instance
from bench.source import frazil_command
from frazil.settings import Settings
from frazil.testing import LocalServer, ServerFailed, zip_files
from frazil.testing.processes import descendants, direct_children, process_table

DEFAULT_CONFIG = {"memory": 128}


class FrazilServer:
    """`frazil server` on a free port with its own data dir, admin key and sandbox.

    Unlike a test's server it keeps this process's FRAZIL_* environment (a run can be tuned
    from the shell), runs the frazil that `bench.source` selects, and is registered with
    `bench.processes` so that Ctrl-C or SIGTERM leaves nothing of it. Its data dir is
    temporary; the log goes with it unless the benchmark failed."""

    def __init__(self, sandbox: str, env: dict[str, str] | None = None, source: str | None = None,
                 role: str | None = None, admin_key: str | None = None):
        self.sandbox = sandbox
        self.admin_key = admin_key or secrets.token_urlsafe(24)  # a cluster's nodes share one
        command, command_env = frazil_command(source)  # source: another frazil package's directory
        self.server = LocalServer(
            env={Settings.env_name("sandbox"): sandbox, Settings.env_name("admin_key"): self.admin_key, **(env or {}), **command_env},
            base_env=os.environ, command=command, http_timeout=120, role=role)
        self.what = f"frazil server ({sandbox}{', ' + role if role else ''}) on port {self.port}"

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def pid(self) -> int:
        return self.server.pid

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def start(self, timeout_s: float = 30.0) -> "FrazilServer":
        register(self)
        try:
            self.server.start(timeout_s)
        except BaseException:
            self.stop(keep_log=True)
            raise
        return self

    def stop(self, keep_log: bool = False) -> None:
        self.server.close(keep_log=keep_log)
        unregister(self)
        if keep_log and self.server.log_path.exists():
            print(f"the server's log is kept in {self.server.log_path}", file=sys.stderr)

    def __enter__(self) -> "FrazilServer":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(keep_log=exc_type is not None)

    # --- HTTP API (setup only: measurements use KeepAliveClient or wrk) ---

    @property
    def http(self):
        """An httpx client with the admin key."""
        return self.server.client()

    def deploy(self, name: str, files: dict[str, str | bytes] | bytes, config: dict | None = None) -> dict:
        return self.server.deploy(name, files, **(config or DEFAULT_CONFIG)).json()

    def deploy_many(self, names: list[str], files: dict[str, str | bytes], config: dict | None = None,
                    workers: int = 4) -> float:
        """Deploy the same bundle under many names; returns the seconds it took."""
        bundle = zip_files(files)
        started = time.perf_counter()

        def one(chunk: list[str]) -> None:
            for name in chunk:
                self.server.deploy(name, bundle, **(config or DEFAULT_CONFIG))

        # The first deploy alone: it stores the blob and unpacks the code that the others
        # share (concurrent first stores of one blob race in frazil's BlobStore.put).
        one(names[:1])
        rest = names[1:]
        with ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(one, rest[i::workers]) for i in range(workers)]:
                f.result()
        return time.perf_counter() - started

    def metrics(self) -> dict[str, float]:
        return parse_prometheus(self.server.metrics())

    def invoke_request(self, name: str, event: bytes = EVENT) -> bytes:
        return http_request_bytes("POST", f"/v1/functions/{name}/invoke", self.port, body=event,
                                  headers={"Authorization": f"Bearer {self.admin_key}",
                                           "Content-Type": "application/json"})

    def instance_processes(self) -> tuple[dict[int, list[int]], list[int]]:
        """({instance pid: the pids of that instance}, [every other process of the server's]).

        Both sandboxes make each instance's runtime a direct child of the server (plain:
        posix_spawn; isolated: the launcher or the zygote clones with CLONE_PARENT). An instance
        is such a child running a runtime loop, with its descendants. The rest - the isolated
        sandbox's launcher and zygote, and generic instances built ahead of time that no
        function owns yet (cgroup `generic-*`) - is shared overhead, returned apart."""
        table = process_table()
        instances, others = {}, []
        for child in direct_children(self.pid, table):
            tree = [child, *descendants(child, table)]
            if is_runtime_process(child) and not is_spare_instance(child):
                instances[child] = tree
            else:
                others.extend(tree)
        return instances, others


def choose_sandbox(requested: str) -> tuple[str, str]:
    """("isolated"|"plain", a note). `auto` = isolated if `frazil server` starts with it."""
    if requested != "auto":
        return requested, f"sandbox {requested} (as asked)"
    server = FrazilServer("isolated")
    try:
        server.start(timeout_s=20)
    except ServerFailed as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "it did not start"
        note = f"`frazil server` does not start with the isolated sandbox ({reason}); using plain"
        print(f"note: {note}", file=sys.stderr)
        return "plain", note
    finally:
        server.stop()
    return "isolated", "isolated sandbox (frazil server starts with it)"
