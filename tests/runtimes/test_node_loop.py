"""The Node.js runtime loop, driven over the real protocol (spawn_runtime, fd 3, one output pipe)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.system("node --version >/dev/null 2>&1") != 0, reason="node is not installed")


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def start(node_loop, tmp_path, files: dict[str, str], **init):
    code = write_tree(tmp_path / "code", files)
    reply, _ = node_loop.init(code, **init)
    assert reply == {"type": "ready"}, reply
    return node_loop


class TestHandshake:
    def test_hello(self, node_loop):
        """The loop introduces itself first."""
        hello = node_loop.hello()
        assert hello["protocol"] == 2 and hello["runtime"] == "nodejs20" and hello["pid"] == node_loop.pid

    def test_init_output_before_marker(self, node_loop, tmp_path):
        """What the module prints while loading comes before the init marker."""
        code = write_tree(tmp_path / "code", {"index.js": "console.log('loading'); exports.main = () => 1;"})
        reply, logs = node_loop.init(code)
        assert reply == {"type": "ready"} and logs == "loading\n"

    def test_channel_close_ends_the_process(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"index.js": "setInterval(() => {}, 1000); exports.main = () => 1;"})
        node_loop.channel.shutdown(2)
        assert node_loop.wait_exit(5.0) is not None


class TestHandlers:
    def test_hello_world(self, node_loop, tmp_path):
        """exports.main = () => 'HelloWorld' (the spec's smallest function)."""
        start(node_loop, tmp_path, {"index.js": "exports.main = () => 'HelloWorld';"})
        reply, logs = node_loop.invoke({})
        assert reply["ok"] is True and reply["result"] == "HelloWorld" and logs == ""

    def test_async_handler_uses_event(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"index.js": (
            "exports.main = async (event, context) => {\n"
            "  await new Promise((r) => setTimeout(r, 10));\n"
            "  return { hello: event.name, n: [1, 2.5, null, true] };\n"
            "};")})
        reply, _ = node_loop.invoke({"name": "ada"})
        assert reply["result"] == {"hello": "ada", "n": [1, 2.5, None, True]}

    def test_promise_returning_function(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"index.js": "exports.main = (e) => Promise.resolve(e.x * 2);"})
        assert node_loop.invoke({"x": 21})[0]["result"] == 42

    def test_callback_style_handler(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"index.js": (
            "exports.main = function (event, context, callback) { setTimeout(() => callback(null, 'cb'), 5); };")})
        assert node_loop.invoke({})[0]["result"] == "cb"

    def test_undefined_is_null(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"index.js": "exports.main = async () => {};"})
        reply, _ = node_loop.invoke({})
        assert reply["ok"] is True and reply["result"] is None

    def test_context(self, node_loop, tmp_path):
        """context carries the invocation's facts and a countdown."""
        start(node_loop, tmp_path, {"index.js": (
            "exports.main = (event, context) => ({ id: context.invocation_id, fn: context.function_name,\n"
            "  version: context.version, memory: context.memory_mb, cold: context.cold,\n"
            "  left: context.remaining_ms(), left2: context.getRemainingTimeInMillis() });")})
        reply, _ = node_loop.invoke({}, cold=True, timeout_s=5)
        result = reply["result"]
        assert result["id"] == reply["id"] and result["fn"] == "fn" and result["version"] == 3
        assert result["memory"] == 128 and result["cold"] is True
        assert 3000 < result["left"] <= 5000 and 3000 < result["left2"] <= 5000
        assert node_loop.invoke({}, cold=False)[0]["result"]["cold"] is False

    def test_globals_survive_between_invokes(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"index.js": "let n = 0; exports.main = () => ++n;"})
        assert [node_loop.invoke({})[0]["result"] for _ in range(3)] == [1, 2, 3]

    def test_env_and_cwd(self, node_loop, tmp_path):
        """init's env lands in process.env; the working directory is the code dir."""
        code = tmp_path / "code"
        start(node_loop, tmp_path, {"index.js": (
            "const fs = require('fs');\n"
            "exports.main = () => ({ greeting: process.env.GREETING, cwd: process.cwd(),\n"
            "  data: fs.readFileSync('data.txt', 'utf8') });"), "data.txt": "file-data"},
            env={"GREETING": "hi"})
        assert node_loop.invoke({})[0]["result"] == {"greeting": "hi", "cwd": str(code), "data": "file-data"}

    def test_large_event_round_trip(self, node_loop, tmp_path):
        """A multi-megabyte event arrives intact in many reads and goes back out."""
        start(node_loop, tmp_path, {"index.js": "exports.main = (e) => e;"})
        event = {"blob": "x" * (4 << 20), "list": list(range(1000))}
        assert node_loop.invoke(event)[0]["result"] == event

    def test_es_module_project(self, node_loop, tmp_path):
        """A project with "type": "module" loads through import()."""
        start(node_loop, tmp_path, {"package.json": '{"type": "module"}',
                                    "index.js": "export const main = async () => 'esm';"})
        assert node_loop.invoke({})[0]["result"] == "esm"


