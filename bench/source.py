"""Which `frazil` a run measures: this working tree by default, another checkout's package
(`BENCH_FRAZIL_SRC=/dir`, e.g. a worktree with a proposed fix, for before/after figures from the
same scripts), or the package as committed at a git ref (`--frazil-ref REF`). The servers
(`frazil_command`) and the in-process parts (`import frazil...` after this module is loaded)
alike.

The harness (`frazil.testing`) is the instrument, not what is measured: it is always this
checkout's, loaded before the switch, and kept when the other `frazil` modules are dropped.
Import from it with `from frazil.testing... import X`: after a switch the `frazil` package
object is the measured one, which has no `testing` attribute.
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import frazil.testing  # noqa: F401 - loaded now, from this checkout: see the module docstring
from bench.paths import FRAZIL, PYTHON, REPO

# A directory holding another `frazil` package to benchmark instead of this checkout's.
ENV_FRAZIL_SRC = "BENCH_FRAZIL_SRC"
# Set by --frazil-ref: the git ref exported to ENV_FRAZIL_SRC, for the results.
ENV_FRAZIL_REF = "BENCH_FRAZIL_REF"
HARNESS = "frazil.testing"


def measure_frazil_from(source: str) -> None:
    """Make every later `import frazil...` load the package found in `source`."""
    sys.path.insert(0, source)
    for name in [m for m in sys.modules if m == "frazil" or m.startswith("frazil.")]:
        if name != HARNESS and not name.startswith(HARNESS + "."):
            del sys.modules[name]  # nothing imported from the working tree may linger


if os.environ.get(ENV_FRAZIL_SRC):  # the in-process parts use that package too
    measure_frazil_from(os.environ[ENV_FRAZIL_SRC])


def frazil_command(source: str | None = None) -> tuple[list[str], dict[str, str]]:
    """How to run the measured frazil's CLI (or the one in `source`, e.g. a baseline run side
    by side): (argv prefix, environment it needs)."""
    source = source or os.environ.get(ENV_FRAZIL_SRC)
    if source:  # A/B a patch: run the frazil package found in another checkout
        return [str(PYTHON), "-P", "-c", "from frazil.cli.main import app; app()"], {"PYTHONPATH": source}
    return [str(FRAZIL)], {}


def export_frazil_ref(ref: str) -> Path:
    """The `frazil` package as committed at `ref`, in a temporary directory (removed at exit)."""
    dest = Path(tempfile.mkdtemp(prefix="bench-frazil-"))
    dest.chmod(0o755)
    atexit.register(shutil.rmtree, dest, True)
    archive = subprocess.run(["git", "archive", ref, "frazil"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def use_frazil_ref(ref: str) -> Path:
    """Benchmark the `frazil` package as committed at `ref` (servers and in-process parts
    alike), not this working tree, which other people edit while a run goes on."""
    dest = export_frazil_ref(ref)
    os.environ[ENV_FRAZIL_SRC] = str(dest)
    os.environ[ENV_FRAZIL_REF] = ref
    measure_frazil_from(str(dest))
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True).stdout
    print(f"note: benchmarking frazil at {ref} ({commit.strip()}), exported to {dest}", file=sys.stderr)
    return dest
