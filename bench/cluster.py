"""The Kamailio hop: what it costs the engines, how it shares the calls, what delay it adds.

Two runs of the same calls, in this process's one session, on loopback:

1. **direct** (the reference): SIPp calls one ``callxml serve`` engine (127.0.0.2) straight;
2. **cluster**: SIPp calls Kamailio on 127.0.0.1 running the shipped
   deploy/kamailio/kamailio.cfg (only addresses, ports and paths given to it), which dispatches
   to two engines (127.0.0.2 and 127.0.0.3) sharing one PostgreSQL store.

Every engine runs on a PostgreSQL store (started here; each run its own database), and every
call is SIPp's INVITE, the engine's 200 after its webhook answered ``<Response><Hangup/>
</Response>``, SIPp's ACK, the engine's BYE. Each run starts with a few warm-up calls that are
not counted. It prints, with the goals of issue 14:

* engine CPU seconds per call (user + system of the ``callxml serve`` processes, from
  ``/proc/<pid>/stat``, over the measured calls), cluster / direct: goal <= 1.25;
* each engine's share of the cluster's calls (from the ``node`` of the call records): goal
  40-60 %;
* the setup delay (SIPp's INVITE to the 200, per call, from ``-trace_shortmsg``) p50 and p99 of both
  runs, and what the hop adds (the difference of the medians, and of the p99s).

A missed goal is printed as MISSED; the exit status is 0 either way (a figure, not a test).

    python bench/cluster.py [--calls 300] [--rate 20]

Needs SIPp (Debian ``sip-tester``), Kamailio (``kamailio``, ``kamailio-tls-modules``) and
PostgreSQL (``postgresql``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.certs import dev_certificate  # noqa: E402
from support.cluster import (  # noqa: E402
    ACCOUNT_SID,
    EngineProcess,
    free_media_port,
    free_port_on,
    shipped_kamailio,
    start_engine,
)
from support.engine import web_app  # noqa: E402
from support.postgres import PostgresServer, start_postgres  # noqa: E402

SCENARIO = ROOT / "tests" / "deploy" / "sipp" / "uac_engine_hangs_up.xml"
FLOW = "<Response><Hangup/></Response>"
CPU_GOAL = 1.25
SHARE_GOAL = (40.0, 60.0)
WARM_UP = 20
#: Admission limits far above what this bench offers: it measures cost, not refusals.
LIMITS = """
[limits]
max_setups = 10000
invites_per_second = 10000
invites_per_second_per_source = 10000
"""


@dataclass
class Run:
    label: str
    calls: int
    succeeded: int
    cpu: float  # engine CPU seconds over the measured calls
    delays: list[float]  # ms, INVITE to 200, per measured call
    shares: dict[str, int]  # records per node

    @property
    def cpu_per_call(self) -> float:
        return self.cpu / self.calls

    def percentile(self, q: float) -> float:
        ordered = sorted(self.delays)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
        return ordered[index]


async def sipp(target: str, calls: int, rate: float, workdir: Path) -> tuple[int, list[float]]:
    """SIPp calls ``target``; (successful calls, per-call setup delays in ms)."""
    workdir.mkdir(parents=True)
    command = [
        str(shutil.which("sipp")),
        "-sf", str(SCENARIO),
        "-i", "127.0.0.1", "-p", str(free_port_on("127.0.0.1", "udp")), "-t", "u1",
        "-mp", str(free_media_port()),
        "-s", "ivr", "-key", "domain", "bench.test",
        "-r", f"{rate:g}", "-m", str(calls), "-l", str(calls),
        "-recv_timeout", "20000", "-timeout", f"{int(calls / rate * 3 + 60)}s",
        "-nostdin", "-trace_stat", "-stf", str(workdir / "stats.csv"),
        "-trace_shortmsg", "-shortmessage_file", str(workdir / "messages.tsv"),
        "-trace_err", "-error_file", str(workdir / "errors.log"),
        target,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await process.wait()
    succeeded = 0
    for path in workdir.glob("*stats.csv"):
        rows = [line.split(";") for line in path.read_text().splitlines() if line]
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))
            succeeded = int(stats.get("SuccessfulCall(C)", "0") or 0)
    if succeeded < calls and (workdir / "errors.log").exists():
        # Each event starts with a date and a tab (the messages it quotes follow it).
        lines = (workdir / "errors.log").read_text(errors="replace").splitlines()
        events = [line[:160] for line in lines if line[:4].isdigit() and "\t" in line]
        print(f"SIPp errors ({workdir.name}):", *events[:4], sep="\n  ", flush=True)
    return succeeded, setup_delays(workdir / "messages.tsv")


def setup_delays(messages: Path) -> list[float]:
    """Per call, ms from SIPp sending the INVITE to receiving its 200, from SIPp's short message
    trace (microsecond timestamps: its -trace_rtt figures are whole, 4 ms apart)."""
    sent: dict[str, float] = {}
    delays: list[float] = []
    with contextlib.suppress(FileNotFoundError):
        for line in messages.read_text(errors="replace").splitlines():
            fields = line.split("\t")
            if len(fields) < 7 or fields[5] != "CSeq:1 INVITE":
                continue
            at, direction, call_id, first = float(fields[2]), fields[3], fields[4], fields[6]
            if direction == "S" and first.startswith("INVITE "):
                sent.setdefault(call_id, at)
            elif direction == "R" and first.startswith("SIP/2.0 200") and call_id in sent:
                delays.append((at - sent.pop(call_id)) * 1000)
    return delays


async def settled(server: PostgresServer, url: str, expected: int) -> dict[str, int]:
    """Records per node once ``expected`` records are finished (or after 30 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        rows = server.sql(
            url,
            "SELECT node, count(*) FROM calls WHERE status IN "
            "('completed','failed','busy','no-answer','canceled') GROUP BY node",
        )
        shares = {str(node): int(count) for node, count in rows}
        if sum(shares.values()) >= expected or loop.time() > deadline:
            return shares
        await asyncio.sleep(0.2)


class Target:
    """Where SIPp sends the calls, and which engine processes' CPU counts for them."""

    def __init__(self, label: str, address: str, engines: list[EngineProcess]) -> None:
        self.label = label
        self.address = address
        self.engines = engines
        self.run = Run(label, 0, 0, 0.0, [], {})
        self.warm = False


async def offer(
    target: Target, calls: int, args: Any, workdir: Path, server: PostgresServer, url: str
) -> None:
    """``calls`` measured calls to ``target`` (after its warm-up, the first time), added to
    its :class:`Run`: CPU and shares over exactly those calls (every record settled first)."""
    done = sum((await settled(server, url, 0)).values())
    if not target.warm:
        name = f"{target.label}-warm-up"
        warmed, _ = await sipp(target.address, WARM_UP, args.rate, workdir / name)
        if warmed < WARM_UP:
            print(f"{target.label}: {WARM_UP - warmed} of {WARM_UP} warm-up calls failed")
        target.warm = True
        done += warmed
    before = await settled(server, url, done)
    cpu = sum(e.cpu() for e in target.engines)
    name = f"{target.label}-{len(list(workdir.glob(target.label + '-*')))}"
    succeeded, delays = await sipp(target.address, calls, args.rate, workdir / name)
    after = await settled(server, url, done + succeeded)
    run = target.run
    run.cpu += sum(e.cpu() for e in target.engines) - cpu
    run.calls += calls
    run.succeeded += succeeded
    run.delays += delays
    for node, count in after.items():
        run.shares[node] = run.shares.get(node, 0) + count - before.get(node, 0)


async def bench(args: Any) -> None:
    with contextlib.ExitStack() as stack:
        if args.keep:
            scratch = tempfile.mkdtemp(prefix="callxml-bench-cluster-")
            print(f"logs, SIPp files and configs are kept in {scratch}", flush=True)
        else:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="callxml-bench-"))
        server = stack.enter_context(start_postgres())
        workdir = Path(scratch)
        cert = dev_certificate(workdir / "cert", ("127.0.0.1", "127.0.0.2", "127.0.0.3"))
        async with web_app({"/voice": lambda form: FLOW}) as app:
            domains = (
                f'[[domains]]\nname = "bench.test"\naccount = "{ACCOUNT_SID}"\n'
                f'voice_url = "{app.url("/voice")}"\n'
            )

            async def engine(node: str, host: str, url: str) -> EngineProcess:
                return await start_engine(
                    workdir / node, node, host, database_url=url, cert=cert,
                    domains=domains, lease=10.0, extra=LIMITS,
                )  # fmt: skip

            # One engine, called straight and through the proxy, in alternate halves.
            url = server.create_database()
            solo = await engine("solo", "127.0.0.2", url)
            try:
                async with shipped_kamailio(workdir / "kamailio-solo", [solo], cert) as proxy:
                    direct = Target("direct", f"127.0.0.2:{solo.sip_port}", [solo])
                    hop = Target("hop", f"127.0.0.1:{proxy.port}", [solo])
                    half = args.calls // 2
                    for target, calls in (
                        (direct, half),
                        (hop, half),
                        (direct, args.calls - half),
                        (hop, args.calls - half),
                    ):
                        await offer(target, calls, args, workdir, server, url)
            finally:
                await solo.stop()
            report(direct.run, "SIPp -> engine")
            report(hop.run, "SIPp -> Kamailio -> the same engine")

            # Two engines behind the proxy.
            url = server.create_database()
            a, b = await asyncio.gather(
                engine("a", "127.0.0.2", url), engine("b", "127.0.0.3", url)
            )
            try:
                async with shipped_kamailio(workdir / "kamailio", [a, b], cert) as proxy:
                    cluster = Target("cluster", f"127.0.0.1:{proxy.port}", [a, b])
                    await offer(cluster, args.calls, args, workdir, server, url)
            finally:
                await asyncio.gather(a.stop(), b.stop())
            report(cluster.run, "SIPp -> Kamailio -> engines a and b")
    verdicts(direct.run, hop.run, cluster.run)


