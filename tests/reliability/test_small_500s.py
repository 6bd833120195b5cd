"""Inputs that used to be 500s answer 4xx (issue 11, item 2), through a real server."""
import json

import pytest

from frazil.settings import Settings

ECHO = {"index.py": "def main(event, context):\n    return 'alive'\n"}
WIDTH = 1000  # FRAZIL_MAX_JSON_WIDTH of the server below: small, so wide inputs stay cheap


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import make_server

    server = make_server(tmp_path_factory.mktemp("small500") / "data",
                         **{Settings.env_name("max_json_width"): WIDTH}).start()
    server.deploy("echo", ECHO)
    yield server
    server.close()


def deep(levels: int, leaf=1):
    return "[" * levels + json.dumps(leaf) + "]" * levels


@pytest.fixture(scope="module")
def user_token(srv):
    response = srv.client(None).post("/v1/auth/register", json={"username": "plainuser",
                                                                "password": "long enough pw"})
    assert response.status_code == 200, response.text
    return response.json()["token"]


class TestAdminRoutes:
    @pytest.mark.parametrize("path", ["/v1/functions", "/v1/functions/echo", "/v1/invocations/nope",
                                      "/v1/stats"])
    def test_a_user_token_is_403_and_a_bad_token_401(self, srv, user_token, path):
        """A valid end user's token on an admin route is forbidden (403); no token or an
        invalid one is unauthenticated (401)."""
        forbidden = srv.client(user_token).get(path)
        assert forbidden.status_code == 403, forbidden.text
        assert "admin key" in forbidden.json()["message"]
        assert srv.client("not-a-token").get(path).status_code == 401
        assert srv.client(None).get(path).status_code == 401


def test_a_20000_field_patch_is_400(srv):
    """A patch (or record) wider than 1,000 fields is refused, not a RecursionError."""
    api = srv.client()
    record = api.post("/v1/tables/wide/records", json={"a": 1}).json()["record"]
    fields = {f"f{i}": i for i in range(20_000)}
    for response in (api.patch(f"/v1/tables/wide/records/{record['id']}", json=fields),
                     api.post("/v1/tables/wide/records", json=fields)):
        assert response.status_code == 400, response.text
        assert "20000 fields" in response.json()["message"]
    assert api.get(f"/v1/tables/wide/records/{record['id']}").json()["record"]["a"] == 1


@pytest.mark.parametrize("number", [2**70, 2**31, 0, -1])
def test_a_version_number_beyond_the_store_is_404(srv, number):
    response = srv.client().get(f"/v1/functions/echo/versions/{number}")
    assert response.status_code == 404, response.text
    assert srv.client().get("/v1/functions/echo/versions/1").status_code == 200


class TestJsonBounds:
    @pytest.mark.parametrize("event", [deep(1000), deep(65), json.dumps({"list": list(range(WIDTH + 1))}),
                                       json.dumps({f"k{i}": i for i in range(WIDTH + 1)})],
                             ids=["1000-deep", "65-deep", "wide-array", "wide-object"])
    def test_events_beyond_the_bounds_are_400_before_dispatch(self, srv, event):
        """A valid JSON event deeper or wider than the bounds is refused; the function's
        instance is untouched and answers the next call warm."""
        srv.invoke("echo")
        response = srv.client().post("/v1/functions/echo/invoke", content=event)
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert any(Settings.env_name(f) in message for f in ("max_json_depth", "max_json_width")), message
        again = srv.invoke("echo")
        assert again["result"] == "alive" and again["cold"] is False

    def test_events_within_the_bounds_run(self, srv):
        """64 levels and WIDTH members are allowed."""
        assert srv.invoke("echo", json.loads(deep(63)))["result"] == "alive"
        assert srv.invoke("echo", {"list": list(range(WIDTH))})["result"] == "alive"

    @pytest.mark.parametrize("body", [deep(65), json.dumps({"a": list(range(WIDTH + 1))})],
                             ids=["deep", "wide"])
    def test_records_beyond_the_bounds_are_400(self, srv, body):
        body = body if body.startswith("{") else json.dumps({"nested": json.loads(body)})
        response = srv.client().post("/v1/tables/bounded/records", content=body)
        assert response.status_code == 400, response.text
