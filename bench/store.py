"""What the store costs per call: one call record created and moved through six statuses,
each write durable, against raw sqlite3 doing the same writes with the same pragmas.

Both run in the same process, in turns, on files in the same temporary directory (WAL mode,
``synchronous=FULL``: a commit reaches the disk before it returns, which is the rule the store
exists for — no call record lost). The store's figure includes everything a record write costs
it (the dataclass, reading the row back to return the updated record, its lock); the reference
is the bare ``INSERT``/``UPDATE`` + ``COMMIT``. It prints calls per second of each and the ratio
store/raw. Goal (issue 15): >= 0.5.

``--postgres URL`` (or ``--postgres start``: a throwaway server made with initdb, as the tests
do) measures the PostgreSQL store the same way against raw psycopg on one connection, and, when
asyncpg is installed, raw asyncpg too: the measurement behind choosing psycopg (docs/deploy.md).

    python bench/store.py [--calls 300] [--rounds 3] [--postgres start|URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from callxml.engine.calls import CallBook, new_call_record
from callxml.engine.store import CallRecord, SqliteStore

GOAL = 0.5
STATUSES = ("initiated", "ringing", "in-progress", "in-progress", "in-progress", "completed")


def _store_calls(path: Path, calls: int) -> float:
    store = SqliteStore(path)
    try:
        started = time.perf_counter()
        for _ in range(calls):
            sid = "CA" + secrets.token_hex(16)
            now = time.time()
            store.create_call(
                CallRecord(
                    sid=sid,
                    account_sid="AC" + "a" * 32,
                    direction="inbound",
                    from_="sip:alice@example.com",
                    to="sip:ivr@example.com",
                    status="queued",
                    date_created=now,
                    date_updated=now,
                )
            )
            for status in STATUSES:
                store.update_call(sid, status=status, date_updated=time.time())
        return time.perf_counter() - started
    finally:
        store.close()


def _book_calls(path: Path, calls: int) -> float:
    """The same writes as the engine makes them: through a call's :class:`CallBook` (off the
    event loop in a thread, one ordered lane per call), awaited one after another."""

    async def run(store: SqliteStore) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            book = CallBook(store, None, None, new_call_record(
                account_sid="AC" + "a" * 32, direction="inbound",
                from_="sip:alice@example.com", to="sip:ivr@example.com", status="queued",
            ), lambda sid: sid)  # fmt: skip
            await book.create()
            for status in STATUSES:
                await book.status(status)
        return time.perf_counter() - started

    store = SqliteStore(path)
    try:
        return asyncio.run(run(store))
    finally:
        store.close()


def _raw_calls(path: Path, calls: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(
            "CREATE TABLE calls (sid TEXT PRIMARY KEY, account_sid TEXT, direction TEXT,"
            ' from_ TEXT, "to" TEXT, status TEXT, date_created REAL, date_updated REAL)'
        )
        started = time.perf_counter()
        for _ in range(calls):
            sid = "CA" + secrets.token_hex(16)
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sid, "AC" + "a" * 32, "inbound", "sip:alice@example.com",
                 "sip:ivr@example.com", "queued", now, now),
            )  # fmt: skip
            db.execute("COMMIT")
            for status in STATUSES:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "UPDATE calls SET status = ?, date_updated = ? WHERE sid = ?",
                    (status, time.time(), sid),
                )
                db.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        db.close()


_RAW_TABLE = (
    "CREATE TABLE IF NOT EXISTS raw_calls (sid TEXT PRIMARY KEY, account_sid TEXT,"
    ' direction TEXT, from_ TEXT, "to" TEXT, status TEXT, date_created DOUBLE PRECISION,'
    " date_updated DOUBLE PRECISION)"
)


def _pg_store_calls(url: str, calls: int) -> float:
    from callxml.engine.pgstore import PostgresStore

    store = PostgresStore(url)
    try:
        started = time.perf_counter()
        for _ in range(calls):
            sid = "CA" + secrets.token_hex(16)
            now = time.time()
            store.create_call(CallRecord(
                sid=sid, account_sid="AC" + "a" * 32, direction="inbound",
                from_="sip:alice@example.com", to="sip:ivr@example.com", status="queued",
                date_created=now, date_updated=now,
            ))  # fmt: skip
            for status in STATUSES:
                store.update_call(sid, status=status, date_updated=time.time())
        return time.perf_counter() - started
    finally:
        store.close()


def _pg_raw_calls(url: str, calls: int) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(_RAW_TABLE)
        started = time.perf_counter()
        for _ in range(calls):
            sid = "CA" + secrets.token_hex(16)
            now = time.time()
            with db.transaction():
                db.execute(
                    "INSERT INTO raw_calls VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (sid, "AC" + "a" * 32, "inbound", "sip:alice@example.com",
                     "sip:ivr@example.com", "queued", now, now),
                )  # fmt: skip
            for status in STATUSES:
                with db.transaction():
                    db.execute(
                        "UPDATE raw_calls SET status = %s, date_updated = %s WHERE sid = %s",
                        (status, time.time(), sid),
                    )
        return time.perf_counter() - started


def _asyncpg_raw_calls(url: str, calls: int) -> float | None:
    try:
        import asyncpg  # type: ignore[import-not-found]  # optional: only for this comparison
    except ImportError:
        return None

    async def run() -> float:
        db = await asyncpg.connect(url)
        try:
            await db.execute(_RAW_TABLE)
            started = time.perf_counter()
            for _ in range(calls):
                sid = "CA" + secrets.token_hex(16)
                now = time.time()
                async with db.transaction():
                    await db.execute(
                        "INSERT INTO raw_calls VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        sid, "AC" + "a" * 32, "inbound", "sip:alice@example.com",
                        "sip:ivr@example.com", "queued", now, now,
                    )  # fmt: skip
                for status in STATUSES:
                    async with db.transaction():
                        await db.execute(
                            "UPDATE raw_calls SET status = $1, date_updated = $2 WHERE sid = $3",
                            status, time.time(), sid,
                        )  # fmt: skip
            return time.perf_counter() - started
        finally:
            await db.close()

    return asyncio.run(run())


def _postgres(target: str, calls: int, rounds: int) -> None:
    with contextlib.ExitStack() as stack:
        if target == "start":
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from support.postgres import start_postgres

            server = stack.enter_context(start_postgres())
            store_url, raw_url = server.create_database(), server.create_database()
        else:
            store_url = raw_url = target
        print(f"PostgreSQL: {calls} calls/round, create + {len(STATUSES)} updates, committed")
        print(f"{'round':>5} {'store calls/s':>14} {'psycopg calls/s':>16} {'asyncpg calls/s':>16}"
              f" {'store/psycopg':>14}")  # fmt: skip
        ratios = []
        for index in range(rounds):
            ours = _pg_store_calls(store_url, calls)
            raw = _pg_raw_calls(raw_url, calls)
            other = _asyncpg_raw_calls(raw_url, calls)
            ratios.append(raw / ours)
            other_text = f"{calls / other:>16,.0f}" if other else f"{'(not installed)':>16}"
            print(f"{index + 1:>5} {calls / ours:>14,.0f} {calls / raw:>16,.0f} {other_text}"
                  f" {raw / ours:>14.2f}")  # fmt: skip
        median = statistics.median(ratios)
        verdict = "met" if median >= GOAL else "NOT met"
        print(f"goal: store/raw >= {GOAL}: {verdict} (median ratio {median:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", metavar="start|URL", help="measure the PostgreSQL store")
    args = parser.parse_args()
    calls = max(10, args.calls)
    if args.postgres:
        _postgres(args.postgres, calls, max(1, args.rounds))
        return
    print(f"call records: create + {len(STATUSES)} status updates, durable; {calls} calls/round")
    print(
        f"{'round':>5} {'store calls/s':>14} {'engine calls/s':>15} {'raw calls/s':>12}"
        f" {'store/raw':>10} {'engine/raw':>11}"
    )
    ratios, engine_ratios = [], []
    with tempfile.TemporaryDirectory(prefix="callxml-bench-") as scratch:
        for index in range(max(1, args.rounds)):
            ours = _store_calls(Path(scratch) / f"store-{index}.db", calls)
            booked = _book_calls(Path(scratch) / f"book-{index}.db", calls)
            raw = _raw_calls(Path(scratch) / f"raw-{index}.db", calls)
            ratios.append(raw / ours)
            engine_ratios.append(raw / booked)
            print(
                f"{index + 1:>5} {calls / ours:>14,.0f} {calls / booked:>15,.0f}"
                f" {calls / raw:>12,.0f} {raw / ours:>10.2f} {raw / booked:>11.2f}"
            )
    median = statistics.median(ratios)
    verdict = "met" if median >= GOAL else "NOT met"
    print(f"goal: store/raw >= {GOAL}: {verdict} (median ratio {median:.2f}; through the engine's")
    print(f"      CallBook, threads and ordered lane: {statistics.median(engine_ratios):.2f})")


if __name__ == "__main__":
    main()
