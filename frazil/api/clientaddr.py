"""The client address a request is counted against (failed logins, registrations, public async
invocations) and that a function's HTTP event names as `sourceIp`.

Without trusted proxies (`FRAZIL_TRUSTED_PROXIES`, the default) it is the peer address, and
`X-Forwarded-For` is ignored: any client can write that header. When the peer is a trusted
proxy, the header's hops are read from the right (the hop the proxy itself appended) and the
first address that is not a trusted proxy is the client: everything to its left was written by
that untrusted client and proves nothing. A header that holds only trusted hops names its
leftmost one; a missing or unparsable header leaves the peer address.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_FOR = "x-forwarded-for"


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address, proxies: Sequence[IPNetwork]) -> bool:
    if address.version == 6 and address.ipv4_mapped is not None:  # ::ffff:10.0.0.1 is 10.0.0.1
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in proxies)


def client_address(peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[IPNetwork]) -> str | None:
    """The client's address: `peer` (the TCP peer), or, when `peer` is in `proxies`, the
    rightmost untrusted hop of the `X-Forwarded-For` values (each header line in order)."""
    if not proxies or peer is None:
        return peer
    peer_ip = _parse(peer)
    if peer_ip is None or not _trusted(peer_ip, proxies):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    parsed = [_parse(hop) for hop in hops]
    if not parsed or any(ip is None for ip in parsed):
        # A hop that is not an address ("unknown", a typo): the chain cannot be followed.
        return peer
    for ip in reversed(parsed):
        if not _trusted(ip, proxies):
            return str(ip)
    return str(parsed[0])


def scope_client(scope, proxies: Sequence[IPNetwork]) -> str | None:
    """`client_address` of an ASGI HTTP scope."""
    peer = scope["client"][0] if scope.get("client") else None
    if not proxies:
        return peer
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == FORWARDED_FOR.encode()]
    return client_address(peer, values, proxies)
