"""Soak: mixed load against one real server for a while, watching its resources over time.

    .venv/bin/python -m bench.soak [--seconds 300] [--interval 5] [--load 1.0]
                                   [--database-url URL] [--sandbox auto|isolated|plain] [--json PATH]

The load, one thread per kind, each paced to its rate (ops/s, times `--load`):
  sync-warm   a tiny function, always warm                              (LOAD below)
  sync-cold   a new version of a function deployed, then its first call: a cold start
  async       202'd invocations of a short sleeper; all must end final after the run
  data-write  table records inserted, patched and deleted
  data-read   filtered finds on the same table
  failing     a function that raises (an answered failure: 200, success false)
  loggy       a function printing a thousand lines per call

Every `--interval` seconds it samples the server process (RSS, open fds, threads), its
process tree, the instances (`/metrics`), the instance cgroups of its scope and the size of
the SQLite files, and prints a row. At the end: each metric's growth slope per minute over
the samples after the first fifth (the warm-up: caches, instance pool), and a verdict that
is `flat` when every slope stays under its bound (SLOPE_BOUNDS). Unexpected answers (5xx,
connection errors, an envelope that is not what the function does) are counted per kind.
Exit status: 0 when the verdict is flat, there was no unexpected answer and every async
invocation ended; 1 otherwise. Every sample and count goes to bench/results/soak-*.json, or
to `--json PATH` instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.machine import machine_info
from bench.metrics import metric_sum
from bench.processes import install_signal_handlers
from bench.report import Report
from bench.server import FrazilServer, choose_sandbox
from frazil.testing.processes import descendants, process_table

LOAD = {"sync-warm": 40.0, "sync-cold": 0.5, "async": 5.0, "data-write": 10.0, "data-read": 10.0,
        "failing": 2.0, "loggy": 2.0}
# Growth per minute above which a metric is not flat (after the warm-up).
SLOPE_BOUNDS = {"rss_mb": 2.0, "fds": 2.0, "threads": 1.0, "processes": 2.0, "cgroups": 2.0}
TABLE = "soak"
FUNCTIONS = {
    "warm": "def main(event, context):\n    return {'n': event.get('n')}\n",
    "sleeper": "import time\ndef main(event, context):\n    time.sleep(0.02)\n    return 'slept'\n",
    "failing": "def main(event, context):\n    raise ValueError('soak failure ' + str(event.get('n')))\n",
    "loggy": "def main(event, context):\n    for i in range(1000):\n        print('line', i, 'x' * 60)\n"
             "    return 'logged'\n",
}
COLD_SOURCE = "VERSION = {v}\ndef main(event, context):\n    return {{'version': VERSION}}\n"
FINAL = {"succeeded", "failed", "timeout", "throttled", "expired"}


class Load:
    """The workers, their counts and their async invocation ids."""

    def __init__(self, srv: FrazilServer, load: float):
        self.srv = srv
        self.load = load
        self.stop = threading.Event()
        self.ok: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.async_ids: list[str] = []
        self.lock = threading.Lock()
        self.cold_version = 0

    def run(self, kind: str) -> None:
        period = 1.0 / (LOAD[kind] * self.load)
        step = getattr(self, "_" + kind.replace("-", "_"))
        next_at = time.monotonic()
        n = 0
        with httpx.Client(base_url=self.srv.url, headers=self.srv.auth, timeout=60) as client:
            while not self.stop.is_set():
                n += 1
                try:
                    problem = step(client, n)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    if problem:
                        self.unexpected[kind] += 1
                        self.examples.setdefault(kind, problem[:300])
                    else:
                        self.ok[kind] += 1
                next_at += period
                self.stop.wait(max(0.0, next_at - time.monotonic()))

    def _invoke(self, client: httpx.Client, name: str, event: dict, mode: str = "sync") -> httpx.Response:
        return client.post(f"/v1/functions/{name}/invoke", params={"mode": mode}, json=event)

    def _sync_warm(self, client, n):
        r = self._invoke(client, "warm", {"n": n})
        return None if r.status_code == 200 and r.json().get("result") == {"n": n} else _said(r)

    def _sync_cold(self, client, n):
        self.cold_version += 1
        bundle = {"index.py": COLD_SOURCE.format(v=self.cold_version)}
        deployed = self.srv.server.deploy("cold", bundle, expect=None, memory=128)
        if deployed.status_code != 200:
            return "deploy: " + _said(deployed)
        r = self._invoke(client, "cold", {})
        body = r.json() if r.status_code == 200 else {}
        return None if body.get("result") == {"version": self.cold_version} and body.get("cold") else _said(r)

    def _async(self, client, n):
        r = self._invoke(client, "sleeper", {"n": n}, mode="async")
        if r.status_code != 202:
            return _said(r)
        with self.lock:
            self.async_ids.append(r.json()["invocation_id"])
        return None

    def _data_write(self, client, n):
        r = client.post(f"/v1/tables/{TABLE}/records", json={"n": n, "kind": n % 7, "text": "t" * (n % 200)})
        if r.status_code != 200:
            return _said(r)
        record_id = r.json()["record"]["id"]
        if n % 2:
            r = client.patch(f"/v1/tables/{TABLE}/records/{record_id}", json={"patched": True})
        elif n % 3 == 0:
            r = client.delete(f"/v1/tables/{TABLE}/records/{record_id}")
        return None if r.status_code == 200 else _said(r)

    def _data_read(self, client, n):
        r = client.get(f"/v1/tables/{TABLE}/records", params={"where": json.dumps({"kind": n % 7}),
                                                              "order": "-created_at", "limit": 20})
        return None if r.status_code == 200 and r.json()["success"] else _said(r)

    def _failing(self, client, n):
        r = self._invoke(client, "failing", {"n": n})
        error = r.json().get("error") if r.status_code == 200 else None
        return None if error and f"soak failure {n}" in error.get("message", "") else _said(r)

    def _loggy(self, client, n):
        r = self._invoke(client, "loggy", {})
        return None if r.status_code == 200 and r.json().get("result") == "logged" else _said(r)


def _said(r: httpx.Response) -> str:
    return f"HTTP {r.status_code}: {r.text[:200]}"


def sample(srv: FrazilServer, started: float, load: Load) -> dict:
    """One row: the server's resources now."""
    status = Path(f"/proc/{srv.pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    metrics = srv.metrics()
    data_dir = srv.server.data_dir
    with load.lock:
        ops, bad = sum(load.ok.values()), sum(load.unexpected.values())
    return {
        "t_s": round(time.monotonic() - started, 1),
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": len(os.listdir(f"/proc/{srv.pid}/fd")),
        "threads": int(fields["Threads"]),
        "processes": len(descendants(srv.pid, process_table())),
        "instances": metric_sum(metrics, "frazil_instances"),
        "cgroups": instance_cgroups(data_dir),
        "db_mb": sum(p.stat().st_size for p in data_dir.glob("frazil.db*")) / 2**20,
        "ops": ops,
        "unexpected": bad,
    }


def instance_cgroups(data_dir: Path) -> int | None:
    """Instance cgroups (generic ones included) of the platform on `data_dir`; None without any."""
    from frazil.sandbox.cgroups import scope_for
    from frazil.sandbox.probe import discover

    backend = discover(scope_for(data_dir))
    return None if backend is None else len(backend.instance_names())


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return 0.0 if var == 0 else 60 * sum((t - mx) * (v - my) for t, v in points) / var


def verdict(samples: list[dict]) -> tuple[dict[str, float], list[str]]:
    """Each watched metric's slope per minute after the warm-up, and the ones above their bound."""
    steady = samples[len(samples) // 5:]
    slopes = {}
    for key in SLOPE_BOUNDS:
        points = [(s["t_s"], s[key]) for s in steady if s[key] is not None]
        if points:
            slopes[key] = slope_per_min(points)
    growing = [f"{k} +{v:.2f}/min" for k, v in slopes.items() if v > SLOPE_BOUNDS[k]]
    return slopes, growing


def unfinished_async(srv: FrazilServer, ids: list[str], wait_s: float) -> list[str]:
    """The async invocations not final after waiting up to `wait_s` for them."""
    deadline = time.monotonic() + wait_s
    left = list(ids)
    with httpx.Client(base_url=srv.url, headers=srv.auth, timeout=30) as client:
        while left and time.monotonic() < deadline:
            left = [i for i in left if client.get(f"/v1/invocations/{i}").json()["invocation"]["status"]
                    not in FINAL]
            if left:
                time.sleep(0.5)
    return left


COLUMNS = ["t_s", "rss_mb", "fds", "threads", "processes", "instances", "cgroups", "db_mb", "ops", "unexpected"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the load runs")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--load", type=float, default=1.0, help="multiplies every kind's rate")
    parser.add_argument("--database-url", help="run the server on this (PostgreSQL) database instead of SQLite")
    parser.add_argument("--sandbox", choices=["auto", "isolated", "plain"], default="auto")
    parser.add_argument("--json", type=Path, help="also write the samples and counts here")
    args = parser.parse_args(argv)
    install_signal_handlers()
    report = Report("soak", quiet_wait_s=0)
    sandbox, note = choose_sandbox(args.sandbox)
    env = {"FRAZIL_TIER_LIMIT_128": "200", "FRAZIL_KEEP_ALIVE_S": "30"}
    if args.database_url:
        env["FRAZIL_DATABASE_URL"] = args.database_url
    print(f"# soak - {args.seconds:g} s, load x{args.load:g}, sandbox {sandbox}, "
          f"{'PostgreSQL' if args.database_url else 'SQLite'}", flush=True)
    samples: list[dict] = []
    with FrazilServer(sandbox, env) as srv:
        for name, source in FUNCTIONS.items():
            srv.deploy(name, {"index.py": source})
        srv.http.put(f"/v1/tables/{TABLE}").raise_for_status()
        load = Load(srv, args.load)
        started = time.monotonic()
        workers = [threading.Thread(target=load.run, args=(kind,), name=kind, daemon=True) for kind in LOAD]
        for w in workers:
            w.start()
        print(" | ".join(COLUMNS), flush=True)
        try:
            while True:
                samples.append(sample(srv, started, load))
                print(" | ".join(_cell(samples[-1][c]) for c in COLUMNS), flush=True)
                left = args.seconds - (time.monotonic() - started)
                if left <= 0:
                    break
                time.sleep(min(args.interval, left))
        finally:
            load.stop.set()
            for w in workers:
                w.join(90)
        unfinished = unfinished_async(srv, load.async_ids, 60)
        samples.append(sample(srv, started, load))  # after the load: what stays

    slopes, growing = verdict(samples[:-1])
    result = "flat" if not growing else "GROWING: " + ", ".join(growing)
    report.data.update(machine=machine_info(), sandbox=sandbox, args={k: str(v) for k, v in vars(args).items()},
                       samples=samples, ok=dict(load.ok), unexpected=dict(load.unexpected), examples=load.examples,
                       async_total=len(load.async_ids), async_unfinished=unfinished, slopes_per_min=slopes,
                       verdict=result)
    report.table("Resources over time (the last row: after the load stopped and async work drained)",
                 COLUMNS, [[s[c] for c in COLUMNS] for s in samples])
    report.table("Operations", ["kind", "ok", "unexpected", "first unexpected"],
                 [[k, load.ok[k], load.unexpected[k], load.examples.get(k, "")] for k in LOAD])
    report.table("Growth after the warm-up (per minute)", ["metric", "slope", "bound"],
                 [[k, v, SLOPE_BOUNDS[k]] for k, v in slopes.items()])
    print(f"async invocations: {len(load.async_ids)}, not final a minute after the load: {len(unfinished)}")
    print(f"verdict: {result}")
    if args.json:
        args.json.write_text(json.dumps(report.data, indent=2, default=str))
    else:
        report.save()
    return 0 if not growing and not load.unexpected and not unfinished else 1


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
