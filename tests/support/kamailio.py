"""A real Kamailio on loopback for the tests: a TLS-capable SIP proxy started from a config the
test writes, on free ports, with its log kept for assertions.

Kamailio (Debian ``kamailio`` + ``kamailio-tls-modules``) is what carriers and operators put in
front of SIP engines, so the proxy, registrar and load-balancer tests run against it rather than
a stand-in. :class:`KamailioConfig` writes the configuration file: the listeners, the modules, a
TLS section (server certificate from the test's PKI; as a client Kamailio does not verify,
since the peers behind it are loopback lab peers with their own test CAs) and the test's
``request_route`` body. Every routed request is logged as ``REQ <method> <ruri> <proto>`` and
every request it sends on as ``SENT <method> <ruri> <proto>`` (1 UDP, 2 TCP, 3 TLS), so a test
can read what Kamailio saw and did on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from callxml.engine.devcert import DevCertificate
from support.ports import free_port
from support.process import stop_process
from support.waiting import until

KAMAILIO = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin")
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")

__all__ = ["PROXY_ROUTE", "Kamailio", "KamailioConfig", "kamailio"]

#: A record-routing stateful proxy: relays every request to its Request-URI (or along its
#: Route set in a dialog), logging each one.
PROXY_ROUTE = """
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    xlog("L_NOTICE", "REQ $rm $ru $pr\\n");
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here");
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    record_route();
    if (!t_relay()) { sl_reply_error(); }
"""

BASE_MODULES = (
    "tm",
    "tmx",
    "sl",
    "rr",
    "pv",
    "maxfwd",
    "textops",
    "siputils",
    "xlog",
    "sanity",
    "tls",
    "ctl",
)


@dataclass
class KamailioConfig:
    """What to run: ``route`` is the body of ``request_route``; ``modules`` and ``params`` are
    added to the base set; ``globals`` are extra global lines."""

    cert: DevCertificate
    route: str = PROXY_ROUTE
    modules: Sequence[str] = ()
    params: Sequence[tuple[str, str, str | int]] = ()
    globals: Sequence[str] = ()
    ports: dict[str, int] = field(default_factory=dict)

    def render(self, directory: Path) -> str:
        udp_tcp, tls = self.ports["udp"], self.ports["tls"]
        tls_cfg = directory / "tls.cfg"
        tls_cfg.write_text(
            "[server:default]\n"
            "method = TLSv1.2+\n"
            "verify_certificate = no\n"
            "require_certificate = no\n"
            f"private_key = {self.cert.key}\n"
            f"certificate = {self.cert.cert}\n"
            "\n[client:default]\n"
            "method = TLSv1.2+\n"
            "verify_certificate = no\n"
            "require_certificate = no\n"
        )
        lines = [
            "#!KAMAILIO",
            "debug=2",
            "log_stderror=yes",
            "children=1",
            "tcp_children=1",
            "auto_aliases=no",
            "enable_tls=yes",
            f"listen=udp:127.0.0.1:{udp_tcp}",
            f"listen=tcp:127.0.0.1:{udp_tcp}",
            f"listen=tls:127.0.0.1:{tls}",
            f'alias="127.0.0.1:{udp_tcp}"',
            f'alias="127.0.0.1:{tls}"',
            f'mpath="{MODULES}/"',
            *self.globals,
        ]
        for module in (*BASE_MODULES, *self.modules):
            lines.append(f'loadmodule "{module}.so"')
        lines += [
            f'modparam("tls", "config", "{tls_cfg}")',
            f'modparam("ctl", "binrpc", "unix:{directory / "kamailio_ctl"}")',
            'modparam("rr", "enable_full_lr", 1)',
        ]
        for module, name, value in self.params:
            shown = value if isinstance(value, int) else f'"{value}"'
            lines.append(f'modparam("{module}", "{name}", {shown})')
        lines += ["request_route {", self.route, "}"]
        lines += [
            "onsend_route {",
            '    if (is_request()) { xlog("L_NOTICE", "SENT $rm $ru $sndto(proto)\\n"); }',
            "}",
            "",
        ]
        return "\n".join(lines)


@dataclass
class Kamailio:
    """A running Kamailio: its ports and its log."""

    directory: Path
    ports: dict[str, int]
    process: asyncio.subprocess.Process

    def port(self, transport: str) -> int:
        return self.ports["tls" if transport == "tls" else "udp"]

    def uri(self, transport: str = "udp") -> str:
        """A SIP URI for Kamailio itself, as an outbound proxy."""
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:127.0.0.1:{self.port(transport)}{suffix}"

    def log(self) -> str:
        return (self.directory / "kamailio.log").read_text(errors="replace")

    def requests(self) -> list[tuple[str, str, str]]:
        """(method, Request-URI, transport) of every request routed, in order."""
        return self._lines("REQ ")

    def sent(self) -> list[tuple[str, str, str]]:
        """(method, Request-URI, transport) of every request sent on, in order."""
        names = {"1": "udp", "2": "tcp", "3": "tls"}
        return [(m, r, names.get(p, p)) for m, r, p in self._lines("SENT ")]

    def _lines(self, marker: str) -> list[tuple[str, str, str]]:
        seen = []
        for line in self.log().splitlines():
            if marker in line:
                method, ruri, proto = line.split(marker, 1)[1].split()[:3]
                seen.append((method, ruri, proto))
        return seen


@contextlib.asynccontextmanager
async def kamailio(config: KamailioConfig, directory: Path) -> AsyncIterator[Kamailio]:
    """Start Kamailio with ``config`` in ``directory``; stopped (killed if need be) on exit."""
    if KAMAILIO is None or not MODULES.is_dir():
        pytest.fail("kamailio (Debian packages kamailio, kamailio-tls-modules) is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    udp_tcp = free_port("both")
    config.ports = {"udp": udp_tcp, "tcp": udp_tcp, "tls": free_port("tcp")}
    cfg = directory / "kamailio.cfg"
    cfg.write_text(config.render(directory))
    log = directory / "kamailio.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            KAMAILIO,
            "-f", str(cfg),
            "-DD",  # stay in the foreground, as the process the test waits on
            "-E",  # log to stderr (our log file)
            "-Y", str(directory),  # runtime directory (FIFO, pid) inside the test's folder
            "-P", str(directory / "kamailio.pid"),
            "-m", "64",
            "-M", "8",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    running = Kamailio(directory, config.ports, process)
    try:
        await until(
            lambda: process.returncode is not None or _listening(running),
            timeout=15,
            what="kamailio to listen",
        )
        if process.returncode is not None:
            pytest.fail(f"kamailio exited with {process.returncode}:\n{running.log()[-3000:]}")
        yield running
    finally:
        await stop_process(process, grace=10)


def _listening(running: Kamailio) -> bool:
    """Both TCP listeners accept (read from /proc: no connection is made)."""
    table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    listening = {int(f.split()[1].split(":")[1], 16) for f in table if f.split()[3] == "0A"}
    return {running.ports["tcp"], running.ports["tls"]} <= listening
