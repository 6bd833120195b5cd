"""The options every benchmark shares, and checking them."""
from __future__ import annotations

import argparse

from bench.source import use_frazil_ref


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sandbox", choices=["auto", "isolated", "plain"], default="auto",
                        help="instance sandbox (auto: isolated if `frazil server` starts with it, else plain)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (at most 10)")
    parser.add_argument("--frazil-ref", metavar="REF",
                        help="benchmark frazil as committed at this git ref (e.g. HEAD) instead of the working tree")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="seconds a run may wait, in all, for the CPUs to be >=85%% idle before its phases "
                             "(other people's test suites share this machine)")
    return parser


def check_duration(args) -> None:
    if not 0 < args.duration <= 10:
        raise SystemExit("--duration must be in (0, 10] seconds")
    if getattr(args, "frazil_ref", None):
        use_frazil_ref(args.frazil_ref)


def add_baseline_options(parser: argparse.ArgumentParser, default_ref: str = "main") -> None:
    """--baseline-ref / --no-baseline: a baseline frazil measured side by side with this one."""
    parser.add_argument("--baseline-ref", default=default_ref, help="git ref of the baseline frazil")
    parser.add_argument("--no-baseline", action="store_true", help="measure no baseline frazil")


def compared_sources(args, this_label: str) -> dict[str, str | None]:
    """{label: the `frazil` package's directory} of the servers a run compares: the baseline
    (exported from --baseline-ref) unless --no-baseline, then this one (None: as selected by
    `bench.source`)."""
    from bench.source import export_frazil_ref

    sources: dict[str, str | None] = {}
    if not args.no_baseline:
        sources[f"baseline ({args.baseline_ref})"] = str(export_frazil_ref(args.baseline_ref))
    sources[this_label] = None
    return sources


def start_run(name: str, args, **data):
    """The opening of every run: options checked, signals handled, the sandbox chosen, the
    machine recorded and announced. Returns (Report, sandbox)."""
    from bench.machine import machine_info
    from bench.processes import install_signal_handlers
    from bench.report import Report
    from bench.server import choose_sandbox

    check_duration(args)
    install_signal_handlers()
    report = Report(name, quiet_wait_s=args.quiet_wait)
    sandbox, note = choose_sandbox(args.sandbox)
    report.data.update(machine=machine_info(), sandbox=sandbox, sandbox_note=note, args=vars(args), **data)
    extra = "".join(f"; {k.replace('_', '-')} {v}" for k, v in data.items())
    print(f"# {name} - sandbox: {sandbox} ({note}){extra}", flush=True)
    return report, sandbox
