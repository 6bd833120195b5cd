"""The proxy's rules in-process: which addresses are denied, what FRAZIL_HTTP_ALLOW admits,
and that a request connects to the address that was checked, never to a second resolution."""
from __future__ import annotations

import ipaddress
import json

import pytest

from frazil.errors import BadRequest
from frazil.sdk.errors import HttpDenied, HttpFailed, ResponseTooLarge
from frazil.sdk.proxy import AllowList, HttpProxy, OutboundRequest, special_range
from frazil.settings import Settings

ip = ipaddress.ip_address


class TestSpecialRanges:
    @pytest.mark.parametrize("address,kind", [
        ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
        ("10.0.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
        ("fc00::1", "private"), ("169.254.169.254", "cloud metadata"), ("fd00:ec2::254", "cloud metadata"),
        ("169.254.1.1", "link-local"), ("fe80::1", "link-local"), ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
        ("100.64.0.1", "shared (CGNAT)"), ("240.0.0.1", "private"), ("192.0.2.1", "private"),
        # IPv4 inside IPv6 is judged as the IPv4 address it carries.
        ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"), ("2002:7f00:1::", "loopback"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),
    ])
    def test_denied(self, address, kind):
        assert special_range(ip(address)) == kind

    @pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
    def test_public(self, address):
        assert special_range(ip(address)) is None


class TestAllowList:
    def test_entries(self):
        allow = AllowList.parse(["127.0.0.1:8080", "10.0.0.0/8", "192.168.1.5", "[::1]:9000",
                                 "db.internal:5432", "Metrics.Internal", " "])
        assert allow.permits("127.0.0.1", 8080, ip("127.0.0.1"))
        assert not allow.permits("127.0.0.1", 8081, ip("127.0.0.1"))
        assert allow.permits("anything", 1, ip("10.9.8.7"))
        assert allow.permits("x", 443, ip("192.168.1.5")) and not allow.permits("x", 443, ip("192.168.1.6"))
        assert allow.permits("::1", 9000, ip("::1")) and not allow.permits("::1", 9001, ip("::1"))
        assert allow.permits("db.internal", 5432, ip("10.0.0.1"))
        assert not allow.permits("db.internal", 5433, ip("172.16.0.1"))
        assert allow.permits("metrics.internal", 1234, ip("172.16.0.1"))
        assert not allow.permits("other", 80, ip("172.16.0.1"))

    @pytest.mark.parametrize("entry", ["10.0.0.0/33", "host:notaport", "host:70000", "[::1]", "a b:80"])
    def test_bad_entries_fail_at_start(self, entry):
        with pytest.raises(ValueError, match="FRAZIL_HTTP_ALLOW"):
            AllowList.parse([entry])


class TestOutboundRequest:
    def test_framing_headers_are_dropped(self):
        req = OutboundRequest.from_message({"url": "http://x/", "headers": [["Host", "evil"], ["X-A", "1"],
                                                                             ["Transfer-Encoding", "chunked"]]},
                                           max_body=10)
        assert req.headers == [("X-A", "1")] and req.method == "GET" and req.timeout_s == 10.0

    @pytest.mark.parametrize("message", [{"url": ""}, {"url": "http://x/", "method": "GE T"},
                                         {"url": "http://x/", "timeout": 0}, {"url": "http://x/", "body": "x" * 11},
                                         {"url": "http://x/", "headers": [["a"]]}])
    def test_bad_requests(self, message):
        with pytest.raises(BadRequest):
            OutboundRequest.from_message(message, max_body=10)


class FakeResolver(HttpProxy):
    """A proxy whose DNS answers from a table and counts the lookups."""

    def __init__(self, settings, answers):
        super().__init__(settings)
        self.answers = answers
        self.lookups = []

    async def _resolve(self, host, port):
        self.lookups.append(host)
        if host not in self.answers:
            raise HttpFailed(f"cannot resolve {host}")
        return [ip(a) for a in self.answers[host]]


class TestProxy:
    async def test_any_denied_address_refuses_the_host(self):
        proxy = FakeResolver(Settings(), {"mixed.test": ["93.184.216.34", "127.0.0.1"]})
        with pytest.raises(HttpDenied, match="loopback"):
            await proxy.request(OutboundRequest("GET", "http://mixed.test/"), time_left_s=5)
        await proxy.close()

    async def test_connects_to_the_checked_address(self, upstream):
        """A name the system resolver does not know reaches the upstream through the address
        the proxy checked: the connection never resolves the name again. Host stays the name."""
        settings = Settings(http_allow=(f"upstream.test:{upstream.port}",))
        proxy = FakeResolver(settings, {"upstream.test": ["127.0.0.1"]})
        try:
            for _ in range(2):
                answer = await proxy.request(OutboundRequest("GET", f"http://upstream.test:{upstream.port}/echo"),
                                             time_left_s=5)
                assert answer["status"] == 200
                assert json.loads(answer["text"])["headers"]["Host"] == f"upstream.test:{upstream.port}"
            assert proxy.lookups == ["upstream.test", "upstream.test"]  # checked on every request
        finally:
            await proxy.close()

    async def test_rebinding_is_checked_on_every_request(self, upstream):
        """A name that first resolves to an allowed address and then to a denied one is refused
        the second time, although a kept-alive connection to it exists."""
        settings = Settings(http_allow=(f"127.0.0.1:{upstream.port}",))
        proxy = FakeResolver(settings, {"flip.test": ["127.0.0.1"]})
        url = f"http://flip.test:{upstream.port}/echo"
        try:
            assert (await proxy.request(OutboundRequest("GET", url), time_left_s=5))["status"] == 200
            proxy.answers["flip.test"] = ["127.0.0.2"]
            with pytest.raises(HttpDenied, match="127.0.0.2"):
                await proxy.request(OutboundRequest("GET", url), time_left_s=5)
        finally:
            await proxy.close()
        assert upstream.requests == ["/echo"]

    async def test_backend_never_connects_unpinned(self):
        """The pool's network backend refuses a host the proxy did not check."""
        import httpcore

        from frazil.sdk.proxy import _PinnedBackend

        with pytest.raises(httpcore.ConnectError, match="not checked"):
            await _PinnedBackend().connect_tcp("example.com", 80)

    async def test_no_cookie_jar_between_requests(self, upstream):
        """Cookies one request receives are never sent on another (functions share the proxy)."""
        proxy = HttpProxy(Settings(http_allow=(f"127.0.0.1:{upstream.port}",)))
        try:
            await proxy.request(OutboundRequest("GET", f"{upstream.url}/cookie"), time_left_s=5)
            answer = await proxy.request(OutboundRequest("GET", f"{upstream.url}/echo"), time_left_s=5)
        finally:
            await proxy.close()
        assert "Cookie" not in json.loads(answer["text"])["headers"]

    async def test_decoded_size_is_capped(self, upstream):
        """A gzip body is decoded for the function, and the cap applies to what it decodes to."""
        proxy = HttpProxy(Settings(http_allow=(f"127.0.0.1:{upstream.port}",), http_max_response_bytes=100_000))
        try:
            small = await proxy.request(OutboundRequest("GET", f"{upstream.url}/gzip?n=1000"), time_left_s=5)
            assert small["text"] == "0" * 1000
            assert "content-encoding" not in {k.lower() for k, _ in small["headers"]}
            with pytest.raises(ResponseTooLarge):
                await proxy.request(OutboundRequest("GET", f"{upstream.url}/gzip?n=5000000"), time_left_s=5)
        finally:
            await proxy.close()
