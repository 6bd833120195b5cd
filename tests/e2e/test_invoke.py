"""Invoking Python functions over HTTP against a real server: the envelope, the handler
contract, warm reuse, timeouts and captured logs."""
import time

from frazil.testing import wait_until

HELLO = {"index.py": "def main(event, context):\n    return {'hello': event.get('name')}\n"}


class TestEnvelope:
    def test_success_envelope_has_exactly_the_spec_fields(self, server, unique_name):
        """A completed sync invocation answers 200 with the SPEC's envelope."""
        server.deploy(unique_name, HELLO)
        body = server.invoke(unique_name, {"name": "frazil"})
        assert body["success"] is True and body["message"] == "success"
        assert body["result"] == {"hello": "frazil"}
        assert body["cold"] is True and isinstance(body["duration_ms"], float)
        assert set(body) == {"success", "message", "result", "invocation_id", "cold", "duration_ms"}

    def test_exception_becomes_error_envelope(self, server, unique_name):
        """An exception answers 200 with success false, its class name, message and stack."""
        server.deploy(unique_name, {"index.py": "class Oops(Exception): pass\n"
                                                "def main(event, context):\n    raise Oops('it broke')\n"})
        body = server.invoke(unique_name)
        assert body["success"] is False and body["result"] is None
        assert body["message"] == "it broke"
        assert body["error"]["type"] == "Oops" and body["error"]["message"] == "it broke"
        assert "raise Oops('it broke')" in body["error"]["stack"]

    def test_unserializable_result(self, server, unique_name):
        """A result JSON cannot hold is ResultNotSerializable, and the instance stays usable."""
        server.deploy(unique_name, {"index.py": "def main(event, context):\n"
                                                "    return object() if event.get('bad') else 'ok'\n"})
        body = server.invoke(unique_name, {"bad": True})
        assert body["success"] is False and body["error"]["type"] == "ResultNotSerializable"
        again = server.invoke(unique_name, {})
        assert again["result"] == "ok" and again["cold"] is False

    def test_import_error_is_reported(self, server, unique_name):
        """A module that fails at import reports the import's exception."""
        server.deploy(unique_name, {"index.py": "import not_a_module_anywhere\ndef main(e, c):\n    return 1\n"})
        body = server.invoke(unique_name)
        assert body["success"] is False and body["error"]["type"] == "ModuleNotFoundError"
        assert "not_a_module_anywhere" in body["message"]


class TestHandlerContract:
    def test_relative_imports_and_packages(self, server, unique_name):
        """The project root is on sys.path: its own modules and packages import."""
        server.deploy(unique_name, {
            "index.py": "from lib.greet import greet\nimport helpers\n"
                        "def main(event, context):\n    return greet(helpers.NAME)\n",
            "helpers.py": "NAME = 'module'\n",
            "lib/__init__.py": "",
            "lib/greet.py": "from .words import HELLO\ndef greet(n):\n    return f'{HELLO} {n}'\n",
            "lib/words.py": "HELLO = 'hi'\n",
        })
        assert server.invoke(unique_name)["result"] == "hi module"

    def test_async_handler(self, server, unique_name):
        """`async def main` is awaited."""
        server.deploy(unique_name, {"index.py": "import asyncio\nasync def main(event, context):\n"
                                                "    await asyncio.sleep(0)\n    return 'awaited'\n"})
        assert server.invoke(unique_name)["result"] == "awaited"

    def test_context_fields(self, server, unique_name):
        """context carries invocation_id, function_name, version, memory_mb, cold, remaining_ms()."""
        server.deploy(unique_name, {"index.py": (
            "def main(event, context):\n"
            "    return dict(id=context.invocation_id, name=context.function_name, version=context.version,\n"
            "                memory=context.memory_mb, cold=context.cold, remaining=context.remaining_ms())\n")},
            memory=256, timeout=5)
        body = server.invoke(unique_name)
        r = body["result"]
        assert r["id"] == body["invocation_id"] and r["name"] == unique_name
        assert r["version"] == 1 and r["memory"] == 256 and r["cold"] is True
        assert 3000 < r["remaining"] <= 5000

    def test_handler_path_and_env(self, server, unique_name):
        """A handler in a sub-package, and the function's environment variables."""
        server.deploy(unique_name, {"src/app.py": "import os\ndef handle(event, context):\n"
                                                  "    return os.environ['GREETING']\n"},
                      handler="src/app.handle", runtime="python3.11", env={"GREETING": "bonjour"})
        assert server.invoke(unique_name)["result"] == "bonjour"