def report(run: Run, what: str) -> None:
    print(
        f"{run.label:>8} ({what}): {run.succeeded}/{run.calls} calls succeeded, engine CPU "
        f"{run.cpu:.2f} s = {run.cpu_per_call * 1000:.2f} ms/call, setup delay p50 "
        f"{run.percentile(50):.1f} ms, p99 {run.percentile(99):.1f} ms",
        flush=True,
    )


def verdicts(direct: Run, hop: Run, cluster: Run) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    ratio = cluster.cpu_per_call / direct.cpu_per_call if direct.cpu_per_call else float("inf")
    print(
        f"engine CPU per call, cluster/direct: {ratio:.2f} "
        f"(goal <= {CPU_GOAL}: {verdict(ratio <= CPU_GOAL)}; hop/direct, one engine: "
        f"{hop.cpu_per_call / direct.cpu_per_call:.2f})"
    )
    total = sum(cluster.shares.get(n, 0) for n in ("a", "b")) or 1
    shares = {n: cluster.shares.get(n, 0) / total * 100 for n in ("a", "b")}
    low, high = SHARE_GOAL
    fair = all(low <= s <= high for s in shares.values())
    print(
        "shares of the cluster's calls: "
        + ", ".join(f"engine {n} {s:.1f} %" for n, s in shares.items())
        + f" (goal {low:g}-{high:g} % each: {verdict(fair)})"
    )
    for q in (50, 99):
        added = hop.percentile(q) - direct.percentile(q)
        print(
            f"setup delay the Kamailio hop adds, p{q}: {added:+.1f} ms (one engine: "
            f"{direct.percentile(q):.1f} ms straight, {hop.percentile(q):.1f} ms through "
            f"Kamailio; two engines through it: {cluster.percentile(q):.1f} ms)"
        )
    failed = sum(run.calls - run.succeeded for run in (direct, hop, cluster))
    if failed:
        print(f"MISSED: {failed} calls failed (every call should succeed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=300, help="measured calls per run")
    parser.add_argument("--rate", type=float, default=20.0, help="calls per second")
    parser.add_argument("--keep", action="store_true", help="keep the logs (path printed)")
    args: Any = parser.parse_args()
    args.calls = max(20, args.calls)
    for tool in ("sipp", "kamailio"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin") is None:
            sys.exit(f"{tool} is not installed (see the module's docstring)")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
