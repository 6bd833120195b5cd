"""Calls between functions through the SDK, against a real server, in both runtimes: the
envelope, async calls with a delay, the callee's timeout cut to the caller's remaining time,
the chain depth limit, and a full tier answered with TooManyRequests instead of a deadlock."""
from __future__ import annotations

import secrets

import httpx
import pytest

from frazil.settings import Settings
from tests.e2e.test_access import end_user

CALLEE = {"index.py": (
    "def main(event, context):\n"
    "    if event.get('fail'):\n"
    "        raise ValueError('callee failed')\n"
    "    return {'twice': event.get('x', 0) * 2, 'remaining': context.remaining_ms(), 'user': context.user}\n")}

PY_CALLER = {"index.py": (
    "from frazil_sdk import functions, SdkError\n"
    "def main(event, context):\n"
    "    try:\n"
    "        if event.get('mode') == 'async':\n"
    "            return {'id': functions.invoke(event['callee'], {'x': 1}, mode='async', delay_s=event.get('delay'))}\n"
    "        return functions.invoke(event['callee'], event.get('event', {'x': 21}))\n"
    "    except SdkError as exc:\n"
    "        return {'sdk_error': exc.type, 'message': exc.message}\n")}

NODE_CALLER = {"index.js": (
    "const { functions } = require('frazil-sdk');\n"
    "exports.main = async (event) => {\n"
    "  try {\n"
    "    if (event.mode === 'async') {\n"
    "      return { id: await functions.invoke(event.callee, { x: 1 }, { mode: 'async', delay_s: event.delay }) };\n"
    "    }\n"
    "    return await functions.invoke(event.callee, event.event || { x: 21 });\n"
    "  } catch (err) {\n"
    "    return { sdk_error: err.type, message: err.message };\n"
    "  }\n"
    "};\n")}

CALLERS = {"python": PY_CALLER, "node": NODE_CALLER}

# Calls itself one level deeper each time; answers how deep the chain got, and why it stopped.
CHAIN = {"index.py": (
    "from frazil_sdk import functions, SdkError\n"
    "def main(event, context):\n"
    "    level = event.get('level', 0)\n"
    "    try:\n"
    "        inner = functions.invoke(context.function_name, {'level': level + 1})\n"
    "    except SdkError as exc:\n"
    "        return {'deepest': level, 'stopped': exc.type}\n"
    "    return inner['result']\n")}


@pytest.fixture(scope="module")
def callee(server):
    name = f"callee-{secrets.token_hex(3)}"
    server.deploy(name, CALLEE, timeout=60)
    return name


@pytest.mark.parametrize("runtime", sorted(CALLERS))
class TestCalls:
    def test_sync_call_answers_the_envelope(self, server, unique_name, callee, runtime):
        """functions.invoke answers the callee's envelope; its record says trigger `function`."""
        server.deploy(unique_name, CALLERS[runtime], timeout=30)
        envelope = server.invoke(unique_name, {"callee": callee})["result"]
        assert envelope["success"] is True and envelope["result"]["twice"] == 42
        record = server.invocation(envelope["invocation_id"])
        assert (record["trigger"], record["depth"], record["function"]) == ("function", 1, callee)

    def test_callee_failure_is_in_the_envelope(self, server, unique_name, callee, runtime):
        """A callee that raises gives success false with its error, not an SDK error."""
        server.deploy(unique_name, CALLERS[runtime], timeout=30)
        envelope = server.invoke(unique_name, {"callee": callee, "event": {"fail": True}})["result"]
        assert envelope["success"] is False and envelope["error"]["type"] == "ValueError"

    def test_async_call_with_delay_answers_an_id(self, server, unique_name, callee, runtime):
        """mode async with delay_s queues the callee (trigger `function`, not_before set) and
        answers its id."""
        server.deploy(unique_name, CALLERS[runtime], timeout=30)
        answer = server.invoke(unique_name, {"callee": callee, "mode": "async", "delay": 0.5})["result"]
        record = server.invocation(answer["id"])
        assert record["trigger"] == "function" and record["not_before"] is not None
        done = server.wait_invocation(answer["id"])
        assert done["status"] == "succeeded" and done["result"]["twice"] == 2

    def test_unknown_callee_and_bad_delay_are_sdk_errors(self, server, unique_name, callee, runtime):
        """An unknown function is NotFound; a bad delay is BadRequest naming delay_s."""
        server.deploy(unique_name, CALLERS[runtime], timeout=30)
        missing = server.invoke(unique_name, {"callee": "no-such-function"})["result"]
        assert missing["sdk_error"] == "NotFound"
        bad = server.invoke(unique_name, {"callee": callee, "mode": "async", "delay": -1})["result"]
        assert bad["sdk_error"] == "BadRequest" and "delay_s" in bad["message"]


def test_callee_timeout_is_cut_to_the_callers_remaining_time(server, unique_name, callee):
    """A callee with a 60 s timeout, called by a 3 s function, has under 3 s."""
    server.deploy(unique_name, PY_CALLER, timeout=3)
    envelope = server.invoke(unique_name, {"callee": callee})["result"]
    assert envelope["success"] is True and 0 < envelope["result"]["remaining"] <= 3000


def test_callee_sees_the_callers_end_user(server, unique_name, callee):
    """The end user who called the caller is the callee's context.user."""
    user = end_user(server)
    server.deploy(unique_name, PY_CALLER, timeout=30, access="user")
    response = httpx.post(f"{server.url}/v1/functions/{unique_name}/invoke", json={"callee": callee},
                          headers={"Authorization": f"Bearer {user['token']}"}, timeout=60)
    envelope = response.json()["result"]
    assert envelope["result"]["user"] == {"id": user["id"], "username": user["username"]}


def test_chain_deeper_than_8_is_refused(server, unique_name):
    """A function that calls itself gets 8 calls deep; the 9th call is ChainTooDeep."""
    server.deploy(unique_name, CHAIN, timeout=120)
    body = server.invoke(unique_name)
    assert body["success"] is True, body
    assert body["result"] == {"deepest": 8, "stopped": "ChainTooDeep"}


def test_full_tier_answers_too_many_requests(server_factory, unique_name):
    """With one slot in the tier, the caller holds it: its sync call waits out the retry
    window and fails with TooManyRequests instead of waiting forever."""
    srv = server_factory(**{Settings.env_name("tier_limit_128"): 1, Settings.env_name("sync_retry_s"): 0.5})
    srv.deploy("callee", CALLEE)
    srv.deploy(unique_name, PY_CALLER, timeout=30)
    result = srv.invoke(unique_name, {"callee": "callee"})["result"]
    assert result["sdk_error"] == "TooManyRequests"
