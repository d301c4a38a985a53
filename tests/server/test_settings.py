"""Settings come from FAKESCOPE_* variables, with safe defaults and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.settings import Settings, SettingsError, parse_rate_limit


def test_defaults_are_provenance_only_on_a_sqlite_file_under_the_data_dir() -> None:
    settings = Settings.from_env({})
    assert settings.provenance_only and settings.is_sqlite
    assert settings.database_url.endswith(str(Path("var").resolve() / "fakescope.db"))
    assert settings.max_upload_bytes == 25 * 1024 * 1024
    assert (settings.queue_size, settings.batch_size, settings.batch_wait_ms) == (64, 8, 5.0)
    assert settings.rate_limit == ("minute", 600)
    assert settings.max_connections == 1000
    assert (settings.max_header_bytes, settings.header_timeout_s) == (64 * 1024, 10.0)
    assert settings.send_timeout_s == 60.0
    assert not settings.allow_private_urls and not settings.require_token
    assert (settings.admin_session_idle_hours, settings.admin_session_max_days) == (12.0, 7.0)


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "FAKESCOPE_DATA_DIR": "/srv/fs",
            "FAKESCOPE_DATABASE_URL": "postgresql+asyncpg://u@db/fs",
            "FAKESCOPE_MODEL": "lingcco/fakeVLM",
            "FAKESCOPE_QUANTIZATION": "nf4",
            "FAKESCOPE_DEVICE": "cuda:0",
            "FAKESCOPE_MAX_UPLOAD_BYTES": "1000",
            "FAKESCOPE_MAX_PIXELS": "2000",
            "FAKESCOPE_QUEUE_SIZE": "3",
            "FAKESCOPE_BATCH_SIZE": "16",
            "FAKESCOPE_BATCH_WAIT_MS": "7.5",
            "FAKESCOPE_REQUEST_TIMEOUT_S": "9",
            "FAKESCOPE_MAX_CONNECTIONS": "50",
            "FAKESCOPE_MAX_HEADER_BYTES": "8192",
            "FAKESCOPE_HEADER_TIMEOUT_S": "2.5",
            "FAKESCOPE_SEND_TIMEOUT_S": "30",
            "FAKESCOPE_CORS_ORIGINS": "chrome-extension://abc, https://example.org",
            "FAKESCOPE_RATE_LIMIT": "20/second",
            "FAKESCOPE_ADMIN_TOKEN": "secret",
            "FAKESCOPE_ALLOW_PRIVATE_URLS": "true",
            "FAKESCOPE_FAKE_THRESHOLD": "0.7",
            "FAKESCOPE_REAL_THRESHOLD": "0.2",
            "FAKESCOPE_REQUIRE_TOKEN": "1",
            "FAKESCOPE_ROLE": " Worker ",
            "FAKESCOPE_JOB_LEASE_S": "12.5",
            "FAKESCOPE_JOB_ATTEMPTS": "5",
            "FAKESCOPE_ADMIN_SESSION_IDLE_HOURS": "0.5",
            "FAKESCOPE_ADMIN_SESSION_MAX_DAYS": "2",
        }
    )
    assert (settings.admin_session_idle_hours, settings.admin_session_max_days) == (0.5, 2.0)
    assert (settings.role, settings.job_lease_s, settings.job_attempts) == ("worker", 12.5, 5)
    assert settings.model == "lingcco/fakeVLM" and not settings.is_sqlite
    assert settings.cors_origins == ("chrome-extension://abc", "https://example.org")
    assert settings.rate_limit == ("second", 20)
    assert settings.max_connections == 50
    assert (settings.max_header_bytes, settings.header_timeout_s) == (8192, 2.5)
    assert settings.send_timeout_s == 30.0
    assert (settings.fake_threshold, settings.real_threshold) == (0.7, 0.2)
    assert settings.allow_private_urls and settings.require_token
    assert settings.image_store_dir == Path("/srv/fs/images")


@pytest.mark.parametrize(
    "text,expected",
    [("600/minute", ("minute", 600)), ("5/seconds", ("second", 5)), ("off", None), ("", None)],
)
def test_rate_limits_parse(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize(
    "env",
    [
        {"FAKESCOPE_RATE_LIMIT": "lots"},
        {"FAKESCOPE_QUEUE_SIZE": "zero"},
        {"FAKESCOPE_BATCH_SIZE": "0"},
        {"FAKESCOPE_MAX_CONNECTIONS": "0"},
        {"FAKESCOPE_MAX_CONNECTIONS": "many"},
        {"FAKESCOPE_MAX_HEADER_BYTES": "100"},
        {"FAKESCOPE_HEADER_TIMEOUT_S": "0"},
        {"FAKESCOPE_SEND_TIMEOUT_S": "0"},
        {"FAKESCOPE_SEND_TIMEOUT_S": "a minute"},
        {"FAKESCOPE_FAKE_THRESHOLD": "0.3", "FAKESCOPE_REAL_THRESHOLD": "0.5"},
        {"FAKESCOPE_ROLE": "gpu"},
        {"FAKESCOPE_JOB_LEASE_S": "0"},
        {"FAKESCOPE_JOB_ATTEMPTS": "0"},
        {"FAKESCOPE_ADMIN_SESSION_IDLE_HOURS": "0"},
        {"FAKESCOPE_ADMIN_SESSION_MAX_DAYS": "-1"},
        {"FAKESCOPE_ADMIN_SESSION_MAX_DAYS": "a week"},
        {"FAKESCOPE_MAX_PIXELS": "600000000"},
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_every_variable_the_server_reads_is_in_the_readme() -> None:
    root = Path(__file__).resolve().parents[2]
    read = set(re.findall(r"FAKESCOPE_[A-Z0-9_]+", (root / "server/settings.py").read_text()))
    documented = set(re.findall(r"FAKESCOPE_[A-Z0-9_]+", (root / "README.md").read_text()))
    assert read and read <= documented, sorted(read - documented)
