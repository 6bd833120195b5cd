"""Which layer packages a forking process may import (frazil.sandbox.helper.fork_safety), on
real tiny packages written into a layer dir with their dist-info, each imported in a fresh
interpreter started as the runtimes are (-I -S -B) with the layer on sys.path."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from frazil.sandbox.helper.toplevel import top_level_names
from frazil.sandbox.launcher_client import PACKAGE_PARENT

RUN = '''
import json, sys
sys.path[:0] = [{root!r}, {layer!r}]
from frazil.sandbox.helper.toplevel import top_level_names
from frazil.sandbox.helper.fork_safety import import_checked
verdict = import_checked(top_level_names({layer!r}))
print(json.dumps({{"imported": verdict.imported, "unfit": verdict.unfit, "fit": verdict.fit}}))
'''

PACKAGES = {
    "calm": "import json\nVALUE = json.dumps([1])\n",
    "raiser": "raise RuntimeError('no GPU here')\n",
    "threader": "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n",
    "socketeer": "import socket\n_SOCK = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n",
    "filekeeper": "_LOG = open('/dev/null', 'w')\n",
    "exiter": "raise SystemExit(3)\n",
}


def write_layer(root: Path, *names: str) -> Path:
    """A layer holding `names` (from PACKAGES), each with the dist-info pip would have left."""
    layer = root / "layer"
    for name in names:
        (layer / name).mkdir(parents=True)
        (layer / name / "__init__.py").write_text(PACKAGES[name])
        info = layer / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "RECORD").write_text(f"{name}/__init__.py,,\n{name}-1.0.dist-info/RECORD,,\n")
    return layer


def check(layer: Path) -> dict:
    done = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", RUN.format(root=PACKAGE_PARENT, layer=str(layer))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_packages_that_leave_nothing_behind_are_fit(tmp_path):
    layer = write_layer(tmp_path, "calm")
    assert top_level_names(layer) == ["calm"]
    assert check(layer) == {"imported": ["calm"], "unfit": {}, "fit": True}


@pytest.mark.parametrize("name, why", [
    ("raiser", "its import raised RuntimeError: no GPU here"),
    ("exiter", "its import raised SystemExit: 3"),
    ("threader", "its import started 1 thread(s)"),
    ("socketeer", "a socket"),
    ("filekeeper", "/dev/null"),
])
def test_a_package_whose_import_misbehaves_is_named_with_the_reason(tmp_path, name, why):
    result = check(write_layer(tmp_path, "calm", name))
    assert result["fit"] is False
    assert result["imported"] == (["calm"] if "calm" < name else [])
    assert list(result["unfit"]) == [name]
    assert why in result["unfit"][name]


def test_the_first_unfit_package_stops_the_imports(tmp_path):
    result = check(write_layer(tmp_path, "raiser", "threader"))  # imported in name order: raiser first
    assert list(result["unfit"]) == ["raiser"] and result["imported"] == []
