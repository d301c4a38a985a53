"""Fixtures shared by every test area, and the rule that CI runs every test it is given."""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from server.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("FAKESCOPE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_ADMIN_URL = os.environ.get(
    "FAKESCOPE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")


def require(condition: bool, reason: str) -> None:
    """Skip when a resource is missing locally; fail under CI, where everything must run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    # The apps the tests run keep their log records in pytest's own capture (shown with a
    # failed test), not on stderr: the server's output thread wrote to the stderr of the
    # moment, and a record it wrote after a test's capture had ended (apps still running,
    # a record queued late) landed in the run's output between the test dots.
    from server import log_output

    log_output.SHARED.to_stderr = False


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        print(f"\nCI forbids skipped tests: {skipped} skipped")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def shared_data() -> Path:
    require((SHARED_DATA / "MANIFEST.tsv").is_file(), f"labelled images not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def manifest_rows(shared_data: Path) -> list[dict[str, str]]:
    with (shared_data / "MANIFEST.tsv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fakescope.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-model") / "checkpoint")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> Any:
    from fakescope.loading import load_model

    return load_model(str(tiny_model_dir), quantization="none", device="cpu", progress=False)


@pytest.fixture()
def graph_decoding(tiny_model: Any) -> Iterator[Any]:
    """The tiny model answering through its graph decoders, as on CUDA (eagerly here: there
    is no GPU), keeping none another test left: each test starts from an empty pool."""
    tiny_model.release_decoders()
    tiny_model.graph_decoding = True
    try:
        yield tiny_model
    finally:
        tiny_model.graph_decoding = False
        tiny_model.release_decoders()


def _postgres_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session, dropped afterwards."""
    require(_postgres_reachable(), f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}")
    import psycopg

    name = f"fakescope_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_postgres(postgres_url: str) -> str:
    """The session's PostgreSQL database, migrated to the newest revision."""
    from server.db.migrate import upgrade_async

    asyncio.run(upgrade_async(postgres_url))
    return postgres_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file, migrated to the newest revision."""
    from server.db.migrate import upgrade_async

    url = f"sqlite+aiosqlite:///{tmp_path / 'fakescope.db'}"
    asyncio.run(upgrade_async(url))
    return url


async def _empty_all_tables(database_url: str) -> None:
    from sqlalchemy import text

    from server.db.engine import create_engine
    from server.db.models import Base

    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated, empty database: a fresh SQLite file, or the session's PostgreSQL emptied."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
        return
    url: str = request.getfixturevalue("migrated_postgres")
    asyncio.run(_empty_all_tables(url))
    yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Provenance-only server settings on the parametrised database, with no rate limit."""
    from server.settings import Settings

    return Settings(data_dir=tmp_path / "data", database_url=database_url, rate_limit=None)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    found = next((p for p in CHROMIUM_CANDIDATES if Path(p).is_file()), None)
    found = found or shutil.which("chromium")
    require(found is not None, "Chromium is not installed (apt-get install chromium)")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = REPO_ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
