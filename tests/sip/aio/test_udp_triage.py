"""The UDP transport under a flood (issue 16, overload): what is ready is read in one pass and
handled in-dialog first, and the gate refuses new INVITEs before the parser ever sees them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from callxml.sip.aio.transport import ListenerConfig, TransportLayer
from callxml.sip.aio.useragent import UserAgent
from callxml.sip.events import Address
from callxml.sip.message import SipMessage, SipRequest, SipResponse
from callxml.sip.triage import REFUSAL_TAG_PREFIX, Gate
from support.rawsip import SDP, RawPeer, request
from support.waiting import until


class Inbox:
    def __init__(self) -> None:
        self.messages: list[SipMessage] = []

    def __call__(self, message: SipMessage, source: Address) -> None:
        self.messages.append(message)


@pytest.fixture
async def layer() -> AsyncIterator[tuple[TransportLayer, Inbox, int]]:
    inbox = Inbox()
    transport = TransportLayer(inbox)
    bound = await transport.listen(ListenerConfig("udp", "127.0.0.1", 0))
    try:
        yield transport, inbox, bound.port
    finally:
        await transport.close()


def in_dialog(method: str, port: int, n: int) -> bytes:
    return request(method, "sip:engine@127.0.0.1", port=port, call_id=f"dlg-{n}@x").replace(
        b"To: <sip:engine@127.0.0.1>", b"To: <sip:engine@127.0.0.1>;tag=ours1"
    )


def ack_of(invite: bytes, tag: str) -> bytes:
    """The caller's ACK of our refusal of ``invite`` (its To tag ``tag``, no body)."""
    return (
        invite.split(b"\r\n\r\n")[0]
        .replace(b"INVITE sip", b"ACK sip")
        .replace(b"CSeq: 1 INVITE", b"CSeq: 1 ACK")
        .replace(b"To: <sip:a@127.0.0.1>", f"To: <sip:a@127.0.0.1>;tag={tag}".encode())
        .replace(b"Content-Type: application/sdp\r\n", b"")
        .replace(f"Content-Length: {len(SDP)}".encode(), b"Content-Length: 0")
        + b"\r\n\r\n"
    )


