"""FRAZIL_TRUSTED_PROXIES: behind a trusted reverse proxy the per-address limits count the client
that X-Forwarded-For names; from any other peer the header is ignored."""
from __future__ import annotations

import ipaddress

import httpx
import pytest

from frazil.api.clientaddr import client_address
from frazil.settings import BadSetting, Settings

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


class TestClientAddress:
    def test_no_trusted_proxies_means_the_peer(self):
        """Without a list the header is never read."""
        assert client_address("127.0.0.1", ["203.0.113.5"], []) == "127.0.0.1"

    def test_an_untrusted_peer_is_the_client_whatever_it_forwards(self):
        assert client_address("198.51.100.9", ["203.0.113.5"], PROXIES) == "198.51.100.9"

    def test_the_rightmost_untrusted_hop_is_the_client(self):
        """Hops left of it were written by the client itself and are not believed."""
        assert client_address("127.0.0.1", ["1.2.3.4, 203.0.113.5, 10.1.2.3"], PROXIES) == "203.0.113.5"

    def test_several_header_lines_read_in_order(self):
        assert client_address("127.0.0.1", ["1.2.3.4", "203.0.113.5"], PROXIES) == "203.0.113.5"

    def test_only_trusted_hops_name_the_leftmost(self):
        assert client_address("127.0.0.1", ["10.0.0.7, 10.0.0.8"], PROXIES) == "10.0.0.7"

    def test_a_hop_that_is_not_an_address_leaves_the_peer(self):
        assert client_address("127.0.0.1", ["unknown, 203.0.113.5"], PROXIES) == "127.0.0.1"
        assert client_address("127.0.0.1", [""], PROXIES) == "127.0.0.1"
        assert client_address("127.0.0.1", [], PROXIES) == "127.0.0.1"

    def test_ipv6_and_mapped_ipv4_peers(self):
        assert client_address("::ffff:10.0.0.1", ["2001:db8::1"], PROXIES) == "2001:db8::1"
        assert client_address("::1", ["2001:db8::1"], PROXIES) == "::1"


def _login(client: httpx.Client, forwarded_for: str, password: str = "wrong password") -> httpx.Response:
    return client.post("/v1/auth/login", json={"username": "alice", "password": password},
                       headers={"X-Forwarded-For": forwarded_for})


def test_login_limiter_counts_the_forwarded_client_behind_a_trusted_proxy(server_factory):
    """The server trusts 127.0.0.1 as its proxy. Through it, two clients have their own failure
    counts, and the one over the limit gets 429 with Retry-After; from 127.0.0.2 (not trusted)
    the header is ignored, so changing it does not escape the limit."""
    srv = server_factory(FRAZIL_TRUSTED_PROXIES="127.0.0.1", FRAZIL_LOGIN_MAX_FAILURES=2,
                         FRAZIL_LOGIN_DELAY_S=600)
    via_proxy = httpx.Client(base_url=srv.url, timeout=30)
    direct = httpx.Client(base_url=srv.url, timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    try:
        assert via_proxy.post("/v1/auth/register", json={"username": "alice", "password": "correct horse"}
                              ).status_code == 200
        # The leftmost hop is the client's own claim; the proxy appended 203.0.113.7.
        for _ in range(2):
            assert _login(via_proxy, "192.0.2.1, 203.0.113.7").status_code == 401
        refused = _login(via_proxy, "192.0.2.99, 203.0.113.7")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert refused.json()["error"]["type"] == "TooManyRequests"
        # Another client behind the same proxy has its own count.
        assert _login(via_proxy, "203.0.113.8").status_code == 401
        assert _login(via_proxy, "203.0.113.8", "correct horse").status_code == 200

        # Not from the proxy: the peer 127.0.0.2 is the client, whatever the header says.
        assert _login(direct, "203.0.113.20").status_code == 401
        assert _login(direct, "203.0.113.21").status_code == 401
        still = _login(direct, "203.0.113.22")
        assert still.status_code == 429 and "Retry-After" in still.headers
    finally:
        via_proxy.close()
        direct.close()


def test_public_async_limit_counts_the_forwarded_client(server_factory, unique_name):
    """The per-address limit of public async invocations (served by the fast path) reads the
    same address."""
    srv = server_factory(FRAZIL_TRUSTED_PROXIES="127.0.0.0/8", FRAZIL_PUBLIC_ASYNC_LIMIT=1)
    srv.deploy(unique_name, {"index.py": "def main(event, context):\n    return 1\n"}, access="public")
    anonymous = httpx.Client(base_url=srv.url, timeout=30)
    try:
        def call(forwarded_for: str) -> httpx.Response:
            return anonymous.post(f"/v1/functions/{unique_name}/invoke", params={"mode": "async"}, content=b"{}",
                                  headers={"X-Forwarded-For": forwarded_for})

        assert call("203.0.113.7").status_code == 202
        refused = call("203.0.113.7")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        assert call("203.0.113.8").status_code == 202
    finally:
        anonymous.close()


@pytest.mark.parametrize("value", ["not-an-address", "10.0.0.1/8"])
def test_a_bad_list_is_refused_at_start(value, monkeypatch):
    monkeypatch.setenv("FRAZIL_TRUSTED_PROXIES", value)
    with pytest.raises(BadSetting, match="FRAZIL_TRUSTED_PROXIES"):
        Settings.from_env()
