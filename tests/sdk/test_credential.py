"""The SDK credential: each invocation's sdk_token is good only while that invocation runs.
A token a function keeps, or a call made after `main` returned, is refused and does nothing."""
from __future__ import annotations

import secrets
from types import SimpleNamespace

import pytest

from frazil.sdk.host import SdkHost
from frazil.settings import Settings

REPLAY_PY = """
import sys, threading
from frazil_sdk import db, SdkError

WAIT_S = 30  # a deadline for each handshake below: a bug must fail the test, not hang it
KEPT = {}

def bridge():
    return sys.modules['_frazil_sdk_bridge']

def raw_insert(table, token, record):
    # What a function could do with a token it kept: send the frame by hand.
    return bridge().channel.call({'op': 'db.insert', 'table': table, 'record': record, 'sdk_token': token})

def hold_next_credential(begun, done):
    # Handshake with the runtime, so the late calls below land at a known moment instead of a
    # moment a polling thread hopes to catch: the next invocation's credential is installed
    # (bridge.begin) only once the thread has made its calls. When begin is called, main has
    # returned, its result is with the platform and the next invoke frame has arrived.
    b = bridge()
    def begin(request):
        del b.begin  # one use: later invocations begin as usual
        begun.set()
        KEPT['held'] = done.wait(WAIT_S)
        b.begin(request)
    b.begin = begin

def after_return(table, token, begun, done):
    # Runs on a thread that outlives its invocation, once the next one's frame is in.
    try:
        if not begun.wait(WAIT_S):
            KEPT['api'] = KEPT['raw'] = 'the next invocation never arrived'
            return
        try:
            db.table(table).insert({'late': 'api'})
            KEPT['api'] = 'accepted'
        except SdkError as exc:
            KEPT['api'] = exc.type
        KEPT['raw'] = raw_insert(table, token, {'late': 'raw'})
    finally:
        done.set()

def main(event, context):
    table = event['t']
    if event['phase'] == 'keep':
        KEPT['token'] = bridge().token
        begun, done = threading.Event(), threading.Event()
        hold_next_credential(begun, done)
        threading.Thread(target=after_return, args=(table, bridge().token, begun, done), daemon=True).start()
        return db.table(table).insert({'phase': 'keep'})['id']
    replayed = raw_insert(table, KEPT['token'], {'late': 'replayed'})
    own = raw_insert(table, bridge().token, {'phase': 'own'})
    return {'held': KEPT.get('held'), 'api': KEPT.get('api'), 'raw': KEPT.get('raw'), 'replayed': replayed,
            'own_ok': own['ok'], 'same_token': KEPT['token'] == bridge().token}
"""

REPLAY_NODE = """
const { db, _bridge } = require('frazil-sdk');
const kept = {};
exports.main = async (event) => {
  const t = event.t;
  if (event.phase === 'keep') {
    kept.token = _bridge.currentInvocation().sdk_token;
    const id = (await db.table(t).insert({ phase: 'keep' })).id;
    // Runs after the handler returned: the SDK refuses it, and so does the platform a raw frame.
    // Queued after the handler's last await, setImmediate runs in the turn that sends the result,
    // before the next invoke frame can be read: never inside the next invocation.
    kept.late = new Promise((resolve) => setImmediate(async () => {
      try { await db.table(t).insert({ late: 'api' }); kept.api = 'accepted'; } catch (e) { kept.api = e.type; }
      kept.raw = await _bridge.sendSdkCall({ op: 'db.insert', table: t, record: { late: 'raw' }, sdk_token: kept.token });
      resolve();
    }));
    return id;
  }
  // The late calls were sent before this invocation began; wait for the reply to the raw one
  // (a deadline, so a lost reply fails the test instead of hanging it).
  let timer;
  await Promise.race([kept.late, new Promise((r) => { timer = setTimeout(r, 30000); })]);
  clearTimeout(timer);
  const replayed = await _bridge.sendSdkCall({ op: 'db.insert', table: t, record: { late: 'replayed' }, sdk_token: kept.token });
  return { api: kept.api, raw: kept.raw, replayed, same_token: kept.token === _bridge.currentInvocation().sdk_token };
};
"""


@pytest.fixture
def table(unique_name) -> str:
    return "c_" + unique_name.replace("-", "_")[2:40] + secrets.token_hex(2)


