"""`db` inside functions, against a real server: admin rights (ACLs bypassed), bulk update,
delete, drop, and errors raised as ordinary exceptions — from Python and from Node."""
from __future__ import annotations

import json
import secrets

import pytest


@pytest.fixture
def table(unique_name) -> str:
    """A table name unique to this test (the shared server outlives tests)."""
    return "t_" + unique_name.replace("-", "_")[2:40] + secrets.token_hex(2)


def py(body: str) -> dict:
    """A Python function whose main runs `body` (indented by the caller's text)."""
    return {"index.py": "from frazil_sdk import db, http, log, SdkError\n"
                        "def main(event, context):\n" + "".join(f"    {line}\n" for line in body.splitlines())}


def invoke_ok(server, name: str, event=None):
    body = server.invoke(name, event or {})
    assert body["success"] is True, body
    return body["result"]


def end_user(server) -> str:
    """Register an end user and answer their token."""
    creds = {"username": f"u{secrets.token_hex(4)}", "password": "correct horse battery"}
    response = server.client(token=None).post("/v1/auth/register", json=creds)
    assert response.status_code in (200, 201), response.text
    login = server.client(token=None).post("/v1/auth/login", json=creds)
    assert login.status_code == 200, login.text
    return login.json()["token"]


class TestRecords:
    def test_insert_get_find_count(self, server, unique_name, table):
        """Records round-trip with their platform fields; shorthand and operator filters agree."""
        server.deploy(unique_name, py(
            "t = db.table(event['t'])\n"
            "a = t.insert({'text': 'hi', 'n': 1})\n"
            "t.insert({'text': 'yo', 'n': 2}); t.insert({'text': 'hi', 'n': 3})\n"
            "return {'a': a, 'got': t.get(a['id']), 'short': t.find({'text': 'hi'}),\n"
            "        'op': t.find({'text': {'eq': 'hi'}}, limit=10),\n"
            "        'page': t.find(order='-n', limit=1, offset=1), 'count': t.count({'n': {'gte': 2}}),\n"
            "        'one': t.find_one({'n': 2})}"))
        result = invoke_ok(server, unique_name, {"t": table})
        a = result["a"]
        assert a["text"] == "hi" and a["n"] == 1 and {"id", "created_at", "updated_at"} <= set(a)
        assert result["got"] == a
        assert [r["n"] for r in result["short"]] == [1, 3] and result["op"] == result["short"]
        assert [r["n"] for r in result["page"]] == [2]
        assert result["count"] == 2 and result["one"]["text"] == "yo"

    def test_bulk_update_and_delete(self, server, unique_name, table):
        """update(where, patch) changes every matching record and answers how many; delete too."""
        server.deploy(unique_name, py(
            "t = db.table(event['t'])\n"
            "for i in range(6):\n"
            "    t.insert({'n': i, 'seen': False})\n"
            "changed = t.update({'n': {'gte': 2}}, {'seen': True, 'tag': 'bulk'})\n"
            "none = t.update({'n': {'gt': 100}}, {'seen': True})\n"
            "deleted = t.delete({'seen': {'ne': True}})\n"
            "return [changed, none, deleted, t.find(order='n')]"))
        changed, none, deleted, rows = invoke_ok(server, unique_name, {"t": table})
        assert (changed, none, deleted) == (4, 0, 2)
        assert [(r["n"], r["seen"], r["tag"]) for r in rows] == [(i, True, "bulk") for i in range(2, 6)]
        # The same table seen from outside, with the admin key.
        outside = server.client().get(f"/v1/tables/{table}/records", params={"where": json.dumps({"tag": "bulk"})})
        assert outside.status_code == 200 and len(outside.json()["records"]) == 4

    def test_atomic_ops(self, server, unique_name, table):
        """update(where, None, ops=...) increments, appends and removes in the database, atomically."""
        server.deploy(unique_name, py(
            "from concurrent.futures import ThreadPoolExecutor\n"
            "t = db.table(event['t'])\n"
            "rec = t.insert({'n': 0, 'old': 1})\n"
            "with ThreadPoolExecutor(8) as pool:\n"
            "    counts = list(pool.map(lambda i: t.update({'id': rec['id']}, None, ops={'n': {'inc': 1}, "
            "'seen': {'push': [i]}}), range(16)))\n"
            "t.update({}, None, ops={'old': {'remove': True}})\n"
            "return [counts, t.get(rec['id'])]"))
        counts, rec = invoke_ok(server, unique_name, {"t": table})
        assert counts == [1] * 16 and rec["n"] == 16 and sorted(rec["seen"]) == list(range(16)) and "old" not in rec

    def test_threads_share_the_channel(self, server, unique_name, table):
        """Calls from many threads at once each get their own answer."""
        server.deploy(unique_name, {"index.py": (
            "import threading\nfrom frazil_sdk import db\n"
            "def main(event, context):\n"
            "    t = db.table(event['t']); out = {}\n"
            "    def work(k):\n"
            "        out[k] = [t.insert({'k': k, 'i': i})['k'] for i in range(5)]\n"
            "    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]\n"
            "    [th.start() for th in threads]; [th.join() for th in threads]\n"
            "    return [out, t.count()]\n")})
        out, count = invoke_ok(server, unique_name, {"t": table})
        assert out == {str(k): [k] * 5 for k in range(8)} and count == 40

    def test_async_handler_uses_aio(self, server, unique_name, table):
        """frazil_sdk.aio: the same calls as coroutines, many in flight from one async handler."""
        server.deploy(unique_name, {"index.py": (
            "import asyncio\nfrom frazil_sdk import aio\n"
            "async def main(event, context):\n"
            "    t = aio.db.table(event['t'])\n"
            "    made = await asyncio.gather(*(t.insert({'i': i}) for i in range(30)))\n"
            "    return [sorted(r['i'] for r in made), await t.count(), (await t.find({'i': 7}))[0]['i']]\n")})
        assert invoke_ok(server, unique_name, {"t": table}) == [list(range(30)), 30, 7]
        # Warm again: the helper thread and the event loop are reused.
        assert invoke_ok(server, unique_name, {"t": table})[1] == 60


