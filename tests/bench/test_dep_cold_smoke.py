"""A short run of bench/dep_cold.py (issue 15) on a tiny local wheel, so no registry is needed:
a real deploy builds the layer, the cold invokes answer cold, and the outside measurements
(fresh interpreter, fork of one that imported the layer) find the layer's package by its
metadata; on the server that imports layers ahead, the cold starts after the first take that path. The figures themselves are for the full run, not asserted here."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import TEST_SANDBOX


@pytest.mark.timeout(600)  # two servers, each building its layer (~3.5 min seen at load 13-30)
def test_a_smoke_run_measures_every_column_for_the_tiny_package(tmp_path):
    out = tmp_path / "dep_cold.json"
    done = subprocess.run([sys.executable, "-m", "bench.dep_cold", "--smoke", "--functions", "2", "--runs", "3",
                           "--quiet-wait", "0", "--sandbox", TEST_SANDBOX, "--json", str(out)],
                          capture_output=True, text=True, timeout=540)
    assert done.returncode == 0 and out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())["results"]["benchtiny"]
    assert len(result["plain path"]["latency_ms"]) == 2 and len(result["layer ahead"]["latency_ms"]) == 2
    if TEST_SANDBOX == "isolated":  # the first call of the layer takes the plain path and leaves one ready
        first, *later = result["layer ahead"]["paths"]
        assert first in ("prebuilt", "zygote") and later == ["layer"]
        assert result["layer_instances"] and all(m["pss_kb"] > 0 for m in result["layer_instances"])
    assert "layer" not in result["plain path"]["paths"]
    assert len(result["python_c_ms"]) == 3
    assert result["top_level"] == ["benchtiny"]
    probe = result["zygote_probe"]
    assert probe["unfit"] == {} and probe["imported"] == ["benchtiny"] and len(probe["fork_ms"]) == 3
    assert probe["tasks"] == 1 and probe["pss_kb"] > 0
    assert "Cold starts with dependencies" in done.stdout
