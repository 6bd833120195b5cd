"""Every record says what fired it (`trigger`) and which invoker ran it (`node`), whichever
path it took (in-process: the real app, store and scheduler over a fake sandbox)."""
from __future__ import annotations

from frazil.platform import node_id
from frazil.settings import Settings


class TestTriggerAndNode:
    async def test_sync_record_names_api_and_this_node(self, frazil):
        """A sync call from the API is recorded with trigger `api` and this node."""
        await frazil.deploy("fn")
        body = await frazil.invoke("fn", {"return": 1})
        record = await frazil.record(body["invocation_id"])
        assert record["trigger"] == "api"
        assert record["node"] == frazil.platform.node_id

    async def test_async_record_names_api_and_this_node(self, frazil):
        """An async call is queued with trigger `api`; the node is written when it runs."""
        await frazil.deploy("fn")
        accepted = await frazil.invoke("fn", {"return": 2}, mode="async", expect=202)
        queued = await frazil.record(accepted["invocation_id"])
        assert (queued["status"], queued["trigger"], queued["node"]) == ("queued", "api", None)
        await frazil.dispatcher.drain()
        record = await frazil.record(accepted["invocation_id"])
        assert (record["status"], record["trigger"]) == ("succeeded", "api")
        assert record["node"] == frazil.platform.node_id


class TestNodeId:
    def test_stable_for_a_data_dir_and_distinct_between_them(self, tmp_path):
        """The node id depends on the host and data dir only: a restart keeps it."""
        a = node_id(Settings(data_dir=tmp_path / "a"))
        assert a == node_id(Settings(data_dir=tmp_path / "a"))
        assert a != node_id(Settings(data_dir=tmp_path / "b"))
