"""Table triggers through real servers, on SQLite and PostgreSQL: changes made by an end user
over HTTP and by a function through the SDK each fire one invocation with the change; a change
whose invocation had not run when the server was killed (-9) runs after the restart; a function
whose writes fire itself stops at the depth limit with a refused record."""
from __future__ import annotations

import signal

from frazil.testing.waiting import wait_until
from tests.reliability.conftest import backend_server, private_database  # noqa: F401 - fixtures

WATCHER = {"index.py": "def main(event, context):\n    return {'event': event, 'user': context.user}\n"}
WRITER = {"index.py": (
    "from frazil_sdk import db\n"
    "def main(event, context):\n"
    "    orders = db.table('orders')\n"
    "    record = orders.insert({'n': 1, 'by': 'sdk'})\n"
    "    orders.update({'id': record['id']}, {'n': 2})\n"
    "    orders.delete({'id': record['id']})\n"
    "    return record['id']\n")}
LOOPER = {"index.py": (
    "import os\nfrom frazil_sdk import db\n"
    "def main(event, context):\n"
    "    n = event['record']['n']\n"
    "    db.table(os.environ['TABLE']).insert({'n': n + 1})\n"
    "    return n\n")}
ORDERS = {"type": "table", "table": "orders", "on": ["insert", "update", "delete"]}
YEARLY = {"type": "schedule", "cron": "0 0 1 1 *"}


def insert_update_delete(client) -> list[dict]:
    """One record of `orders` inserted, updated and deleted through `client`: the three events
    those changes fire, in order."""
    response = client.post("/v1/tables/orders/records", json={"n": 1})
    assert response.status_code == 200, response.text
    inserted = response.json()["record"]
    patched = client.patch(f"/v1/tables/orders/records/{inserted['id']}", json={"n": 2}).json()["record"]
    assert client.delete(f"/v1/tables/orders/records/{inserted['id']}").status_code == 200
    return [{"table": "orders", "op": "insert", "record": inserted, "old": None},
            {"table": "orders", "op": "update", "record": patched, "old": inserted},
            {"table": "orders", "op": "delete", "record": None, "old": patched}]


def table_records(srv, name: str, count: int) -> list[dict]:
    """The `table` records of `name` once there are `count` of them and all are final, oldest first."""
    def listed():
        body = srv.client().get("/v1/invocations", params={"function": name, "limit": 100}).json()
        records = [r for r in body["invocations"] if r["trigger"] == "table"]
        if len(records) >= count and all(r["status"] not in ("queued", "running") for r in records):
            return records
        return None

    records = wait_until(listed, timeout=60, what=f"{count} finished table invocations of {name}")
    return [srv.invocation(r["id"]) for r in reversed(records)]


