"""Fixtures for the asyncio SIP tests: TLS certificates (trustme) and a SIPp runner."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from callxml.sip.aio.tls import TlsConfig


@dataclass(frozen=True)
class Pki:
    """A test CA and server certificates for several names, written as PEM files."""

    ca_pem: str
    server: TlsConfig  # cert for sip.example.test (SAN DNS) and 127.0.0.1 (SAN IP)
    wildcard: TlsConfig  # cert for *.example.test only
    other: TlsConfig  # cert for other.example.test only
    client: TlsConfig  # a client certificate (mutual TLS) for alice.example.test
    untrusted_ca_pem: str  # a CA that signed none of these


def _write(ca: trustme.CA, directory: Path, name: str, *identities: str) -> TlsConfig:
    cert = ca.issue_cert(*identities)
    chain = directory / f"{name}.pem"
    key = directory / f"{name}.key"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return TlsConfig(cert_file=str(chain), key_file=str(key))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    yield Pki(
        ca_pem=ca.cert_pem.bytes().decode(),
        server=_write(ca, directory, "server", "sip.example.test", "127.0.0.1"),
        wildcard=_write(ca, directory, "wildcard", "*.example.test"),
        other=_write(ca, directory, "other", "other.example.test"),
        client=_write(ca, directory, "client", "alice.example.test"),
        untrusted_ca_pem=trustme.CA().cert_pem.bytes().decode(),
    )


# -- SIPp ---------------------------------------------------------------------------------------

SCENARIOS = Path(__file__).resolve().parent.parent / "sipp"
SIPP = shutil.which("sipp")
#: SIPp quits (and the test fails) after this long whatever happens; no test can hang CI.
SIPP_TIMEOUT = 20


def free_port(transport: str) -> int:
    """A port free on 127.0.0.1 for ``udp`` or ``tcp`` right now (SIPp binds it right after)."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bound(port: int, transport: str) -> bool:
    """Is something listening on ``port`` (read from /proc, no packet sent)?"""
    table = Path("/proc/net/udp" if transport == "udp" else "/proc/net/tcp")
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return True  # cannot tell: assume yes, the scenario will say if not
    for line in lines:
        fields = line.split()
        local, state = fields[1], fields[3]
        if int(local.split(":")[1], 16) == port and (transport == "udp" or state == "0A"):
            return True
    return False


@dataclass
class SippResult:
    returncode: int
    output: str
    errors: str
    stats: dict[str, str]

    def counter(self, name: str) -> int:
        """A cumulative counter of SIPp's statistics file, e.g. ``SuccessfulCall``."""
        return int(self.stats.get(f"{name}(C)", "0") or 0)

    def message_counts(self, arrow: str, name: str) -> tuple[int, int]:
        """(messages, retransmissions) of a scenario line on SIPp's final screen, e.g.
        ``("---------->", "INVITE")`` for the INVITEs it received."""
        pattern = re.escape(arrow) + r" " + re.escape(name) + r"\s+(\d+)\s+(\d+)"
        found = re.findall(pattern, self.output)
        if not found:
            raise AssertionError(f"no {arrow} {name} line in SIPp's output\n{self.explain()}")
        messages, retransmissions = found[-1]
        return int(messages), int(retransmissions)

    def explain(self) -> str:
        return (
            f"sipp exit {self.returncode}\n--- errors ---\n{self.errors}\n"
            f"--- output ---\n{self.output[-3000:]}"
        )


class SippRun:
    """One SIPp process running a scenario from tests/sip/sipp."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, workdir: Path) -> None:
        self.process = process
        self.port = port
        self.workdir = workdir

    async def result(self, timeout: float = SIPP_TIMEOUT + 5) -> SippResult:
        try:
            out, _ = await asyncio.wait_for(self.process.communicate(), timeout)
        except TimeoutError:
            self.process.kill()
            out, _ = await self.process.communicate()
        stats: dict[str, str] = {}
        for path in self.workdir.glob("stats*.csv"):
            rows = [line.split(";") for line in path.read_text().splitlines() if line]
            if len(rows) >= 2:
                stats = dict(zip(rows[0], rows[-1], strict=False))
        errors = "".join(p.read_text(errors="replace") for p in self.workdir.glob("errors*"))
        returncode = self.process.returncode if self.process.returncode is not None else -1
        return SippResult(returncode, out.decode(errors="replace"), errors, stats)

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


class Sipp:
    """Starts SIPp on loopback: ``await sipp.uas(...)`` or ``await sipp.uac(...)``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.runs: list[SippRun] = []

    async def _start(self, scenario: str, transport: str, args: list[str]) -> SippRun:
        if SIPP is None:
            pytest.fail("sipp (Debian package sip-tester) is not installed")
        port = free_port(transport)
        workdir = self.workdir / f"{scenario}-{len(self.runs)}"
        workdir.mkdir()
        command = [
            SIPP,
            "-sf", str(SCENARIOS / f"{scenario}.xml"),
            "-i", "127.0.0.1",
            "-p", str(port),
            "-t", "u1" if transport == "udp" else "t1",
            "-m", "1",
            "-nostdin",
            "-timeout", f"{SIPP_TIMEOUT}s",
            "-timeout_error",
            "-trace_err", "-error_file", str(workdir / "errors.log"),
            "-trace_stat", "-stf", str(workdir / "stats.csv"),
            *args,
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        run = SippRun(process, port, workdir)
        self.runs.append(run)
        return run

    async def uas(self, scenario: str, transport: str) -> SippRun:
        """Start a SIPp server and wait until its socket is bound."""
        run = await self._start(scenario, transport, [])
        for _ in range(200):
            if _bound(run.port, transport) or run.process.returncode is not None:
                break
            await asyncio.sleep(0.02)
        return run

    async def uac(self, scenario: str, transport: str, target: str, user: str) -> SippRun:
        """Start a SIPp client calling ``user`` at ``target`` (``host:port``)."""
        return await self._start(scenario, transport, [target, "-s", user])


@pytest.fixture
async def sipp(tmp_path: Path) -> AsyncIterator[Sipp]:
    runner = Sipp(tmp_path)
    try:
        yield runner
    finally:
        for run in runner.runs:
            run.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run.process.wait(), 5)
