"""Concurrent point reads share one query; a dropped connection reads the batch again."""

from __future__ import annotations

import asyncio

import pytest
from db_faults import dropped_connection
from sqlalchemy.exc import DBAPIError, ProgrammingError

from server.db.coalesce import ReadCoalescer


class Table:
    """A fetch over a dict that fails with `errors` first, one per call."""

    def __init__(self, rows: dict[str, str], errors: list[Exception] | None = None) -> None:
        self.rows = rows
        self.errors = list(errors or [])
        self.calls: list[list[str]] = []
        self.on_call = lambda: None

    async def fetch(self, keys: list[str]) -> dict[str, str]:
        self.calls.append(keys)
        self.on_call()
        if self.errors:
            raise self.errors.pop(0)
        return {key: self.rows[key] for key in keys if key in self.rows}


async def test_concurrent_reads_share_one_query() -> None:
    table = Table({"a": "A", "b": "B"})
    reads = ReadCoalescer(table.fetch)
    found = await asyncio.gather(reads.get_many(["a"]), reads.get_many(["b", "c"]))
    assert found == [{"a": "A"}, {"b": "B"}]
    assert table.calls == [["a", "b", "c"]]


async def test_a_batch_whose_connection_dropped_is_read_again_with_later_keys() -> None:
    table = Table({"a": "A", "b": "B", "c": "C"}, errors=[dropped_connection()] * 2)
    reads = ReadCoalescer(table.fetch, retry_s=30)
    later: list[asyncio.Task[dict[str, str]]] = []

    def ask_for_c() -> None:  # asked while the first read fails
        if not later:
            later.append(asyncio.ensure_future(reads.get_many(["c"])))

    table.on_call = ask_for_c
    first = await asyncio.gather(reads.get_many(["a"]), reads.get_many(["b", "x"]))
    assert first == [{"a": "A"}, {"b": "B"}]
    assert await later[0] == {"c": "C"}
    assert table.calls == [["a", "b", "x"], ["a", "b", "x", "c"], ["a", "b", "x", "c"]]


async def test_reads_of_a_database_that_stays_away_fail_after_their_budget() -> None:
    table = Table({"a": "A"}, errors=[dropped_connection()] * 1000)
    reads = ReadCoalescer(table.fetch, retry_s=0.3)
    outcomes = await asyncio.gather(
        reads.get_many(["a"]), reads.get_many(["a", "b"]), return_exceptions=True
    )
    assert all(isinstance(outcome, DBAPIError) for outcome in outcomes), outcomes
    assert len(table.calls) > 1  # tried again before giving up


async def test_other_errors_fail_the_batch_at_once_and_no_budget_means_no_retry() -> None:
    table = Table({"a": "A"}, errors=[ProgrammingError("SELECT", {}, Exception("no column"))])
    reads = ReadCoalescer(table.fetch, retry_s=30)
    with pytest.raises(ProgrammingError):
        await reads.get_many(["a"])
    assert len(table.calls) == 1
    assert await reads.get_many(["a"]) == {"a": "A"}  # the next read is a fresh batch

    table = Table({"a": "A"}, errors=[dropped_connection()])
    with pytest.raises(DBAPIError):
        await ReadCoalescer(table.fetch).get_many(["a"])
    assert len(table.calls) == 1
