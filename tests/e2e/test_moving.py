"""Functions written for other platforms (AWS Lambda, OpenWhisk, ES modules) deployed
unchanged, without --handler, against a real server: the deploy finds the handler in a
sandboxed look at the module and says which one; a missing or ambiguous one is a 400."""
import shutil

import pytest

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

LAMBDA_PYTHON = {"lambda_function.py": (
    "import json\nfrom frazil_sdk import log  # the SDK resolves in the deploy's look too\n"
    "def lambda_handler(event, context):\n"
    "    return {'statusCode': 200, 'body': json.dumps({'echo': event.get('q')}),\n"
    "            'request': context.aws_request_id, 'left': context.get_remaining_time_in_millis() > 0,\n"
    "            'memory': context.memory_limit_in_mb, 'version': context.function_version}\n")}


def deployed_handler(response) -> tuple[str, str]:
    body = response.json()
    return body["function"]["handler"], body["build_log"]


class TestFoundWithoutHandler:
    def test_lambda_python(self, server, unique_name):
        """lambda_function.lambda_handler is found, named in the build log, and gets Lambda's context names."""
        handler, build_log = deployed_handler(server.deploy(unique_name, LAMBDA_PYTHON))
        assert handler == "lambda_function.lambda_handler"
        assert "handler: lambda_function.lambda_handler (found: lambda_function.py defines lambda_handler()" in build_log
        body = server.invoke(unique_name, {"q": "hi"})
        result = body["result"]
        assert result["body"] == '{"echo": "hi"}' and result["request"] == body["invocation_id"]
        assert result["left"] is True and result["memory"] == 128 and result["version"] == "1"

    def test_openwhisk_python_main_args_in_dunder_main(self, server, unique_name):
        """OpenWhisk's __main__.py with main(args): found, loaded by path (not the runtime's
        own __main__), called with the event alone."""
        handler, _ = deployed_handler(server.deploy(unique_name, {"__main__.py": (
            "def main(args):\n    return {'greeting': 'Hello ' + args.get('name', 'stranger')}\n")}))
        assert handler == "__main__.main"
        assert server.invoke(unique_name, {"name": "Ada"})["result"] == {"greeting": "Hello Ada"}

    @needs_node
    def test_node_async_exports_handler(self, server, unique_name):
        handler, build_log = deployed_handler(server.deploy(unique_name, {"index.js": (
            "const sdk = require('frazil-sdk');\n"
            "exports.handler = async (event, context) => ({ n: event.n * 2, id: context.awsRequestId,\n"
            "  fn: context.functionName, left: context.getRemainingTimeInMillis() > 0 });\n")}))
        assert handler == "index.handler" and "index.js has exports.handler" in build_log
        body = server.invoke(unique_name, {"n": 21})
        assert body["result"] == {"n": 42, "id": body["invocation_id"], "fn": unique_name, "left": True}

    @needs_node
    def test_node_callback_style(self, server, unique_name):
        handler, _ = deployed_handler(server.deploy(unique_name, {"index.js": (
            "exports.handler = function (event, context, callback) {\n"
            "  setImmediate(() => callback(null, { ok: event.ok }));\n};\n")}))
        assert handler == "index.handler"
        assert server.invoke(unique_name, {"ok": "yes"})["result"] == {"ok": "yes"}
        failed = server.invoke(unique_name, {"ok": "yes"})
        assert failed["success"] is True

    @needs_node
    def test_es_module_export_default(self, server, unique_name):
        """index.mjs with `export default`, importing a sibling ES module."""
        handler, build_log = deployed_handler(server.deploy(unique_name, {
            "index.mjs": "import { twice } from './lib.mjs';\nexport default async (event) => twice(event.x);\n",
            "lib.mjs": "export const twice = (x) => x * 2;\n"}))
        assert handler == "index.default" and "a default export" in build_log
        assert server.invoke(unique_name, {"x": 4})["result"] == 8

    @needs_node
    def test_type_module_package_named_export(self, server, unique_name):
        """A "type": "module" package whose index.js has `export const handler` (Lambda's Node 18+ style)."""
        handler, _ = deployed_handler(server.deploy(unique_name, {
            "package.json": '{"name": "esm", "type": "module"}',
            "index.js": "export const handler = async (event, context) => ({ got: event.v, fn: context.functionName });\n"}))
        assert handler == "index.handler"
        assert server.invoke(unique_name, {"v": 3})["result"] == {"got": 3, "fn": unique_name}

    @needs_node
    def test_openwhisk_node_package_main(self, server, unique_name):
        """An OpenWhisk zip action: package.json's "main" names the file, main(params) gets the event alone."""
        handler, build_log = deployed_handler(server.deploy(unique_name, {
            "package.json": '{"name": "greeter", "main": "./action.js"}',
            "action.js": "function main(params) {\n  return { payload: `Hello, ${params.name}!` };\n}\n"
                         "exports.main = main;\n"}))
        assert handler == "action.main" and "action.js has exports.main" in build_log
        assert server.invoke(unique_name, {"name": "Ada"})["result"] == {"payload": "Hello, Ada!"}

    @needs_node
    def test_module_exports_function_one_argument(self, server, unique_name):
        """`module.exports = fn` taking (params), in a "type": "module"-free package."""
        handler, _ = deployed_handler(server.deploy(unique_name, {
            "app.js": "module.exports = function (params) { return { args: arguments.length, p: params.p }; };\n"}))
        assert handler == "app.default"
        assert server.invoke(unique_name, {"p": 1})["result"] == {"args": 1, "p": 1}