class TestWarmReuse:
    def test_globals_and_tmp_survive_while_warm(self, server, unique_name):
        """The second call reuses the instance: same globals, same /tmp, cold false."""
        server.deploy(unique_name, {"index.py": (
            "import os, tempfile\nCOUNT = 0\n"
            "def main(event, context):\n    global COUNT\n    COUNT += 1\n"
            "    path = os.path.join(tempfile.gettempdir(), 'seen')\n"
            "    existed = os.path.exists(path)\n    open(path, 'w').write('x')\n"
            "    return {'count': COUNT, 'tmp_existed': existed}\n")})
        first = server.invoke(unique_name)
        second = server.invoke(unique_name)
        assert first["cold"] is True and first["result"] == {"count": 1, "tmp_existed": False}
        assert second["cold"] is False and second["result"] == {"count": 2, "tmp_existed": True}

    def test_idle_instances_are_reaped_after_keep_alive(self, server_factory):
        """After the keep-alive period an idle instance is gone and the next call is cold."""
        srv = server_factory(FRAZIL_KEEP_ALIVE_S="0.3")
        srv.deploy("reaped", HELLO)
        assert srv.invoke("reaped")["cold"] is True
        wait_until(lambda: 'frazil_instances{state="idle"} 0.0' in srv.metrics(), 10, 0.05,
                   "the idle instance to be reaped")
        assert srv.invoke("reaped")["cold"] is True

    def test_new_version_gets_new_instances(self, server, unique_name):
        """A deploy retires the old version's instances: the next call runs the new code."""
        server.deploy(unique_name, {"index.py": "def main(e, c):\n    return 1\n"})
        assert server.invoke(unique_name)["result"] == 1
        server.deploy(unique_name, {"index.py": "def main(e, c):\n    return 2\n"})
        body = server.invoke(unique_name)
        assert body["result"] == 2 and body["cold"] is True


class TestTimeout:
    def test_timeout_kills_instance_and_next_call_is_fresh(self, server, unique_name):
        """A call past its timeout answers Timeout; the next call gets a new instance."""
        server.deploy(unique_name, {"index.py": (
            "import time\nSTATE = []\n"
            "def main(event, context):\n    STATE.append(1)\n"
            "    if event.get('hang'):\n        time.sleep(60)\n    return len(STATE)\n")}, timeout=0.5)
        assert server.invoke(unique_name)["result"] == 1
        started = time.monotonic()
        body = server.invoke(unique_name, {"hang": True})
        assert time.monotonic() - started < 5
        assert body["success"] is False and body["error"]["type"] == "Timeout"
        record = server.invocation(body["invocation_id"])
        assert record["status"] == "timeout"
        after = server.invoke(unique_name)
        assert after["cold"] is True and after["result"] == 1


class TestLogs:
    def test_stdout_and_stderr_are_captured_in_order(self, server, unique_name):
        """Prints and stderr writes land in the invocation's record, interleaved as written."""
        server.deploy(unique_name, {"index.py": (
            "import sys, os\n"
            "def main(event, context):\n    print('out 1')\n    print('err 1', file=sys.stderr)\n"
            "    os.system('echo from a child process')\n    print('out 2')\n    return 'ok'\n")})
        body = server.invoke(unique_name)
        logs = server.invocation(body["invocation_id"])["logs"]
        assert logs == "out 1\nerr 1\nfrom a child process\nout 2\n"

    def test_output_over_the_cap_is_truncated_and_marked(self, server_factory):
        """A flood keeps only the cap's worth, with a truncation marker; the platform is fine."""
        srv = server_factory(FRAZIL_LOG_CAP_BYTES="1000")
        srv.deploy("flood", {"index.py": "import sys\ndef main(e, c):\n"
                                         "    sys.stdout.write('y' * 2_000_000)\n    return 'done'\n"})
        body = srv.invoke("flood")
        assert body["result"] == "done"
        logs = srv.invocation(body["invocation_id"])["logs"]
        assert logs.startswith("y" * 1000) and "1999000 more bytes dropped" in logs
        assert len(logs) < 1200

    def test_logs_route_lists_invocations_output(self, server, unique_name):
        """GET /logs gives each finished invocation's output, oldest first, with a cursor."""
        server.deploy(unique_name, {"index.py": "def main(e, c):\n    print('n =', e['n'])\n    return 0\n"})
        for n in range(3):
            server.invoke(unique_name, {"n": n})
        body = server.client().get(f"/v1/functions/{unique_name}/logs").json()
        assert [e["logs"] for e in body["entries"]] == ["n = 0\n", "n = 1\n", "n = 2\n"]
        server.invoke(unique_name, {"n": 3})
        later = server.client().get(f"/v1/functions/{unique_name}/logs", params={"after": body["cursor"]})
        assert later.status_code == 200, later.text
        later = later.json()
        assert [e["logs"] for e in later["entries"]] == ["n = 3\n"]


class TestAsync:
    def test_async_invocation_is_accepted_then_runs(self, server, unique_name):
        """?mode=async answers 202 with an id; the record ends succeeded with the result."""
        server.deploy(unique_name, HELLO)
        body = server.invoke(unique_name, {"name": "later"}, mode="async", expect=202)
        assert body["success"] is True and body["status"] == "queued"
        record = server.wait_invocation(body["invocation_id"])
        assert record["status"] == "succeeded" and record["result"] == {"hello": "later"}
        assert record["mode"] == "async" and record["attempts"] == 1
        for key in ("id", "function", "version", "status", "attempts", "cold", "instance_id", "created_at",
                    "started_at", "finished_at", "duration_ms", "result", "error", "logs"):
            assert key in record


class TestRecords:
    def test_sync_invocation_record(self, server, unique_name):
        """Every sync invocation has a durable record with timings and the instance that ran it."""
        server.deploy(unique_name, HELLO)
        body = server.invoke(unique_name, {"name": "r"})
        record = server.invocation(body["invocation_id"])
        assert record["status"] == "succeeded" and record["result"] == {"hello": "r"}
        assert record["function"] == unique_name and record["version"] == 1 and record["cold"] is True
        assert record["instance_id"] and record["created_at"] <= record["started_at"] <= record["finished_at"]
        listed = server.client().get(f"/v1/functions/{unique_name}/invocations").json()["invocations"]
        assert [r["id"] for r in listed] == [body["invocation_id"]]
