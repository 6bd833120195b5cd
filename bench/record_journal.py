"""What the sync-record journal (frazil.store.record_journal) adds to a warm invoke: two servers,
one with `FRAZIL_RECORD_JOURNAL=1` (the default) and one with it off, side by side in one run.

    .venv/bin/python -m bench.record_journal [--sandbox auto|isolated|plain] [--warm 3000]

Both servers run the same tiny function, warm. One client per server, sequential, keep-alive;
the two alternate in blocks of BLOCK invokes (the order swapped every round), with a block of
bare `GET /healthz` round trips to the journaling server between them, so that all three see
the same machine. Prints p50/p90/p99/mean of each (ms), the journal's difference and ratio at
each percentile, and each server's own CPU time per invoke (from /proc, which hardly moves when
other work shares the machine). Then, in this process, what `RecordWriter.submit` costs per
record with and without the journal (the whole of the journal's work on the answer's path),
which the load on the machine hardly moves.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import base_parser, start_run
from bench.client import KeepAliveClient, check_status_200, envelope_checker, http_request_bytes
from bench.invoke_latency import deploy_hello, server_env
from bench.procfs import cpu_seconds
from bench.server import FrazilServer
from bench.stats import summarize

BLOCK = 100
SUBMITS = 20_000


def submit_cost_us() -> dict[str, float]:
    """Mean µs of `RecordWriter.submit` for a warm invoke's record, journal on and off (the
    writer is never started: this is the part that runs before the answer)."""
    from frazil.store.models import InvocationRecord, InvocationStatus
    from frazil.store.record_journal import RecordJournal
    from frazil.store.record_writer import RecordWriter

    def records(prefix: str) -> list[InvocationRecord]:
        now = time.time()
        return [InvocationRecord(id=f"{prefix}{n:026x}", function="hello", version=1, mode="sync",
                                 status=InvocationStatus.SUCCEEDED, created_at=now, attempts=1, cold=False,
                                 instance_id="i" * 28, started_at=now, finished_at=now, duration_ms=0.2,
                                 result='{"hello": "bench"}', logs="", node="n" * 12) for n in range(SUBMITS)]

    out = {}
    with tempfile.TemporaryDirectory() as data_dir:
        for label, journal in (("no journal", None), ("journal", RecordJournal(Path(data_dir)))):
            writer = RecordWriter(store=None, journal=journal)
            batch = records(label[:2])
            t0 = time.perf_counter()
            for r in batch:
                writer.submit(r)
            out[label] = (time.perf_counter() - t0) / SUBMITS * 1e6
            if journal is not None:
                journal.close(empty=True)
    return out
VARIANTS = {"journal": "1", "no journal": "0"}


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=3000, help="warm invokes timed per server")
    parser.add_argument("--warmup", type=int, default=300, help="untimed warm-up invokes per server")
    args = parser.parse_args(argv)
    report, sandbox = start_run("record_journal", args)

    servers = {label: FrazilServer(sandbox, {**server_env(0), "FRAZIL_RECORD_JOURNAL": flag})
               for label, flag in VARIANTS.items()}
    clients: dict[str, KeepAliveClient] = {}
    try:
        for srv in servers.values():
            srv.start()
        requests = {label: srv.invoke_request(deploy_hello(srv)) for label, srv in servers.items()}
        # Before the connections open: the server closes one idle past its keep-alive timeout.
        report.quiet("warm invokes")
        clients = {label: KeepAliveClient(srv.port) for label, srv in servers.items()}
        bare_client = KeepAliveClient(servers["journal"].port)
        bare_request = http_request_bytes("GET", "/healthz", servers["journal"].port)
        for label, client in clients.items():
            client.timed(requests[label], args.warmup, envelope_checker(expect_cold=None))
        bare_client.timed(bare_request, args.warmup, check_status_200)
        samples: dict[str, list[float]] = {label: [] for label in [*VARIANTS, "bare"]}
        cpu = {label: 0.0 for label in VARIANTS}
        check = envelope_checker(expect_cold=False)
        done, round_no = 0, 0
        while done < args.warm:
            k = min(BLOCK, args.warm - done)
            order = list(VARIANTS) if round_no % 2 == 0 else list(reversed(VARIANTS))
            for label in order:
                before = cpu_seconds([servers[label].pid])
                samples[label] += clients[label].timed(requests[label], k, check)
                cpu[label] += cpu_seconds([servers[label].pid]) - before
            samples["bare"] += bare_client.timed(bare_request, k, check_status_200)
            done += k
            round_no += 1
        bare_client.close()
    finally:
        for client in clients.values():
            client.close()
        for srv in servers.values():
            srv.stop()

    summary = {label: summarize(values) for label, values in samples.items()}
    report.data.update(samples_ms=samples, summary=summary,
                       server_cpu_us_per_invoke={label: cpu[label] / args.warm * 1e6 for label in VARIANTS})
    stats = ["p50", "p90", "p99", "mean"]
    on, off, bare = summary["journal"], summary["no journal"], summary["bare"]
    rows = [[label, *(summary[label][s] for s in stats),
             report.data["server_cpu_us_per_invoke"].get(label)] for label in samples]
    rows.append(["journal - no journal", *(on[s] - off[s] for s in stats), None])
    rows.append(["journal / no journal", *(on[s] / off[s] for s in stats), None])
    rows.append(["journal - bare", *(on[s] - bare[s] for s in stats), None])
    report.table(f"Warm invoke with and without the record journal, ms ({args.warm} each; sandbox: {sandbox})",
                 ["server", *stats, "server CPU µs/invoke"], rows)
    submit = submit_cost_us()
    report.data["submit_us"] = submit
    report.table(f"RecordWriter.submit, µs per record ({SUBMITS} in this process)", ["", "µs"],
                 [[label, v] for label, v in submit.items()] + [["journal - no journal",
                                                                 submit["journal"] - submit["no journal"]]])
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
