"""Fixtures for issue 11 (reliability): real servers on SQLite or on a PostgreSQL database of
their own, which a test may also make unreachable and bring back."""
from __future__ import annotations

import asyncio
import socket

import pytest

from frazil.settings import Settings
from frazil.testing import HOST
from tests.postgres import create_database, database_url, drop_database, postgres_admin


class PrivateDatabase:
    """A PostgreSQL database made for one test (dropped after it); `cut()` makes it unreachable
    (no new connections, every open one terminated) and `restore()` lets connections in again."""

    def __init__(self, name: str):
        self.name = name
        self.url = database_url(name)

    def admin(self, sql: str) -> None:
        """Run `sql` on the server's maintenance database."""
        asyncio.run(postgres_admin(sql))

    def execute(self, sql: str) -> None:
        """Run `sql` in this database."""
        asyncio.run(postgres_admin(sql, self.url))

    def cut(self) -> None:
        self.admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}'")

    def restore(self) -> None:
        self.admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
def private_database():
    """A `PrivateDatabase`; skips (or fails, with FRAZIL_REQUIRE_SERVICES=1) without PostgreSQL."""
    db = PrivateDatabase(asyncio.run(create_database("frazil_rel")))
    yield db
    db.restore()
    asyncio.run(drop_database(db.name))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_server(request):
    """`backend_server(**env)` starts a server on SQLite, or on a PostgreSQL database of its own
    (`env` as for `server_factory`)."""
    # The database first: fixtures end in reverse order, so the servers stop before it is dropped.
    db = request.getfixturevalue("private_database") if request.param == "postgresql" else None
    server_factory = request.getfixturevalue("server_factory")

    def start(**env):
        if db is not None:
            env = {Settings.env_name("database_url"): db.url, **env}
        return server_factory(**env)

    return start


class RawConnection:
    """One HTTP/1.1 keep-alive connection, read by hand: whether the server keeps it open is
    exactly what these tests look at (a client library would silently reconnect)."""

    def __init__(self, port: int, token: str | None = None, timeout: float = 30.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.token = token
        self._buffer = b""

    def request(self, method: str, path: str, body: bytes = b"", token: str | None = "default") -> tuple[int, dict, bytes]:
        token = self.token if token == "default" else token
        head = [f"{method} {path} HTTP/1.1", "Host: frazil", f"Content-Length: {len(body)}"]
        if token:
            head.append(f"Authorization: Bearer {token}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        while b"\r\n\r\n" not in self._buffer:
            self._read()
        raw_head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = raw_head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            self._read()
        payload, self._buffer = self._buffer[:length], self._buffer[length:]
        return int(status_line.split()[1]), headers, payload

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the keep-alive connection")
        self._buffer += chunk

    def close(self) -> None:
        self.sock.close()
