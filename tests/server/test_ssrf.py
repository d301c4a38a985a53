"""The URL fetcher refuses every route to private networks, on every hop."""

from __future__ import annotations

import asyncio
import ssl
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from local_http import Site, self_signed_certificate, serve_site, serve_tls_site
from server_helpers import count_rows, problem, running, unique_png

from server.app import create_app
from server.net.ssrf import (
    FetchLimits,
    GuardedFetcher,
    UrlFetchError,
    UrlRefusedError,
    UrlTimeoutError,
    UrlTooLargeError,
    _BoundedDecoder,
)
from server.settings import Settings

# Each of these must be refused without a connection being made (no loopback allowance).
VECTORS = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:a00:1]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://[::]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://[2002:7f00:1::1]/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "http://localhost/",
    "https://localhost:8443/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:25/_HELO",
    "ftp://example.com/image.png",
    "data:image/png;base64,iVBORw0KGgo=",
    "dict://127.0.0.1:11211/",
    "http://example.com@127.0.0.1/",
    "http://user:pass@example.com/",
    "http://127.0.0.1#@example.com/",
    "http://example.com\r\nHost: 127.0.0.1/",
    "//127.0.0.1/",
    "not a url",
]


def test_there_are_at_least_twenty_vectors() -> None:
    assert len(VECTORS) >= 20


@pytest.mark.parametrize("url", VECTORS)
async def test_private_and_non_http_targets_are_refused(url: str) -> None:
    with pytest.raises(UrlRefusedError):
        await GuardedFetcher().fetch(url)


def resolver_for(mapping: dict[str, list[str]]):
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in mapping:
            raise OSError("no such host")
        return mapping[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["93.184.215.14", "127.0.0.1"],
        ["::ffff:10.0.0.1"],
        ["fc00::5"],
    ],
    ids=["private", "metadata", "any-one-private", "mapped-private", "unique-local"],
)
async def test_dns_names_resolving_to_private_addresses_are_refused(addresses: list[str]) -> None:
    fetcher = GuardedFetcher(resolver=resolver_for({"images.example": addresses}))
    with pytest.raises(UrlRefusedError, match=r"images\.example"):
        await fetcher.fetch("https://images.example/cat.png")


async def test_unresolvable_host_is_refused() -> None:
    fetcher = GuardedFetcher(resolver=resolver_for({}))
    with pytest.raises(UrlRefusedError, match="does not resolve"):
        await fetcher.fetch("http://nowhere.example/x.png")


@pytest.fixture
def site() -> Iterator[Site]:
    with serve_site(unique_png()) as running_site:
        yield running_site


def loopback_fetcher(**limits: float) -> GuardedFetcher:
    return GuardedFetcher(FetchLimits(**limits), allow_loopback=True)  # type: ignore[arg-type]


async def test_loopback_switch_allows_only_loopback(site: Site) -> None:
    assert await loopback_fetcher().fetch(site.base + "/image") == site.image
    with pytest.raises(UrlRefusedError):
        await loopback_fetcher().fetch("http://10.0.0.1/")
    with pytest.raises(UrlRefusedError):
        await loopback_fetcher().fetch("http://[::ffff:127.0.0.1]/")


@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/iam",
        "http://[::ffff:127.0.0.1]:1/",
        "http://192.168.0.1/admin",
        "file:///etc/passwd",
        "gopher://127.0.0.1/",
        "http://user@127.0.0.1/",
    ],
)
async def test_redirects_to_private_or_non_http_targets_are_refused(
    site: Site, target: str
) -> None:
    with pytest.raises(UrlRefusedError):
        await loopback_fetcher().fetch(f"{site.base}/redirect?to={target}")


async def test_redirects_are_followed_up_to_five_then_refused(site: Site) -> None:
    assert await loopback_fetcher().fetch(site.base + "/chain?n=4") == site.image
    with pytest.raises(UrlRefusedError, match="redirects"):
        await loopback_fetcher().fetch(site.base + "/chain?n=5")


