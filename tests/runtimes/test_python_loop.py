"""The Python runtime loop, driven over the real protocol, like the Node loop's tests."""
from __future__ import annotations

from pathlib import Path

import pytest


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def start(python_loop, tmp_path, files: dict[str, str], **init):
    code = write_tree(tmp_path / "code", files)
    reply, _ = python_loop.init(code, **init)
    assert reply == {"type": "ready"}, reply
    return python_loop


class TestHandlers:
    def test_hello(self, python_loop):
        hello = python_loop.hello()
        assert hello["protocol"] == 2 and hello["runtime"] == "python3.11" and hello["pid"] == python_loop.pid

    def test_sync_handler(self, python_loop, tmp_path):
        start(python_loop, tmp_path, {"index.py": "def main(event, context):\n    return {'hello': event.get('name')}\n"})
        reply, logs = python_loop.invoke({"name": "ada"})
        assert reply["ok"] is True and reply["result"] == {"hello": "ada"} and logs == ""

    def test_async_handler(self, python_loop, tmp_path):
        start(python_loop, tmp_path, {"index.py": (
            "import asyncio\n"
            "async def main(event, context):\n"
            "    await asyncio.sleep(0.01)\n"
            "    return event['x'] * 2\n")})
        assert [python_loop.invoke({"x": i})[0]["result"] for i in (1, 2)] == [2, 4]

    def test_context(self, python_loop, tmp_path):
        start(python_loop, tmp_path, {"index.py": (
            "def main(event, context):\n"
            "    return [context.invocation_id, context.function_name, context.version, context.memory_mb,\n"
            "            context.cold, context.remaining_ms()]\n")})
        reply, _ = python_loop.invoke({}, cold=True, timeout_s=5)
        ident, fn, version, memory, cold, left = reply["result"]
        assert (ident, fn, version, memory, cold) == (reply["id"], "fn", 3, 128, True)
        assert 3000 < left <= 5000

    def test_globals_survive(self, python_loop, tmp_path):
        start(python_loop, tmp_path, {"index.py": "n = 0\ndef main(e, c):\n    global n\n    n += 1\n    return n\n"})
        assert [python_loop.invoke({})[0]["result"] for _ in range(3)] == [1, 2, 3]

    def test_project_modules_and_packages(self, python_loop, tmp_path):
        """The project's own modules import, packages with relative imports too."""
        start(python_loop, tmp_path, {
            "index.py": "from models.user import greet\ndef main(e, c):\n    return greet(e['n'])\n",
            "models/__init__.py": "",
            "models/user.py": "from .util import shout\ndef greet(n):\n    return shout('hi ' + n)\n",
            "models/util.py": "def shout(s):\n    return s.upper()\n",
        })
        assert python_loop.invoke({"n": "ada"})[0]["result"] == "HI ADA"

    def test_dotted_and_folder_handlers(self, start_loop, tmp_path):
        from frazil.runtimes import PYTHON

        files = {"pkg/__init__.py": "", "pkg/mod.py": "def run(e, c):\n    return 'dotted'\n",
                 "src/app.py": "def run(e, c):\n    return 'folder'\n"}
        for handler, expected in (("pkg.mod.run", "dotted"), ("src/app.run", "folder")):
            loop = start_loop(PYTHON)
            code = write_tree(tmp_path / f"code-{expected}", files)
            assert loop.init(code, handler=handler)[0] == {"type": "ready"}
            assert loop.invoke({})[0]["result"] == expected

    def test_package_from_layer(self, python_loop, tmp_path):
        layer = write_tree(tmp_path / "layer", {"tinydep/__init__.py": "VALUE = 'from layer'\n"})
        start(python_loop, tmp_path, {"index.py": "import tinydep\ndef main(e, c):\n    return tinydep.VALUE\n"},
              layer_dirs=[layer])
        assert python_loop.invoke({})[0]["result"] == "from layer"

    def test_env(self, python_loop, tmp_path):
        start(python_loop, tmp_path, {"index.py": "import os\ndef main(e, c):\n    return os.environ['GREETING']\n"},
              env={"GREETING": "hi"})
        assert python_loop.invoke({})[0]["result"] == "hi"


