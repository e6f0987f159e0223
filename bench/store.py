"""What the store costs per call: one call record created and moved through six statuses,
each write durable, against raw sqlite3 doing the same writes with the same pragmas.

Both run in the same process, in turns, on files in the same temporary directory (WAL mode,
``synchronous=FULL``: a commit reaches the disk before it returns, which is the rule the store
exists for — no call record lost). The store's figure includes everything a record write costs
it (the dataclass, reading the row back to return the updated record, its lock); the reference
is the bare ``INSERT``/``UPDATE`` + ``COMMIT``. It prints calls per second of each and the ratio
store/raw. Goal (issue 15): >= 0.5.

    python bench/store.py [--calls 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sqlite3
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    calls = max(10, args.calls)
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