async def test_connection_goes_to_the_checked_address_with_the_original_host_header(
    site: Site,
) -> None:
    port = site.base.rsplit(":", 1)[1]
    resolve = resolver_for({"images.example": ["127.0.0.1"]})
    fetcher = GuardedFetcher(allow_loopback=True, resolver=resolve)
    assert await fetcher.fetch(f"http://images.example:{port}/image") == site.image
    assert site.hosts_seen[-1] == f"images.example:{port}"
    assert resolve.calls == ["images.example"]  # resolved once: no second lookup to rebind


async def test_streamed_body_over_the_cap_is_too_large(site: Site) -> None:
    with pytest.raises(UrlTooLargeError):
        await loopback_fetcher(max_bytes=1_000_000).fetch(site.base + "/endless")


async def test_declared_length_over_the_cap_is_refused_before_reading(site: Site) -> None:
    with pytest.raises(UrlTooLargeError):
        await loopback_fetcher(max_bytes=1_000_000).fetch(site.base + "/declared-huge")


async def test_slow_servers_hit_the_total_time_cap(site: Site) -> None:
    with pytest.raises(UrlTimeoutError):
        await loopback_fetcher(total_timeout_s=0.5).fetch(site.base + "/slow?s=3")


async def test_a_compressed_body_is_capped_as_it_is_decoded_not_after(site: Site) -> None:
    # 256 KB of gzip decoded a whole network read at a time reached 64 MiB at once (about
    # 130 MB of memory for one request), whatever the cap; now decoding stops at the cap.
    fetcher = loopback_fetcher(max_bytes=1_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(UrlTooLargeError):
            await fetcher.fetch(site.base + "/gzip-bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16_000_000, f"decoding held {peak} bytes at once"
    assert site.accept_encodings[-1] == "identity"  # and it asked for no encoding at all


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP"])
async def test_an_image_sent_gzip_encoded_anyway_is_decoded(site: Site, encoding: str) -> None:
    assert await loopback_fetcher().fetch(f"{site.base}/gzip-image?as={encoding}") == site.image


def _deflated(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    "encoding,wrap",
    [
        ("deflate", lambda d: _deflated(d, zlib.MAX_WBITS)),
        ("deflate", lambda d: _deflated(d, -zlib.MAX_WBITS)),  # raw, as some servers send
        ("gzip, deflate", lambda d: _deflated(_deflated(d, 31), zlib.MAX_WBITS)),
        ("identity", lambda d: d),
    ],
    ids=["deflate-zlib", "deflate-raw", "stacked", "identity"],
)
def test_every_encoding_the_fetcher_undoes_gives_the_bytes_back(encoding: str, wrap: Any) -> None:
    image = unique_png(200)
    encoded = wrap(image)
    decoder = _BoundedDecoder(encoding, cap=len(image))
    for start in range(0, len(encoded), 1000):  # as the network hands it over
        decoder.feed(encoded[start : start + 1000])
    assert decoder.finish() == image
    over = _BoundedDecoder(encoding, cap=len(image) - 1)
    with pytest.raises(UrlTooLargeError):
        over.feed(encoded)
        over.finish()


def _gzipped(data: bytes) -> bytes:
    return _deflated(data, 31)


# A raw deflate stream of empty stored blocks: it decodes to nothing, however long it is.
EMPTY_BLOCKS = b"\x00\x00\x00\xff\xff" * 2_000_000  # 10 MB


@pytest.mark.parametrize(
    "encoding,body",
    [
        ("deflate", EMPTY_BLOCKS),  # the raw body itself is past the cap
        ("deflate, gzip", _gzipped(EMPTY_BLOCKS)),  # 15 KB on the wire, 10 MB for deflate
    ],
    ids=["raw-body", "stacked"],
)
def test_a_body_that_decodes_to_nothing_is_still_capped(encoding: str, body: bytes) -> None:
    # Capping only the decoded bytes let an encoded layer churn without end (in the event
    # loop, where the fetch's total timeout cannot stop it); stacked layers multiplied it.
    decoder = _BoundedDecoder(encoding, cap=1_000_000)
    with pytest.raises(UrlTooLargeError):
        for start in range(0, len(body), 65536):
            decoder.feed(body[start : start + 65536])
        decoder.finish()


def test_a_deep_stack_of_content_codings_is_refused() -> None:
    with pytest.raises(UrlFetchError, match="stacked"):
        _BoundedDecoder("deflate, gzip, gzip", cap=1_000_000)
    with pytest.raises(UrlFetchError, match="stacked"):  # not a RecursionError (a 500)
        _BoundedDecoder(", ".join(["gzip"] * 3000), cap=1_000_000)


async def test_an_unknown_content_encoding_is_a_fetch_error(site: Site) -> None:
    with pytest.raises(UrlFetchError, match="Content-Encoding"):
        await loopback_fetcher().fetch(site.base + "/gzip-image?as=br")


async def test_error_statuses_are_fetch_errors(site: Site) -> None:
    with pytest.raises(UrlFetchError, match="404"):
        await loopback_fetcher().fetch(site.base + "/missing")


# -- through the API ---------------------------------------------------------------------


@pytest.fixture
def url_settings(settings: Settings) -> Settings:
    return replace(settings, allow_private_urls=True, max_upload_bytes=1_000_000)


async def test_url_analysis_sniffs_content_not_the_content_type(
    url_settings: Settings, site: Site
) -> None:
    async with running(create_app(url_settings)) as client:
        ok = await client.post("/v1/analyze", json={"url": site.base + "/image"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["image"]["format"] == "PNG"
        lying = await client.post("/v1/analyze", json={"url": site.base + "/html-as-png"})
        assert lying.status_code == 415
        problem(lying)


@pytest.mark.parametrize(
    "path,status",
    [
        ("/redirect?to=http://10.0.0.1/", 422),
        ("/redirect?to=http://169.254.169.254/latest/meta-data/", 422),
        ("/endless", 413),
        ("/missing", 502),
    ],
)
async def test_url_failures_through_the_api_are_problems_and_write_nothing(
    url_settings: Settings, site: Site, path: str, status: int
) -> None:
    async with running(create_app(url_settings)) as client:
        response = await client.post("/v1/analyze", json={"url": site.base + path})
        assert response.status_code == status, response.text
        problem(response)
    assert sum((await count_rows(url_settings.database_url)).values()) == 0


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1/", "http://[::1]/", "file:///etc/passwd", "http://0x7f.1/"]
)
async def test_without_the_test_switch_the_api_refuses_loopback(
    settings: Settings, url: str
) -> None:
    async with running(create_app(settings)) as client:
        response = await client.post("/v1/analyze", json={"url": url})
        assert response.status_code == 422
        assert "refused" in problem(response)["detail"]


def test_fetcher_never_uses_proxies_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, site: Site
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.setenv("ALL_PROXY", "http://10.9.9.9:3128")
    assert asyncio.run(loopback_fetcher().fetch(site.base + "/image")) == site.image


async def test_https_connects_to_the_checked_address_and_verifies_the_real_host_name(
    tmp_path,
) -> None:
    cert, key = self_signed_certificate(tmp_path, "images.example")
    trust = ssl.create_default_context(cafile=str(cert))
    with serve_tls_site(unique_png(), cert, key) as tls:
        port = tls.base.rsplit(":", 1)[1]
        resolve = resolver_for({"images.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
        fetcher = GuardedFetcher(allow_loopback=True, resolver=resolve, verify=trust)
        assert await fetcher.fetch(f"https://images.example:{port}/image") == tls.image
        assert tls.hosts_seen[-1] == f"images.example:{port}"
        # Same address, another name: the certificate does not match, so no body is read.
        with pytest.raises(UrlFetchError):
            await fetcher.fetch(f"https://other.example:{port}/image")
