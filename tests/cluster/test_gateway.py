"""What a gateway keeps of the invocations it relayed (frazil.cluster.gateway): in-process."""
from __future__ import annotations

from frazil.cluster import gateway
from frazil.store.models import InvocationRecord, InvocationStatus


def record(n: int, result_bytes: int = 10) -> InvocationRecord:
    return InvocationRecord(id=f"r{n}", function="fn", version=1, mode="sync", status=InvocationStatus.SUCCEEDED,
                            created_at=1.0, result="x" * result_bytes)


class TestRecentlyRelayed:
    def test_a_relayed_record_is_found_until_it_is_too_old(self, monkeypatch):
        clock = [50.0]
        monkeypatch.setattr(gateway.time, "monotonic", lambda: clock[0])
        relayed = gateway.RecentlyRelayed()
        relayed.add(record(1))
        assert relayed.get("r1").id == "r1" and relayed.get("r2") is None
        clock[0] += gateway.RELAYED_KEEP_S + 1
        assert relayed.get("r1") is None
        relayed.add(record(2))  # adding drops what has aged
        assert list(relayed._records) == ["r2"]

    def test_the_oldest_go_first_beyond_the_byte_bound(self, monkeypatch):
        monkeypatch.setattr(gateway, "RELAYED_MAX_BYTES", 100)
        relayed = gateway.RecentlyRelayed()
        for n in range(5):
            relayed.add(record(n, result_bytes=40))
        assert [r for r in ("r0", "r1", "r2", "r3", "r4") if relayed.get(r)] == ["r3", "r4"]
