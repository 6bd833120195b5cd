"""Both runtime loops serve an invoke sent right behind init, before its answer (what the
platform does on a cold start): ready, then the result, with the invocation's clock started
after init (`timeout_ms`); after an init that failed, nothing sent behind it is served."""
from __future__ import annotations

import os

import pytest

from frazil.runtimes import NODE, PYTHON
from frazil.runtimes.protocol import encode
from tests.runtimes.conftest import write_tree

HANDLERS = {
    NODE: {"index.js": "console.log('loading');\n"
                       "exports.main = async (event, context) => ({ got: event, left: context.remaining_ms() });\n"},
    PYTHON: {"index.py": "print('loading')\n"
                         "def main(event, context):\n    return {'got': event, 'left': context.remaining_ms()}\n"},
}
BROKEN = {NODE: {"index.js": "throw new RangeError('broken at load');\n"},
          PYTHON: {"index.py": "raise ValueError('broken at load')\n"}}

pytestmark = pytest.mark.parametrize("runtime", [
    pytest.param(NODE, marks=pytest.mark.skipif(os.system("node --version >/dev/null 2>&1") != 0,
                                                reason="node is not installed")),
    PYTHON,
], ids=["node", "python"])


def init_and_invoke(loop, code_dir) -> None:
    """init and an invoke in one write, the invoke with timeout_ms (no deadline_ms)."""
    loop.hello()
    init = {"type": "init", "handler": "index.main", "code_dir": str(code_dir), "layer_dirs": [], "env": {},
            "function": "fn", "version": 1, "memory_mb": 128, "log_marker": "\n--init--\n"}
    invoke = {"type": "invoke", "id": "inv-1", "event": {"n": 1}, "cold": True, "timeout_ms": 60_000,
              "log_marker": "\n--inv-1--\n", "sdk_token": "t"}
    loop.channel.sendall(encode(init) + encode(invoke))


def test_an_invoke_behind_init_is_served_after_ready(start_loop, tmp_path, runtime):
    loop = start_loop(runtime)
    init_and_invoke(loop, write_tree(tmp_path / "code", HANDLERS[runtime]))
    ready = loop.recv()
    assert ready["type"] == "ready", ready
    result = loop.recv()
    assert result["type"] == "result" and result["id"] == "inv-1" and result["ok"] is True, result
    assert result["result"]["got"] == {"n": 1}
    # Its deadline is timeout_ms after it started: some time left, never more than the timeout.
    assert 0 < result["result"]["left"] <= 60_000
    assert "loading" in loop.drain_output()


def test_nothing_behind_a_failed_init_is_served(start_loop, tmp_path, runtime):
    loop = start_loop(runtime)
    init_and_invoke(loop, write_tree(tmp_path / "code", BROKEN[runtime]))
    failed = loop.recv()
    assert failed["type"] == "init_error" and "broken at load" in failed["error"]["message"], failed
    assert loop.recv() is None  # the channel closes: no result frame for the invoke behind it
    assert loop.wait_exit(5.0) is not None


TIMED = {
    NODE: {"index.js": "Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300); // a slow load\n"
                       "exports.main = async (event) => {\n"
                       "  await new Promise((resolve) => setTimeout(resolve, 30));\n"
                       "  if (event.fail) throw new Error('failed on purpose');\n"
                       "  return 'done';\n"
                       "};\n"},
    PYTHON: {"index.py": "import time\ntime.sleep(0.3)  # a slow load\n"
                         "def main(event, context):\n    time.sleep(0.03)\n"
                         "    if event.get('fail'):\n        raise ValueError('failed on purpose')\n"
                         "    return 'done'\n"},
}


def test_each_result_says_how_long_its_handler_ran(start_loop, tmp_path, runtime):
    """By the runtime's clock, from the invocation's start: the one behind init does not count
    the 300 ms load (the platform, reading "ready" and the result at once, could not tell);
    a handler that raised says it too."""
    loop = start_loop(runtime)
    loop.hello()
    code_dir = write_tree(tmp_path / "code", TIMED[runtime])
    init = {"type": "init", "handler": "index.main", "code_dir": str(code_dir), "layer_dirs": [], "env": {},
            "function": "fn", "version": 1, "memory_mb": 128}
    first = {"type": "invoke", "id": "inv-1", "event": {}, "cold": True, "timeout_ms": 60_000, "sdk_token": "t"}
    loop.channel.sendall(encode(init) + encode(first))
    assert loop.recv()["type"] == "ready"
    behind_init = loop.recv()
    loop.send({"type": "invoke", "id": "inv-2", "event": {"fail": True}, "cold": False,
               "deadline_ms": 2e13, "sdk_token": "t"})
    failed = loop.recv()
    assert behind_init["ok"] is True and failed["ok"] is False and "on purpose" in failed["error"]["message"]
    for result in (behind_init, failed):  # (a Node timer may fire a little early by the µs clock)
        assert 25 <= result["duration_ms"] < 300, result
