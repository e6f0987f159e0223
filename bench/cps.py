"""Call setups per second: SIPp callers into ``callxml serve`` at stepped rates, two flows.

An operator sizes an engine by how many calls a second it sets up, and by how long a caller
waits for the answer. Both flows run against ``callxml serve`` (a subprocess, one engine core,
admission limits off, a fresh SQLite store per step) and a webhook app (another subprocess):

* **hangup**: SIPp (UDP) calls a plain domain whose document is ``<Response><Hangup/>``; the
  engine answers and hangs up at once (``tests/engine/sipp/uac_admitted.xml``);
* **dial**: SIPp calls a ``secure_media`` domain with an RTP/SAVP offer over TLS; its document
  is ``<Dial><Sip>sip:uas@…;secure=true</Sip></Dial>``, so the engine fetches it, dials a SIPp
  callee over TLS with an SRTP offer, bridges the two legs when it answers, and the caller hangs
  up after 2 s (``bench/sipp/uac_hold.xml``, ``uas_hold.xml``). Debian's SIPp has no TLS, so
  each SIPp talks UDP to a Kamailio of its own that turns it into TLS (K1 on the caller's side,
  K2 on the callee's): caller -UDP- K1 -TLS- engine -TLS- K2 -UDP- callee. Each SIPp has a
  media port of its own (``-mp``) where the engine's RTP lands unread: sent to a closed port,
  every packet would cost the engine an ICMP error on loopback, which no real far end costs.

The reference, measured in the same run at the same rate right after each step (printed as
context; it shows what the SIPp and Kamailio side costs and how fast a call can be set up on
this machine at all): the same SIPp caller straight to a SIPp callee that does what the engine
does — for **hangup** it answers and hangs up (``bench/sipp/uas_hangup.xml``, UDP), for
**dial** the call goes caller - K1 - TLS - K2 - callee with no engine in between.

Per step: offered rate, calls, failed calls (no final answer, or any scenario error), the
engine's CPU (share of one core during the run), what that makes per engine core (completed
setups per second ÷ that share), and the setup time (INVITE to 200, SIPp's response time) p50
and p99, ours and the reference's; added = ours - reference. Goals (issue 15): >= 200 call
setups per second per engine core with < 0.1 % failed, and p99 added setup time < 20 ms at half
that rate (100/s). Usage: ``python bench/cps.py [--flows hangup,dial] [--rates 25,50,100,150,200]
[--seconds 8]``; ``CALLXML_BENCH_PROFILE=file`` runs the engine under cProfile. Needs SIPp
(``sip-tester``) and Kamailio (``kamailio``, ``kamailio-tls-modules``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from overload import ACCOUNT, OFF, free_port, wait_port

from callxml.engine.devcert import DevCertificate, ensure_dev_certificate

ROOT = Path(__file__).resolve().parents[1]
SIPP_DIR = ROOT / "bench" / "sipp"
HANGUP_UAC = ROOT / "tests" / "engine" / "sipp" / "uac_admitted.xml"
KAMAILIO = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin")
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
GOAL_CPS = 200.0
GOAL_FAILED = 0.001
GOAL_ADDED_P99_MS = 20.0
KEEPING_UP_MS = 1000.0  # a step whose p99 setup time is longer is queueing calls

WEBHOOK_APP = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    DIAL = (
        "<Response><Dial><Sip>sip:uas@127.0.0.1:%s;secure=true</Sip></Dial></Response>"
        % sys.argv[2]
    )

    async def hangup(request):
        await request.post()
        return web.Response(text="<Response><Hangup/></Response>", content_type="text/xml")

    async def dial(request):
        await request.post()
        return web.Response(text=DIAL, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/hangup", hangup)
    app.router.add_post("/dial", dial)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)

# A record-routing stateful proxy that sends every new request to one next hop ($du), chosen
# by the Request-URI's host; in-dialog requests follow their Route set.
KAMAILIO_ROUTE = """
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here");
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    record_route();
    NEXT_HOP
    if (!t_relay()) { sl_reply_error(); }
