"""A real DNS server on loopback for the tests: dnsmasq serving the NAPTR, SRV and A records a
test declares, on a free UDP/TCP port.

dnsmasq (Debian package ``dnsmasq``) is what the RFC 3263 tests need: a real resolver library
talking the real wire format to a real server, with records written exactly as an operator would
publish them. ``--local=/<zone>/`` makes it answer NXDOMAIN for anything else in the test's zone
(instead of REFUSED, which no upstream would say), and nothing is forwarded anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.ports import free_port
from support.process import stop_process
from support.waiting import until

DNSMASQ = shutil.which("dnsmasq") or (
    "/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists() else None
)

__all__ = ["DnsRecords", "dns_server"]


@dataclass
class DnsRecords:
    """What the server publishes, in dnsmasq's own option syntax (see ``man dnsmasq``)."""

    zone: str
    naptr: list[tuple[str, int, int, str, str, str]] = field(default_factory=list)
    srv: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    hosts: list[tuple[str, str]] = field(default_factory=list)

    def add_naptr(self, name: str, order: int, pref: int, service: str, replacement: str) -> None:
        self.naptr.append((name, order, pref, "s", service, replacement))

    def add_srv(self, name: str, target: str, port: int, priority: int, weight: int = 0) -> None:
        self.srv.append((name, target, port, priority, weight))

    def add_host(self, name: str, address: str) -> None:
        self.hosts.append((name, address))

    def arguments(self) -> list[str]:
        args = [f"--local=/{self.zone}/"]
        for name, order, pref, flags, service, replacement in self.naptr:
            args.append(f"--naptr-record={name},{order},{pref},{flags},{service},,{replacement}")
        for name, target, port, priority, weight in self.srv:
            args.append(f"--srv-host={name},{target},{port},{priority},{weight}")
        for name, address in self.hosts:
            args.append(f"--host-record={name},{address}")
        return args


@contextlib.asynccontextmanager
async def dns_server(records: DnsRecords, workdir: Path) -> AsyncIterator[str]:
    """Run dnsmasq with ``records``; yields its address as ``"127.0.0.1:<port>"``."""
    if DNSMASQ is None:
        pytest.fail("dnsmasq (Debian package dnsmasq) is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port("both")
    log = workdir / "dnsmasq.log"
    user = ["--user=root"] if os.geteuid() == 0 else []
    process = await asyncio.create_subprocess_exec(
        DNSMASQ,
        "--keep-in-foreground",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--pid-file=",
        "--conf-file=/dev/null",
        "--log-queries",
        f"--log-facility={log}",
        *user,
        *records.arguments(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await until(
            lambda: (
                process.returncode is not None
                or (log.exists() and "started" in log.read_text(errors="replace"))
            ),
            timeout=10,
            what="dnsmasq to start",
        )
        if process.returncode is not None:
            out = (await process.stdout.read()).decode(errors="replace") if process.stdout else ""
            pytest.fail(f"dnsmasq exited with {process.returncode}: {out}")
        yield f"127.0.0.1:{port}"
    finally:
        await stop_process(process)