class TestNamesTheRuntimeUses:
    def test_python_loop_and_protocol_modules(self, server, unique_name):
        """A project's own loop.py (the handler's module) and protocol.py are the project's."""
        server.deploy(unique_name, {
            "loop.py": "import protocol\ndef main(event, context):\n    return protocol.NAME\n",
            "protocol.py": "NAME = 'mine'\n"}, handler="loop.main")
        assert server.invoke(unique_name)["result"] == "mine"

    @needs_node
    def test_node_loop_and_protocol_modules(self, server, unique_name):
        server.deploy(unique_name, {
            "loop.js": "const p = require('./protocol');\nexports.main = async () => p.NAME;\n",
            "protocol.js": "exports.NAME = 'mine';\n"}, handler="loop.main")
        assert server.invoke(unique_name)["result"] == "mine"


class TestRefused:
    def test_missing_handler_lists_the_exports(self, server, unique_name):
        """A given handler the module lacks: 400 at deploy, naming what the module has."""
        response = server.deploy(unique_name, {"index.py": "LIMIT = 3\ndef helper(x):\n    return x\n"
                                                           "def handle(event, context):\n    return 1\n"},
                                 handler="index.handler", expect=400)
        message = response.json()["message"]
        assert "has no function 'handler'" in message and "helper()" in message and "handle()" in message
        assert "LIMIT" in message

    def test_nothing_found_lists_the_exports(self, server, unique_name):
        response = server.deploy(unique_name, {"app.py": "def run(event):\n    return 1\n"}, expect=400)
        message = response.json()["message"]
        assert "none was found" in message and "app exports: run()" in message and "--handler" in message

    def test_ambiguous_handler_names_both(self, server, unique_name):
        response = server.deploy(unique_name, {"lambda_function.py": (
            "def lambda_handler(event, context):\n    return 1\n"
            "def main():\n    print(lambda_handler({}, None))\n")}, expect=400)
        message = response.json()["message"]
        assert "lambda_function.main and lambda_function.lambda_handler" in message and "--handler" in message

    @needs_node
    def test_node_missing_handler(self, server, unique_name):
        response = server.deploy(unique_name, {"index.js": "exports.run = () => 1;\nexports.VERSION = 2;\n"},
                                 handler="index.main", expect=400)
        message = response.json()["message"]
        assert 'does not export a function named "main"' in message and "run()" in message and "VERSION" in message

    def test_import_error_keeps_deploying_with_the_default(self, server, unique_name):
        """index.py that fails to load in the deploy's look: deployed as before (index.main), the log says why."""
        response = server.deploy(unique_name, {"index.py": "import not_here_anywhere\nmain = lambda e, c: 1\n"})
        handler, build_log = deployed_handler(response)
        assert handler == "index.main" and "not_here_anywhere" in build_log and "not checked" in build_log
        assert server.invoke(unique_name)["error"]["type"] == "ModuleNotFoundError"

    def test_plain_definitions_need_no_look(self, server, unique_name):
        """A module that plainly defines the handler is taken as it is, without the sandboxed look."""
        _, build_log = deployed_handler(server.deploy(unique_name, {"index.py": "def main(e, c):\n    return 1\n"}))
        assert "handler: index.main (the default; its module defines it)" in build_log
        assert "looking for the handler" not in build_log


