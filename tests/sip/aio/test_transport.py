"""The transport layer on loopback: Via stamping, received/rport, response routing, TLS checks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator

import pytest

from callxml.errors import TransportError
from callxml.sip.aio.resolver import StaticResolver
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig, TransportLayer, _stamp_received
from callxml.sip.events import Address
from callxml.sip.headers import new_branch, parse_via
from callxml.sip.message import SipMessage, SipRequest, SipResponse, make_response
from support.certs import Pki
from support.ports import free_port

TIMEOUT = 5.0
RESOLVER = StaticResolver({"sip.example.test": "127.0.0.1", "other.example.test": "127.0.0.1"})


class Inbox:
    """Collects what a TransportLayer hands up."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[SipMessage, Address]] = asyncio.Queue()

    def __call__(self, message: SipMessage, source: Address) -> None:
        self.queue.put_nowait((message, source))

    async def get(self) -> tuple[SipMessage, Address]:
        return await asyncio.wait_for(self.queue.get(), TIMEOUT)


def options(uri: str = "sip:bob@127.0.0.1", branch: str | None = None) -> SipRequest:
    request = SipRequest("OPTIONS", uri)
    h = request.headers
    h.add("Via", f"SIP/2.0/UDP placeholder.invalid;branch={branch or new_branch()}")
    h.add("Max-Forwards", "70")
    h.add("From", "<sip:alice@example.test>;tag=1")
    h.add("To", "<sip:bob@example.test>")
    h.add("Call-ID", "call-1@example.test")
    h.add("CSeq", "1 OPTIONS")
    return request


@pytest.fixture
async def pair(pki: Pki) -> AsyncIterator[tuple[TransportLayer, Inbox, TransportLayer, Inbox]]:
    """A client and a server layer, each listening on UDP, TCP and TLS (loopback, free ports)."""
    client_inbox, server_inbox = Inbox(), Inbox()
    client = TransportLayer(client_inbox, tls=TlsConfig(ca_data=pki.ca_pem), resolver=RESOLVER)
    server_tls = dataclasses.replace(pki.server, ca_data=pki.ca_pem)
    server = TransportLayer(server_inbox, tls=server_tls, resolver=RESOLVER)
    try:
        for layer in (client, server):
            for transport in ("udp", "tcp"):
                await layer.listen(ListenerConfig(transport))
        await server.listen(ListenerConfig("tls"))
        yield client, client_inbox, server, server_inbox
    finally:
        await client.close()
        await server.close()


def port_of(layer: TransportLayer, transport: str) -> int:
    return next(p.port for p in layer.listeners if p.transport == transport)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_request_and_response_round_trip(
    pair: tuple[TransportLayer, Inbox, TransportLayer, Inbox], transport: str
) -> None:
    client, client_inbox, server, server_inbox = pair
    host = "sip.example.test" if transport == "tls" else "127.0.0.1"
    destination = Address(transport, host, port_of(server, transport))
    sent_to = await client.send_request(options(), destination)
    assert (sent_to.host, sent_to.port) == ("127.0.0.1", destination.port)

    request, source = await server_inbox.get()
    assert isinstance(request, SipRequest)
    assert source.transport == transport and source.host == "127.0.0.1"
    via = request.vias[0]
    # §18.1.1: the client transport wrote its own sent-by; RFC 3581: bare rport, filled in.
    assert via.transport == transport.upper()
    assert via.host == "127.0.0.1"
    assert via.rport == source.port
    assert via.received == "127.0.0.1"
    if transport == "udp":
        assert via.port == port_of(client, "udp") == source.port

    response = make_response(request, 200)
    reply_to = await server.send_response(response)
    assert (reply_to.host, reply_to.port) == (source.host, source.port)
    got, _ = await client_inbox.get()
    assert isinstance(got, SipResponse) and got.status == 200
    assert got.call_id == "call-1@example.test"


