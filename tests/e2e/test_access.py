"""Who may invoke a function (`access`), and `context.user`, against a real server in both
runtimes. End users register and log in over HTTP first, as a browser would."""
from __future__ import annotations

import json
import secrets

import httpx
import pytest

from frazil.testing.server import HTTP_TIMEOUT_S


WHO = {
    "python": {"index.py": "def main(event, context):\n    return {'user': context.user}\n"},
    "node": {"index.js": "exports.main = async (event, context) => ({ user: context.user });\n"},
}


def end_user(server) -> dict:
    """A new end user, registered and then logged in over HTTP: {"id", "username", "token"}."""
    username, password = f"u{secrets.token_hex(4)}", "password-1"
    registered = httpx.post(f"{server.url}/v1/auth/register", json={"username": username, "password": password},
                            timeout=HTTP_TIMEOUT_S)
    assert registered.status_code == 200, registered.text
    login = httpx.post(f"{server.url}/v1/auth/login", json={"username": username, "password": password},
                       timeout=HTTP_TIMEOUT_S)
    assert login.status_code == 200, login.text
    return {"id": login.json()["user_id"], "username": username, "token": login.json()["token"]}


@pytest.fixture(scope="module")
def user(server):
    return end_user(server)


def invoke(server, name: str, token: str | None, mode: str = "sync") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{server.url}/v1/functions/{name}/invoke", params={"mode": mode}, content=b"{}",
                      headers=headers, timeout=30)


@pytest.mark.parametrize("runtime", sorted(WHO))
class TestUserAccess:
    def test_end_user_sees_themselves_in_context(self, server, unique_name, user, runtime):
        """An `access = "user"` function called with an end user's token sees them as context.user."""
        server.deploy(unique_name, WHO[runtime], access="user")
        response = invoke(server, unique_name, user["token"])
        assert response.status_code == 200, response.text
        assert response.json()["result"] == {"user": {"id": user["id"], "username": user["username"]}}

    def test_admin_may_call_and_has_no_user(self, server, unique_name, runtime):
        """The admin key may call a user function; context.user is then null."""
        server.deploy(unique_name, WHO[runtime], access="user")
        assert server.invoke(unique_name)["result"] == {"user": None}

    def test_without_a_valid_user_token_is_401(self, server, unique_name, runtime):
        """No token, or a token that is not live, is 401 on a user function."""
        server.deploy(unique_name, WHO[runtime], access="user")
        for token in (None, "not-a-token"):
            response = invoke(server, unique_name, token)
            assert response.status_code == 401, response.text
            assert response.json()["success"] is False


class TestAdminAndPublic:
    def test_end_user_on_admin_function_is_403(self, server, unique_name, user):
        """An admin-only function refuses a valid end user with 403, and no token with 401."""
        server.deploy(unique_name, WHO["python"])  # access defaults to admin
        assert server.client().get(f"/v1/functions/{unique_name}").json()["function"]["access"] == "admin"
        forbidden = invoke(server, unique_name, user["token"])
        assert forbidden.status_code == 403 and forbidden.json()["error"]["type"] == "Forbidden"
        assert invoke(server, unique_name, None).status_code == 401

    def test_public_function_with_and_without_user(self, server, unique_name, user):
        """A public function needs no token; an end user who sends theirs is context.user."""
        server.deploy(unique_name, WHO["node"], access="public")
        assert invoke(server, unique_name, None).json()["result"] == {"user": None}
        assert invoke(server, unique_name, user["token"]).json()["result"]["user"]["id"] == user["id"]

    def test_older_public_flag_means_access_public(self, server, unique_name):
        """`public = true` deploys access = "public"."""
        body = server.deploy(unique_name, WHO["python"], public=True).json()
        assert body["function"]["access"] == "public" and body["function"]["public"] is True
        assert invoke(server, unique_name, None).status_code == 200

    def test_async_invocation_keeps_its_user(self, server, unique_name, user):
        """A queued invocation runs later with the user who queued it as context.user, and
        its record names them."""
        server.deploy(unique_name, WHO["python"], access="user")
        accepted = invoke(server, unique_name, user["token"], mode="async")
        assert accepted.status_code == 202, accepted.text
        record = server.wait_invocation(accepted.json()["invocation_id"])
        expected = {"id": user["id"], "username": user["username"]}
        assert record["status"] == "succeeded" and record["result"] == {"user": expected}
        assert record["user"] == expected


class TestBadAccess:
    @pytest.mark.parametrize("config", [{"access": "everyone"}, {"access": "user", "public": True}])
    def test_bad_access_is_400_and_deploys_nothing(self, server, unique_name, config):
        """A bad access value (or one contradicting `public`) is a 400 naming `access`, and no
        function or version is created."""
        response = server.deploy(unique_name, WHO["python"], expect=400, **config)
        assert "access" in response.json()["message"]
        assert server.client().get(f"/v1/functions/{unique_name}").status_code == 404


def test_cli_deploy_access_flag(server, unique_name, tmp_path, user):
    """`frazil deploy --access user` deploys a function end users may call."""
    folder = tmp_path / unique_name
    folder.mkdir()
    (folder / "index.py").write_text(WHO["python"]["index.py"])
    done = server.cli("deploy", str(folder), "--access", "user", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["function"]["access"] == "user"
    assert invoke(server, unique_name, user["token"]).status_code == 200
