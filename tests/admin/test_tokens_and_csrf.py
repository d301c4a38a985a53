"""The pure parts: token and session secrets, roles, CSRF tokens, the failed-attempt limiter."""

from __future__ import annotations

import hashlib

from server.admin.csrf import csrf_matches, new_login_csrf_token, session_csrf_token
from server.admin.roles import Role, role_allows
from server.admin.session_store import bootstrap_mac, new_session_secret
from server.admin.tokens import display_prefix, generate_token, hash_token, hashes_match
from server.limits import MemoryFailedAuthLimiter


def test_tokens_are_random_urlsafe_and_stored_only_as_their_sha256() -> None:
    first, second = generate_token(), generate_token()
    assert first != second and first.startswith("fs_") and len(first) >= 46
    assert all(c.isalnum() or c in "-_" for c in first[3:])
    assert hash_token(first) == hashlib.sha256(first.encode()).hexdigest()
    assert len(hash_token(first)) == 64 and first not in hash_token(first)
    assert display_prefix(first) == first[:11] and len(display_prefix(first)) <= 16


def test_hashes_match_only_the_exact_secret() -> None:
    secret = generate_token()
    stored = hash_token(secret)
    assert hashes_match(stored, secret)
    assert not hashes_match(stored, secret[:-1])
    assert not hashes_match(stored, secret + "x")
    assert not hashes_match(stored, "")


def test_roles_rank_admin_over_reviewer_over_client_and_unknown_roles_allow_nothing() -> None:
    assert role_allows(Role.ADMIN, Role.REVIEWER) and role_allows("reviewer", "reviewer")
    assert not role_allows(Role.REVIEWER, Role.ADMIN)
    assert not role_allows(Role.CLIENT, Role.REVIEWER)
    assert not role_allows("superuser", Role.CLIENT)


def test_session_secrets_are_random_urlsafe_and_unlike_api_tokens() -> None:
    first, second = new_session_secret(), new_session_secret()
    assert first != second and len(first) >= 43 and not first.startswith("fs_")
    assert all(c.isalnum() or c in "-_" for c in first)


def test_session_csrf_tokens_are_bound_to_the_session_and_do_not_reveal_it() -> None:
    a, b = new_session_secret(), new_session_secret()
    assert session_csrf_token(a) == session_csrf_token(a) != session_csrf_token(b)
    assert a not in session_csrf_token(a)
    assert new_login_csrf_token() != new_login_csrf_token()


def test_a_bootstrap_session_mac_needs_the_session_secret_and_names_one_bootstrap_token() -> None:
    secret = new_session_secret()
    mac = bootstrap_mac(secret, "bootstrap-one")
    assert mac == bootstrap_mac(secret, "bootstrap-one") != bootstrap_mac(secret, "bootstrap-two")
    assert mac != bootstrap_mac(new_session_secret(), "bootstrap-one")
    assert mac != hash_token("bootstrap-one") and "bootstrap-one" not in mac


def test_csrf_matching_refuses_missing_empty_and_different_tokens() -> None:
    token = new_login_csrf_token()
    assert csrf_matches(token, token)
    assert not csrf_matches(token, None) and not csrf_matches(None, token)
    assert not csrf_matches("", "") and not csrf_matches(token, token + "x")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_limiter_blocks_a_client_after_the_limit_until_the_window_passes() -> None:
    clock = FakeClock()
    limiter = MemoryFailedAuthLimiter(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert await limiter.retry_after("10.0.0.1") is None
        await limiter.record_failure("10.0.0.1")
        clock.now += 1
    # The first failure leaves the window at 1060.
    assert await limiter.retry_after("10.0.0.1") == 57
    assert await limiter.retry_after("10.0.0.2") is None  # other clients are not affected
    clock.now += 57
    assert await limiter.retry_after("10.0.0.1") is None


async def test_the_limiter_keeps_its_memory_bounded_under_many_addresses() -> None:
    clock = FakeClock()
    limiter = MemoryFailedAuthLimiter(max_failures=1, window_s=60, clock=clock)
    for i in range(10_050):
        await limiter.record_failure(f"client-{i}")
    assert len(limiter._failures) <= 10_000
    assert await limiter.retry_after("client-10049") is not None