def test_http_and_sdk_changes_fire_one_invocation_each_and_survive_kill_9(backend_server, tmp_path):
    """An end user's insert, update and delete (ACL `authenticated`) fire three invocations whose
    event is the change and whose context.user is that user; a function's three SDK writes fire
    three more, one call deeper. A change whose invocation cannot start yet (its tier has no
    room) is still there after a kill -9, and runs once the restarted server has room."""
    srv = backend_server(FRAZIL_TIER_LIMIT_256="0")
    srv.deploy("watcher", WATCHER, triggers=[ORDERS])
    srv.deploy("writer", WRITER)
    srv.deploy("late", WATCHER, memory=256, http=True, access="user",
               triggers=[{"type": "table", "table": "parcels", "on": ["insert"]}, YEARLY])
    admin = srv.client()
    assert admin.put("/v1/tables/orders", json={"acl": {"read": "authenticated", "write": "authenticated"}}
                     ).status_code == 200
    session = srv.client(None).post("/v1/auth/register", json={"username": "alice", "password": "correct horse"})
    user = srv.client(session.json()["token"])

    events = insert_update_delete(user)
    by_user = table_records(srv, "watcher", 3)
    assert [r["result"]["event"] for r in by_user] == events
    alice = {"id": session.json()["user_id"], "username": "alice"}
    assert all(r["status"] == "succeeded" and r["result"]["user"] == alice and r["user"] == alice for r in by_user)
    assert {(r["mode"], r["depth"]) for r in by_user} == {("async", 0)}

    record_id = srv.invoke("writer")["result"]
    by_sdk = table_records(srv, "watcher", 6)[3:]
    assert [(r["result"]["event"]["op"], r["depth"], r["status"]) for r in by_sdk] == [
        ("insert", 1, "succeeded"), ("update", 1, "succeeded"), ("delete", 1, "succeeded")]
    events = [r["event"] for r in by_sdk]
    assert events[0]["record"]["id"] == events[1]["old"]["id"] == events[2]["old"]["id"] == record_id
    assert (events[1]["old"]["n"], events[1]["record"]["n"], events[2]["old"]["n"]) == (1, 2, 2)
    assert all(r["result"]["user"] is None for r in by_sdk)

    listed = srv.cli("ls").stdout  # a short table: each function on one line
    assert [[cell.strip() for cell in line.split("│")[7:10]] for line in listed.splitlines() if "late" in line] == [
        ["user", "table parcels on insert", f"{srv.url}/fn/late"]], listed
    assert "schedule 0 0 1 1 * (next" in listed

    assert admin.post("/v1/tables/parcels/records", json={"to": "oslo"}).status_code == 200
    srv.stop(signal.SIGKILL)  # right after the write answered; its invocation has no slot to run in
    srv.env["FRAZIL_TIER_LIMIT_256"] = "1"
    srv.start()
    (late,) = table_records(srv, "late", 1)
    assert late["status"] == "succeeded" and late["attempts"] == 1
    assert late["result"]["event"]["op"] == "insert" and late["result"]["event"]["record"]["to"] == "oslo"


def test_a_function_whose_writes_fire_itself_stops_at_the_depth_limit(server, unique_name):
    """Insert n=0 → the function inserts n+1 → ...: depths 0 to 8 run (nine records, each
    succeeded); the tenth change's invocation would be 9 calls deep and is recorded failed
    with ChainTooDeep, never run. The writes themselves all stand."""
    table = unique_name.replace("-", "_")
    server.deploy(unique_name, LOOPER, env={"TABLE": table},
                  triggers=[{"type": "table", "table": table, "on": ["insert"]}])
    assert server.client().post(f"/v1/tables/{table}/records", json={"n": 0}).status_code == 200
    records = table_records(server, unique_name, 10)
    assert len(records) == 10
    ran, refused = records[:9], records[9]
    assert [(r["depth"], r["status"], r["result"]) for r in ran] == [(n, "succeeded", n) for n in range(9)]
    assert (refused["depth"], refused["status"], refused["attempts"]) == (9, "failed", 0)
    assert refused["error"]["type"] == "ChainTooDeep" and "at most 8" in refused["error"]["message"]
    assert refused["event"]["record"]["n"] == 9 and refused["started_at"] is None
    stored = server.client().get(f"/v1/tables/{table}/records", params={"limit": 100}).json()["records"]
    assert sorted(r["n"] for r in stored) == list(range(10))


def test_describe_shows_access_triggers_and_the_endpoint_url(server, tmp_path, unique_name):
    """A frazil.toml with `[[triggers]]` of both kinds and `http = true`: `frazil describe`
    shows the access, each trigger (a schedule with its next fire time) and the URL."""
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "index.py").write_text(WATCHER["index.py"])
    (folder / "frazil.toml").write_text(
        f'name = "{unique_name}"\naccess = "user"\nhttp = true\n\n'
        '[[triggers]]\ntype = "table"\ntable = "orders"\non = ["insert", "delete"]\n\n'
        '[[triggers]]\ntype = "schedule"\ncron = "0 0 1 1 *"\n')
    assert server.cli("deploy", str(folder)).returncode == 0
    described = server.cli("describe", unique_name)
    assert described.returncode == 0, described.stderr
    lines = described.stdout.splitlines()
    assert any(line.split() == ["access:", "user"] for line in lines), described.stdout
    assert "table orders on insert, delete" in described.stdout
    assert "schedule 0 0 1 1 * (next " in described.stdout and "-01-01T00:00:00.000Z)" in described.stdout
    assert f"{server.url}/fn/{unique_name}" in described.stdout
