"""Overload: goodput of ``callxml serve`` offered 1x, 2x and 4x its own measured peak call rate.

An engine that takes every call past its capacity serves none (issue 16: offered twice its peak,
a quarter of the calls never got a final response). With admission control (docs/reliability.md)
it should keep completing calls at about its peak and refuse the rest with ``503`` +
``Retry-After``. This measures that on this machine, against itself:

1. the engine (``callxml serve`` in a subprocess) and a webhook app answering
   ``<Response><Hangup/></Response>`` (another subprocess) on loopback;
2. **peak**: SIPp (UDP) offers calls at rising rates with admission effectively off; the peak is
   the best goodput (completed calls per second) of a step that completed ≥ 95 % of its calls;
3. with the configured limits (the defaults unless ``--limits`` says otherwise), SIPp offers
   1x, 2x and 4x that peak for ``--seconds`` each, on a fresh engine and store each time.

For each step it prints the offered rate, goodput, goodput as a share of the peak, the share of
calls refused with 503, calls that got no final answer (SIPp's failed calls), and records that
did not end ``completed`` although answered (the goal: none). Goodput counts records ``completed``
per second of the SIPp run. Everything is measured in the same run, so the figures are ratios
to this machine's own peak, not absolute numbers. Usage: ``python bench/overload.py
[--seconds S] [--limits max_setups=60,...] [--peak R --factors 1,2,4] [--transport tcp]``; with
``CALLXML_BENCH_PROFILE=file`` the engine runs under cProfile; ``--transport tcp`` sends every
call over one TCP connection, as a proxy in front of the engine does. Needs SIPp (Debian
``sip-tester``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "engine" / "sipp" / "uac_admitted.xml"
ACCOUNT = "AC" + "b" * 32
OFF = (  # admission "off": limits far above anything this machine can offer
    "max_calls = 1000000\nmax_setups = 100000\ninvites_per_second = 100000\n"
    "invites_per_second_per_source = 100000\n"
)
WEBHOOK_APP = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    async def voice(request):
        await request.post()
        return web.Response(text="<Response><Hangup/></Response>", content_type="text/xml")

    app = web.Application()
    app.router.add_post("/voice", voice)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def free_port() -> int:
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def wait_port(port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@dataclass
class Step:
    label: str
    rate: float
    calls: int
    elapsed: float
    completed: int
    records: int
    unanswered: int  # SIPp's failed calls: no final answer in time
    engine_cpu: float = 0.0  # CPU seconds the engine used during the step
    sipp_cpu: float = 0.0  # ...and SIPp

    @property
    def goodput(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    @property
    def refused(self) -> int:
        return max(0, self.calls - self.records)

    @property
    def broken(self) -> int:
        """Records taken that did not end completed (failed after the 200, or left live)."""
        return self.records - self.completed


class Engine:
    """``callxml serve`` on a fresh store with ``limits`` (TOML lines of ``[limits]``)."""

    def __init__(self, workdir: Path, webhook_port: int, limits: str, transport: str) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=workdir))
        self.transport = transport
        self.sip = free_port()
        self.http = free_port()
        config = self.dir / "callxml.toml"
        config.write_text(
            f"""
