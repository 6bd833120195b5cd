"""A short run of bench/cluster.py (issue 12's cluster figures): every phase runs on the real
PostgreSQL and NATS with real processes - warm and cold invokes through a gateway beside the
embedded mode, throughput with one and then two CPU-capped invokers - and it leaves nothing
behind: no server, no cgroup, no database, no NATS bucket or stream. Its figures are for the
full run, not asserted here."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bench import cpushare
from tests.cluster.conftest import NATS_URL, nats_cluster, postgres_url  # noqa: F401  (fixtures)
from tests.conftest import TEST_SANDBOX
from tests.postgres import server_url

pytestmark = pytest.mark.usefixtures("postgres_url", "nats_cluster")  # skip without the services


async def _database_exists(name: str) -> bool:
    import asyncpg

    u = make_url(server_url())
    conn = await asyncpg.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                                 database=u.database, timeout=10)
    try:
        return await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) > 0
    finally:
        await conn.close()


async def _cluster_streams(cluster: str) -> list[str]:
    import nats

    nc = await nats.connect(NATS_URL, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=1)
    try:
        return [s.config.name for s in await nc.jetstream().streams_info() if cluster in s.config.name]
    finally:
        await nc.close()


def test_a_short_cluster_run_measures_every_phase_and_cleans_up(tmp_path):
    out = tmp_path / "cluster.json"
    done = subprocess.run([sys.executable, "-m", "bench.cluster", "-n", "20", "--warmup", "5", "--cold", "2",
                           "--invokers", "2", "--gateways", "1", "--functions", "2", "--connections", "2",
                           "--duration", "1", "--rounds", "1", "--warmup-s", "1", "--quiet-wait", "0",
                           "--sandbox", TEST_SANDBOX,
                           "--json", str(out)],
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0 and out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["warm"]["embedded"]["n"] == data["warm"]["cluster"]["n"] == 20
    assert [len(data["cold"][mode]["latency_ms"]) for mode in ("embedded", "cluster")] == [2, 2]
    steps = data["throughput"]
    assert [(s["invokers"], s["connections"]) for s in steps] == [(1, 2), (2, 4)]  # the load grows with N
    assert all(s["requests"] > 0 and s["non_2xx"] == 0 for s in steps), steps
    if cpushare.available() is None:
        assert [len(s["throttled_share"]) for s in steps] == [1, 2]
        assert not Path(data["cgroup"]).exists()
    assert not asyncio.run(_database_exists(data["database"]))
    assert asyncio.run(_cluster_streams(data["cluster"])) == []
    assert _processes_of(data["cluster"]) == []


def _processes_of(cluster: str) -> list[int]:
    """The processes started with this cluster's name in their environment."""
    mark = f"FRAZIL_CLUSTER={cluster}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            pass
    return found
