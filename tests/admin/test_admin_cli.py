"""`fakescope admin create-token | revoke-token | list-tokens` against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from admin_helpers import bearer
from litestar.testing import TestClient

from fakescope.cli import main
from server.app import create_app
from server.settings import Settings


@pytest.fixture
def cli_env(sqlite_only: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("FAKESCOPE_DATABASE_URL", sqlite_only)
    monkeypatch.setenv("FAKESCOPE_DATA_DIR", str(tmp_path / "data"))
    return Settings(data_dir=tmp_path / "data", database_url=sqlite_only, rate_limit=None)


def test_create_token_prints_the_token_alone_and_the_token_works(cli_env: Settings) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fakescope.cli",
            "admin",
            "create-token",
            "--role",
            "reviewer",
            "--name",
            "Rosa",
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert done.stdout == token + "\n" and token.startswith("fs_") and len(token) > 40
    assert "shown once" in done.stderr
    with TestClient(app=create_app(cli_env)) as client:
        assert client.get("/v1/admin/queue", headers=bearer(token)).status_code == 200
        assert client.get("/v1/admin/tokens", headers=bearer(token)).status_code == 403


def test_revoke_token_by_id_or_prefix_stops_the_token_and_list_shows_it(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "create-token", "--role", "admin"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["admin", "create-token", "--role", "client", "--name", "feed"]) == 0
    second = capsys.readouterr().out.strip()

    assert main(["admin", "list-tokens", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(t["role"], t["revoked_at"]) for t in listed] == [("admin", None), ("client", None)]
    assert first not in json.dumps(listed) and second not in json.dumps(listed)

    assert main(["admin", "revoke-token", str(listed[0]["id"])]) == 0
    assert main(["admin", "revoke", listed[1]["prefix"]]) == 0
    capsys.readouterr()
    assert main(["admin", "list-tokens"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []  # only the header: all revoked
    assert main(["admin", "list-tokens", "--all", "--json"]) == 0
    assert all(json.loads(line)["revoked_at"] for line in capsys.readouterr().out.splitlines())
    assert main(["admin", "revoke-token", "999"]) == 1

    bootstrap = "bootstrap-admin-secret-for-the-cli-test"
    with TestClient(app=create_app(replace(cli_env, admin_token=bootstrap))) as client:
        assert client.get("/v1/admin/queue", headers=bearer(first)).status_code == 401
        audit = client.get("/v1/admin/audit", headers=bearer(bootstrap)).json()["entries"]
    assert [e["action"] for e in audit] == ["token.revoke"] * 2 + ["token.create"] * 2
    assert all(e["actor"].startswith("cli (") for e in audit)


def test_admin_commands_on_an_unmigrated_database_explain_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKESCOPE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SystemExit) as exited:
        main(["admin", "create-token", "--role", "admin"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "fakescope db upgrade" in captured.err


def test_create_token_refuses_a_name_the_api_would_refuse(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API answers 422 for these names; the command stored them, cut the long one to 200
    characters without a word, and `list-tokens` then wrote the escape sequence to the
    admin's terminal (and a NUL was a database error on PostgreSQL)."""
    for name in ("Rosa\x1b[2J", "a\x00b", "n" * 201):
        assert main(["admin", "create-token", "--role", "reviewer", "--name", name]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and "--name" in captured.err
    assert main(["admin", "list-tokens", "--all", "--json"]) == 0
    assert capsys.readouterr().out == ""  # nothing was created
    assert main(["admin", "create-token", "--role", "reviewer", "--name", "Rosa\tR."]) == 0
