"""Fixtures for cluster mode, on the real services: a PostgreSQL database per test (dropped
after it) and a NATS cluster name per test (its buckets and streams deleted after it).

`cluster_env(db_url, cluster)` is what every node of one test cluster is started with.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading

import pytest

from frazil.cluster.names import all_buckets, all_streams
from frazil.testing import free_port, wait_until
from frazil.settings import ENV_TEST_NATS_URL, Settings
from tests.build.conftest import make_wheel, write_tree  # noqa: F401  (fixtures: the layer tests' projects)
from tests.conftest import make_server, require_service
from tests.postgres import fresh_database
from tests.reliability.conftest import private_database  # noqa: F401  (a fixture: a database a test can cut)

NATS_URL = os.environ.get(ENV_TEST_NATS_URL, "nats://127.0.0.1:4222")
ADMIN_KEY = "cluster-test-admin-key"


@pytest.fixture
async def postgres_url():
    """The SQLAlchemy URL of a new, empty PostgreSQL database, dropped after the test."""
    async with fresh_database("frazil_cluster") as url:
        yield url


@pytest.fixture
async def nats_cluster():
    """A cluster name of this test's own on the test NATS server; its buckets and streams are
    deleted after the test."""
    import nats

    try:
        nc = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=1)
        await nc.jetstream().account_info()
    except Exception as exc:
        require_service(f"NATS with JetStream is not reachable at {NATS_URL} ({type(exc).__name__}: {exc})")
    name = f"t{secrets.token_hex(4)}"
    yield name
    js = nc.jetstream()
    for bucket in all_buckets(name):
        try:
            await js.delete_key_value(bucket)
        except Exception:  # never made (the test failed before): nothing to delete
            pass
    for stream in all_streams(name):
        try:
            await js.delete_stream(stream)
        except Exception:
            pass
    await nc.close()


def cluster_env(database_url: str, cluster: str, **extra) -> dict[str, str]:
    """The FRAZIL_* variables of a node of the test cluster."""
    return {Settings.env_name("nats_url"): NATS_URL, Settings.env_name("cluster"): cluster,
            Settings.env_name("database_url"): database_url, Settings.env_name("admin_key"): ADMIN_KEY,
            **{k: str(v) for k, v in extra.items()}}


def cluster_settings(tmp_path, database_url: str, cluster: str, name: str = "node", **extra) -> Settings:
    """In-process settings of a cluster node with its own data dir."""
    return Settings(data_dir=tmp_path / name, database_url=database_url, cluster=cluster, admin_key=ADMIN_KEY,
                    **{"nats_url": NATS_URL, **extra})


@pytest.fixture
def node_factory(tmp_path_factory):
    """`node_factory(env, role)` → a started LocalServer with its own data dir; all closed after.
    Tests start nodes from several threads at once: pytest's tmp_path_factory is not
    thread-safe (its first use makes the session's base dir, so two threads can each make one),
    hence the lock."""
    started = []
    making_dirs = threading.Lock()

    def start(env: dict, role: str | None = None):
        with making_dirs:
            data_dir = tmp_path_factory.mktemp("node") / "data"
        srv = make_server(data_dir, **env)
        srv.role = role
        started.append(srv)
        return srv.start(timeout=60)

    yield start
    for srv in started:
        srv.close()


# --- a NATS server of the test's own, to stop and start ---------------------------------------

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class PrivateNats:
    """A nats-server with JetStream of this test's own, on a free port with its store in the
    test's tmp dir: restarted by the test, never the machine's shared one."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.store = tmp_path / "nats-store"
        self.log = tmp_path / "nats.log"
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                             "-sd", str(self.store)], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        wait_until(self._listening, 15, what="the private nats-server to listen")

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def private_nats(tmp_path):
    """A private nats-server (PrivateNats), stopped after the test; its store is in tmp_path."""
    if not os.access(NATS_SERVER, os.X_OK):
        require_service(f"no nats-server at {NATS_SERVER}")
    server = PrivateNats(tmp_path)
    server.start()
    yield server
    server.stop()
