"""Node cold starts in bursts, over HTTP: after a burst, the server keeps as many Node
instances pre-started as the burst needed, so the next burst of cold starts is served by
pre-built instances only (`frazil_sandbox_creates{path=...}`). Their decay back to the floor
when idle is tested on the sandbox itself, whose clock a test can move
(tests/sandbox/test_isolated_prebuilt.py::TestNodeBursts)."""
from __future__ import annotations

import re
import shutil

import pytest

from frazil.testing import wait_until
from tests.conftest import needs_sandbox

BURST = 4
HELLO_JS = "exports.main = async (event) => ({ n: event.n });\n"

pytestmark = [needs_sandbox,
              pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed on this host")]


def metric(text: str, name: str, label: str) -> float:
    found = re.search(rf'^{name}\{{{label}\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_burst_of_node_cold_starts_after_a_burst_is_all_prebuilt(server_factory, unique_name):
    srv = server_factory(FRAZIL_SANDBOX="isolated", FRAZIL_SANDBOX_PREBUILT_NODE="1",
                         FRAZIL_SANDBOX_PREBUILT_MAX=str(BURST), FRAZIL_SANDBOX_PREBUILT_WINDOW_S="3600")
    names = [f"{unique_name}-{i}" for i in range(2 * BURST)]
    for name in names:
        srv.deploy(name, {"index.js": HELLO_JS}, runtime="nodejs20")
    for i, name in enumerate(names[:BURST]):  # the first burst: no Node instance was kept yet
        body = srv.invoke(name, {"n": i})
        assert body["success"] and body["cold"] and body["result"] == {"n": i}, body
    wait_until(lambda: metric(srv.metrics(), "frazil_sandbox_ready_instances", 'runtime="nodejs20"') == BURST,
               120, what=f"{BURST} Node instances pre-started for the next burst")
    before = metric(srv.metrics(), "frazil_sandbox_creates_total", 'path="prebuilt"')
    for i, name in enumerate(names[BURST:]):
        body = srv.invoke(name, {"n": i})
        assert body["success"] and body["cold"] and body["result"] == {"n": i}, body
    text = srv.metrics()
    assert metric(text, "frazil_sandbox_creates_total", 'path="prebuilt"') - before == BURST