class TestModules:
    def test_relative_requires_across_folders(self, node_loop, tmp_path):
        """require('./lib/x') and require('../models/user') work inside the project."""
        start(node_loop, tmp_path, {
            "index.js": "const x = require('./lib/x'); exports.main = () => x.describe('ada');",
            "lib/x.js": "const User = require('../models/user'); exports.describe = (n) => new User(n).greet();",
            "models/user.js": "module.exports = class User { constructor(n) { this.n = n; } greet() { return 'hi ' + this.n; } };",
        })
        assert node_loop.invoke({})[0]["result"] == "hi ada"

    def test_handler_in_subfolder(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"src/index.js": "const u = require('../util'); exports.handle = () => u;",
                                    "util.js": "module.exports = 'util';"}, handler="src/index.handle")
        assert node_loop.invoke({})[0]["result"] == "util"

    def test_package_from_layer(self, node_loop, tmp_path):
        """Packages in a layer's node_modules resolve, with their own dependencies."""
        layer = write_tree(tmp_path / "layer", {
            "node_modules/greeter/package.json": '{"name": "greeter", "main": "lib/main.js"}',
            "node_modules/greeter/lib/main.js": "const pad = require('padder'); module.exports = (n) => pad('hi ' + n);",
            "node_modules/padder/index.js": "module.exports = (s) => '[' + s + ']';",
        })
        start(node_loop, tmp_path, {"index.js": "const g = require('greeter'); exports.main = (e) => g(e.n);"},
              layer_dirs=[layer])
        assert node_loop.invoke({"n": "ada"})[0]["result"] == "[hi ada]"

    def test_project_node_modules_win_over_layer(self, node_loop, tmp_path):
        layer = write_tree(tmp_path / "layer", {"node_modules/dep/index.js": "module.exports = 'layer';",
                                                "node_modules/other/index.js": "module.exports = 'other';"})
        start(node_loop, tmp_path, {"index.js": "exports.main = () => [require('dep'), require('other')];",
                                    "node_modules/dep/index.js": "module.exports = 'bundled';"},
              layer_dirs=[layer])
        assert node_loop.invoke({})[0]["result"] == ["bundled", "other"]

    def test_missing_package_is_a_function_error(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"index.js": "exports.main = () => require('not-installed-anywhere');"})
        reply, _ = node_loop.invoke({})
        assert reply["ok"] is False and "not-installed-anywhere" in reply["error"]["message"]

    def test_frazil_sdk_resolves_to_the_platform_sdk(self, node_loop, tmp_path):
        """require('frazil-sdk') is the platform's module: a db call is an sdk_call frame; log
        lines land in the logs."""
        start(node_loop, tmp_path, {"index.js": (
            "const { db, http, log } = require('frazil-sdk');\n"
            "exports.main = async () => { log.info('visible', 42);\n"
            "  return db.table('notes').insert({ a: 1 }); };")})
        reply, logs = node_loop.invoke({}, on_sdk_call=lambda call: {
            "ok": True, "value": {"id": "r1", "table": call["table"], "op": call["op"], **call["record"]}})
        assert reply["result"] == {"id": "r1", "table": "notes", "op": "db.insert", "a": 1}
        assert logs == "[INFO] visible 42\n"

    def test_sdk_bridge_round_trip(self, node_loop, tmp_path):
        """The SDK's hook sends sdk_call frames and resolves on the matching sdk_reply."""
        start(node_loop, tmp_path, {"index.js": (
            "const sdk = require('frazil-sdk');\n"
            "exports.main = async () => {\n"
            "  const [a, b] = await Promise.all([sdk._bridge.sendSdkCall({ op: 'echo', v: 1 }),\n"
            "                                    sdk._bridge.sendSdkCall({ op: 'echo', v: 2 })]);\n"
            "  return [a.value, b.value, a.call !== b.call];\n"
            "};")})
        seen = []

        def reply(call):
            seen.append(call)
            return {"ok": True, "value": call["v"] * 10}

        result, _ = node_loop.invoke({}, on_sdk_call=reply, sdk_token="tok-1")
        assert result["result"] == [10, 20, True]
        assert [c["op"] for c in seen] == ["echo", "echo"]
        assert all(c["invocation_id"] == result["id"] and c["sdk_token"] == "tok-1" for c in seen)


