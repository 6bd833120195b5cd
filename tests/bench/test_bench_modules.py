"""Every benchmark module imports (a module another one removed or renamed breaks a benchmark
that no test runs, as three did when bench/common.py was split)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_the_benchmark_module_imports(module):
    # Its own interpreter: some benchmarks put a source tree first on sys.path when imported.
    done = subprocess.run([sys.executable, "-c", f"import bench.{module}"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