"""


def _raise_file_limit() -> None:
    """Hundreds of calls held 2 s each: two RTP endpoints (four sockets) a call."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


class Kamailio:
    """A Kamailio relaying UDP <-> TLS to ``next_hop`` (a ``$du`` assignment in its script)."""

    def __init__(self, workdir: Path, name: str, cert: DevCertificate) -> None:
        self.dir = workdir / name
        self.dir.mkdir()
        self.udp = free_port()
        self.tls = free_port()
        self.cert = cert
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, next_hop: str) -> None:
        tls_cfg = self.dir / "tls.cfg"
        tls_cfg.write_text(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
            f"require_certificate = no\nprivate_key = {self.cert.key}\n"
            f"certificate = {self.cert.cert}\n\n[client:default]\nmethod = TLSv1.2+\n"
            "verify_certificate = no\nrequire_certificate = no\n"
        )
        modules = ("tm", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "tls")
        lines = [
            "#!KAMAILIO",
            "debug=1",
            "log_stderror=yes",
            "children=2",
            "tcp_children=2",
            "auto_aliases=no",
            "enable_tls=yes",
            f"listen=udp:127.0.0.1:{self.udp}",
            f"listen=tls:127.0.0.1:{self.tls}",
            f'alias="127.0.0.1:{self.udp}"',
            f'alias="127.0.0.1:{self.tls}"',
            f'mpath="{MODULES}/"',
            *(f'loadmodule "{module}.so"' for module in modules),
            f'modparam("tls", "config", "{tls_cfg}")',
            'modparam("rr", "enable_full_lr", 1)',
            "request_route {",
            KAMAILIO_ROUTE.replace("NEXT_HOP", next_hop),
            "}",
            "",
        ]
        cfg = self.dir / "kamailio.cfg"
        cfg.write_text("\n".join(lines))
        assert KAMAILIO is not None
        with (self.dir / "kamailio.log").open("wb") as log:
            self.process = subprocess.Popen(
                [
                    KAMAILIO, "-f", str(cfg), "-DD", "-E", "-Y", str(self.dir),
                    "-P", str(self.dir / "kamailio.pid"), "-m", "128", "-M", "16",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_port(self.tls)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Engine:
    """``callxml serve`` with admission off, on a fresh store: a plain domain (``hangup.test``)
    and a TLS + SRTP one (``secure.test``)."""

    def __init__(self, workdir: Path, hook_port: int, cert: DevCertificate) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=workdir))
        self.udp = free_port()
        self.tls = free_port()
        self.http = free_port()
        config = self.dir / "callxml.toml"
        config.write_text(
            f"""
[sip]
listen = ["udp:127.0.0.1:{self.udp}", "tls:127.0.0.1:{self.tls}"]
[tls]
cert = "{cert.cert}"
key = "{cert.key}"
ca_bundle = "{cert.ca}"
[http]
host = "127.0.0.1"
port = {self.http}
[store]
path = "{self.dir / "callxml.db"}"
data_dir = "{self.dir / "data"}"
[media]
address = "127.0.0.1"
port_min = 20000
port_max = 39999
[engine]
shutdown_grace = 1
[limits]
{OFF}
[[accounts]]
sid = "{ACCOUNT}"
auth_token = "bench-auth-token-0123456789"
[[domains]]
name = "hangup.test"
account = "{ACCOUNT}"
voice_url = "http://127.0.0.1:{hook_port}/hangup"
[[domains]]
name = "secure.test"
account = "{ACCOUNT}"
voice_url = "http://127.0.0.1:{hook_port}/dial"
secure_media = true
"""
        )
        command = [sys.executable, "-m", "callxml.cli", "serve", "--config", str(config)]
        profile = os.environ.get("CALLXML_BENCH_PROFILE")
        if profile:
            command[1:1] = ["-m", "cProfile", "-o", profile]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "engine.log").open("wb"),
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        wait_port(self.http)

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def completed(self) -> int:
        with contextlib.closing(sqlite3.connect(self.dir / "callxml.db", timeout=10)) as db:
            done = db.execute("SELECT COUNT(*) FROM calls WHERE status='completed'").fetchone()
        return int(done[0])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Run:
    """One SIPp caller run."""

    rate: float
    calls: int
    elapsed: float
    successful: int
    failed: int
    setup_ms: list[float]
    cpu: float = 0.0  # the engine's CPU seconds during the run (0 for the reference)

    @property
    def failed_share(self) -> float:
        return (self.calls - self.successful) / self.calls if self.calls else 1.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.setup_ms)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")

    @property
    def per_core(self) -> float:
        """Completed setups per second of the run, per core of engine CPU spent."""
        share = self.cpu / self.elapsed if self.elapsed else 0.0
        return self.successful / self.elapsed / share if share else float("nan")