async def test_stream_connection_is_reused(
    pair: tuple[TransportLayer, Inbox, TransportLayer, Inbox],
) -> None:
    client, _, server, server_inbox = pair
    destination = Address("tcp", "127.0.0.1", port_of(server, "tcp"))
    await client.send_request(options(), destination)
    _, first = await server_inbox.get()
    await client.send_request(options(), destination)
    _, second = await server_inbox.get()
    assert first == second  # same source port: the same connection


async def test_response_not_for_us_is_dropped(
    pair: tuple[TransportLayer, Inbox, TransportLayer, Inbox],
) -> None:
    client, client_inbox, _, _ = pair
    response = SipResponse(200, "OK")
    response.headers.add("Via", "SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKnotours")
    for name, value in (("From", "<sip:a@x>;tag=1"), ("To", "<sip:b@x>"), ("Call-ID", "c")):
        response.headers.add(name, value)
    response.headers.add("CSeq", "1 OPTIONS")
    mine = SipResponse(200, "OK", response.headers.copy())
    mine.headers.set("Via", f"SIP/2.0/UDP 127.0.0.1:{port_of(client, 'udp')};branch=z9hG4bKok")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(bytes(response), ("127.0.0.1", port_of(client, "udp")))
        sock.sendto(bytes(mine), ("127.0.0.1", port_of(client, "udp")))
    # Datagrams from one socket over loopback arrive in order: the first one handed up must be
    # the response whose sent-by is ours; the other was dropped (§18.1.2).
    got, _ = await client_inbox.get()
    assert isinstance(got, SipResponse) and got.vias[0].branch == "z9hG4bKok"
    assert client_inbox.queue.empty()