class TestErrors:
    def test_thrown_error(self, node_loop, tmp_path):
        """A thrown error becomes {type, message, stack}; the instance stays usable."""
        start(node_loop, tmp_path, {"index.js": (
            "exports.main = (e) => { if (e.fail) throw new TypeError('bad input'); return 'fine'; };")})
        reply, _ = node_loop.invoke({"fail": True})
        assert reply["ok"] is False
        error = reply["error"]
        assert error["type"] == "TypeError" and error["message"] == "bad input"
        assert "index.js" in error["stack"] and "TypeError: bad input" in error["stack"]
        assert node_loop.invoke({"fail": False})[0]["result"] == "fine"

    def test_rejected_promise_and_custom_class(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"index.js": (
            "class NotFound extends Error {}\n"
            "exports.main = async () => { throw new NotFound('no such note'); };")})
        error = node_loop.invoke({})[0]["error"]
        assert error["type"] == "NotFound" and error["message"] == "no such note"

    @pytest.mark.parametrize("thrown,message", [("'plain string'", "plain string"), ("42", "42"),
                                                 ("{ code: 7 }", "{ code: 7 }"), ("null", "null")])
    def test_non_error_throws(self, node_loop, tmp_path, thrown, message):
        start(node_loop, tmp_path, {"index.js": f"exports.main = () => {{ throw {thrown}; }};"})
        error = node_loop.invoke({})[0]["error"]
        assert error["type"] == "Error" and error["message"] == message

    @pytest.mark.parametrize("body", ["return 10n;", "const a = {}; a.self = a; return a;",
                                      "return { nested: [1, { big: 2n }] };"])
    def test_unserializable_result(self, node_loop, tmp_path, body):
        start(node_loop, tmp_path, {"index.js": f"exports.main = () => {{ {body} }};"})
        reply, _ = node_loop.invoke({})
        assert reply["ok"] is False and reply["error"]["type"] == "ResultNotSerializable"
        assert node_loop.invoke({})[0]["error"]["type"] == "ResultNotSerializable"  # still alive

    def test_result_too_large(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"index.js": "exports.main = (e) => 'x'.repeat(e.n);"}, max_result_bytes=1000)
        assert node_loop.invoke({"n": 990})[0]["ok"] is True
        error = node_loop.invoke({"n": 5000})[0]["error"]
        assert error["type"] == "ResultTooLarge" and "1000" in error["message"]

    def test_unhandled_rejection_and_async_throw_do_not_kill(self, node_loop, tmp_path):
        """User code's stray rejections and timer throws are logged; the invocation finishes."""
        start(node_loop, tmp_path, {"index.js": (
            "exports.main = async () => {\n"
            "  Promise.reject(new Error('stray rejection'));\n"
            "  setTimeout(() => { throw new Error('timer throw'); }, 0);\n"
            "  await new Promise((r) => setTimeout(r, 30));\n"
            "  return 'survived';\n"
            "};")})
        reply, logs = node_loop.invoke({})
        assert reply["result"] == "survived"
        assert "unhandled promise rejection" in logs and "stray rejection" in logs
        assert "uncaught exception" in logs and "timer throw" in logs
        assert node_loop.invoke({})[0]["result"] == "survived"

    @pytest.mark.parametrize("files,handler,error_type,needle", [
        ({"other.js": ""}, "index.main", "Error", "index.js"),
        ({"index.js": "throw new RangeError('broken at load');"}, "index.main", "RangeError", "broken at load"),
        ({"index.js": "exports.other = 1;"}, "index.main", "HandlerNotFound", "main"),
        ({"index.js": "exports.main = 5;"}, "index.main", "HandlerNotFound", "not a function"),
        ({"index.js": "this is not javascript"}, "index.main", "SyntaxError", ""),
        ({"index.js": "exports.main = () => 1;"}, "nodots", "TypeError", "module.function"),
    ])
    def test_init_errors(self, node_loop, tmp_path, files, handler, error_type, needle):
        """A module that cannot load answers init_error and the instance ends."""
        code = write_tree(tmp_path / "code", files)
        reply, _ = node_loop.init(code, handler=handler)
        assert reply["type"] == "init_error", reply
        assert reply["error"]["type"] == error_type and needle in reply["error"]["message"]
        assert node_loop.wait_exit(5.0) is not None


