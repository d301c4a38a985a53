"""`fakescope jobs`: the shared job queue and its GPU workers, as an operator sees them.

Reads the database named by FAKESCOPE_DATABASE_URL (the same settings as `serve`).
Database imports happen inside the handler so that `fakescope --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from server.cli_errors import reporting_user_errors


def add_commands(subparsers: Any) -> None:
    jobs = subparsers.add_parser(
        "jobs", help="the job queue shared by API processes and GPU workers, and the workers"
    )
    jobs.add_argument("--json", action="store_true", help="print JSON instead of text")
    jobs.set_defaults(handler=reporting_user_errors(_cmd_jobs))


def _cmd_jobs(args: argparse.Namespace) -> int:
    import asyncio

    from server.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"fakescope: error: {exc}", file=sys.stderr)
        return 2
    from server.db.migrate import DatabaseNotMigratedError

    try:
        report = asyncio.run(queue_report(settings.database_url, settings.job_lease_s))
    except DatabaseNotMigratedError as exc:
        print(f"fakescope jobs: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fakescope jobs: cannot reach the database: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


async def queue_report(database_url: str, lease_s: float) -> dict[str, Any]:
    from server.db.database import Database
    from server.db.engine import create_engine
    from server.db.migrate import ensure_migrated
    from server.jobs import registry
    from server.jobs.store import JobStore

    engine = create_engine(database_url)
    db = Database(engine)
    try:
        await ensure_migrated(engine)
        store = JobStore(db, lease_s=lease_s, attempts=1)
        counts = await store.counts()
        oldest = await store.oldest_queued_age_s()
        by_model = await store.queued_by_model()
        workers = await registry.live_workers(db, lease_s)
    finally:
        await db.dispose()
    served = {(w.identity.model_key, w.identity.prompt_version) for w in workers}
    queued: dict[str, int] = {}
    unserved: dict[str, int] = {}  # a backlog no live worker takes (a rolling upgrade)
    for (model_key, prompts), count in sorted(by_model.items()):
        queued[model_key] = queued.get(model_key, 0) + count
        if (model_key, prompts) not in served:
            unserved[model_key] = unserved.get(model_key, 0) + count
    return {
        "jobs": counts,
        "oldest_queued_s": None if oldest is None else round(oldest, 1),
        "queued_by_model": queued,
        "unserved_queued": unserved,
        "workers": [
            {
                "id": worker.id,
                "host": worker.host,
                "model_key": worker.identity.model_key,
                "prompt_version": worker.identity.prompt_version,
                "capacity": worker.capacity,
            }
            for worker in workers
        ],
    }


def render(report: dict[str, Any]) -> str:
    jobs = report["jobs"]
    oldest = report["oldest_queued_s"]
    waiting = f"{jobs['queued']} queued"
    if oldest is not None:
        waiting += f" (oldest {oldest:g} s)"
    lines = [
        f"jobs: {waiting}, {jobs['running']} running; finished lately (rows kept an hour): "
        f"{jobs['done']} done, {jobs['failed']} failed",
        f"live workers: {len(report['workers'])}",
    ]
    lines += [
        f"  {w['id'][:12]}  {w['host']}  {w['model_key']}  capacity {w['capacity']}"
        for w in report["workers"]
    ]
    lines += [
        f"{count} queued for {model_key}, which no live worker serves (they wait for "
        "one, and fail an hour after they were queued)"
        for model_key, count in report.get("unserved_queued", {}).items()
    ]
    return "\n".join(lines)
