"""Connection hygiene (issue 11, item 4): silent and slow clients are closed within the header
timeout, idle keep-alive connections within theirs, open connections are capped, and a server
started under a low open-files limit still runs instances."""
from __future__ import annotations

import select
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from frazil.settings import Settings
from frazil.testing import HOST, LocalServer, wait_until
from tests.conftest import TEST_SANDBOX, make_server

HEADER_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 1.0
SLACK_S = 3.0  # timers are not exact, and 2 shared cores are slow: generous, still far below "never"
HELLO = {"index.py": "def main(event, context):\n    return 'hi'\n"}


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A server with short connection timeouts."""
    srv = make_server(tmp_path_factory.mktemp("conns") / "data", **{
        Settings.env_name("server_header_timeout_s"): HEADER_TIMEOUT_S,
        Settings.env_name("server_keep_alive_s"): KEEP_ALIVE_S,
        Settings.env_name("sandbox"): "plain",
    }).start()
    yield srv
    srv.close()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.setblocking(False)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (read everything it sent; EOF or reset = closed)."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def wait_all_closed(socks: list[socket.socket], deadline_s: float, trickle: list[socket.socket] = ()) -> float:
    """Wait (in select, never a bare sleep) until the server has closed every socket, sending one
    header byte a second on each of `trickle` meanwhile; answers the seconds it took."""
    started = time.monotonic()
    open_ = set(socks)
    trickling = {s: iter(b"GET / HTTP/1.1\r\nHost: frazil\r\nX-Slow: " + b"a" * 1000) for s in trickle}
    next_byte = started
    while open_:
        now = time.monotonic()
        assert now - started < deadline_s, f"{len(open_)} connections still open after {deadline_s} s"
        if now >= next_byte:
            for sock, data in list(trickling.items()):
                if sock in open_:
                    try:
                        sock.send(bytes([next(data)]))
                    except (BrokenPipeError, ConnectionResetError):
                        pass
            next_byte = now + 1.0
        readable, _, _ = select.select(list(open_), [], [], max(0.0, min(next_byte - now, 0.5)))
        for sock in readable:
            if closed_by_server(sock):
                open_.discard(sock)
    return time.monotonic() - started


def test_silent_and_slowloris_connections_are_closed_within_the_header_timeout(strict):
    """200 connections that never speak and 50 that send their headers a byte a second are all
    closed within the header timeout (plus slack), while the server keeps answering others."""
    silent = [connect(strict.port) for _ in range(200)]
    slow = [connect(strict.port) for _ in range(50)]
    try:
        assert httpx.get(f"{strict.url}/healthz", timeout=10).status_code == 200  # serving meanwhile
        took = wait_all_closed(silent + slow, HEADER_TIMEOUT_S + SLACK_S, trickle=slow)
        assert took >= HEADER_TIMEOUT_S * 0.5  # closed by the timeout, not refused at once
    finally:
        for sock in silent + slow:
            sock.close()
    assert httpx.get(f"{strict.url}/healthz", timeout=10).status_code == 200


def test_a_slow_client_gets_408(strict):
    sock = socket.create_connection((HOST, strict.port), timeout=HEADER_TIMEOUT_S + SLACK_S)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer
    finally:
        sock.close()


def test_an_idle_keep_alive_connection_is_closed(strict):
    """After a response, a connection left idle is closed once the keep-alive timeout passes."""
    sock = connect(strict.port)
    try:
        sock.setblocking(True)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: frazil\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.setblocking(False)
        wait_all_closed([sock], KEEP_ALIVE_S + SLACK_S)
    finally:
        sock.close()


def test_open_connections_are_capped(server_factory):
    """Beyond server_max_connections, a new connection is answered 503 and closed at once
    (long before the header timeout); once others close, new ones are served again."""
    srv = server_factory(**{Settings.env_name("server_max_connections"): 40,
                            Settings.env_name("server_header_timeout_s"): 60,
                            Settings.env_name("sandbox"): "plain"})
    for client in list(srv._clients.values()):  # the harness's own keep-alive connection
        client.close()
    srv._clients.clear()
    held = [connect(srv.port) for _ in range(40)]
    try:
        wait_until(lambda: all(not closed_by_server(s) for s in held), 5, what="the held connections")
        extra = [connect(srv.port) for _ in range(10)]
        try:
            wait_all_closed(extra, 10)
        finally:
            for sock in extra:
                sock.close()
        assert not any(closed_by_server(s) for s in held)  # the cap closed only the newcomers
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: _healthz(srv) == 200, 10, what="a connection to be served again")


def _healthz(srv) -> int | None:
    try:
        return httpx.get(f"{srv.url}/healthz", timeout=5).status_code
    except httpx.HTTPError:
        return None


LOW_NOFILE = 1024


def test_a_server_under_a_low_open_files_limit_runs_instances(tmp_path):
    """Started with RLIMIT_NOFILE 1024:1024 (as under `ulimit -n 1024`), the server still creates
    instances: their rlimits stay within what it may set."""
    frazil = str(Path(sys.executable).parent / "frazil")
    limited = [sys.executable, "-c",
               "import os, resource, sys; "
               f"resource.setrlimit(resource.RLIMIT_NOFILE, ({LOW_NOFILE}, {LOW_NOFILE})); "
               "os.execv(sys.argv[1], sys.argv[1:])", frazil]
    with LocalServer(tmp_path / "data", command=limited,
                     env={Settings.env_name("sandbox"): TEST_SANDBOX}) as srv:
        limits = Path(f"/proc/{srv.pid}/limits").read_text()
        assert any(line.startswith("Max open files") and f"{LOW_NOFILE}" in line for line in limits.splitlines())
        srv.deploy("hello", HELLO)
        body = srv.invoke("hello")
        assert body["success"] is True and body["result"] == "hi", body
        assert f"open-files hard limit is {LOW_NOFILE}" in srv.log_text()
