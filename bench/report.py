"""What a run prints and keeps: markdown tables on stdout, and every figure in
`bench/results/NAME-<time>.json` and `NAME-latest.json`."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.machine import wait_for_quiet
from bench.paths import REPO, RESULTS_DIR


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return f"{x:,}"
    if x != x:  # nan
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def markdown_table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in cells[1:]:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(lines)


def print_table(title: str, headers: list[str], rows: list[list]) -> str:
    text = f"\n### {title}\n\n{markdown_table(headers, rows)}\n"
    print(text, flush=True)
    return text


def save_results(name: str, data: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    text = json.dumps(data, indent=2, default=str)
    path.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    print(f"\nresults written to {path.relative_to(REPO)}", flush=True)
    return path


@dataclass
class Report:
    """Collects the tables a benchmark prints, for its JSON results."""

    name: str
    data: dict = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)

    quiet_wait_s: float = 120.0

    def quiet(self, what: str) -> dict:
        """Wait for a quiet machine before a phase; the waits of one run share one budget."""
        seen = wait_for_quiet(what, max(0.0, self.quiet_wait_s))
        self.quiet_wait_s -= seen["waited_s"]
        self.data.setdefault("machine_state", []).append(seen)
        return seen

    def table(self, title: str, headers: list[str], rows: list[list]) -> None:
        self.tables.append(print_table(title, headers, rows))

    def save(self) -> Path:
        self.data["markdown"] = "\n".join(self.tables)
        return save_results(self.name, self.data)