[sip]
listen = ["{transport}:127.0.0.1:{self.sip}"]
[http]
host = "127.0.0.1"
port = {self.http}
[store]
path = "{self.dir / "callxml.db"}"
data_dir = "{self.dir / "data"}"
[media]
address = "127.0.0.1"
port_min = 20000
port_max = 29999
[engine]
shutdown_grace = 1
[limits]
{limits}
[[accounts]]
sid = "{ACCOUNT}"
auth_token = "bench-auth-token-0123456789"
[[domains]]
name = "bench.test"
account = "{ACCOUNT}"
voice_url = "http://127.0.0.1:{webhook_port}/voice"
"""
        )
        command = [sys.executable, "-m", "callxml.cli", "serve", "--config", str(config)]
        profile = os.environ.get("CALLXML_BENCH_PROFILE")  # a cProfile output file, if set
        if profile:
            command[1:1] = ["-m", "cProfile", "-o", profile]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        wait_port(self.http)

    def counts(self) -> tuple[int, int]:
        """(records, records completed) in the store."""
        with contextlib.closing(sqlite3.connect(self.dir / "callxml.db", timeout=10)) as db:
            total = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            done = db.execute("SELECT COUNT(*) FROM calls WHERE status='completed'").fetchone()[0]
        return int(total), int(done)

    def settle(self, seconds: float = 15.0) -> tuple[int, int]:
        """Counts once no record is left unfinished (or after ``seconds``)."""
        deadline = time.monotonic() + seconds
        while True:
            with contextlib.closing(sqlite3.connect(self.dir / "callxml.db", timeout=10)) as db:
                live = db.execute(
                    "SELECT COUNT(*) FROM calls WHERE status NOT IN "
                    "('completed','failed','busy','no-answer','canceled')"
                ).fetchone()[0]
            if live == 0 or time.monotonic() > deadline:
                return self.counts()
            time.sleep(0.2)

    def cpu(self) -> float:
        """CPU seconds (user + system) the engine process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def offer(engine: Engine, workdir: Path, label: str, rate: float, seconds: float) -> Step:
    calls = max(10, round(rate * seconds))
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    command = [
        str(shutil.which("sipp")),
        "-sf", str(SCENARIO),
        "-i", "127.0.0.1", "-p", str(free_port()),
        "-t", "u1" if engine.transport == "udp" else "t1",
        "-s", "ivr", "-key", "domain", "bench.test",
        "-r", f"{rate:g}", "-m", str(calls), "-l", "100000",
        "-recv_timeout", "10000", "-timeout", f"{int(seconds * 4 + 40)}s",
        "-nostdin", "-trace_stat", "-stf", str(run_dir / "stats.csv"),
        f"127.0.0.1:{engine.sip}",
    ]  # fmt: skip
    started, cpu = time.monotonic(), engine.cpu()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    engine_cpu = engine.cpu() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    failed = 0
    for path in run_dir.glob("stats*.csv"):
        rows = [line.split(";") for line in path.read_text().splitlines() if line]
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))
            failed = int(stats.get("FailedCall(C)", "0") or 0)
    records, completed = engine.settle()
    return Step(label, rate, calls, elapsed, completed, records, failed, engine_cpu, sipp_cpu)


def show(step: Step, peak: float) -> None:
    share = step.goodput / peak * 100 if peak else 0.0
    print(
        f"{step.label:>6} {step.rate:7.1f}/s offered  {step.calls:5d} calls  "
        f"goodput {step.goodput:6.1f}/s ({share:5.1f} % of peak)  "
        f"503 {step.refused / step.calls * 100:5.1f} %  "
        f"no final answer {step.unanswered:4d}  not completed after answer {step.broken:3d}  "
        f"CPU engine {step.engine_cpu / step.elapsed * 100:3.0f} % SIPp "
        f"{step.sipp_cpu / step.elapsed * 100:3.0f} %",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each 1x/2x/4x step")
    parser.add_argument("--ramp", default="10,20,40,60,80,100,140", help="rates tried for peak")
    parser.add_argument("--limits", default="", help="[limits] keys, e.g. max_setups=60")
    parser.add_argument("--peak", type=float, default=0.0, help="skip the ramp: use this peak")
    parser.add_argument("--factors", default="1,2,4", help="multiples of the peak to offer")
    parser.add_argument(
        "--transport",
        choices=("udp", "tcp"),
        default="udp",
        help="how SIPp reaches the engine (tcp: every call over one connection, as a proxy does)",
    )
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp is not installed (Debian package sip-tester)")
    limits = "\n".join(item.replace("=", " = ") for item in args.limits.split(",") if item)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        hook_port = free_port()
        hook = subprocess.Popen(
            [sys.executable, "-c", WEBHOOK_APP, str(hook_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(hook_port)
            peak = args.peak
            if not peak:
                print("peak: admission off, rising rates, 5 s each", flush=True)
            for rate in (float(r) for r in args.ramp.split(",") if not args.peak):
                engine = Engine(workdir, hook_port, OFF, args.transport)
                try:
                    step = offer(engine, workdir, "ramp", rate, 5.0)
                finally:
                    engine.stop()
                if step.completed >= 0.95 * step.calls:
                    peak = max(peak, step.goodput)
                show(step, peak or step.goodput)
                if step.completed < 0.95 * step.calls or step.goodput < 0.8 * rate:
                    break  # past the peak: completions fall behind what is offered
            if peak == 0:
                sys.exit("no step completed 95 % of its calls: no peak to measure against")
            print(f"peak goodput {peak:.1f} calls/s", flush=True)
            print(f"with admission limits ({limits or 'defaults'}):", flush=True)
            for factor in (float(f) for f in args.factors.split(",")):
                engine = Engine(workdir, hook_port, limits, args.transport)
                try:
                    show(offer(engine, workdir, f"{factor:g}x", peak * factor, args.seconds), peak)
                finally:
                    engine.stop()
        finally:
            hook.terminate()
            hook.wait(10)


if __name__ == "__main__":
    main()
