"""The ACL at the service level: every mode, for every kind of caller, on every operation.
(The same matrix over HTTP, with real tokens, is in test_http_acl.py.)"""
import pytest

from frazil.data.acl import ADMIN, ANONYMOUS, Acl, AclMode, Action, Principal, authorize
from frazil.errors import Forbidden, NotFound, Unauthorized

ALICE = Principal.user("alice")
BOB = Principal.user("bob")
CALLERS = {"admin": ADMIN, "anonymous": ANONYMOUS, "alice": ALICE, "bob": BOB}
MODES = [m.value for m in AclMode]

# Who is refused how, per mode (None: admitted). Owner-mode scoping is checked per operation.
REFUSAL = {
    "public": {},
    "authenticated": {"anonymous": Unauthorized},
    "owner": {"anonymous": Unauthorized},
    "admin": {"anonymous": Unauthorized, "alice": Forbidden, "bob": Forbidden},
}


@pytest.fixture
async def table(data):
    """Table 't' with one record each by alice, bob and the admin; answers alice's record."""
    await data.put_table("t", {"read": "owner", "write": "owner"}, ADMIN)
    mine = await data.insert("t", {"by": "alice"}, ALICE)
    await data.insert("t", {"by": "bob"}, BOB)
    await data.insert("t", {"by": "admin"}, ADMIN)
    return data, mine


async def set_acl(data, read="admin", write="admin"):
    await data.put_table("t", {"read": read, "write": write}, ADMIN)


def visible(mode: str, caller: str) -> set[str]:
    """Whose records the caller reaches once admitted."""
    if mode == "owner" and caller in ("alice", "bob"):
        return {caller}
    return {"alice", "bob", "admin"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("caller", list(CALLERS))
class TestMatrix:
    async def test_find_and_count(self, table, mode, caller):
        """find/count: refused per mode, else scoped (owner: own records only)."""
        data, _ = table
        await set_acl(data, read=mode)
        refusal = REFUSAL[mode].get(caller)
        if refusal:
            with pytest.raises(refusal):
                await data.find("t", None, CALLERS[caller])
            with pytest.raises(refusal):
                await data.count("t", {}, CALLERS[caller])
            return
        found = {r["by"] for r in await data.find("t", None, CALLERS[caller])}
        assert found == visible(mode, caller)
        assert await data.count("t", None, CALLERS[caller]) == len(found)
        # A filter cannot widen the scope.
        assert {r["by"] for r in await data.find("t", {"by": {"in": ["alice", "bob", "admin"]}},
                                                 CALLERS[caller])} == found

    async def test_get(self, table, mode, caller):
        """get of alice's record: refused per mode; another user in owner mode gets 404."""
        data, mine = table
        await set_acl(data, read=mode)
        refusal = REFUSAL[mode].get(caller) or (NotFound if "alice" not in visible(mode, caller) else None)
        if refusal:
            with pytest.raises(refusal):
                await data.get("t", mine["id"], CALLERS[caller])
        else:
            assert (await data.get("t", mine["id"], CALLERS[caller]))["by"] == "alice"

    async def test_insert(self, table, mode, caller):
        """insert: refused per mode; created_by is the user, null for admin and anonymous."""
        data, _ = table
        await set_acl(data, read="public", write=mode)
        refusal = REFUSAL[mode].get(caller)
        if refusal:
            with pytest.raises(refusal):
                await data.insert("t", {"by": caller}, CALLERS[caller])
            assert await data.count("t", None, ADMIN) == 3
            return
        record = await data.insert("t", {"by": caller}, CALLERS[caller])
        assert record["created_by"] == CALLERS[caller].user_id

    async def test_update_one_and_delete_one(self, table, mode, caller):
        """By id: refused per mode; another user's record in owner mode is 404 and untouched."""
        data, mine = table
        await set_acl(data, read="public", write=mode)
        refusal = REFUSAL[mode].get(caller) or (NotFound if "alice" not in visible(mode, caller) else None)
        if refusal:
            with pytest.raises(refusal):
                await data.update_one("t", mine["id"], {"x": 1}, CALLERS[caller])
            with pytest.raises(refusal):
                await data.delete_one("t", mine["id"], CALLERS[caller])
            assert await data.get("t", mine["id"], ADMIN) == mine
            return
        assert (await data.update_one("t", mine["id"], {"x": 1}, CALLERS[caller]))["x"] == 1
        assert (await data.delete_one("t", mine["id"], CALLERS[caller]))["id"] == mine["id"]
        with pytest.raises(NotFound):
            await data.get("t", mine["id"], ADMIN)

    async def test_bulk_update_and_delete(self, table, mode, caller):
        """Bulk writes: refused per mode, else they touch only the caller's scope."""
        data, _ = table
        await set_acl(data, read="public", write=mode)
        refusal = REFUSAL[mode].get(caller)
        if refusal:
            with pytest.raises(refusal):
                await data.update("t", {}, {"x": 1}, CALLERS[caller])
            with pytest.raises(refusal):
                await data.delete("t", {}, CALLERS[caller])
            assert await data.count("t", {"x": 1}, ADMIN) == 0
            return
        reach = visible(mode, caller)
        assert await data.update("t", {}, {"x": 1}, CALLERS[caller]) == len(reach)
        assert {r["by"] for r in await data.find("t", {"x": 1}, ADMIN)} == reach
        assert await data.delete("t", {}, CALLERS[caller]) == len(reach)
        assert {r["by"] for r in await data.find("t", None, ADMIN)} == {"alice", "bob", "admin"} - reach


class TestRedaction:
    async def test_writer_without_read_sees_only_id_and_times(self, table):
        """A caller who may write but not read gets back only the id and times."""
        data, mine = table
        await set_acl(data, read="admin", write="public")
        updated = await data.update_one("t", mine["id"], {"x": 1}, ANONYMOUS)
        assert set(updated) == {"id", "created_at", "updated_at"}
        deleted = await data.delete_one("t", mine["id"], BOB)
        assert set(deleted) == {"id", "created_at", "updated_at"}

    async def test_owner_read_shows_own_records(self, table):
        """read=owner, write=authenticated: bob may patch alice's record but not see it."""
        data, mine = table
        await set_acl(data, read="owner", write="authenticated")
        assert set(await data.update_one("t", mine["id"], {"x": 1}, BOB)) == {"id", "created_at", "updated_at"}
        assert (await data.update_one("t", mine["id"], {"x": 2}, ALICE))["x"] == 2


class TestAuthorize:
    def test_admin_always_sees_everything(self):
        """The admin principal is never refused or scoped."""
        for mode in AclMode:
            for action in Action:
                assert authorize(mode, ADMIN, action, "t").everything

    def test_acl_defaults_are_closed(self):
        """A missing mode is admin."""
        assert Acl.parse(None) == Acl.parse({}) == Acl(AclMode.ADMIN, AclMode.ADMIN)

    def test_principal_invariant(self):
        """A user principal has an id; others do not."""
        with pytest.raises(ValueError):
            Principal(ANONYMOUS.kind, "x")