class TestAdminRights:
    def test_function_writes_an_admin_only_table(self, server, unique_name, table):
        """A function writes a table closed to everyone; an end user can neither read nor write it."""
        server.deploy(unique_name, py(
            "db.create_table(event['t'], {'read': 'admin', 'write': 'admin'})\n"
            "return db.table(event['t']).insert({'secret': 42})"))
        record = invoke_ok(server, unique_name, {"t": table})
        user = server.client(token=end_user(server))
        assert user.get(f"/v1/tables/{table}/records").status_code == 403
        assert user.get(f"/v1/tables/{table}/records/{record['id']}").status_code == 403
        assert user.post(f"/v1/tables/{table}/records", json={"secret": 0}).status_code == 403
        admin = server.client().get(f"/v1/tables/{table}/records/{record['id']}")
        assert admin.status_code == 200 and admin.json()["record"]["secret"] == 42

    def test_function_writes_a_read_only_table(self, server, unique_name, table):
        """Public read, admin write: users read what the function wrote but cannot write."""
        created = server.client().put(f"/v1/tables/{table}", json={"acl": {"read": "public", "write": "admin"}})
        assert created.status_code in (200, 201), created.text
        server.deploy(unique_name, py("return db.table(event['t']).update({}, {'stamp': 1}) + "
                                      "len([db.table(event['t']).insert({'n': i}) for i in range(3)])"))
        assert invoke_ok(server, unique_name, {"t": table}) == 3
        user = server.client(token=end_user(server))
        assert len(user.get(f"/v1/tables/{table}/records").json()["records"]) == 3
        assert user.post(f"/v1/tables/{table}/records", json={"n": 9}).status_code == 403

    def test_insert_into_a_new_table_creates_it_closed(self, server, unique_name, table):
        server.deploy(unique_name, py("return db.table(event['t']).insert({'x': 1})['x']"))
        assert invoke_ok(server, unique_name, {"t": table}) == 1
        info = server.client().get(f"/v1/tables/{table}").json()
        assert info["table"]["acl"] == {"read": "admin", "write": "admin"}

    def test_drop(self, server, unique_name, table):
        """db.drop removes the table and its records; using it afterwards is a NotFound error."""
        server.deploy(unique_name, py(
            "t = db.table(event['t'])\n"
            "[t.insert({'i': i}) for i in range(4)]\n"
            "dropped = db.drop(event['t'])\n"
            "try:\n"
            "    t.find()\n"
            "except SdkError as exc:\n"
            "    return [dropped, exc.type, str(exc)]\n"))
        dropped, kind, message = invoke_ok(server, unique_name, {"t": table})
        assert dropped == 4 and kind == "NotFound" and table in message
        assert server.client().get(f"/v1/tables/{table}").status_code == 404


