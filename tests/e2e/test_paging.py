"""Every list route pages with `?limit=N&cursor=C` against a real server: walking the pages
gives exactly the unpaged list, `next_cursor` is present only while more remain, and a bad
cursor (or another list's) is a 400."""
import secrets

import pytest

HELLO = {"index.py": "def main(event, context):\n    print('run', event.get('n'))\n    return event.get('n')\n"}


def walk(client, path: str, key: str, limit: int, **params) -> tuple[list, int]:
    """Every item of a list, following next_cursor; answers the items and the pages read."""
    items, pages, cursor = [], 0, None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert len(body[key]) <= limit
        items += body[key]
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
        assert isinstance(cursor, str) and len(body[key]) == limit or key == "entries"


@pytest.fixture(scope="module")
def listed(server):
    """A function with 3 versions and 7 finished invocations, and a table with 7 records."""
    name = f"paging-{secrets.token_hex(3)}"
    for _ in range(3):
        server.deploy(name, HELLO)
    ids = [server.invoke(name, {"n": n})["invocation_id"] for n in range(7)]
    table = f"paging_{secrets.token_hex(3)}"
    assert server.client().put(f"/v1/tables/{table}", json={}).status_code == 200
    for n in range(7):
        assert server.client().post(f"/v1/tables/{table}/records", json={"n": n, "odd": n % 2}).status_code == 200
    return name, ids, table


class TestPaging:
    def test_invocations_page_newest_first(self, server, listed):
        """Pages of 3 over 7 invocations: 3 pages, newest first, nothing repeated or skipped."""
        name, ids, _ = listed
        items, pages = walk(server.client(), f"/v1/functions/{name}/invocations", "invocations", 3)
        assert [i["id"] for i in items] == ids[::-1] and pages == 3
        body = server.client().get(f"/v1/functions/{name}/invocations").json()
        assert body["next_cursor"] is None and len(body["invocations"]) == 7

    def test_logs_page_back_in_time_and_forward_from_after(self, server, listed):
        """Without after, pages go back in time (each oldest first); with after, forward."""
        name, ids, _ = listed
        client = server.client()
        first = client.get(f"/v1/functions/{name}/logs", params={"limit": 3}).json()
        assert [e["invocation_id"] for e in first["entries"]] == ids[4:]
        assert first["cursor"] == ids[-1] and first["entries"][0]["logs"] == "run 4\n"
        second = client.get(f"/v1/functions/{name}/logs", params={"limit": 3, "cursor": first["next_cursor"]}).json()
        assert [e["invocation_id"] for e in second["entries"]] == ids[1:4]
        third = client.get(f"/v1/functions/{name}/logs", params={"limit": 3, "cursor": second["next_cursor"]}).json()
        assert [e["invocation_id"] for e in third["entries"]] == ids[:1] and third["next_cursor"] is None
        forward, pages = walk(client, f"/v1/functions/{name}/logs", "entries", 2, after=ids[0])
        assert [e["invocation_id"] for e in forward] == ids[1:] and pages == 3

    def test_versions_page_newest_first(self, server, listed):
        name, _, _ = listed
        items, pages = walk(server.client(), f"/v1/functions/{name}/versions", "versions", 2)
        assert [v["version"] for v in items] == [3, 2, 1] and pages == 2
        assert server.client().get(f"/v1/functions/{name}/versions").json()["next_cursor"] is None

    def test_functions_and_tables_page_by_name(self, server, listed):
        """Paged, the lists hold exactly what the whole list holds (other tests add to it too)."""
        client = server.client()
        for path, key, field in (("/v1/functions", "functions", "name"), ("/v1/tables", "tables", "name")):
            items, _ = walk(client, path, key, 1)
            names = [i[field] for i in items]
            whole = client.get(path).json()
            assert whole["next_cursor"] is None
            assert names == sorted(names) and set(names) >= {i[field] for i in whole[key]}
        assert listed[0] in [f["name"] for f in walk(client, "/v1/functions", "functions", 2)[0]]
        assert {"name": listed[2], "records": 7}.items() <= next(
            t for t in walk(client, "/v1/tables", "tables", 2)[0] if t["name"] == listed[2]).items()

    @pytest.mark.parametrize("order", [None, "-n", "odd,n"])
    def test_records_page_in_any_order(self, server, listed, order):
        """Records page by cursor in creation order and in a custom order; offset still works."""
        _, _, table = listed
        client = server.client()
        params = {"order": order} if order else {}
        whole = client.get(f"/v1/tables/{table}/records", params=params).json()
        assert whole["next_cursor"] is None and whole["count"] == 7
        items, pages = walk(client, f"/v1/tables/{table}/records", "records", 3, **params)
        assert items == whole["records"] and pages == 3
        skipped = client.get(f"/v1/tables/{table}/records", params={**params, "offset": 5, "limit": 1}).json()
        assert skipped["records"] == whole["records"][5:6] and skipped["next_cursor"]
        rest = client.get(f"/v1/tables/{table}/records",
                          params={**params, "limit": 5, "cursor": skipped["next_cursor"]}).json()
        assert rest["records"] == whole["records"][6:] and rest["next_cursor"] is None

    def test_bad_cursors_are_400(self, server, listed):
        """Garbage, another list's cursor, or a records cursor with another order or an offset."""
        name, _, table = listed
        client = server.client()
        other = client.get(f"/v1/functions/{name}/versions", params={"limit": 1}).json()["next_cursor"]
        records_cursor = client.get(f"/v1/tables/{table}/records", params={"limit": 1}).json()["next_cursor"]
        paths = ["/v1/functions", f"/v1/functions/{name}/invocations", f"/v1/functions/{name}/logs",
                 "/v1/tables", f"/v1/tables/{table}/records"]
        for path in paths:
            for cursor in ("garbage!", "eyJrIjogMX0", other):
                r = client.get(path, params={"cursor": cursor})
                assert r.status_code == 400 and r.json()["success"] is False, (path, cursor, r.text)
        assert client.get(f"/v1/functions/{name}/versions", params={"cursor": records_cursor}).status_code == 400
        for params in ({"order": "-n"}, {"offset": 2}):
            r = client.get(f"/v1/tables/{table}/records", params={"cursor": records_cursor, **params})
            assert r.status_code == 400, r.text
