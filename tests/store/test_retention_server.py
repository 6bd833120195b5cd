"""Retention through a real `frazil server` (SQLite, and PostgreSQL through
FRAZIL_DATABASE_URL), with small limits set in its environment."""
from __future__ import annotations

from frazil.testing.waiting import wait_until

HELLO = {"index.py": "def main(event, context):\n    print('n', event.get('n'))\n    return event.get('n')\n"}


def start(server_factory, backend: str, url: str, **env):
    if backend == "postgresql":
        env["FRAZIL_DATABASE_URL"] = url
    return server_factory(FRAZIL_RETENTION_INTERVAL_S="0.05", **env)


def listed(srv, name: str) -> list[str]:
    body = srv.client().get(f"/v1/functions/{name}/invocations", params={"limit": 500}).json()
    return [i["id"] for i in body["invocations"]]


async def test_server_keeps_the_newest_records_per_function(server_factory, backend, database_url_factory):
    """FRAZIL_RETENTION_MAX=3: of 6 invocations the 3 newest stay listed; the others are gone."""
    srv = start(server_factory, backend, await database_url_factory(), FRAZIL_RETENTION_MAX="3")
    srv.deploy("kept", HELLO)
    ids = [srv.invoke("kept", {"n": n})["invocation_id"] for n in range(6)]
    wait_until(lambda: listed(srv, "kept") == ids[:2:-1], timeout=20, what="the 3 oldest records to be pruned")
    assert srv.client().get(f"/v1/invocations/{ids[0]}").status_code == 404
    assert srv.invocation(ids[-1])["logs"] == "n 5\n"


async def test_server_forgets_records_past_the_age_limit(server_factory, backend, database_url_factory):
    """FRAZIL_RETENTION_S=1: records disappear about a second after they were made."""
    srv = start(server_factory, backend, await database_url_factory(), FRAZIL_RETENTION_S="1")
    srv.deploy("aging", HELLO)
    ids = [srv.invoke("aging", {"n": n})["invocation_id"] for n in range(2)]
    wait_until(lambda: listed(srv, "aging") == [], timeout=20, what="the records to age out")
    assert srv.client().get(f"/v1/invocations/{ids[0]}").status_code == 404
