"""The per-address limits count an IPv6 client by its /64, an IPv4 client by its address.

A subscriber, a LAN or a cloud machine is handed a whole IPv6 /64 and may send each request
from another of its 2^64 addresses: counted per address, neither the rate limit nor the
failed-attempt limit held such a client at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx
import pytest
from litestar import Litestar
from server_helpers import lifespan

from server.app import create_app
from server.limits.client_address import client_of_address
from server.settings import Settings


@pytest.mark.parametrize(
    ("host", "client"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::FFFF", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4 on a dual-stack socket
        ("fe80::1%eth0", "fe80::/64"),
        # IPv6 addresses that carry their IPv4 client's: each is that client, not a /64
        # shared by every IPv4 client (NAT64, Teredo's relay) or one of 2^16 (6to4's /48).
        ("64:ff9b::c000:207", "192.0.2.7"),
        ("64:ff9b::198.51.100.9", "198.51.100.9"),
        ("2002:c000:207:1::1", "192.0.2.7"),
        ("2002:c000:207:ffff::1", "192.0.2.7"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),
        ("::1", "::/64"),
        ("testclient", "testclient"),  # not an address: kept as written
        ("", ""),
    ],
)
def test_a_client_is_an_ipv4_address_or_an_ipv6_64(host: str, client: str) -> None:
    assert client_of_address(host) == client


@asynccontextmanager
async def clients_at(app: Litestar, *hosts: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per peer address, all calling the same running app."""
    async with lifespan(app):
        made = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(host, 40000)),
                base_url="http://testserver.local",
            )
            for host in hosts
        ]
        try:
            yield made
        finally:
            for client in made:
                await client.aclose()


async def test_the_rate_limit_holds_every_address_of_an_ipv6_64_together(
    settings: Settings,
) -> None:
    app = create_app(replace(settings, rate_limit=("minute", 3)))
    hosts = ("2001:db8:7:7::1", "2001:db8:7:7::2", "2001:db8:7:7:ffff::3", "2001:db8:7:8::1")
    async with clients_at(app, *hosts, "192.0.2.1", "192.0.2.2") as clients:
        same_64, other_64, ipv4_a, ipv4_b = clients[:3], clients[3], clients[4], clients[5]
        path = "/v1/analyses/" + "ab" * 32
        codes = [(await client.get(path)).status_code for client in [*same_64, same_64[0]]]
        assert codes == [404, 404, 404, 429]  # three addresses, one client, one budget
        assert (await other_64.get(path)).status_code == 404  # the next /64 is someone else
        codes = [(await ipv4_a.get(path)).status_code for _ in range(3)]
        assert codes == [404, 404, 404]
        assert (await ipv4_b.get(path)).status_code == 404  # IPv4 addresses count apart


async def test_failed_sign_ins_from_one_ipv6_64_share_one_lockout(settings: Settings) -> None:
    app = create_app(replace(settings, admin_token="bootstrap-secret-123", rate_limit=None))
    hosts = [f"2001:db8:5:5::{n:x}" for n in range(1, 12)]
    async with clients_at(app, *hosts, "2001:db8:5:6::1") as clients:
        answers = [
            await client.get("/v1/admin/queue", headers={"Authorization": f"Bearer guess-{n}"})
            for n, client in enumerate(clients[:11])
        ]
        # Each guess from a new address of the same /64: the 11th is refused all the same.
        assert [a.status_code for a in answers] == [401] * 10 + [429], answers[-1].text
        right = {"Authorization": "Bearer bootstrap-secret-123"}
        assert (await clients[0].get("/v1/admin/queue", headers=right)).status_code == 429
        assert (await clients[11].get("/v1/admin/queue", headers=right)).status_code == 200
