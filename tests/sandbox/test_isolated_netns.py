"""Network namespaces made ahead of time (`frazil.sandbox.netns.NetnsPool`) and which
instances use them: real namespaces, made by the pool's own thread."""
from __future__ import annotations

import os
import threading
import time

import pytest

from frazil.sandbox.helper import syscalls as sc
from frazil.sandbox.netns import NetnsPool

from tests.sandbox.conftest import CREATION_PATHS


def loopback_up_in(fd: int) -> bool:
    """Whether `lo` is up in the namespace `fd`, looked at from a throw-away thread (setns
    moves only the calling thread)."""
    seen = []

    def look() -> None:
        sc.setns(fd, sc.CLONE_NEWNET)
        with open("/proc/thread-self/net/fib_trie") as f:
            seen.append("127.0.0.1" in f.read())
        # the thread ends here, in that namespace: nothing else runs on it

    thread = threading.Thread(target=look)
    thread.start()
    thread.join(10)
    return seen == [True]


@pytest.fixture
def pool():
    if os.geteuid() != 0:
        pytest.skip("making network namespaces needs root")
    made = NetnsPool(target=3)
    yield made
    made.close()


def wait_ready(pool: NetnsPool, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while pool.ready_count() < count:
        assert time.monotonic() < deadline, f"{count} network namespaces not ready within {timeout_s} s"
        time.sleep(0.005)


class TestNetnsPool:
    def test_namespaces_are_distinct_with_loopback_up_and_the_platform_stays_home(self, pool):
        home = os.stat("/proc/self/ns/net").st_ino
        pool.start()
        wait_ready(pool, 3)
        fds = [pool.take() for _ in range(3)]
        try:
            inodes = {os.fstat(fd).st_ino for fd in fds}
            assert len(inodes) == 3 and home not in inodes
            assert all(loopback_up_in(fd) for fd in fds)
            assert os.stat("/proc/self/ns/net").st_ino == home
            wait_ready(pool, 3)  # taking refills
        finally:
            for fd in fds:
                os.close(fd)

    def test_take_from_an_empty_pool_answers_none_and_close_stops_the_thread(self):
        empty = NetnsPool(target=0)
        empty.start()
        assert empty.take() is None and empty.stats["missed"] == 1
        empty.close()
        running = NetnsPool(target=2)
        running.start()
        wait_ready(running, 2)
        running.close()
        assert running.ready_count() == 0
        assert not any(t.name == "frazil-netns" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("creation", list(CREATION_PATHS))
async def test_instances_built_on_demand_use_one_made_ahead(instance, sandbox, creation):
    """The zygote and exec paths setns() into a namespace made ahead of time; an instance
    built ahead of time (prebuilt, layer) cloned its own while nobody waited."""
    wait_ready(sandbox.netns, 1)
    client = await instance()
    expected = "cloned" if creation in ("prebuilt", "layer") else "made ahead"
    assert client.proc.stats["netns"] == expected
    assert await client.run('result = "127.0.0.1" in open("/proc/net/fib_trie").read()') is True
