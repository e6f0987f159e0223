"""What following a shared store's bindings costs an engine per sync: the change log read
(what ``RegistrarService.sync`` does each second) against re-reading every binding and
rebuilding the registrar (what it did before the log, and still does once a minute).

One SQLite store holds ``--devices`` bindings (10,000 by default). Between two incremental
syncs another engine's REGISTERs change ``--changes`` of them (3 by default: 10,000 devices
refreshing hourly make about three a second). Both are timed in the same process, in turns.
It prints milliseconds per sync of each and the ratio full/incremental. Goal: >= 20.

    python bench/bindings.py [--devices 10000] [--changes 3] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from callxml.engine.config import EngineConfig
from callxml.engine.registrar import RegistrarService, _binding, policy_of
from callxml.engine.store import BindingRecord, SqliteStore
from callxml.sip.register import Registrar

GOAL = 20.0
SYNCS = 50  # incremental syncs per round (a full read is slower: fewer of them)
FULL_SYNCS = 5


def _record(index: int, now: float, port: int = 5060) -> BindingRecord:
    contact = f"sip:user{index}@10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
    return BindingRecord(
        aor=f"user{index}@reg.example",
        key=f"contact:{contact}",
        contact=contact,
        expires_at=now + 3600,
        call_id=f"{index}@ua",
        cseq=1,
        transport="udp",
        source_host="192.0.2.1",
        source_port=port,
        registered_at=now,
    )


def _full_read(store: SqliteStore, policy_config: EngineConfig) -> float:
    """The sync before the change log: every binding read and the registrar rebuilt."""
    started = time.perf_counter()
    records = store.list_bindings(now=time.time())
    Registrar(policy_of(policy_config), [_binding(r) for r in records])
    return time.perf_counter() - started


async def _incremental(
    service: RegistrarService, writer: SqliteStore, devices: int, changes: int, round_: int
) -> float:
    spent = 0.0
    for sync in range(SYNCS):
        now = time.time()
        base = (round_ * SYNCS + sync) * changes
        changed = [_record((base + i) % devices, now, 6000 + sync) for i in range(changes)]
        writer.update_bindings(changed, [], now=now)  # the other engine's REGISTERs
        started = time.perf_counter()
        assert await service.sync()
        spent += time.perf_counter() - started
    return spent / SYNCS


async def run(devices: int, changes: int, rounds: int) -> None:
    config = EngineConfig()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bindings.db"
        writer = SqliteStore(path)
        reader = SqliteStore(path)
        try:
            now = time.time()
            batch = 1000
            for start in range(0, devices, batch):
                records = [_record(i, now) for i in range(start, min(start + batch, devices))]
                writer.update_bindings(records, [], now=now - 120)  # settled: not re-read
            service = RegistrarService(config, reader, shared_sync=1.0)
            assert len(service.registrar.all(time.time())) == devices
            print(f"bindings: {devices} devices, {changes} changed between syncs (SQLite)")
            print(f"{'round':>5} {'full ms/sync':>13} {'log ms/sync':>12} {'ratio':>7}")
            ratios = []
            for index in range(rounds):
                full = statistics.median(_full_read(reader, config) for _ in range(FULL_SYNCS))
                incremental = await _incremental(service, writer, devices, changes, index)
                ratio = full / incremental
                ratios.append(ratio)
                print(
                    f"{index + 1:>5} {full * 1000:>13.2f} {incremental * 1000:>12.3f} {ratio:>7.0f}"
                )
            assert service.full_reads == 1, "a full read slipped into the incremental syncs"
            assert len(service.registrar.all(time.time())) == devices
        finally:
            writer.close()
            reader.close()
    median = statistics.median(ratios)
    verdict = "met" if median >= GOAL else "NOT met"
    print(f"goal: full/incremental >= {GOAL:.0f}: {verdict} (median ratio {median:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.devices, args.changes, args.rounds))


if __name__ == "__main__":
    main()