def check_refusals(server, table: str, result: dict) -> None:
    assert result["same_token"] is False
    assert result["api"] == "NoInvocation"  # the SDK knows no invocation runs
    for reply in (result["raw"], result["replayed"]):
        assert reply["ok"] is False and reply["error"]["type"] == "CredentialRefused", reply
    assert "ended" in result["raw"]["error"]["message"]
    # Nothing the refused calls asked for was done.
    rows = server.client().get(f"/v1/tables/{table}/records").json()["records"]
    assert not [r for r in rows if "late" in r], rows


class TestReplay:
    def test_python_kept_token_is_refused_after_its_invocation(self, server, unique_name, table):
        """A thread calling after main returned, and a token replayed in the next invocation on
        the same instance, are both refused; the current token works."""
        server.deploy(unique_name, {"index.py": REPLAY_PY}, timeout=60)
        first = server.invoke(unique_name, {"t": table, "phase": "keep"})
        assert first["success"] is True, first
        second = server.invoke(unique_name, {"t": table, "phase": "replay"})
        assert second["success"] is True and second["cold"] is False, second
        assert second["result"]["held"] is True, second["result"]  # the late calls were made in time
        assert second["result"]["own_ok"] is True
        check_refusals(server, table, second["result"])

    def test_node_kept_token_is_refused_after_its_invocation(self, server, unique_name, table):
        server.deploy(unique_name, {"index.js": REPLAY_NODE}, timeout=60)
        first = server.invoke(unique_name, {"t": table, "phase": "keep"})
        assert first["success"] is True, first
        second = server.invoke(unique_name, {"t": table, "phase": "replay"})
        assert second["success"] is True and second["cold"] is False, second
        check_refusals(server, table, second["result"])


class _Data:
    """Records whether any data operation was attempted."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        async def op(*args, **kwargs):
            self.calls.append(name)
            return {"id": "x"}
        return op


class FakeInstance:
    """The fields of `frazil.pool.instance.Instance` the SDK host reads."""

    def __init__(self, token):
        self.id = "i-1"
        self.sdk_token = token
        self.current_invocation = "inv-1" if token else None
        self.deadline = None
        self.version = SimpleNamespace(timeout_s=10)


fake_instance = FakeInstance


async def settle(answer):
    """SdkHost.handle's answer: given at once (a refusal), or awaited."""
    return answer if isinstance(answer, dict) else await answer


class TestHostChecks:
    """SdkHost.handle refuses before doing anything unless the call carries the live token."""

    @pytest.fixture
    def host(self):
        data = _Data()
        return SdkHost(SimpleNamespace(settings=Settings(), data=data, invoker=SimpleNamespace(inflight={}))), data

    @pytest.mark.parametrize("sent,live", [(None, "tok"), ("", "tok"), ("old", "tok"), ("tok", None), (7, "tok")])
    async def test_refused(self, host, sent, live):
        sdk, data = host
        message = {"type": "sdk_call", "call": 1, "op": "db.insert", "table": "t", "record": {}}
        if sent is not None:
            message["sdk_token"] = sent
        reply = await settle(sdk.handle(fake_instance(live), message))
        assert reply["ok"] is False and reply["error"]["type"] == "CredentialRefused"
        assert reply["error"]["status"] == 401 and data.calls == []

    async def test_live_token_is_served(self, host):
        sdk, data = host
        reply = await settle(sdk.handle(fake_instance("tok"), {"op": "db.insert", "sdk_token": "tok", "table": "t",
                                                               "record": {}}))
        assert reply == {"ok": True, "value": {"id": "x"}} and data.calls == ["insert"]

    async def test_the_credential_is_judged_when_the_call_arrives(self, host):
        """A call read while its invocation runs is served even if the invocation's result
        frame (read in the same chunk, just after it) ends the credential before it runs."""
        sdk, data = host
        instance = fake_instance("tok")
        pending = sdk.handle(instance, {"op": "db.insert", "sdk_token": "tok", "table": "t", "record": {}})
        instance.sdk_token = instance.current_invocation = None  # the result frame came next
        assert await settle(pending) == {"ok": True, "value": {"id": "x"}} and data.calls == ["insert"]
        late = sdk.handle(instance, {"op": "db.insert", "sdk_token": "tok", "table": "t", "record": {}})
        assert (await settle(late))["error"]["type"] == "CredentialRefused" and data.calls == ["insert"]

    async def test_unknown_operation(self, host):
        sdk, _ = host
        reply = await settle(sdk.handle(fake_instance("tok"), {"op": "os.system", "sdk_token": "tok"}))
        assert reply["ok"] is False and reply["error"]["type"] == "BadRequest" and "os.system" in reply["error"]["message"]
