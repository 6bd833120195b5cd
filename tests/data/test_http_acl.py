"""The ACL over HTTP against a real `frazil server`: each mode, on each route, for each kind of
token - none, a bad one, an expired one, the record's owner, another user, the admin key."""
import hashlib
import secrets
import sqlite3

import httpx
import pytest

from frazil.testing.server import HTTP_TIMEOUT_S

MODES = ["public", "authenticated", "owner", "admin"]
TOKENS = ["none", "bad", "expired", "alice", "bob", "admin"]


class Users:
    """alice and bob on the shared server, with live tokens, and an expired token of alice's."""

    def __init__(self, server):
        self.server = server
        suffix = secrets.token_hex(3)
        self.tokens, self.ids = {"admin": server.admin_key, "none": None, "bad": "not-a-token-" + suffix}, {}
        for name in ("alice", "bob"):
            r = httpx.post(f"{server.url}/v1/auth/register",
                           json={"username": f"{name}-{suffix}", "password": "password1"}, timeout=HTTP_TIMEOUT_S)
            assert r.status_code == 200, r.text
            self.tokens[name], self.ids[name] = r.json()["token"], r.json()["user_id"]
        r = httpx.post(f"{server.url}/v1/auth/login", json={"username": f"alice-{suffix}", "password": "password1"},
                       timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.text
        self.tokens["expired"] = r.json()["token"]
        # Expire it in the server's own database (SQLite in WAL mode: a second writer is fine).
        with sqlite3.connect(server.data_dir / "frazil.db") as db:
            changed = db.execute("UPDATE data_tokens SET expires_at = 0 WHERE token_hash = ?",
                                 (hashlib.sha256(self.tokens["expired"].encode()).hexdigest(),)).rowcount
        assert changed == 1

    def client(self, token: str) -> httpx.Client:
        return self.server.client(self.tokens[token])


@pytest.fixture(scope="module")
def users(server):
    return Users(server)


@pytest.fixture
def table(server, users):
    """A fresh table with one record each by alice, bob and the admin; answers a function that
    sets its ACL, the table name and alice's record."""
    name = f"acl_{secrets.token_hex(4)}"
    admin = users.client("admin")

    def set_acl(read="admin", write="admin"):
        r = admin.put(f"/v1/tables/{name}", json={"acl": {"read": read, "write": write}})
        assert r.status_code == 200, r.text

    set_acl("owner", "owner")
    records = {}
    for who in ("alice", "bob", "admin"):
        r = users.client(who).post(f"/v1/tables/{name}/records", json={"by": who})
        assert r.status_code == 200, r.text
        records[who] = r.json()["record"]
    yield set_acl, name, records["alice"]
    admin.delete(f"/v1/tables/{name}")


def expected_status(mode: str, token: str) -> int:
    """The documented rule: bad tokens are 401 everywhere; the admin key and public mode pass;
    no token is 401; admin mode refuses users with 403."""
    if token in ("bad", "expired"):
        return 401
    if token == "admin" or mode == "public":
        return 200
    if token == "none":
        return 401
    return 403 if mode == "admin" else 200


def visible(mode: str, token: str) -> set[str]:
    return {token} if mode == "owner" and token in ("alice", "bob") else {"alice", "bob", "admin"}


def check_error(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["message"] and body["error"]["message"]
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize("mode", MODES)
class TestRecordRoutes:
    def test_list(self, users, table, mode, token):
        """GET records: refused per mode and token; owner mode lists only the caller's."""
        set_acl, name, _ = table
        set_acl(read=mode)
        r = users.client(token).get(f"/v1/tables/{name}/records")
        status = expected_status(mode, token)
        if status != 200:
            return check_error(r, status)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True and body["count"] == len(body["records"])
        assert {rec["by"] for rec in body["records"]} == visible(mode, token)

    def test_get(self, users, table, mode, token):
        """GET one record (alice's): in owner mode another user gets 404."""
        set_acl, name, mine = table
        set_acl(read=mode)
        r = users.client(token).get(f"/v1/tables/{name}/records/{mine['id']}")
        status = expected_status(mode, token)
        if status == 200 and "alice" not in visible(mode, token):
            status = 404
        if status != 200:
            return check_error(r, status)
        assert r.status_code == 200 and r.json()["record"] == mine

    def test_insert(self, users, table, mode, token):
        """POST a record: created_by is the user's id, null for the admin key and anonymous."""
        set_acl, name, _ = table
        set_acl(read="public", write=mode)
        r = users.client(token).post(f"/v1/tables/{name}/records", json={"n": 1})
        status = expected_status(mode, token)
        if status != 200:
            check_error(r, status)
            assert len(users.client("admin").get(f"/v1/tables/{name}/records").json()["records"]) == 3
            return
        assert r.status_code == 200, r.text
        assert r.json()["record"]["created_by"] == users.ids.get(token)

    def test_patch(self, users, table, mode, token):
        """PATCH alice's record: refused per mode; bob gets 404 in owner mode; nothing changes
        unless allowed."""
        set_acl, name, mine = table
        set_acl(read="public", write=mode)
        r = users.client(token).patch(f"/v1/tables/{name}/records/{mine['id']}", json={"x": 1})
        status = expected_status(mode, token)
        if status == 200 and "alice" not in visible(mode, token):
            status = 404
        stored = users.client("admin").get(f"/v1/tables/{name}/records/{mine['id']}").json()["record"]
        if status != 200:
            check_error(r, status)
            assert stored == mine
            return
        assert r.status_code == 200 and r.json()["record"]["x"] == 1 and stored["x"] == 1

    def test_delete(self, users, table, mode, token):
        """DELETE alice's record: refused per mode; bob gets 404 in owner mode."""
        set_acl, name, mine = table
        set_acl(read="public", write=mode)
        r = users.client(token).delete(f"/v1/tables/{name}/records/{mine['id']}")
        status = expected_status(mode, token)
        if status == 200 and "alice" not in visible(mode, token):
            status = 404
        still = users.client("admin").get(f"/v1/tables/{name}/records/{mine['id']}").status_code
        if status != 200:
            check_error(r, status)
            assert still == 200
            return
        assert r.status_code == 200 and r.json()["record"]["id"] == mine["id"] and still == 404


@pytest.mark.parametrize("token", TOKENS)
class TestTableRoutes:
    @pytest.mark.parametrize("method, path", [("PUT", "/v1/tables/{name}"), ("GET", "/v1/tables/{name}"),
                                              ("DELETE", "/v1/tables/{name}"), ("GET", "/v1/tables")])
    def test_admin_only(self, users, table, token, method, path):
        """Table management: the admin key only; a user token is 403, none or a bad one 401."""
        _, name, _ = table
        kwargs = {"json": {"acl": {"read": "public"}}} if method == "PUT" else {}
        r = users.client(token).request(method, path.format(name=name), **kwargs)
        status = {"admin": 200, "alice": 403, "bob": 403}.get(token, 401)
        if status != 200:
            check_error(r, status)
            assert users.client("admin").get(f"/v1/tables/{name}").json()["table"]["acl"]["read"] == "owner"
            return
        assert r.status_code == 200, r.text
        assert r.json()["success"] is True
