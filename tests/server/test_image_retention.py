"""Stored image bytes are deleted after the retention period, except under open review.

Both stores: files under the data directory and rows in the database (SQLite and
PostgreSQL), through the same :class:`ImageStore` interface the server uses.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from server_helpers import CountingModel, problem, running, unique_png, upload, wait_until_ready
from sqlalchemy import insert, text

from server.analyze.image_rows import DatabaseImageStore
from server.analyze.image_store import FileImageStore, ImageFiles, ImageStore
from server.analyze.retention import ImageRetention
from server.app import create_app
from server.db.database import Database
from server.db.engine import create_engine
from server.db.models import StoredImage
from server.settings import Settings, SettingsError
from server.timefmt import utcnow

DAY = 86_400
SHA = [f"{i:02x}" * 32 for i in range(1, 6)]


def age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


async def age_stored(store: ImageStore, sha: str, days: float) -> None:
    """Make the store believe the bytes came in ``days`` ago."""
    if isinstance(store, FileImageStore):
        age(store.files._path(sha), days)
        return
    assert isinstance(store, DatabaseImageStore)
    async with store.db.write() as session:
        await session.execute(
            text("UPDATE stored_images SET stored_at = :then WHERE sha256 = :sha"),
            {"then": utcnow() - timedelta(days=days), "sha": sha},
        )


@pytest.fixture(params=["files", "database"])
async def store(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> AsyncIterator[ImageStore]:
    if request.param == "files":
        yield FileImageStore(tmp_path / "images")
        return
    db = Database(create_engine(database_url))
    try:
        yield DatabaseImageStore(db)
    finally:
        await db.dispose()


async def test_either_store_keeps_loads_and_purges_the_same_way(store: ImageStore) -> None:
    assert await store.load(SHA[0]) is None and not await store.contains(SHA[0])
    for sha in SHA[:4]:
        await store.save(sha, b"bytes of " + sha.encode())
    await store.save(SHA[0], b"bytes of " + SHA[0].encode())  # twice: still one copy
    assert await store.load(SHA[0]) == b"bytes of " + SHA[0].encode()
    assert await store.contains(SHA[1])
    await age_stored(store, SHA[0], 40)
    await age_stored(store, SHA[1], 40)
    await age_stored(store, SHA[2], 40)
    await store.save(SHA[2], b"bytes of " + SHA[2].encode())  # came in again: new clock

    assert await store.purge(30 * DAY, keep={SHA[1]}) == 1
    assert await store.load(SHA[0]) is None and not await store.contains(SHA[0])
    assert [await store.contains(sha) for sha in SHA[1:4]] == [True] * 3
    assert await store.purge(30 * DAY) == 1  # SHA[1], no longer kept
    assert await store.load("not-a-sha") is None and not await store.contains("../etc")
    with pytest.raises(ValueError, match="sha256"):
        await store.save("../../etc/passwd", b"x")


async def test_the_database_store_purges_in_chunks(database_url: str) -> None:
    db = Database(create_engine(database_url))
    try:
        store = DatabaseImageStore(db)
        shas = [f"{i:064x}" for i in range(1, 1203)]
        then = utcnow() - timedelta(days=2)
        async with db.write() as session:  # in one statement: saving each takes seconds
            await session.execute(
                insert(StoredImage),
                [{"sha256": sha, "data": b"x", "stored_at": then} for sha in shas],
            )
        assert await store.purge(DAY, keep=set(shas[:2])) == 1200
        assert [await store.contains(sha) for sha in shas[:3]] == [True, True, False]
    finally:
        await db.dispose()


def test_purge_deletes_old_images_and_keeps_new_ones_and_those_asked_for(tmp_path: Path) -> None:
    store = ImageFiles(tmp_path)
    for sha in SHA:
        store.save(sha, b"bytes of " + sha.encode())
    age(store._path(SHA[0]), 40)
    age(store._path(SHA[1]), 40)
    age(store._path(SHA[2]), 10)
    old_tmp = store._path(SHA[3]).parent / ".tmp-crashed"
    old_tmp.write_bytes(b"half")
    age(old_tmp, 1)
    young_tmp = store._path(SHA[4]).parent / ".tmp-writing"
    young_tmp.write_bytes(b"half")
    stray = tmp_path / SHA[0][:2] / "notes.txt"
    stray.write_text("not an image")
    age(stray, 400)

    assert store.purge(30 * DAY, keep={SHA[1]}) == 1
    assert store.load(SHA[0]) is None
    assert [store.load(sha) is not None for sha in SHA[1:]] == [True] * 4
    assert not old_tmp.exists() and young_tmp.exists()  # a live writer's file stays
    assert stray.exists()  # only files named like images are the store's to delete


def test_purge_removes_fan_out_folders_it_empties(tmp_path: Path) -> None:
    store = ImageFiles(tmp_path)
    store.save(SHA[0], b"x")
    age(store._path(SHA[0]), 2)
    assert store.purge(DAY) == 1
    assert list(tmp_path.iterdir()) == []
    assert ImageFiles(tmp_path / "never-created").purge(DAY) == 0


def test_saving_the_same_bytes_again_restarts_their_clock(tmp_path: Path) -> None:
    store = ImageFiles(tmp_path)
    store.save(SHA[0], b"x")
    age(store._path(SHA[0]), 40)
    store.save(SHA[0], b"x")
    assert store.purge(30 * DAY) == 0
    assert store.load(SHA[0]) == b"x"


@pytest.mark.parametrize(
    ("raw", "days"), [(None, 30.0), ("", 30.0), ("7", 7.0), ("0.5", 0.5), ("off", None)]
)
def test_retention_setting(raw: str | None, days: float | None) -> None:
    env = {} if raw is None else {"FAKESCOPE_IMAGE_RETENTION_DAYS": raw}
    assert Settings.from_env(env).image_retention_days == days


@pytest.mark.parametrize("raw", ["0", "-3", "a week"])
def test_bad_retention_settings_are_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match="FAKESCOPE_IMAGE_RETENTION_DAYS"):
        Settings.from_env({"FAKESCOPE_IMAGE_RETENTION_DAYS": raw})


def test_the_schedule_checks_often_enough() -> None:
    store = FileImageStore(Path("unused"))
    assert ImageRetention(store, None, 30).interval_s == 3600  # type: ignore[arg-type]
    assert ImageRetention(store, None, 0.01).interval_s == pytest.approx(86.4)  # type: ignore[arg-type]


@pytest.fixture(params=["files", "database"])
async def client(
    request: pytest.FixtureRequest, sqlite_url: str, tmp_path: Path, tiny_model: Any
) -> AsyncIterator[Any]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=None,
        max_new_tokens=8,
        image_retention_days=30,
        image_store=request.param,
    )
    app = create_app(settings, model_loader=lambda: CountingModel(tiny_model))
    async with running(app) as client:
        await wait_until_ready(client)
        yield client


async def test_the_server_purges_old_bytes_but_keeps_reported_ones_and_asks_follow(
    client: Any,
) -> None:
    retention: ImageRetention = client.app.state["image_retention"]
    store = retention.store
    purged, reported = unique_png(), unique_png()
    sha_purged = (await client.post("/v1/analyze", **upload(purged))).json()["sha256"]
    sha_reported = (await client.post("/v1/analyze", **upload(reported))).json()["sha256"]
    report = {"sha256": sha_reported, "reason": "looks generated", "suggested_label": "fake"}
    assert (await client.post("/v1/reports", json=report)).status_code in (200, 201, 202)
    for sha in (sha_purged, sha_reported):
        await age_stored(store, sha, 31)

    assert await retention.purge_once() == 1
    assert await store.load(sha_purged) is None and await store.load(sha_reported) is not None
    metrics = (await client.get("/metrics")).text
    assert "fakescope_images_purged_total 1.0" in metrics

    # The verdict stays; asking about the pixels needs the bytes, which are gone.
    assert (await client.get(f"/v1/analyses/{sha_purged}")).status_code == 200
    asked = await client.post("/v1/ask", json={"sha256": sha_purged, "aspect": "texture"})
    assert asked.status_code == 409
    assert problem(asked)["detail"].startswith("the image's bytes are not kept")

    # Analysing it again is a cache hit that keeps the bytes again: asking works.
    again = await client.post("/v1/analyze", **upload(purged))
    assert again.status_code == 200 and again.headers["x-cache"] == "hit"
    assert await store.load(sha_purged) == purged
    asked = await client.post("/v1/ask", json={"sha256": sha_purged, "aspect": "texture"})
    assert asked.status_code == 200, asked.text
