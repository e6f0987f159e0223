"""SIPp (Debian ``sip-tester``) as a real SIP peer on loopback: the one runner every test uses.

A SIPp run is a scenario file, a free local port, a transport, a handful of options and a bound
on how long it may take; what a test wants back is the exit status, the statistics, the error log
and (sometimes) the SIP messages. That is the same whether SIPp calls the engine or answers our
UAC, so it lives here once (the ``sipp`` fixture in :mod:`support.fixtures` hands out a
:class:`Sipp` that kills whatever is still running after the test).

Scenarios are looked up by name in the runner's scenario directory (a test directory keeps its
own, e.g. tests/sip/sipp and tests/engine/sipp), or given as a path per call. Every run has
``-m 1 -timeout <timeout>s -timeout_error``: SIPp quits (and the test fails) whatever happens, so
no test can hang CI. A missing SIPp fails the test: CI installs it, and so does ``make test``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.ports import Transport, free_media_port, free_port
from support.waiting import until

__all__ = ["SIPP", "SIPP_TIMEOUT", "Sipp", "SippResult", "SippRun", "bound", "scenario_dir"]

SIPP = shutil.which("sipp")
#: SIPp quits (and the test fails) after this long whatever happens; no test can hang CI.
SIPP_TIMEOUT = 20
#: How long :meth:`Sipp.uas` waits for SIPp's socket before letting the scenario speak for itself.
BIND_WAIT = 5.0
TESTS = Path(__file__).resolve().parents[1]


def scenario_dir(start: Path) -> Path:
    """The ``sipp`` directory nearest to ``start`` (a test's directory), looking upwards as far as
    tests/: tests/engine/… finds tests/engine/sipp, tests/sip/aio/… finds tests/sip/sipp."""
    for directory in (start, *start.parents):
        if (directory / "sipp").is_dir():
            return directory / "sipp"
        if directory == TESTS:
            break
    raise LookupError(f"no sipp scenario directory at or above {start}")


def bound(port: int, transport: Transport) -> bool:
    """Is something bound to ``port`` (listening, for TCP)? Read from /proc, no packet sent."""
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
    """How a SIPp run ended: exit status, its screen, error log, statistics and (when traced)
    the SIP messages it sent and received."""

    returncode: int
    output: str
    errors: str
    stats: dict[str, str]
    messages: str = ""

    def counter(self, name: str) -> int:
        """A cumulative counter of SIPp's statistics file, e.g. ``SuccessfulCall``."""
        return int(self.stats.get(f"{name}(C)", "0") or 0)

    def message_counts(self, arrow: str, name: str) -> tuple[int, int]:
        """(messages, retransmissions) of a scenario line on SIPp's final screen, e.g.
        ``("---------->", "INVITE")`` for the INVITEs it received, ``("<----------", "183")``
        for the 183s it received (SIPp writes requests and responses the other way round)."""
        pattern = re.escape(arrow) + r" " + re.escape(name) + r"\s+(\d+)\s+(\d+)"
        found = re.findall(pattern, self.output)
        if not found:
            pattern = re.escape(name) + r" " + re.escape(arrow) + r"\s+(\d+)\s+(\d+)"
            found = re.findall(pattern, self.output)
        if not found:
            raise AssertionError(f"no {arrow} {name} line in SIPp's output\n{self.explain()}")
        messages, retransmissions = found[-1]
        return int(messages), int(retransmissions)

    def explain(self) -> str:
        """Everything that says why, for an assertion message."""
        text = (
            f"sipp exit {self.returncode}\n--- errors ---\n{self.errors}\n"
            f"--- output ---\n{self.output[-3000:]}"
        )
        if self.messages:
            text += f"\n--- messages ---\n{self.messages[-6000:]}"
        return text


class SippRun:
    """One SIPp process running one scenario (``-m 1``)."""

    def __init__(
        self, process: asyncio.subprocess.Process, port: int, workdir: Path, timeout: float
    ) -> None:
        self.process = process
        self.port = port
        self.workdir = workdir
        self.timeout = timeout

    async def result(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to end (killing it after ``timeout`` s: by default a little longer than
        its own ``-timeout``) and collect what it left."""
        wait = self.timeout + 5 if timeout is None else timeout
        try:
            out, _ = await asyncio.wait_for(self.process.communicate(), wait)
        except TimeoutError:
            self.kill()
            out, _ = await self.process.communicate()
        stats: dict[str, str] = {}
        for path in self.workdir.glob("stats*.csv"):
            rows = [line.split(";") for line in path.read_text().splitlines() if line]
            if len(rows) >= 2:
                stats = dict(zip(rows[0], rows[-1], strict=False))
        errors = "".join(p.read_text(errors="replace") for p in self.workdir.glob("errors*"))
        messages = "".join(p.read_text(errors="replace") for p in self.workdir.glob("messages*"))
        returncode = self.process.returncode if self.process.returncode is not None else -1
        return SippResult(returncode, out.decode(errors="replace"), errors, stats, messages)

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


class Sipp:
    """Starts SIPp on 127.0.0.1: ``await sipp.uas(...)`` answers, ``await sipp.uac(...)`` calls.

    Each run gets its own directory under ``workdir`` (logs, statistics); scenarios are read from
    ``scenarios`` unless a call names a file.
    """

    def __init__(self, workdir: Path, scenarios: Path) -> None:
        self.workdir = workdir
        self.scenarios = scenarios
        self.runs: list[SippRun] = []

    async def uas(
        self,
        scenario: str | Path,
        transport: Transport = "udp",
        *,
        media_port: bool = False,
        keys: Mapping[str, str] | None = None,
        trace_messages: bool = False,
        args: Sequence[str] = (),
        timeout: float = SIPP_TIMEOUT,
    ) -> SippRun:
        """Start a SIPp server and wait (at most :data:`BIND_WAIT` s) until its socket is bound.
        ``media_port``: give SIPp a free media port (``-mp``) instead of its fixed default."""
        extra = ["-mp", str(free_media_port())] if media_port else []
        run = await self._start(scenario, transport, [*extra, *args], keys, trace_messages, timeout)
        with contextlib.suppress(TimeoutError):  # not bound yet: the scenario will say
            await until(
                lambda: bound(run.port, transport) or run.process.returncode is not None,
                BIND_WAIT,
                what=f"SIPp bound to {transport} port {run.port}",
            )
        return run

    async def uac(
        self,
        scenario: str | Path,
        transport: Transport,
        target: str,
        service: str,
        *,
        keys: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        auth_uri: str | None = None,
        trace_messages: bool = False,
        args: Sequence[str] = (),
        timeout: float = SIPP_TIMEOUT,
    ) -> SippRun:
        """Start a SIPp client calling ``service`` (``-s``, the Request-URI's user) at ``target``
        (``host:port``). ``auth`` is (user, password) for a digest challenge (``-au``/``-ap``),
        ``auth_uri`` the digest-uri SIPp should put in it (``-auth_uri``)."""
        extra = ["-s", service]
        if auth is not None:
            extra += ["-au", auth[0], "-ap", auth[1]]
        if auth_uri is not None:
            extra += ["-auth_uri", auth_uri]
        return await self._start(
            scenario, transport, [*extra, *args, target], keys, trace_messages, timeout
        )

    async def close(self) -> None:
        """Kill every run still going and reap it."""
        for run in self.runs:
            run.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run.process.wait(), 5)

    async def _start(
        self,
        scenario: str | Path,
        transport: Transport,
        args: list[str],
        keys: Mapping[str, str] | None,
        trace_messages: bool,
        timeout: float,
    ) -> SippRun:
        if SIPP is None:
            pytest.fail("sipp (Debian package sip-tester) is not installed")
        path = scenario if isinstance(scenario, Path) else self.scenarios / f"{scenario}.xml"
        port = free_port(transport)
        workdir = self.workdir / f"{path.stem}-{len(self.runs)}"
        workdir.mkdir(parents=True)
        command = [
            SIPP,
            "-sf", str(path),
            "-i", "127.0.0.1",
            "-p", str(port),
            "-t", "u1" if transport == "udp" else "t1",
            "-m", "1",
            "-nostdin",
            "-timeout", f"{int(timeout)}s",
            "-timeout_error",
            "-trace_err", "-error_file", str(workdir / "errors.log"),
            "-trace_stat", "-stf", str(workdir / "stats.csv"),
        ]  # fmt: skip
        if trace_messages:
            command += ["-trace_msg", "-message_file", str(workdir / "messages.log")]
        for name, value in (keys or {}).items():
            command += ["-key", name, value]
        process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        run = SippRun(process, port, workdir, timeout)
        self.runs.append(run)
        return run
