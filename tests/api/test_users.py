"""GET /v1/users: the end users for the admin, by username, paged; never a password hash."""
from __future__ import annotations


async def test_users_are_listed_by_name_in_pages_for_the_admin_only(frazil):
    for name in ("carol", "alice", "bob"):
        response = await frazil.fast.post("/v1/auth/register", json={"username": name, "password": "correct horse"})
        assert response.status_code == 200, response.text
    token = response.json()["token"]
    first = (await frazil.fast.get("/v1/users", params={"limit": 2})).json()
    assert [u["username"] for u in first["users"]] == ["alice", "bob"]
    assert set(first["users"][0]) == {"user_id", "username", "created_at"}
    rest = (await frazil.fast.get("/v1/users", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [u["username"] for u in rest["users"]] == ["carol"] and rest["next_cursor"] is None

    as_user = await frazil.fast.get("/v1/users", headers={"Authorization": f"Bearer {token}"})
    assert as_user.status_code == 403
    anonymous = await frazil.fast.get("/v1/users", headers={"Authorization": ""})
    assert anonymous.status_code == 401
