"""Fetch a user-supplied URL without letting it reach private networks (SSRF guard).

Every hop: http/https only, no userinfo, the host resolved here and *every* address checked,
the connection made to the checked address (Host header and TLS SNI keep the real name, so
certificates are still verified against it), redirects followed by hand and re-checked,
bytes and time capped. The body's type is decided later by decoding it, never by headers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_REDIRECTS = 5
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")
)
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
TEREDO = ipaddress.ip_network("2001::/32")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
_DECODE_PIECE = 256 * 1024  # the most one decompress call may produce
# Content codings undone on one body: a stack deeper than this is refused. Each layer
# multiplies the work one network read can cause (~1000x for deflate).
MAX_CODINGS = 2


class UrlRefusedError(Exception):
    """The URL (or a redirect it led to) points somewhere the server must not go."""


class UrlFetchError(Exception):
    """The remote end could not be reached or did not answer with an image body."""


class UrlTimeoutError(UrlFetchError):
    """The fetch took longer than allowed."""


class UrlTooLargeError(Exception):
    """The body is larger than the upload limit."""


def forbidden_reason(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why connecting to `address` is refused, or None when it is a public address."""
    if allow_loopback and (address == ipaddress.IPv6Address("::1") or address in LOOPBACK_V4):
        return None
    if address in METADATA_ADDRESSES:
        return "cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "IPv4-mapped IPv6 address"
        if address in SIX_TO_FOUR or address in TEREDO or address in NAT64:
            return "IPv6 transition address (6to4/Teredo/NAT64)"
        if address.scope_id:
            return "scoped IPv6 address"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("private", address.is_private),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
    )
    for name, hit in checks:
        if hit:
            return f"{name} address"
    if not address.is_global:
        return "non-global address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """All addresses getaddrinfo gives for host (run in a thread by the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 25 * 1024 * 1024
    total_timeout_s: float = 15.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0


class GuardedFetcher:
    """Fetches URLs for /v1/analyze {"url": ...}. One instance per app; holds no connections."""

    def __init__(
        self,
        limits: FetchLimits = FetchLimits(),
        *,
        allow_loopback: bool = False,
        resolver: Resolver = system_resolver,
        user_agent: str = "FakeScope/0.1 (+image forensics)",
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.limits = limits
        self.allow_loopback = allow_loopback
        self.resolver = resolver
        self.user_agent = user_agent
        self.verify = verify  # tests pass a context trusting their own certificate

    async def fetch(self, url: str) -> bytes:
        try:
            async with asyncio.timeout(self.limits.total_timeout_s):
                return await self._follow(url)
        except TimeoutError as exc:
            raise UrlTimeoutError(
                f"fetching the URL took longer than {self.limits.total_timeout_s:g} s"
            ) from exc

    async def _follow(self, url: str) -> bytes:
        current = self._parse(url)
        for _ in range(MAX_REDIRECTS + 1):
            address = await self.check(current)
            location, body = await self._get(current, address)
            if location is None:
                return body
            try:
                current = self._parse(str(current.join(location)))
            except UrlRefusedError as exc:
                raise UrlRefusedError(f"redirect refused: {exc}") from exc
        raise UrlRefusedError(f"more than {MAX_REDIRECTS} redirects")

    @staticmethod
    def _parse(raw: str) -> httpx.URL:
        if any(ch in raw for ch in "\r\n\t\x00"):
            raise UrlRefusedError("control characters in URL")
        try:
            url = httpx.URL(raw)
            host = url.host  # decodes IDNA labels, which may be malformed ("xn--")
        except (httpx.InvalidURL, TypeError, ValueError) as exc:  # idna errors are ValueErrors
            raise UrlRefusedError(f"not a valid URL: {exc}") from exc
        if url.scheme not in ("http", "https"):
            raise UrlRefusedError(f"scheme {url.scheme or '(none)'!r} is not allowed")
        if url.userinfo:
            raise UrlRefusedError("credentials (user@host) in URLs are not allowed")
        if not host:
            raise UrlRefusedError("URL has no host")
        return url

    async def check(self, url: httpx.URL) -> IPAddress:
        """Resolve url's host; refuse unless every address is allowed. Returns the one to use."""
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            found = await self.resolver(url.host, port)
        except (OSError, UnicodeError) as exc:
            raise UrlRefusedError(f"host {url.host!r} does not resolve") from exc
        if not found:
            raise UrlRefusedError(f"host {url.host!r} does not resolve")
        addresses: list[IPAddress] = []
        for text in found:
            try:
                address = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError as exc:
                raise UrlRefusedError(f"resolver returned {text!r}") from exc
            reason = forbidden_reason(address, allow_loopback=self.allow_loopback)
            if reason:
                raise UrlRefusedError(f"host {url.host!r} resolves to {address} ({reason})")
            addresses.append(address)
        return addresses[0]

    def _pinned_request(
        self, client: httpx.AsyncClient, url: httpx.URL, ip: IPAddress
    ) -> httpx.Request:
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        headers = {
            "Host": url.netloc.decode("ascii"),
            "User-Agent": self.user_agent,
            "Accept": "image/*",
            "Accept-Encoding": "identity",
        }
        return client.build_request(
            "GET", url.copy_with(host=str(ip)), headers=headers, extensions=extensions
        )

    async def _get(self, url: httpx.URL, ip: IPAddress) -> tuple[str | None, bytes]:
        timeout = httpx.Timeout(self.limits.read_timeout_s, connect=self.limits.connect_timeout_s)
        # A fresh client per hop: no pooled connection is ever reused for another host name.
        async with httpx.AsyncClient(
            trust_env=False, follow_redirects=False, timeout=timeout, verify=self.verify
        ) as client:
            request = self._pinned_request(client, url, ip)
            try:
                response = await client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise UrlTimeoutError(f"timed out talking to {url.host}") from exc
            except httpx.HTTPError as exc:
                raise UrlFetchError(f"could not fetch from {url.host}: {exc}") from exc
            except (httpx.InvalidURL, UnicodeError) as exc:
                # httpx parses a redirect's Location even when it does not follow it.
                raise UrlRefusedError(f"redirect refused: not a valid URL: {exc}") from exc
            try:
                if response.status_code in REDIRECT_CODES:
                    location = response.headers.get("location")
                    if not location:
                        raise UrlFetchError("redirect without a Location header")
                    return location, b""
                if response.status_code != 200:
                    raise UrlFetchError(f"{url.host} answered HTTP {response.status_code}")
                return None, await self._read_capped(response)
            finally:
                await response.aclose()

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.limits.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise UrlTooLargeError(f"remote image is {declared} bytes; the limit is {cap}")
        # Raw bytes, decoded here a bounded piece at a time: httpx would inflate each
        # network read whole (64 KiB of gzip is 64 MiB of zeros) before the cap is checked.
        decoder = _BoundedDecoder(response.headers.get("content-encoding", ""), cap)
        try:
            async for chunk in response.aiter_raw():
                decoder.feed(chunk)
            return decoder.finish()
        except httpx.TimeoutException as exc:
            raise UrlTimeoutError("timed out reading the remote image") from exc
        except httpx.HTTPError as exc:
            raise UrlFetchError(f"error reading the remote image: {exc}") from exc


class _BoundedDecoder:
    """A body's Content-Encoding undone with the decoded size capped as it grows.

    The fetcher asks for `identity`; a server may compress all the same (gzip or deflate,
    at most MAX_CODINGS of them stacked). Anything else is refused rather than passed on as
    image bytes.

    Not only the decoded bytes are capped: so is what goes into each layer (the raw body
    included). A deflate stream may decode to nothing at all (empty blocks), so a cap on the
    output alone would let a layer, fed ~1000x its size by the layer above, churn without
    end in the event loop, where the fetch's total timeout cannot interrupt it.
    """

    def __init__(self, content_encoding: str, cap: int) -> None:
        self.cap = cap
        self.total = 0
        self.chunks: list[bytes] = []
        self.stages: list[Any] = []
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        for coding in reversed(codings):  # the last one listed was applied last
            if coding in ("gzip", "x-gzip"):
                self.stages.append(zlib.decompressobj(16 + zlib.MAX_WBITS))
            elif coding == "deflate":
                self.stages.append(_Deflate())
            elif coding != "identity":
                raise UrlFetchError(f"the remote image came with Content-Encoding {coding!r}")
        if len(self.stages) > MAX_CODINGS:
            raise UrlFetchError(
                f"the remote image came with {len(self.stages)} content codings stacked; "
                f"at most {MAX_CODINGS} are undone"
            )
        # Encoded input: compressing an (already compressed) image adds well under 1 %.
        self.encoded_cap = cap + cap // 64 + 1024
        self.fed = [0] * len(self.stages)

    def feed(self, data: bytes) -> None:
        self._pass(0, data)

    def _pass(self, stage: int, data: bytes) -> None:
        if stage == len(self.stages):
            self.total += len(data)
            if self.total > self.cap:
                raise UrlTooLargeError(f"remote image exceeds the limit of {self.cap} bytes")
            if data:
                self.chunks.append(data)
            return
        self.fed[stage] += len(data)
        if self.fed[stage] > self.encoded_cap:
            raise UrlTooLargeError(
                f"remote image exceeds the limit of {self.cap} bytes (still encoded)"
            )
        decoder = self.stages[stage]
        while data:
            try:
                out = decoder.decompress(data, _DECODE_PIECE)
            except zlib.error as exc:
                raise UrlFetchError(f"the remote image's encoding is corrupt: {exc}") from exc
            self._pass(stage + 1, out)
            data = decoder.unconsumed_tail

    def finish(self) -> bytes:
        for stage, decoder in enumerate(self.stages):
            try:
                rest = decoder.flush()
            except zlib.error as exc:
                raise UrlFetchError(f"the remote image's encoding is corrupt: {exc}") from exc
            self._pass(stage + 1, rest)
        return b"".join(self.chunks)


class _Deflate:
    """HTTP `deflate`: zlib-wrapped as the RFC says, or raw deflate as some servers send."""

    def __init__(self) -> None:
        self._inner: Any = None
        self._start = b""

    @property
    def unconsumed_tail(self) -> bytes:
        return self._inner.unconsumed_tail if self._inner is not None else b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            self._start += data
            if len(self._start) < 2:
                return b""
            data, self._start = self._start, b""
            try:
                zlib.decompressobj().decompress(data[:2])
                self._inner = zlib.decompressobj()
            except zlib.error:
                self._inner = zlib.decompressobj(-zlib.MAX_WBITS)
        out: bytes = self._inner.decompress(data, max_length)
        return out

    def flush(self) -> bytes:
        if self._inner is None:
            return b""
        out: bytes = self._inner.flush()
        return out
