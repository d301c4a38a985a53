"""Which clients count as one for the per-address limits (rate limit, failed sign-ins).

An IPv4 address is one client. An IPv6 client is its /64: one subscriber, one LAN, one
cloud machine is handed a whole /64 (RFC 6177 and common practice), and picks any of its
2^64 addresses for each request, so a limit counted per IPv6 address limits nothing. An
IPv4 address written as IPv6 (`::ffff:192.0.2.1`, from a dual-stack socket) is that IPv4
address. Anything that is no IP address (a Unix socket's peer, a test client's name) is
kept as written.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar.connection import ASGIConnection

IPV6_CLIENT_PREFIX = 64
NO_CLIENT = "unknown"


def client_of_address(host: str) -> str:
    """The limits' key for a peer address: the IPv4 address, or the IPv6 address's /64."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # fe80::1%eth0: zone left out
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(address)


def client_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The limits' key for the client of this request (see client_of_address)."""
    return client_of_address(connection.client.host) if connection.client else NO_CLIENT
