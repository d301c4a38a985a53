"""Which clients count as one for the per-address limits (rate limit, failed sign-ins).

An IPv4 address is one client. An IPv6 client is its /64: one subscriber, one LAN, one
cloud machine is handed a whole /64 (RFC 6177 and common practice), and picks any of its
2^64 addresses for each request, so a limit counted per IPv6 address limits nothing. An
IPv4 address written as IPv6 (`::ffff:192.0.2.1`, from a dual-stack socket) is that IPv4
address; so is one that carries its IPv4 client's address: NAT64's well-known prefix (a
server behind SIIT sees every IPv4 client in 64:ff9b::/96, one /64), 6to4 (each IPv4 address
holds a /48 of 2^16 /64s) and Teredo (whose /64 is the relay's, shared by all its clients).
Anything that is no IP address (a Unix socket's peer, a test client's name) is kept as
written.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar.connection import ASGIConnection

IPV6_CLIENT_PREFIX = 64
NO_CLIENT = "unknown"
# RFC 6052's well-known prefix: the IPv4 address is the last 32 bits.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


def client_of_address(host: str) -> str:
    """The limits' key for a peer address: the IPv4 address, or the IPv6 address's /64."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # fe80::1%eth0: zone left out
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _ipv4_client(address)
        if embedded is not None:
            return str(embedded)
        network = ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(address)


def _ipv4_client(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (module docstring), or None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return address.teredo[1] if address.teredo is not None else None


def client_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The limits' key for the client of this request (see client_of_address)."""
    return client_of_address(connection.client.host) if connection.client else NO_CLIENT