PDF_FUNCTION = {"index.py": (
    "import os, subprocess\n"
    "def main(event, context):\n"
    "    run = lambda *a: subprocess.run(a, capture_output=True, text=True, timeout=30)\n"
    "    made = run('convert', '-size', '40x30', 'xc:orange', '/tmp/page.pdf')\n"
    "    back = run('convert', '-density', '36', '/tmp/page.pdf', '/tmp/page.png')\n"
    "    eps = run('convert', '/tmp/page.png', '/tmp/page.eps')\n"
    "    size = run('identify', '-format', '%wx%h', '/tmp/page.png')\n"
    "    with open('/tmp/page.pdf', 'rb') as f:\n"
    "        head = f.read(5).decode()\n"
    "    return {'codes': [made.returncode, back.returncode, eps.returncode], 'errors': made.stderr + back.stderr\n"
    "            + eps.stderr, 'head': head, 'png': size.stdout, 'eps': os.path.getsize('/tmp/page.eps') > 0}\n")}


def test_imagemagick_reads_and_writes_pdf_and_eps(server, unique_name):
    """ImageMagick's PDF, PS and EPS coders work in an instance (Debian's policy forbids them
    on the host; the instance's policy is frazil's)."""
    from tests.conftest import TEST_SANDBOX

    missing = [tool for tool in ("convert", "gs") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed here (scripts/setup.sh installs imagemagick and "
                    "ghostscript)")
    if TEST_SANDBOX != "isolated":
        pytest.skip("the plain sandbox (no isolation) runs with the host's ImageMagick policy")
    server.deploy(unique_name, PDF_FUNCTION, timeout=60)
    body = server.invoke(unique_name)
    assert body["success"], body
    result = body["result"]
    assert result["codes"] == [0, 0, 0], result["errors"]
    assert result["head"] == "%PDF-" and result["png"] == "20x15" and result["eps"] is True


FORGE = "import json, os, sys\nresult = json.load(open(sys.argv[-1]))['result']\n"


class TestHostileModules:
    """The deploy's look runs the module's code: what that code does there fails its own deploy
    with a clear 400, within bounds, and the platform reads nothing it should not."""

    def test_a_module_that_never_finishes_loading(self, server, unique_name):
        response = server.deploy(unique_name, {"app.py": "while True:\n    pass\n"}, timeout=0.5, expect=400)
        assert "did not finish loading within 10.5 s" in response.json()["message"]

    def test_a_module_that_exits_while_loading(self, server, unique_name):
        response = server.deploy(unique_name, {"app.py": "import os\nos._exit(3)\n"}, expect=400)
        message = response.json()["message"]
        assert "failed to load" in message and "ended the process" in message

    @pytest.mark.parametrize("forgery,needle", [
        ("open(result, 'w').write('{\"handler\": \"../../etc/x.main\"}')", "answered nonsense"),
        ("open(result, 'w').write('[' + '1,' * 200000 + '1]')", "answered more than it may"),
        ("os.symlink('/etc/passwd', result)", "failed to load"),
        ("os.mkfifo(result)", "answered nonsense"),
    ])
    def test_a_module_that_forges_the_answer(self, server, unique_name, forgery, needle):
        response = server.deploy(unique_name, {"app.py": FORGE + forgery + "\nos._exit(0)\n"}, expect=400)
        message = response.json()["message"]
        assert needle in message and "root:" not in message
        server.deploy(unique_name, {"app.py": "def handler(event, context):\n    return 'fine'\n"})
        assert server.invoke(unique_name)["result"] == "fine"