def sipp_uac(
    workdir: Path, scenario: Path, domain: str, target: int, rate: float, seconds: float
) -> Run:
    calls = max(10, round(rate * seconds))
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    command = [
        str(shutil.which("sipp")),
        "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_port()), "-t", "u1",
        "-s", "ivr", "-key", "domain", domain,
        "-r", f"{rate:g}", "-m", str(calls), "-l", "100000",
        "-recv_timeout", "10000", "-timeout", f"{int(seconds * 3 + 40)}s",
        "-nostdin", "-trace_stat", "-stf", str(run_dir / "stats.csv"),
        "-trace_rtt", "-rtt_freq", "1", "-mp", str(free_port()),
        f"127.0.0.1:{target}",
    ]  # fmt: skip
    started = time.monotonic()
    subprocess.run(command, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    successful = failed = 0
    for path in run_dir.glob("stats*.csv"):
        rows = [line.split(";") for line in path.read_text().splitlines() if line]
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))
            successful = int(stats.get("SuccessfulCall(C)", "0") or 0)
            failed = int(stats.get("FailedCall(C)", "0") or 0)
    setup: list[float] = []
    for path in run_dir.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            fields = line.split(";")
            if len(fields) >= 2:
                with contextlib.suppress(ValueError):
                    setup.append(float(fields[1]))
    return Run(rate, calls, elapsed, successful, failed, setup)