class TestErrors:
    def test_raised_error(self, python_loop, tmp_path):
        start(python_loop, tmp_path, {"index.py": (
            "class NotFound(Exception):\n    pass\n"
            "def main(e, c):\n    if e.get('fail'):\n        raise NotFound('no such note')\n    return 'fine'\n")})
        error = python_loop.invoke({"fail": True})[0]["error"]
        assert error["type"] == "NotFound" and error["message"] == "no such note"
        assert "index.py" in error["stack"] and "NotFound: no such note" in error["stack"]
        assert python_loop.invoke({})[0]["result"] == "fine"

    @pytest.mark.parametrize("value", ["object()", "{1, 2}", "float('nan')", "b'bytes'"])
    def test_unserializable(self, python_loop, tmp_path, value):
        start(python_loop, tmp_path, {"index.py": f"def main(e, c):\n    return {value}\n"})
        reply, _ = python_loop.invoke({})
        assert reply["ok"] is False and reply["error"]["type"] == "ResultNotSerializable"

    def test_cycle_is_unserializable(self, python_loop, tmp_path):
        start(python_loop, tmp_path, {"index.py": "def main(e, c):\n    a = []\n    a.append(a)\n    return a\n"})
        assert python_loop.invoke({})[0]["error"]["type"] == "ResultNotSerializable"

    def test_result_too_large(self, python_loop, tmp_path):
        start(python_loop, tmp_path, {"index.py": "def main(e, c):\n    return 'x' * e['n']\n"}, max_result_bytes=1000)
        assert python_loop.invoke({"n": 990})[0]["ok"] is True
        assert python_loop.invoke({"n": 5000})[0]["error"]["type"] == "ResultTooLarge"

    @pytest.mark.parametrize("files,error_type", [
        ({"other.py": ""}, "ModuleNotFoundError"),
        ({"index.py": "raise RuntimeError('broken at import')"}, "RuntimeError"),
        ({"index.py": "x = 1"}, "HandlerNotFound"),
        ({"index.py": "def main(:"}, "SyntaxError"),
        ({"index.py": "import sys\nsys.exit(3)"}, "SystemExit"),
    ])
    def test_init_errors(self, python_loop, tmp_path, files, error_type):
        code = write_tree(tmp_path / "code", files)
        reply, _ = python_loop.init(code)
        assert reply["type"] == "init_error" and reply["error"]["type"] == error_type, reply
        assert python_loop.wait_exit(5.0) is not None


class TestLogs:
    def test_output_precedes_marker(self, python_loop, tmp_path):
        start(python_loop, tmp_path, {"index.py": (
            "import sys\n"
            "def main(e, c):\n"
            "    print('first')\n"
            "    sys.stdout.write('second\\n')\n"
            "    print('third', file=sys.stderr)\n"
            "    sys.stdout.write('no newline')\n"
            "    return 'ok'\n")})
        reply, logs = python_loop.invoke({})
        assert reply["result"] == "ok" and logs == "first\nsecond\nthird\nno newline"

    def test_lots_of_output(self, python_loop, tmp_path):
        start(python_loop, tmp_path, {"index.py": "def main(e, c):\n    for i in range(e['n']):\n        print('line', i, 'y' * 100)\n    return e['n']\n"})
        reply, logs = python_loop.invoke({"n": 5000})
        lines = logs.splitlines()
        assert reply["result"] == 5000 and len(lines) == 5000 and lines[-1].startswith("line 4999 ")

    def test_each_invocation_gets_its_own_output(self, python_loop, tmp_path):
        start(python_loop, tmp_path, {"index.py": "def main(e, c):\n    print('event', e['i'])\n    return e['i']\n"})
        for i in range(3):
            assert python_loop.invoke({"i": i})[1] == f"event {i}\n"
