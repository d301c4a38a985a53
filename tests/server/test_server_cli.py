"""`fakescope db upgrade|current` and `fakescope serve` on the embedded default database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from live_server import REPO_ROOT, LiveServer, free_port


def fakescope(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakescope.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_refuses_an_unmigrated_database_then_upgrade_makes_it_serve(tmp_path: Path) -> None:
    env = {"FAKESCOPE_DATA_DIR": str(tmp_path / "var"), "FAKESCOPE_DATABASE_URL": ""}
    refused = fakescope("serve", "--port", str(free_port()), env=env)
    assert refused.returncode == 2
    assert "fakescope db upgrade" in refused.stderr

    behind = fakescope("db", "current", env=env)
    assert behind.returncode == 1 and "current: (none)" in behind.stdout
    upgraded = fakescope("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "var" / "fakescope.db").is_file()
    current = fakescope("db", "current", env=env)
    assert current.returncode == 0

    server = LiveServer(env, tmp_path / "serve.log").start()
    try:
        ready = httpx.get(server.base + "/readyz", timeout=5).json()
        assert ready["mode"] == "provenance-only"
    finally:
        server.stop()


def test_bad_settings_end_the_command_with_the_variable_named(tmp_path: Path) -> None:
    result = fakescope(
        "db", "upgrade", env={"FAKESCOPE_DATA_DIR": str(tmp_path), "FAKESCOPE_QUEUE_SIZE": "lots"}
    )
    assert result.returncode == 2
    assert "FAKESCOPE_QUEUE_SIZE" in result.stderr and "Traceback" not in result.stderr


def test_a_database_that_cannot_be_used_ends_every_server_command_with_one_line(
    tmp_path: Path, postgres_url: str
) -> None:
    # postgres_url requires the server (and makes this test run, not skip, in CI): the
    # database named below does not exist on it.
    missing = postgres_url.rsplit("/", 1)[0] + "/fakescope_no_such_database"
    cases = {
        missing: 'database "fakescope_no_such_database" does not exist',
        f"sqlite:///{tmp_path / 'x.db'}": "sqlite+aiosqlite:///",  # no async driver named
    }
    commands = [("db", "upgrade"), ("db", "current"), ("jobs",), ("admin", "list-tokens")]
    commands.append(("serve", "--port", str(free_port())))
    runs = [(url, said, command) for url, said in cases.items() for command in commands]
    with ThreadPoolExecutor(max_workers=4) as pool:  # ten commands, each mostly imports
        results = pool.map(
            lambda run: fakescope(*run[2], env={"FAKESCOPE_DATABASE_URL": run[0]}), runs
        )
        for (url, said, command), result in zip(runs, results, strict=True):
            where = f"{' '.join(command)} on {url}"
            assert result.returncode == 2, (where, result.stderr[-2000:])
            assert "Traceback" not in result.stderr, where
            assert result.stderr.startswith("fakescope: error:") and said in result.stderr, where


def test_serve_answers_503_once_fakescope_max_connections_are_open(
    tmp_path: Path, sqlite_url: str
) -> None:
    # uvicorn counts every open connection, idle ones too (a client that has not finished its
    # headers has no deadline): at FAKESCOPE_MAX_CONNECTIONS of them a new request is refused
    # by uvicorn itself, before the app, so the process starts no more requests. Without the
    # cap (limit_concurrency unset) the probe below was served whatever else was open.
    env = {"FAKESCOPE_DATABASE_URL": sqlite_url, "FAKESCOPE_MAX_CONNECTIONS": "3"}
    server = LiveServer(env, tmp_path / "serve.log").start()
    held: list[socket.socket] = []
    try:
        for _ in range(2):  # with the probe's own connection: 3
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            held[-1].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never end
        # Accepted in the order they connected: both are counted before the probe's request.
        refused = httpx.get(server.base + "/healthz", timeout=30)
        assert refused.status_code == 503, refused.text
        # Answered before the app (uvicorn picks the answer), in the API's form: uvicorn's
        # own is a plain-text "Service Unavailable" without Retry-After.
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith(":too-many-connections")
        assert "FAKESCOPE_MAX_CONNECTIONS" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "5"
        assert refused.headers["connection"] == "close"
        for sock in held:
            sock.close()
        # The held connections gone, the server answers again.
        deadline = time.monotonic() + 30
        while (answer := httpx.get(server.base + "/healthz", timeout=30)).status_code != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_serve_parses_with_the_guarded_protocol_and_says_when_it_cannot(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from server.cli import _http_protocol
    from server.http_protocol import IMPORT_STRING

    assert _http_protocol() == IMPORT_STRING  # httptools is a dependency
    assert capsys.readouterr().err == ""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "httptools" else real_find_spec(name, *a),
    )
    assert _http_protocol() == "h11"
    said = capsys.readouterr().err
    assert "httptools is not installed" in said and "FAKESCOPE_HEADER_TIMEOUT_S" in said
