"""HTTP layers weighed (issue 15 asks whether a faster HTTP layer, e.g. granian's RSGI, would
raise frazil's warm throughput): the same trivial endpoint - POST, the body read, a fixed JSON
envelope answered; no function, no isolation - served by uvicorn with httptools and uvloop
(what `frazil server` runs), by granian's ASGI and by granian's RSGI interface, one process
and one worker each (the `bench` extra), measured as warm_throughput measures: wrk -t2 -c16
per round, in rotating order, with the CPU time of each server's processes (all threads) read
from /proc.

    .venv/bin/python -m bench.http_layers [--rounds 3] [--duration 5] [--connections 16]

What it answers: the HTTP layer's own CPU µs per request in each - the most a different layer
could take off frazil's server time per request - and how far each gets in req/s with the
machine's two cores.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import base_parser, start_run
from bench.functions import EVENT
from bench.invoke_latency import warm_up_wrk
from bench.paths import VENV_BIN
from bench.processes import OwnedProcess, start_listening
from bench.warm_throughput import Target, measure, summary
from frazil.testing import HOST, free_port
from frazil.testing.processes import descendants

APP_SOURCE = '''\
BODY = b'{"success":true,"message":"success","result":{"hello":"bench"}}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def rsgi(scope, proto):
    await proto()
    proto.response_bytes(200, [("content-type", "application/json")], BODY)
'''

LAYERS = {
    "uvicorn (httptools, uvloop), ASGI": lambda port: [
        str(VENV_BIN / "uvicorn"), "app:asgi", "--host", HOST, "--port", str(port), "--loop", "uvloop",
        "--http", "httptools", "--no-access-log", "--log-level", "warning"],
    "granian, ASGI": lambda port: [
        str(VENV_BIN / "granian"), "--interface", "asgi", "--host", HOST, "--port", str(port), "--workers", "1",
        "--no-ws", "--log-level", "warning", "app:asgi"],
    "granian, RSGI": lambda port: [
        str(VENV_BIN / "granian"), "--interface", "rsgi", "--host", HOST, "--port", str(port), "--workers", "1",
        "--no-ws", "--log-level", "warning", "app:rsgi"],
}


def start(label: str, work: Path) -> tuple[OwnedProcess, Target]:
    port = free_port()
    owned = start_listening(LAYERS[label](port), f"{label} on port {port}", port,
                            work / f"{label.split(' ')[0]}-{port}.log", work)
    pid = owned.popen.pid
    target = Target(label, f"http://{HOST}:{port}", "/", {"Content-Type": "application/json"},
                    lambda: {"server": [pid, *descendants(pid)], "instances": []})
    return owned, target


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per server, in rotating order")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    report, _ = start_run("http_layers", args)
    work = Path(tempfile.mkdtemp(prefix="bench-http-layers-"))
    (work / "app.py").write_text(APP_SOURCE)
    owned: list[OwnedProcess] = []
    targets: list[Target] = []
    try:
        for label in LAYERS:
            process, target = start(label, work)
            owned.append(process)
            targets.append(target)
            warm_up_wrk(target.url, target.path, target.headers, args.connections, body=EVENT)
        for i in range(args.rounds):
            for t in targets[i % len(targets):] + targets[:i % len(targets)]:
                report.quiet(f"round {i + 1}: {t.label}")
                t.runs.append(measure(t, args.connections, args.duration))
                r = t.runs[-1]
                print(f"round {i + 1} {t.label}: {r['rps']:,.0f} req/s, server {r['server_cpu_us']:.1f} µs/req",
                      flush=True)
    finally:
        for process in owned:
            process.stop()
        shutil.rmtree(work, ignore_errors=True)

    sums = {t.label: summary(t) for t in targets}
    report.data["runs"] = {t.label: t.runs for t in targets}
    report.data["summary"] = sums
    first = next(iter(sums.values()))
    report.table(f"The same trivial POST at {args.connections} connections, wrk -t2, {args.duration:g} s x "
                 f"{args.rounds} rounds (median of rounds)",
                 ["HTTP layer", "req/s per round", "req/s", "p50 ms", "server CPU µs/req",
                  "req/s / uvicorn's", "CPU µs/req / uvicorn's", "non-2xx"],
                 [[t.label, " / ".join(f"{r['rps']:,.0f}" for r in t.runs), s["rps"], s["p50"], s["server_cpu_us"],
                   s["rps"] / first["rps"], s["server_cpu_us"] / first["server_cpu_us"],
                   s["non_2xx"] + s["socket_errors"]]
                  for t, s in ((t, sums[t.label]) for t in targets)])
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
