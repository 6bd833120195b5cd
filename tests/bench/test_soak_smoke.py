"""A short run of bench/soak.py (the 5-minute soak of issue 11): the mixed load reaches a real
server, every kind of operation is answered as expected, and the resource samples are taken.
Its figures (slopes, the verdict) are for the full run, not asserted here."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import TEST_SANDBOX

COLUMNS = ("rss_mb", "fds", "threads", "processes", "db_mb")  # > 0 in every sample


def test_a_short_soak_runs_every_kind_and_samples_the_server(tmp_path):
    out = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, "-m", "bench.soak", "--seconds", "8", "--interval", "1",
                           "--sandbox", TEST_SANDBOX, "--json", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["unexpected"] == {}, data["examples"]
    assert set(data["ok"]) == {"sync-warm", "sync-cold", "async", "data-write", "data-read", "failing", "loggy"}
    assert data["async_unfinished"] == []
    samples = data["samples"]
    assert len(samples) >= 3
    for s in samples:
        assert all(s[c] > 0 for c in COLUMNS), s
    # Instances: none may exist yet at the first sample (the load just began), some while it runs.
    assert all(s["instances"] is not None for s in samples) and any(s["instances"] > 0 for s in samples), samples
    assert samples[-1]["ops"] == sum(data["ok"].values())
    assert "verdict" in done.stdout