class TestLogs:
    def test_output_precedes_marker(self, node_loop, tmp_path):
        """console.log/error and process.stdout.write all land, in order, before the marker."""
        start(node_loop, tmp_path, {"index.js": (
            "exports.main = async (e) => {\n"
            "  console.log('first');\n"
            "  process.stdout.write('second\\n');\n"
            "  console.error('third');\n"
            "  await new Promise((r) => setTimeout(r, 5));\n"
            "  console.log('fourth %d', 4);\n"
            "  return 'ok';\n"
            "};")})
        reply, logs = node_loop.invoke({})
        assert reply["result"] == "ok"
        assert logs == "first\nsecond\nthird\nfourth 4\n"

    def test_lots_of_output_is_all_before_marker(self, node_loop, tmp_path):
        """More output than a pipe holds still arrives whole and before the marker."""
        start(node_loop, tmp_path, {"index.js": (
            "exports.main = (e) => { for (let i = 0; i < e.n; i++) console.log('line ' + i + ' ' + 'y'.repeat(100));"
            " return e.n; };")})
        reply, logs = node_loop.invoke({"n": 5000})
        lines = logs.splitlines()
        assert reply["result"] == 5000 and len(lines) == 5000
        assert lines[0].startswith("line 0 ") and lines[-1].startswith("line 4999 ")

    def test_each_invocation_gets_its_own_output(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"index.js": "exports.main = (e) => { console.log('event', e.i); return e.i; };"})
        for i in range(3):
            assert node_loop.invoke({"i": i})[1] == f"event {i}\n"

    def test_stdout_end_does_not_close_the_pipe(self, node_loop, tmp_path):
        start(node_loop, tmp_path, {"index.js": "exports.main = () => { process.stdout.end(); console.log('after'); return 1; };"})
        assert node_loop.invoke({})[1] == "after\n"
        assert node_loop.invoke({})[0]["result"] == 1
