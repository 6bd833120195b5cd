"""Cluster mode's configuration: what a node refuses at start, and how it says so."""
from __future__ import annotations

import subprocess

import pytest

from frazil.cluster.config import check
from frazil.settings import BadSetting, Role, Settings
from frazil.testing.server import default_command, free_port, hermetic_environ
from tests.cluster.conftest import ADMIN_KEY, NATS_URL

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/none"


class TestCheck:
    def test_the_embedded_default_passes(self):
        check(Settings())

    def test_cluster_mode_needs_postgresql(self):
        with pytest.raises(BadSetting, match="FRAZIL_DATABASE_URL=None: cluster mode .* needs PostgreSQL"):
            check(Settings(nats_url=NATS_URL, admin_key=ADMIN_KEY))
        with pytest.raises(BadSetting, match="FRAZIL_DATABASE_URL='sqlite"):
            check(Settings(nats_url=NATS_URL, admin_key=ADMIN_KEY, database_url="sqlite+aiosqlite:////tmp/x.db"))

    def test_cluster_mode_needs_the_admin_key(self):
        with pytest.raises(BadSetting, match="FRAZIL_ADMIN_KEY=None: cluster mode .* one admin key"):
            check(Settings(nats_url=NATS_URL, database_url=PG))

    def test_a_password_in_the_database_url_is_not_shown(self):
        with pytest.raises(BadSetting) as info:
            check(Settings(nats_url=NATS_URL, database_url="mysql://u:s3cret@h/db"))
        assert "s3cret" not in str(info.value)

    def test_gateway_and_invoker_need_cluster_mode(self):
        for role in (Role.GATEWAY, Role.INVOKER):
            with pytest.raises(BadSetting, match=f"--role='{role.value}': needs cluster mode: set FRAZIL_NATS_URL"):
                check(Settings(role=role))

    def test_the_cluster_name_is_a_nats_token(self):
        for bad in ("a.b", "a b", "x" * 33, "*", ">"):
            with pytest.raises(BadSetting, match="FRAZIL_CLUSTER"):
                _from_env({"FRAZIL_CLUSTER": bad})
        assert _from_env({"FRAZIL_CLUSTER": "prod-eu_1"}).cluster == "prod-eu_1"


def _from_env(env: dict[str, str]) -> Settings:
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, env):
        return Settings.from_env()


def run_server(env: dict[str, str], *args: str, tmp_path) -> subprocess.CompletedProcess:
    """`frazil server` that is expected to refuse to start: its exit and output."""
    return subprocess.run([*default_command(), "server", "--port", str(free_port()), "--data-dir",
                           str(tmp_path / "data"), *args], env={**hermetic_environ(), **env},
                          capture_output=True, text=True, timeout=60)


class TestServerRefuses:
    """A real `frazil server` refuses a configuration that cannot work with one clear line."""

    def test_role_without_cluster_mode(self, tmp_path):
        done = run_server({}, "--role", "invoker", tmp_path=tmp_path)
        assert done.returncode == 2
        assert "frazil cannot start: --role='invoker': needs cluster mode: set FRAZIL_NATS_URL" in done.stderr

    def test_cluster_mode_on_sqlite_without_a_key(self, tmp_path):
        done = run_server({"FRAZIL_NATS_URL": NATS_URL}, tmp_path=tmp_path)
        assert done.returncode == 2
        line = [x for x in done.stderr.splitlines() if "cannot start" in x]
        assert len(line) == 1, done.stderr
        assert "FRAZIL_DATABASE_URL" in line[0] and "FRAZIL_ADMIN_KEY" in line[0]

    def test_a_bad_cluster_name(self, tmp_path):
        done = run_server({"FRAZIL_CLUSTER": "a.b"}, tmp_path=tmp_path)
        assert done.returncode == 2
        assert "FRAZIL_CLUSTER='a.b'" in done.stderr

    def test_nats_unreachable_is_named(self, postgres_url, tmp_path):
        wrong = f"nats://127.0.0.1:{free_port()}"
        done = run_server({"FRAZIL_NATS_URL": wrong, "FRAZIL_DATABASE_URL": postgres_url,
                           "FRAZIL_ADMIN_KEY": ADMIN_KEY}, tmp_path=tmp_path)
        assert done.returncode != 0
        assert f"frazil cannot start: NATS at {wrong} is unreachable" in done.stderr, done.stderr

    def test_postgresql_unreachable_is_named(self, tmp_path):
        port = free_port()
        done = run_server({"FRAZIL_NATS_URL": NATS_URL, "FRAZIL_ADMIN_KEY": ADMIN_KEY,
                           "FRAZIL_DATABASE_URL": f"postgresql+asyncpg://postgres:pw@127.0.0.1:{port}/x"},
                          tmp_path=tmp_path)
        assert done.returncode != 0
        assert f"frazil cannot start: PostgreSQL at postgresql+asyncpg://postgres:***@127.0.0.1:{port}/x is " \
               "unreachable" in done.stderr, done.stderr
        assert "pw@" not in done.stderr