def sipp_uas(workdir: Path, scenario: Path, port: int) -> subprocess.Popen[bytes]:
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    process = subprocess.Popen(
        [
            str(shutil.which("sipp")), "-sf", str(scenario), "-i", "127.0.0.1",
            "-p", str(port), "-t", "u1", "-nostdin", "-l", "100000", "-mp", str(free_port()),
        ],
        cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.3)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def show(flow: str, ours: Run, reference: Run) -> None:
    added = ours.percentile(0.99) - reference.percentile(0.99)
    print(
        f"{flow:>6} {ours.rate:6.0f}/s {ours.calls:6d} calls"
        f"  failed {100 * ours.failed_share:6.2f} %"
        f"  engine CPU {100 * ours.cpu / ours.elapsed:4.0f} %  per core {ours.per_core:6.0f}/s"
        f"  setup p50/p99 {ours.percentile(0.5):6.1f}/{ours.percentile(0.99):6.1f} ms"
        f"  reference failed {100 * reference.failed_share:5.2f} %"
        f" p50/p99 {reference.percentile(0.5):5.1f}/{reference.percentile(0.99):6.1f} ms"
        f"  added p99 {added:6.1f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--flows", default="hangup,dial", help="hangup, dial or both")
    parser.add_argument("--rates", default="25,50,100,150,200", help="offered calls/s, stepped")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each step")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp is not installed (Debian package sip-tester)")
    flows = [flow for flow in args.flows.split(",") if flow]
    if "dial" in flows and (KAMAILIO is None or not MODULES.is_dir()):
        sys.exit("kamailio is not installed (Debian packages kamailio, kamailio-tls-modules)")
    _raise_file_limit()
    rates = [float(rate) for rate in args.rates.split(",")]
    print(
        f"flows {', '.join(flows)}; rates {args.rates}/s, {args.seconds:g} s each; dial calls held "
        f"2 s; {os.cpu_count()} CPUs",
        flush=True,
    )
    results: dict[str, list[tuple[Run, Run]]] = {flow: [] for flow in flows}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cert = ensure_dev_certificate(workdir / "tls", ("localhost", "127.0.0.1"))
        k1 = Kamailio(workdir, "k1", cert)
        k2 = Kamailio(workdir, "k2", cert)
        uas_port = free_port()
        hook_port = free_port()
        hook = subprocess.Popen(
            [sys.executable, "-c", WEBHOOK_APP, str(hook_port), str(k2.tls)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(hook_port)
            if "dial" in flows:
                k2.start(f'$du = "sip:127.0.0.1:{uas_port};transport=udp";')
            for flow in flows:
                for rate in rates:
                    engine = Engine(workdir, hook_port, cert)
                    try:
                        if flow == "dial":
                            k1.start(
                                f'if ($rd == "ref.test") {{ $du = "sip:127.0.0.1:{k2.tls};'
                                f'transport=tls"; }} else {{ $du = "sip:127.0.0.1:'
                                f'{engine.tls};transport=tls"; }}'
                            )
                            uas = sipp_uas(workdir, SIPP_DIR / "uas_hold.xml", uas_port)
                        try:
                            cpu = engine.cpu()
                            if flow == "dial":
                                scenario = SIPP_DIR / "uac_hold.xml"
                                ours = sipp_uac(
                                    workdir, scenario, "secure.test", k1.udp, rate, args.seconds
                                )
                            else:
                                ours = sipp_uac(
                                    workdir, HANGUP_UAC, "hangup.test", engine.udp, rate,
                                    args.seconds,
                                )  # fmt: skip
                            ours.cpu = engine.cpu() - cpu
                        finally:
                            engine.stop()
                        if flow == "dial":
                            reference = sipp_uac(
                                workdir, scenario, "ref.test", k1.udp, rate, args.seconds
                            )
                            stop(uas)
                            k1.stop()
                        else:
                            ref_port = free_port()
                            ref_uas = sipp_uas(workdir, SIPP_DIR / "uas_hangup.xml", ref_port)
                            try:
                                reference = sipp_uac(
                                    workdir, HANGUP_UAC, "ref.test", ref_port, rate, args.seconds
                                )
                            finally:
                                stop(ref_uas)
                    finally:
                        engine.stop()
                    results[flow].append((ours, reference))
                    show(flow, ours, reference)
                    if ours.failed_share > 0.05:
                        break  # well past what it takes: the next steps only fail more
        finally:
            k1.stop()
            k2.stop()
            hook.terminate()
            hook.wait(10)
    for flow, steps in results.items():
        verdict(flow, steps)


def verdict(flow: str, steps: list[tuple[Run, Run]]) -> None:
    """The best rate with < 0.1 % failed, its per-core figure, and the added p99 at about half
    the goal rate."""
    clean = [  # kept up: < 0.1 % failed and set up within a second (past that calls queue)
        ours
        for ours, _ in steps
        if ours.failed_share < GOAL_FAILED and ours.percentile(0.99) < KEEPING_UP_MS
    ]
    best = max(clean, key=lambda run: run.rate, default=None)
    if best is None:
        print(f"{flow}: no step with < {100 * GOAL_FAILED:g} % failed and p99 setup < 1 s")
        return
    per_core = best.per_core  # the most loaded clean step: fixed costs shared by most calls
    half = min(steps, key=lambda pair: abs(pair[0].rate - GOAL_CPS / 2))
    added = half[0].percentile(0.99) - half[1].percentile(0.99)
    print(
        f"{flow}: highest step kept up {best.rate:g}/s (engine CPU "
        f"{100 * best.cpu / best.elapsed:.0f} % of a core): {per_core:.0f} setups per engine "
        f"CPU-second -- goal >= {GOAL_CPS:g} per core: "
        f"{'met' if per_core >= GOAL_CPS else 'NOT met'}"
    )
    print(
        f"{flow}: p99 added setup time at {half[0].rate:g}/s {added:.1f} ms -- goal < "
        f"{GOAL_ADDED_P99_MS:g} ms: {'met' if added < GOAL_ADDED_P99_MS else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
