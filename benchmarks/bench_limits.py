"""Limits benchmark: what counting the rate limit in SQL costs a cheap request (loopback only).

Runs one `uvicorn server.asgi:create_app` process per deployment (no model, rate limit on
but never reached; a round's four start together and are measured one at a time) and
drives `GET /v1/analyses/<unknown sha256>`, which is rate-limited and answers 404 after
one read of the app's database, with C keep-alive connections in a closed loop:

  sqlite/memory      limits counted in the process (FAKESCOPE_LIMITS_STORE=memory)
  sqlite/database    counted in the same SQLite file (one upsert per request)
  postgres/memory    the app on PostgreSQL, limits in the process
  postgres/database  limits in PostgreSQL, as API processes on several machines count them

each twice: all connections from one client address (every request updates the same row)
and each connection from its own loopback address (C clients, C rows). It prints
requests/s, median and p99 latency, and each `database` row's ratio to the `memory` row on
the same database and clients, measured in the same run (rounds interleaved).

    python benchmarks/bench_limits.py            # full run (about three minutes)
    python benchmarks/bench_limits.py --quick    # smoke run for CI
    python benchmarks/bench_limits.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_scale_out import create_database, drop_database
from bench_server import RawConnection, start_server, start_servers

REPO_ROOT = Path(__file__).resolve().parent.parent
UNKNOWN = "/v1/analyses/" + "ab" * 32
NEVER_REACHED = "1000000000/minute"  # every request is counted, none refused
DEPLOYMENTS = ("sqlite/memory", "sqlite/database", "postgres/memory", "postgres/database")


class ClientConnection(RawConnection):
    """A keep-alive connection from a chosen loopback address: the server's client address."""

    def __init__(self, port: int, source: str) -> None:
        super().__init__(port)
        self.source = source

    async def open(self) -> ClientConnection:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.port, local_addr=(self.source, 0)
        )
        return self


async def closed_loop(
    port: int, seconds: float, connections: int, *, clients: int
) -> dict[str, float]:
    """Requests/s and latency of keep-alive connections asking for an unknown sha256."""
    sources = [f"127.0.1.{1 + i % clients}" for i in range(connections)]
    conns = [await ClientConnection(port, source).open() for source in sources]
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def loop(conn: RawConnection) -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            status, body = await conn.request("GET", UNKNOWN)
            if status != 404:
                raise RuntimeError(f"GET {UNKNOWN} answered {status}: {body[:200]!r}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    latencies.sort()
    return {
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2),
    }


async def run(seconds: float, rounds: int, connections: int) -> dict[str, Any]:
    from server.db.migrate import upgrade_async

    spreads = {"one_client": 1, "many_clients": connections}
    pg_name, pg_url = create_database()
    try:
        with tempfile.TemporaryDirectory(prefix="fakescope-limits-") as tmp:
            sqlite_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            urls = {"sqlite": sqlite_url, "postgres": pg_url}
            for url in urls.values():
                await upgrade_async(url)
            envs = [
                {
                    "FAKESCOPE_DATA_DIR": tmp,
                    "FAKESCOPE_DATABASE_URL": urls[key.split("/")[0]],
                    "FAKESCOPE_RATE_LIMIT": NEVER_REACHED,
                    "FAKESCOPE_LIMITS_STORE": key.split("/")[1],
                    "FAKESCOPE_MODEL": "",
                    "HF_HUB_OFFLINE": "1",
                }
                for key in DEPLOYMENTS
            ]
            warm_s = min(0.5, seconds / 2)
            results: dict[str, dict[str, list[dict[str, float]]]] = {
                key: {spread: [] for spread in spreads} for key in DEPLOYMENTS
            }
            for _ in range(rounds):  # interleaved, so a slow spell of the machine hits all
                # The round's servers start together, then are measured one at a time.
                servers = await start_servers(
                    *(start_server("server.asgi:create_app", env, REPO_ROOT) for env in envs)
                )
                try:
                    for key, server in zip(DEPLOYMENTS, servers, strict=True):
                        for spread, clients in spreads.items():
                            await closed_loop(server.port, warm_s, connections, clients=clients)
                            results[key][spread].append(
                                await closed_loop(
                                    server.port, seconds, connections, clients=clients
                                )
                            )
                finally:
                    for server in servers:
                        server.stop()
    finally:
        drop_database(pg_name)
    best = {
        key: {s: max(runs, key=lambda r: r["requests_per_s"]) for s, runs in by_spread.items()}
        for key, by_spread in results.items()
    }

    def ratio(database: str, spread: str) -> float:
        shared = best[f"{database}/database"][spread]["requests_per_s"]
        return round(shared / best[f"{database}/memory"][spread]["requests_per_s"], 3)

    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "path": "GET /v1/analyses/<unknown sha256> (404)",
        "seconds_per_round": seconds,
        "rounds": rounds,
        "connections": connections,
        "deployments": best,
        "all_runs": results,
        "ratio_sqlite_database_to_memory": ratio("sqlite", "many_clients"),
        "ratio_postgres_database_to_memory": ratio("postgres", "many_clients"),
        "ratio_sqlite_database_to_memory_one_client": ratio("sqlite", "one_client"),
        "ratio_postgres_database_to_memory_one_client": ratio("postgres", "one_client"),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short rounds (CI smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    seconds, rounds, connections = (0.5, 1, 4) if args.quick else (5.0, 3, 16)
    report = asyncio.run(run(seconds, rounds, connections))
    print(f"rate limit counted in memory vs in SQL, {report['machine']}")
    print(f"{report['path']}, {connections} connections, best of {rounds} rounds of {seconds} s")
    header = f"{'deployment':<20}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
    print(header + f"{'vs memory':>11}")
    for key, by_spread in report["deployments"].items():
        database, limits = key.split("/")
        for spread, row in by_spread.items():
            clients = 1 if spread == "one_client" else connections
            suffix = "_one_client" if spread == "one_client" else ""
            ratio_key = f"ratio_{database}_database_to_memory{suffix}"
            versus = report[ratio_key] if limits == "database" else 1.0
            print(
                f"{key:<20}{clients:>8}{row['requests_per_s']:>10}{row['p50_ms']:>10}"
                f"{row['p99_ms']:>10}{versus:>11.3f}"
            )
    for database in ("sqlite", "postgres"):
        ratio = report[f"ratio_{database}_database_to_memory"]
        print(f"{database} database / memory ({connections} clients): {ratio}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