async def test_bad_datagram_request_gets_a_400(
    pair: tuple[TransportLayer, Inbox, TransportLayer, Inbox],
) -> None:
    _, _, server, server_inbox = pair
    bad = (
        b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\n"
        b"CSeq: not-a-number OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.bind(("127.0.0.1", 0))
        sock.sendto(bad, ("127.0.0.1", port_of(server, "udp")))
        data = await asyncio.get_running_loop().run_in_executor(None, sock.recv, 65535)
    # The 400 copies the bad CSeq as it was (§8.2.6), so only its start line is checked.
    assert data.startswith(b"SIP/2.0 400 ")
    assert b"branch=z9hG4bKbad" in data
    assert server_inbox.queue.empty()


async def test_unframeable_stream_is_closed_and_keepalive_answered(
    pair: tuple[TransportLayer, Inbox, TransportLayer, Inbox],
) -> None:
    _, _, server, _ = pair
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server, "tcp"))
    try:
        writer.write(b"\r\n\r\n")  # RFC 5626 §4.4.1 ping
        assert await asyncio.wait_for(reader.readexactly(2), TIMEOUT) == b"\r\n"
        writer.write(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\r\n")
        # No Content-Length on a stream: framing is lost, the connection is closed (§18.3).
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    finally:
        writer.close()


async def test_tls_with_strict_identity_by_name_and_by_ip(
    pair: tuple[TransportLayer, Inbox, TransportLayer, Inbox],
) -> None:
    client, _, server, server_inbox = pair
    port = port_of(server, "tls")
    await client.send_request(options(), Address("tls", "127.0.0.1", port))
    _, source = await server_inbox.get()
    assert source.transport == "tls"
    # Reusing the connection for another name still checks that name (RFC 5922 §7.2).
    with pytest.raises(TransportError, match=r"does not match 'other\.example\.test'"):
        await client.send_request(
            options(), Address("tls", "127.0.0.1", port, "other.example.test")
        )


@pytest.mark.parametrize(
    ("server_cert", "client_tls", "error"),
    [
        ("other", {}, "does not match 'sip.example.test'"),
        ("wildcard", {}, "wildcard certificates are refused"),
        ("server", {"untrusted": True}, "not trusted"),
    ],
)
async def test_tls_bad_certificates_fail_clearly(
    pki: Pki, server_cert: str, client_tls: dict[str, bool], error: str
) -> None:
    server_inbox = Inbox()
    server = TransportLayer(server_inbox, tls=getattr(pki, server_cert))
    ca = pki.untrusted_ca_pem if client_tls.get("untrusted") else pki.ca_pem
    client = TransportLayer(Inbox(), tls=TlsConfig(ca_data=ca), resolver=RESOLVER)
    try:
        bound = await server.listen(ListenerConfig("tls"))
        with pytest.raises(TransportError, match=error):
            await client.send_request(options(), Address("tls", "sip.example.test", bound.port))
        assert server_inbox.queue.empty()
    finally:
        await client.close()
        await server.close()


async def test_wildcard_accepted_when_configured(pki: Pki) -> None:
    server_inbox = Inbox()
    server = TransportLayer(server_inbox, tls=pki.wildcard)
    client = TransportLayer(
        Inbox(), tls=TlsConfig(ca_data=pki.ca_pem, allow_wildcards=True), resolver=RESOLVER
    )
    try:
        bound = await server.listen(ListenerConfig("tls"))
        await client.send_request(options(), Address("tls", "sip.example.test", bound.port))
        message, _ = await server_inbox.get()
        assert isinstance(message, SipRequest)
    finally:
        await client.close()
        await server.close()


async def test_mutual_tls(pki: Pki) -> None:
    server_tls = dataclasses.replace(pki.server, ca_data=pki.ca_pem, require_client_cert=True)
    server_inbox = Inbox()
    server = TransportLayer(server_inbox, tls=server_tls)
    with_cert = dataclasses.replace(pki.client, ca_data=pki.ca_pem)
    client = TransportLayer(Inbox(), tls=with_cert, resolver=RESOLVER)
    anonymous = TransportLayer(Inbox(), tls=TlsConfig(ca_data=pki.ca_pem), resolver=RESOLVER)
    try:
        bound = await server.listen(ListenerConfig("tls"))
        target = Address("tls", "sip.example.test", bound.port)
        await client.send_request(options(), target)
        message, good = await server_inbox.get()
        assert isinstance(message, SipRequest)
        # Without a client certificate the server ends the handshake. TLS 1.2 reports that
        # to the client during the handshake, TLS 1.3 only after it; either way the request
        # must never be handed up on the server side.
        with contextlib.suppress(TransportError):
            await anonymous.send_request(options(), target)
        await client.send_request(options(branch="z9hG4bKafter"), target)
        message, source = await server_inbox.get()
        assert source == good and message.vias[0].branch == "z9hG4bKafter"
        assert server_inbox.queue.empty()
    finally:
        await client.close()
        await anonymous.close()
        await server.close()


async def test_connection_refused_is_a_transport_error(pki: Pki) -> None:
    port = free_port("tcp")
    client = TransportLayer(Inbox())
    try:
        with pytest.raises(TransportError, match=r"cannot connect to tcp:127\.0\.0\.1"):
            await client.send_request(options(), Address("tcp", "127.0.0.1", port))
    finally:
        await client.close()


async def test_ipv6_loopback_udp() -> None:
    inbox_a, inbox_b = Inbox(), Inbox()
    a, b = TransportLayer(inbox_a), TransportLayer(inbox_b)
    try:
        try:
            await a.listen(ListenerConfig("udp", host="::1"))
            bound = await b.listen(ListenerConfig("udp", host="::1"))
        except TransportError:
            pytest.skip(reason="no IPv6 loopback on this machine")
        await a.send_request(options("sip:bob@[::1]"), Address("udp", "::1", bound.port))
        request, source = await inbox_b.get()
        assert source.host == "::1"
        assert request.vias[0].host == "[::1]"
    finally:
        await a.close()
        await b.close()


def test_received_and_rport_rules() -> None:
    source = Address("udp", "192.0.2.5", 40000)
    # RFC 3581 §4: bare rport is filled in and received added even when the host matches.
    via = _stamp_received(parse_via("SIP/2.0/UDP 192.0.2.5:5060;rport;branch=z9hG4bK1"), source)
    assert via.rport == 40000 and via.received == "192.0.2.5"
    assert str(via) == "SIP/2.0/UDP 192.0.2.5:5060;rport=40000;branch=z9hG4bK1;received=192.0.2.5"
    # §18.2.1: no rport, same address: untouched; a name or another address: received added.
    plain = parse_via("SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK1")
    assert _stamp_received(plain, source) == plain
    named = _stamp_received(parse_via("SIP/2.0/UDP pc.example.test;branch=z9hG4bK1"), source)
    assert named.received == "192.0.2.5" and named.rport is None


async def test_udp_response_without_route_follows_received_and_rport() -> None:
    layer = TransportLayer(Inbox())
    try:
        await layer.listen(ListenerConfig("udp"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            response = SipResponse(200, "OK")
            # sent-by names a port nobody listens on; rport + received win (RFC 3581 §4).
            response.headers.add(
                "Via", f"SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx;received=127.0.0.1;rport={port}"
            )
            for name, value in (("From", "<sip:a@x>;tag=1"), ("To", "<sip:b@x>;tag=2")):
                response.headers.add(name, value)
            response.headers.add("Call-ID", "c")
            response.headers.add("CSeq", "1 OPTIONS")
            sent = await layer.send_response(response)
            assert (sent.host, sent.port) == ("127.0.0.1", port)
            data = await asyncio.get_running_loop().run_in_executor(None, sock.recv, 65535)
        assert data.startswith(b"SIP/2.0 200 OK\r\n")
    finally:
        await layer.close()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_a_flow_is_the_connection_the_peer_opened(
    pair: tuple[TransportLayer, Inbox, TransportLayer, Inbox], transport: str
) -> None:
    """RFC 5626 §5.3: the server reaches the client over the client's own connection (no
    identity check: the client presents no certificate), and never opens a new one."""
    client, client_inbox, server, server_inbox = pair
    destination = Address(transport, "127.0.0.1", port_of(server, transport), "sip.example.test")
    await client.send_request(options(), destination)
    _, source = await server_inbox.get()
    flow = dataclasses.replace(source, flow=True)
    await server.send_request(options("sip:alice@127.0.0.1"), flow)
    request, came_from = await client_inbox.get()
    assert isinstance(request, SipRequest) and request.method == "OPTIONS"
    assert came_from.port == destination.port  # over the connection the client opened
    await client.close()
    await asyncio.sleep(0.1)
    with pytest.raises(TransportError, match=r"flow .* is gone"):
        await server.send_request(options("sip:alice@127.0.0.1"), flow)


async def test_ping_pong_keeps_a_flow_and_silence_fails_it(
    pair: tuple[TransportLayer, Inbox, TransportLayer, Inbox],
) -> None:
    client, _, server, _ = pair
    destination = Address("tcp", "127.0.0.1", port_of(server, "tcp"))
    with pytest.raises(TransportError, match="no connection"):
        await client.ping(destination)
    await client.send_request(options(), destination)
    for _ in range(3):  # each CRLFCRLF gets its CRLF pong; no pong is left half-framed
        await client.ping(destination, timeout=TIMEOUT)
    [stream] = [s for s in client._connections.values() if s.outbound]
    assert stream.parser.buffered == 0
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # never answers
    port = silent.sockets[0].getsockname()[1]
    try:
        quiet = Address("tcp", "127.0.0.1", port)
        with contextlib.suppress(TransportError):
            await client.send_request(options(), quiet)
        with pytest.raises(TransportError, match="no pong"):
            await client.ping(quiet, timeout=0.2)
        assert not any(s.is_open for s in client._connections.values() if s.peer == quiet)
    finally:
        silent.close()