class TestErrors:
    def test_db_errors_are_ordinary_exceptions(self, server, unique_name, table):
        """A bad filter or an unknown table raises SdkError (an Exception) with the platform's message."""
        server.deploy(unique_name, py(
            "out = []\n"
            "db.table(event['t']).insert({'n': 1})\n"
            "for call in (lambda: db.table(event['t']).find({'n': {'bogus': 1}}),\n"
            "             lambda: db.table('no_such_table_here').get('x'),\n"
            "             lambda: db.table('Bad Name').insert({}),\n"
            "             lambda: db.table(event['t']).insert([1, 2])):\n"
            "    try:\n"
            "        call()\n"
            "    except Exception as exc:\n"
            "        out.append([type(exc).__name__, exc.type, str(exc)])\n"
            "return out"))
        out = invoke_ok(server, unique_name, {"t": table})
        assert [o[0] for o in out] == ["SdkError"] * 4
        assert out[0][1] == "BadRequest" and "bogus" in out[0][2]
        assert out[1][1] == "NotFound" and "no_such_table_here" in out[1][2]
        assert out[2][1] == "BadRequest" and "Bad Name" in out[2][2]
        assert out[3][1] == "BadRequest"

    def test_uncaught_sdk_error_fails_the_invocation_clearly(self, server, unique_name):
        server.deploy(unique_name, py("return db.table('missing_table_x').get('nope')"))
        body = server.invoke(unique_name)
        assert body["success"] is False and body["error"]["type"] == "SdkError"
        assert "missing_table_x" in body["message"]

    def test_log_lines_land_in_the_invocation_logs(self, server, unique_name):
        server.deploy(unique_name, py("log.info('hello %s', 'there'); log.warn('careful'); return 1"))
        body = server.invoke(unique_name)
        logs = server.invocation(body["invocation_id"])["logs"]
        assert "[INFO] hello there\n" in logs and "[WARN] careful\n" in logs


NODE_CRUD = """
const { db, SdkError } = require('frazil-sdk');
exports.main = async (event) => {
  const t = db.table(event.t);
  await db.createTable(event.t, { read: 'admin', write: 'admin' });
  const made = await Promise.all([0, 1, 2, 3, 4].map((i) => t.insert({ i, seen: false })));
  const got = await t.get(made[0].id);
  const changed = await t.update({ i: { gte: 2 } }, { seen: true });
  const found = await t.find({ seen: true }, { order: '-i', limit: 2 });
  const deleted = await t.delete({ seen: false });
  let error = null;
  try { await t.find({ i: { bogus: 1 } }); } catch (e) { error = [e instanceof SdkError, e.name, e.type, e.message]; }
  const count = await t.count();
  const dropped = await db.drop(event.t);
  let gone = null;
  try { await t.get(made[4].id); } catch (e) { gone = e.type; }
  return { got: got.i, changed, found: found.map((r) => r.i), deleted, error, count, dropped, gone };
};
"""


class TestNode:
    def test_node_crud_bulk_update_drop(self, server, unique_name, table):
        server.deploy(unique_name, {"index.js": NODE_CRUD})
        result = invoke_ok(server, unique_name, {"t": table})
        assert result["got"] == 0 and result["changed"] == 3 and result["found"] == [4, 3]
        assert result["deleted"] == 2 and result["count"] == 3 and result["dropped"] == 3
        is_sdk_error, name, kind, message = result["error"]
        assert is_sdk_error and name == "SdkError" and kind == "BadRequest" and "bogus" in message
        assert result["gone"] == "NotFound"

    def test_node_admin_only_table(self, server, unique_name, table):
        server.deploy(unique_name, {"index.js": (
            "const { db, log } = require('frazil-sdk');\n"
            "exports.main = async (event) => { log.info('writing', event.t);\n"
            "  return db.table(event.t).insert({ secret: 'node' }); };")})
        body = server.invoke(unique_name, {"t": table})
        assert body["success"] is True, body
        assert f"[INFO] writing {table}" in server.invocation(body["invocation_id"])["logs"]
        user = server.client(token=end_user(server))
        assert user.get(f"/v1/tables/{table}/records").status_code == 403
