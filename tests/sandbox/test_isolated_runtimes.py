"""Both runtimes start and serve inside the isolated sandbox."""
from __future__ import annotations

import shutil

import pytest

from frazil.runtimes import NODE, PYTHON

from tests.sandbox.conftest import EXEC_AND_PREBUILT

pytestmark = EXEC_AND_PREBUILT


async def test_python_runtime_serves_inside(instance, code_factory):
    client = await instance(runtime=PYTHON, code_dir=code_factory({
        "index.py": "import helper\ndef main(event, context):\n    print('log line')\n"
                    "    return {'echo': event, 'helper': helper.VALUE, 'memory': context.memory_mb}\n",
        "helper.py": "VALUE = 'relative import'\n"}))
    assert client.hello["runtime"] == "python3.11" and client.hello["pid"] == 1
    reply = await client.invoke({"a": 1})
    assert reply["ok"] and reply["result"] == {"echo": {"a": 1}, "helper": "relative import", "memory": 128}
    assert "log line" in client.output()


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed on this host")
async def test_node_runtime_serves_inside(instance, code_factory):
    client = await instance(runtime=NODE, code_dir=code_factory({
        "index.js": "const lib = require('./lib/x');\n"
                    "exports.main = async (event, context) => { console.log('node log');\n"
                    "  return {echo: event, lib: lib.v, pid: process.pid, uid: process.getuid()}; };\n",
        "lib/x.js": "exports.v = 'required';\n"}))
    assert client.hello["type"] == "hello"
    reply = await client.invoke({"b": 2})
    assert reply["ok"], reply
    result = reply["result"]
    assert result["echo"] == {"b": 2} and result["lib"] == "required" and result["pid"] == 1
    assert result["uid"] == client.proc.uid

