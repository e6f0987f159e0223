"""Dialing by name (RFC 3263) end to end: a real DNS server (dnsmasq), real phones on loopback.

``sip:jack@pbx.test;secure=true`` is located through NAPTR and SRV; the first SRV target is down
and the call lands on the second; NAPTR picks TLS for a plain ``sip:`` URI; a server answering
503, or not answering at all, is passed over for the next one inside the same ring budget. The
TLS certificate names only the SIP domain ``pbx.test`` — never the SRV targets — so every TLS
call here also proves the RFC 5922 identity check is made against the URI's domain.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner

from callxml.cli import main
from callxml.cli.call import place_call
from callxml.runtime import IncomingCall, Phone
from callxml.sip.aio.resolver import DnsResolver
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig
from support.dns import DnsRecords, dns_server
from support.ports import free_port

pytestmark = pytest.mark.peer

WAIT = 10.0


class Server:
    """A callee phone on 127.0.0.1 with TLS and UDP listeners; answers, rejects or counts."""

    def __init__(self, phone: Phone, answer: int, secure_media: bool) -> None:
        self.phone = phone
        self.answer = answer
        self.secure_media = secure_media
        self.calls: list[IncomingCall] = []

    async def on_incoming(self, call: IncomingCall) -> None:
        self.calls.append(call)
        if self.answer == 200:
            await call.accept(secure_media_enabled=self.secure_media)
        else:
            await call.reject(self.answer, "Service Unavailable")

    def port(self, transport: str) -> int:
        return self.phone.user_agent.local(transport).port


@pytest.fixture
def domain_tls(tmp_path: Path) -> tuple[TlsConfig, str]:
    """A certificate for the SIP domain pbx.test only, and its CA file."""
    ca = trustme.CA()
    cert = ca.issue_cert("pbx.test")
    chain, key, ca_file = tmp_path / "pbx.pem", tmp_path / "pbx.key", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    return TlsConfig(cert_file=str(chain), key_file=str(key), ca_file=str(ca_file)), str(ca_file)


ServerFactory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def servers(domain_tls: tuple[TlsConfig, str]) -> AsyncIterator[ServerFactory]:
    made: list[Server] = []

    async def make(answer: int = 200, *, secure_media: bool = False) -> Server:
        server = Server(None, answer, secure_media)  # type: ignore[arg-type]
        server.phone = await Phone.start(
            listeners=[
                ListenerConfig("udp", "127.0.0.1", 0),
                ListenerConfig("tls", "127.0.0.1", 0),
            ],
            tls=domain_tls[0],
            on_incoming=server.on_incoming,
        )
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            await server.phone.close()


async def caller(server: str, tls: TlsConfig, failover: float = 4.0) -> Phone:
    return await Phone.start(
        listeners=[ListenerConfig("udp", "127.0.0.1", 0), ListenerConfig("tls", "127.0.0.1", 0)],
        tls=tls,
        resolver=DnsResolver([server]),
        failover_timeout=failover,
    )


async def test_secure_call_skips_a_dead_srv_target(
    tmp_path: Path, servers: ServerFactory, domain_tls: tuple[TlsConfig, str]
) -> None:
    live = await servers(200, secure_media=True)
    dead = free_port("tcp")  # nothing listens: the TLS connect is refused
    records = DnsRecords("pbx.test")
    records.add_naptr("pbx.test", 10, 50, "SIPS+D2T", "_sips._tcp.pbx.test")
    records.add_srv("_sips._tcp.pbx.test", "down.pbx.test", dead, 10)
    records.add_srv("_sips._tcp.pbx.test", "up.pbx.test", live.port("tls"), 20)
    records.add_host("down.pbx.test", "127.0.0.1")
    records.add_host("up.pbx.test", "127.0.0.1")
    async with dns_server(records, tmp_path / "dns") as address:
        phone = await caller(address, domain_tls[0])
        try:
            result = await phone.dial("sip:jack@pbx.test;secure=true", timeout=WAIT)
            assert result.status == "answered", result.reason
            assert result.leg is not None and result.leg.secure and result.transport == "tls"
            [call] = live.calls
            assert call.transport == "tls" and call.request_uri.endswith(";transport=tls")
            await result.leg.hangup()
        finally:
            await phone.close()


async def test_naptr_order_picks_tls_for_a_plain_uri(
    tmp_path: Path, servers: ServerFactory, domain_tls: tuple[TlsConfig, str]
) -> None:
    live = await servers(200)
    records = DnsRecords("pbx.test")
    records.add_naptr("pbx.test", 20, 50, "SIP+D2U", "_sip._udp.pbx.test")
    records.add_naptr("pbx.test", 10, 50, "SIPS+D2T", "_sips._tcp.pbx.test")
    records.add_srv("_sip._udp.pbx.test", "up.pbx.test", live.port("udp"), 10)
    records.add_srv("_sips._tcp.pbx.test", "up.pbx.test", live.port("tls"), 10)
    records.add_host("up.pbx.test", "127.0.0.1")
    async with dns_server(records, tmp_path / "dns") as address:
        phone = await caller(address, domain_tls[0])
        try:
            result = await phone.dial("sip:jack@pbx.test", timeout=WAIT)
            assert result.status == "answered", result.reason
            assert result.transport == "tls" and live.calls[0].transport == "tls"
            assert result.leg is not None and not result.leg.secure  # TLS signalling, plain RTP
            await result.leg.hangup()
        finally:
            await phone.close()


async def test_503_and_silence_move_on_to_the_next_server(
    tmp_path: Path, servers: ServerFactory, domain_tls: tuple[TlsConfig, str]
) -> None:
    busy = await servers(503)
    live = await servers(200)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    records = DnsRecords("pbx.test")
    records.add_srv("_sip._udp.pbx.test", "a.pbx.test", silent.getsockname()[1], 10)
    records.add_srv("_sip._udp.pbx.test", "b.pbx.test", busy.port("udp"), 20)
    records.add_srv("_sip._udp.pbx.test", "c.pbx.test", live.port("udp"), 30)
    for name in ("a", "b", "c"):
        records.add_host(f"{name}.pbx.test", "127.0.0.1")
    try:
        async with dns_server(records, tmp_path / "dns") as address:
            phone = await caller(address, domain_tls[0], failover=0.5)
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                result = await phone.dial("sip:jack@pbx.test", timeout=WAIT)
                assert result.status == "answered", result.reason
                assert len(busy.calls) == 1 and len(live.calls) == 1
                assert loop.time() - started < WAIT  # inside the one ring budget
                assert result.leg is not None
                await result.leg.hangup()
            finally:
                await phone.close()
    finally:
        silent.close()


async def test_every_server_failing_reports_each(
    tmp_path: Path, servers: ServerFactory, domain_tls: tuple[TlsConfig, str]
) -> None:
    first, second = await servers(503), await servers(503)
    records = DnsRecords("pbx.test")
    records.add_srv("_sip._udp.pbx.test", "a.pbx.test", first.port("udp"), 10)
    records.add_srv("_sip._udp.pbx.test", "b.pbx.test", second.port("udp"), 20)
    for name in ("a", "b"):
        records.add_host(f"{name}.pbx.test", "127.0.0.1")
    async with dns_server(records, tmp_path / "dns") as address:
        phone = await caller(address, domain_tls[0])
        try:
            result = await phone.dial("sip:jack@pbx.test", timeout=WAIT)
            assert result.status == "failed" and result.sip_response_code == 503
            assert f"127.0.0.1:{first.port('udp')}: 503" in result.reason
            unknown = await phone.dial("sip:jack@nowhere.pbx.test", timeout=WAIT)
            assert unknown.status == "failed" and "nowhere.pbx.test" in unknown.reason
        finally:
            await phone.close()


async def test_callxml_call_locates_through_the_given_dns_server(
    tmp_path: Path, servers: ServerFactory, domain_tls: tuple[TlsConfig, str]
) -> None:
    live = await servers(200)
    records = DnsRecords("pbx.test")
    records.add_naptr("pbx.test", 10, 50, "SIP+D2T", "_sip._tcp.pbx.test")
    records.add_srv("_sip._tcp.pbx.test", "up.pbx.test", live.port("udp"), 10)
    records.add_host("up.pbx.test", "127.0.0.1")
    # The live server listens on UDP and TLS only: TCP to its UDP port is refused, so a
    # second, UDP record is needed to answer; NAPTR order puts TCP first.
    records.add_naptr("pbx.test", 20, 50, "SIP+D2U", "_sip._udp.pbx.test")
    records.add_srv("_sip._udp.pbx.test", "up.pbx.test", live.port("udp"), 10)
    async with dns_server(records, tmp_path / "dns") as address:
        report = await place_call(
            "sip:jack@pbx.test", pcm=bytes(3200), duration=0.3, dns=[address], timeout=WAIT
        )
    assert report.status == "completed", report.reason
    assert report.transport == "udp" and len(live.calls) == 1


def test_callxml_call_refuses_a_dns_name_as_server() -> None:
    result = CliRunner().invoke(main, ["call", "sip:jack@pbx.test", "--dns", "dns.example.com"])
    assert result.exit_code == 2 and "--dns" in result.output