def burst(port: int, datagrams: list[bytes]) -> socket.socket:
    """Send every datagram before the loop runs again: they queue in the socket together."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    for data in datagrams:
        sock.sendto(data, ("127.0.0.1", port))
    return sock


async def test_a_batch_is_handled_in_dialog_first_and_new_invites_last(
    layer: tuple[TransportLayer, Inbox, int],
) -> None:
    transport, inbox, port = layer
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    me = sender.getsockname()[1]
    invites = [request("INVITE", "sip:a@127.0.0.1", port=me, body=SDP) for _ in range(20)]
    late = [
        in_dialog("BYE", me, 1),
        request("OPTIONS", "sip:a@127.0.0.1", port=me),
        in_dialog("ACK", me, 2),
        request("CANCEL", "sip:a@127.0.0.1", port=me),
        in_dialog("INVITE", me, 3),  # a re-INVITE
    ]
    try:
        for data in invites + late:  # the in-dialog work arrives *after* the flood
            sender.sendto(data, ("127.0.0.1", port))
        await until(lambda: len(inbox.messages) == 25)
    finally:
        sender.close()
    order = [(m.method, m.to.tag is not None) for m in inbox.messages if isinstance(m, SipRequest)]
    assert order[:5] == [
        ("BYE", True),
        ("ACK", True),
        ("CANCEL", False),
        ("INVITE", True),
        ("OPTIONS", False),
    ]
    assert order[5:] == [("INVITE", False)] * 20
    assert transport.counters == {}


async def test_a_fault_handling_one_datagram_spares_the_rest_of_the_batch(
    layer: tuple[TransportLayer, Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    transport, inbox, port = layer
    calls = []
    real = transport._accept

    def accept(*args: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected")
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(transport, "_accept", accept)
    sock = burst(port, [request("OPTIONS", "sip:a@127.0.0.1", port=9) for _ in range(3)])
    try:
        await until(lambda: len(inbox.messages) == 2)
    finally:
        sock.close()
    assert transport.counters["fault"] == 1


async def test_the_gate_refuses_before_parsing_and_swallows_the_ack(
    layer: tuple[TransportLayer, Inbox, int],
) -> None:
    transport, inbox, port = layer
    asked: list[Address] = []

    def admit(source: Address, now: float) -> tuple[str, int] | None:
        asked.append(source)
        return ("over capacity (invites_per_second)", 3) if len(asked) > 1 else None

    transport.gate = Gate(admit, "127.0.0.1:5060")
    async with RawPeer("udp", "127.0.0.1", port) as peer:
        admitted = request("INVITE", "sip:a@127.0.0.1", port=peer.port, body=SDP)
        peer.send(admitted)
        await until(lambda: len(inbox.messages) == 1)
        refused_invite = request("INVITE", "sip:a@127.0.0.1", port=peer.port, body=SDP)
        peer.send(refused_invite)
        refused = await peer.response()
        assert refused.status == 503 and refused.headers.get("Retry-After") == "3"
        tag = refused.to.tag
        assert tag is not None and tag.startswith(REFUSAL_TAG_PREFIX)
        assert refused.vias[0].rport == peer.port and refused.vias[0].received == "127.0.0.1"
        peer.send(refused_invite)  # a retransmission: the same answer
        again = await peer.response()
        assert again.to.tag == tag
        peer.send(ack_of(refused_invite, tag))
        peer.send(request("OPTIONS", "sip:a@127.0.0.1", port=peer.port))
        await until(lambda: len(inbox.messages) == 2)
    assert [type(m) for m in inbox.messages] == [SipRequest, SipRequest]
    assert [m.method for m in inbox.messages if isinstance(m, SipRequest)] == [
        "INVITE",
        "OPTIONS",
    ]  # neither the refused INVITE, its retransmission nor its ACK reached the parser
    assert len(asked) == 2
    assert transport.gate.counters == {"refused": 1, "replayed": 1, "acks": 1}


async def test_the_gate_screens_tcp_messages_before_parsing() -> None:
    """Over TCP the gate sees each framed message before the parser: a refused INVITE gets the
    stateless 503 on its connection and never reaches the handler, the ACK of it is dropped,
    and the messages around it on the same connection are delivered in order."""
    inbox = Inbox()
    transport = TransportLayer(inbox)
    bound = await transport.listen(ListenerConfig("tcp", "127.0.0.1", 0))
    asked: list[Address] = []

    def admit(source: Address, now: float) -> tuple[str, int] | None:
        asked.append(source)
        return ("over capacity (max_setups)", 4) if len(asked) > 1 else None

    transport.gate = Gate(admit, "127.0.0.1:5060")
    try:
        async with RawPeer("tcp", "127.0.0.1", bound.port) as peer:

            def invite() -> bytes:
                return request(
                    "INVITE", "sip:a@127.0.0.1", port=peer.port, transport="tcp", body=SDP
                )

            refused_invite = invite()
            # one write: an admitted INVITE, one to refuse, and an OPTIONS behind them
            peer.send(
                invite()
                + refused_invite
                + request("OPTIONS", "sip:a@127.0.0.1", port=peer.port, transport="tcp")
            )
            refused = await peer.response()
            assert refused.status == 503 and refused.headers.get("Retry-After") == "4"
            tag = refused.to.tag
            assert tag is not None and tag.startswith(REFUSAL_TAG_PREFIX)
            assert "max_setups" in (refused.headers.get("Warning") or "")
            peer.send(ack_of(refused_invite, tag))
            peer.send(request("OPTIONS", "sip:b@127.0.0.1", port=peer.port, transport="tcp"))
            await until(lambda: len(inbox.messages) == 3)
    finally:
        await transport.close()
    assert [(m.method, m.uri) for m in inbox.messages if isinstance(m, SipRequest)] == [
        ("INVITE", "sip:a@127.0.0.1"),
        ("OPTIONS", "sip:a@127.0.0.1"),
        ("OPTIONS", "sip:b@127.0.0.1"),
    ]  # neither the refused INVITE nor its ACK reached the parser
    assert [s.transport for s in asked] == ["tcp", "tcp"]
    assert transport.gate.counters == {"refused": 1, "acks": 1}
    assert transport.counters == {}


async def test_the_user_agent_counts_an_invite_admitted_by_the_gate_once() -> None:
    by_source: list[Address] = []
    by_core: list[SipRequest] = []

    def admit_source(source: Address, now: float) -> tuple[str, int] | None:
        by_source.append(source)
        return None

    def admit(request: SipRequest, source: Address, now: float) -> tuple[str, int] | None:
        by_core.append(request)
        return None

    incoming: list[object] = []

    def on_incoming(call: object) -> None:
        incoming.append(call)

    ua = UserAgent(
        listeners=[ListenerConfig("udp", "127.0.0.1", 0), ListenerConfig("tcp", "127.0.0.1", 0)],
        on_incoming=on_incoming,  # type: ignore[arg-type]
        admit=admit,
        admit_source=admit_source,
    )
    async with ua:
        async with RawPeer("udp", "127.0.0.1", ua.local("udp").port) as peer:
            peer.send(request("INVITE", "sip:a@127.0.0.1", port=peer.port, body=SDP))
            await until(lambda: len(incoming) == 1)
        async with RawPeer("tcp", "127.0.0.1", ua.local("tcp").port) as peer:
            peer.send(
                request("INVITE", "sip:a@127.0.0.1", port=peer.port, transport="tcp", body=SDP)
            )
            await until(lambda: len(incoming) == 2)
        # Admitted once each, by the gate before parsing (UDP datagram, framed TCP message);
        # the core does not count them again.
        assert len(by_source) == 2 and by_core == []
        assert [s.transport for s in by_source] == ["udp", "tcp"]


async def test_a_refusal_is_counted_as_the_core_counted_it() -> None:
    ua = UserAgent(
        listeners=[ListenerConfig("udp", "127.0.0.1", 0)],
        admit=lambda request, source, now: ("busy", 5),
        admit_source=lambda source, now: ("busy", 5),
    )
    async with ua, RawPeer("udp", "127.0.0.1", ua.local("udp").port) as peer:
        peer.send(request("INVITE", "sip:a@127.0.0.1", port=peer.port, body=SDP))
        refused = await peer.response()
        assert isinstance(refused, SipResponse) and refused.status == 503
        await asyncio.sleep(0)
        assert ua.counters["core.refused"] == 1 and ua.counters["triage.refused"] == 1
