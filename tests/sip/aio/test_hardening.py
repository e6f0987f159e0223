"""The user agent under bad input, over real loopback sockets, each case a defect found by probing
(issue 16): a bad Contact, a Via lying about its transport, RFC 4475 messages answered or lost at
the edges, slow and idle connections, connection limits shared with outbound dialing, and a fault
at each asyncio entry point."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from callxml.sip.aio.resolver import StaticResolver
from callxml.sip.aio.transport import ListenerConfig, TransportLimits
from callxml.sip.aio.useragent import UasCall, UserAgent
from callxml.sip.message import SipResponse
from callxml.sip.timers import TimerConfig
from support.rawsip import SDP, RawPeer, request, tcp_listener
from support.waiting import until

FAST = TimerConfig(t1=0.05, t2=0.4, t4=0.5)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rfc4475"
RESOLVER = StaticResolver({})


@asynccontextmanager
async def agent(
    on_incoming: Callable[[UasCall], Any] | None = None, **options: Any
) -> AsyncIterator[UserAgent]:
    ua = UserAgent(
        listeners=[ListenerConfig("udp"), ListenerConfig("tcp")],
        on_incoming=on_incoming,
        resolver=RESOLVER,
        timers=options.pop("timers", FAST),
        **options,
    )
    await ua.start()
    try:
        yield ua
    finally:
        await ua.close()


class Answering:
    """Answers every call (200 with SDP) and keeps them."""

    def __init__(self) -> None:
        self.calls: list[UasCall] = []

    def __call__(self, call: UasCall) -> None:
        self.calls.append(call)
        call.accept(SDP)


def warning(response: SipResponse) -> str:
    return response.headers.get("Warning") or ""


def fixture(name: str, transport: str, port: int) -> bytes:
    """An RFC 4475 message whose Via points back at our peer socket (never at 192.0.2.x)."""
    data = (FIXTURES / f"{name}.dat").read_bytes()
    return re.sub(
        rb"Via: SIP/2.0/UDP [^;\r]+",
        f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:{port}".encode(),
        data,
    )


# -- defect 1: an unusable Contact ------------------------------------------------------------

BAD_CONTACTS = [
    "<aaaaa:x>",
    f"<sip:{'a' * 300}@example.com>",
    "<sip:@>",
    "<sip:noone@@@example.com>",
    "<sip:bob@example.com;transport=carrier-pigeon;maddr=>",
]


@pytest.mark.parametrize("contact", BAD_CONTACTS)
async def test_an_unusable_contact_is_refused_before_any_dialog(contact: str) -> None:
    answering = Answering()
    async with agent(answering) as ua, RawPeer("udp", "127.0.0.1", ua.local("udp").port) as peer:
        uri = f"sip:bob@127.0.0.1:{ua.local('udp').port}"
        peer.send(request("INVITE", uri, port=peer.port, contact=contact, body=SDP))
        response = await peer.response()
        assert response.status == 400
        assert "Contact" in warning(response)
        assert answering.calls == []
        assert ua._core is not None and ua._core.calls == {}
        assert ua.counters["core.bad_request"] + ua.counters.get("transport.bad_message", 0) == 1


async def test_a_fault_in_one_call_never_stops_the_timers_of_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: a dialog whose target broke at BYE time raised out of the timer callback, the timer
    # was never re-armed, and every retransmission and timeout of every call stopped with it.
    answering = Answering()
    async with agent(answering) as ua, RawPeer("udp", "127.0.0.1", ua.local("udp").port) as peer:
        uri = f"sip:bob@127.0.0.1:{ua.local('udp').port}"
        peer.send(request("INVITE", uri, port=peer.port, body=SDP))
        assert (await peer.response()).status == 200
        call = answering.calls[0]
        assert call.dialog is not None
        call.dialog.remote_target = "aaaaa:x"  # as a bad Contact used to be; we never ACK
        black_hole = await RawPeer("udp", "127.0.0.1", 9).__aenter__()  # never answers
        try:
            outbound = ua.invite(f"sip:nobody@127.0.0.1:{black_hole.port}", sdp=SDP)
            with caplog.at_level(logging.ERROR):
                result = await outbound.result(timeout=64 * FAST.t1 + 10)
        finally:
            await black_hole.__aexit__()
        assert result.status == 408  # Timer B still fired
        assert await call.wait_ended(timeout=5) == "internal error"
        assert ua.counters["faults"] >= 1
        assert sum("SIP core fault" in r.getMessage() for r in caplog.records) == 1


# -- defect 6: responses follow the arrival transport, never the Via's claim ------------------


async def test_a_via_claiming_tcp_on_a_udp_request_is_answered_over_udp() -> None:
    victim = tcp_listener()  # something listening on TCP, where the Via says to answer
    victim_port = victim.getsockname()[1]
    try:
        async with agent() as ua, RawPeer("udp", "127.0.0.1", ua.local("udp").port) as peer:
            data = request("OPTIONS", "sip:x@127.0.0.1", port=peer.port, via_transport="tcp")
            data = data.replace(
                f"127.0.0.1:{peer.port};".encode(), f"127.0.0.1:{victim_port};".encode(), 1
            )
            peer.send(data)
            response = await peer.response()
            assert response.status == 200
            await asyncio.sleep(0.2)
            with pytest.raises(BlockingIOError):
                victim.accept()  # nobody connected to the port the Via named
    finally:
        victim.close()


# -- defect 7: RFC 4475 and input edges -------------------------------------------------------


async def test_inv2543_an_rfc2543_invite_is_taken() -> None:
    answering = Answering()
    async with agent(answering) as ua, RawPeer("udp", "127.0.0.1", ua.local("udp").port) as peer:
        peer.send(fixture("inv2543", "udp", peer.port))
        response = await peer.response()
        assert response.status == 200, warning(response)
        assert len(answering.calls) == 1


@pytest.mark.parametrize("name", ["ltgtruri", "lwsruri"])
async def test_a_malformed_request_uri_over_udp_gets_400(name: str) -> None:
    async with agent() as ua, RawPeer("udp", "127.0.0.1", ua.local("udp").port) as peer:
        peer.send(fixture(name, "udp", peer.port))
        response = await peer.response()
        assert response.status == 400
        assert re.search("Request-URI|request line", warning(response))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_an_oversize_header_is_answered_not_dropped(transport: str) -> None:
    async with agent() as ua, RawPeer(transport, "127.0.0.1", ua.local(transport).port) as peer:
        huge = "X-Padding: " + "a" * 20000
        peer.send(
            request(
                "OPTIONS", "sip:x@127.0.0.1", port=peer.port, transport=transport, headers=[huge]
            )
        )
        response = await peer.response()
        assert response.status in (400, 513)
        assert "too long" in warning(response)


async def test_dblreq_over_tcp_keeps_its_405() -> None:
    async with agent() as ua, RawPeer("tcp", "127.0.0.1", ua.local("tcp").port) as peer:
        peer.send(fixture("dblreq", "tcp", peer.port))
        first = await peer.response()
        second = await peer.response()
        assert (first.status, first.cseq.method) == (405, "REGISTER")
        assert second.cseq.method == "INVITE" and second.status == 400  # no Contact
        await until(lambda: peer.closed, timeout=10)  # then the unframeable stream is closed


async def test_sdp01_an_unacceptable_accept_gets_406() -> None:
    answering = Answering()
    async with agent(answering) as ua, RawPeer("udp", "127.0.0.1", ua.local("udp").port) as peer:
        peer.send(fixture("sdp01", "udp", peer.port))
        response = await peer.response()
        assert response.status == 406
        assert answering.calls == []


# -- defect 4: connections are timed out, and inbound ones cannot lock out dialing ------------

LIMITS = TransportLimits(idle_timeout=0.5, read_timeout=0.5, max_connections=4)


async def test_an_idle_connection_is_closed() -> None:
    async with (
        agent(limits=LIMITS) as ua,
        RawPeer("tcp", "127.0.0.1", ua.local("tcp").port) as peer,
    ):
        await until(lambda: peer.closed, timeout=10)
        assert ua.counters["transport.timed_out"] == 1


async def test_a_slow_or_short_message_is_closed_after_the_read_timeout() -> None:
    async with (
        agent(limits=LIMITS) as ua,
        RawPeer("tcp", "127.0.0.1", ua.local("tcp").port) as peer,
    ):
        data = request(
            "OPTIONS", "sip:x@127.0.0.1", port=peer.port, transport="tcp", body=b"x" * 10
        )
        peer.send(data[:-5])  # a body short of its Content-Length
        for _ in range(8):  # a slowloris keeps sending, one byte at a time: never complete
            if peer.closed:
                break
            peer.send(b"\r")  # (inside the body, which waits for 5 more)
            await asyncio.sleep(0.15)
        await until(lambda: peer.closed, timeout=10)


async def test_idle_inbound_connections_cannot_lock_out_dialing() -> None:
    async with agent(limits=LIMITS) as ua:
        port = ua.local("tcp").port
        peers = [await RawPeer("tcp", "127.0.0.1", port).__aenter__() for _ in range(6)]
        try:
            await until(lambda: ua.counters.get("transport.refused", 0) >= 2, timeout=5)
            callee = tcp_listener()
            try:
                outbound = ua.invite(
                    f"sip:bob@127.0.0.1:{callee.getsockname()[1]};transport=tcp", sdp=SDP
                )
                loop = asyncio.get_running_loop()
                conn, _ = await asyncio.wait_for(loop.sock_accept(callee), 5)  # we did connect
                conn.close()
                outbound.cancel()
            finally:
                callee.close()
        finally:
            for peer in peers:
                await peer.__aexit__()


# -- every asyncio entry point contains a fault ---------------------------------------------


class Boom(Exception):
    """The fault a test injects."""


def fail_once(real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, except that its first call raises :class:`Boom`."""
    calls = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise Boom("injected")
        return real(*args, **kwargs)

    return wrapper


async def options_answered(ua: UserAgent, transport: str) -> None:
    """The agent still answers an OPTIONS over ``transport`` (a fresh socket)."""
    async with RawPeer(transport, "127.0.0.1", ua.local(transport).port) as peer:
        peer.send(request("OPTIONS", "sip:x@127.0.0.1", port=peer.port, transport=transport))
        assert (await peer.response()).status == 200


ENTRY_POINTS = {
    # name: (object path on the started agent, attribute, the transport that reaches it)
    "core.receive (UserAgent._on_message)": ("core", "receive", "udp"),
    "parse (datagram_received)": ("module", "parse_message", "udp"),
    "framing (data_received)": ("layer", "_accept", "tcp"),
    "registration (connection_made)": ("layer", "_register", "tcp"),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
async def test_a_fault_at_a_message_entry_point_is_contained(
    entry: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    where, name, transport = ENTRY_POINTS[entry]
    async with agent() as ua:
        import callxml.sip.aio.transport as module

        owner: Any = {"core": ua._core, "layer": ua._transport, "module": module}[where]
        monkeypatch.setattr(owner, name, fail_once(getattr(owner, name)))
        with caplog.at_level(logging.ERROR):
            async with RawPeer(transport, "127.0.0.1", ua.local(transport).port) as peer:
                peer.send(
                    request("OPTIONS", "sip:x@127.0.0.1", port=peer.port, transport=transport)
                )
                await peer.silence(0.3)  # the injected fault eats this one (or its connection)
            await options_answered(ua, transport)  # ...and the agent carries on
        assert ua.counters["faults"] == 1
        assert sum(r.exc_info is not None and r.exc_info[0] is Boom for r in caplog.records) == 1


async def test_a_fault_in_the_timer_callback_keeps_it_armed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with agent() as ua, RawPeer("udp", "127.0.0.1", 9) as black_hole:
        assert ua._core is not None
        monkeypatch.setattr(ua._core, "handle_timer", fail_once(ua._core.handle_timer))
        with caplog.at_level(logging.ERROR):
            outbound = ua.invite(f"sip:nobody@127.0.0.1:{black_hole.port}", sdp=SDP)
            result = await outbound.result(timeout=64 * FAST.t1 + 10)
        assert result.status == 408  # Timer B fired after the faulty first firing
        assert ua.counters["faults"] == 1


async def test_a_fault_sending_one_message_does_not_silence_the_lane(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with agent() as ua:
        monkeypatch.setattr(ua._transport, "send_response", fail_once(ua._transport.send_response))
        async with RawPeer("udp", "127.0.0.1", ua.local("udp").port) as peer:
            peer.send(request("OPTIONS", "sip:x@127.0.0.1", port=peer.port))
            assert await peer.silence(0.3) == []  # that response was lost to the fault...
            peer.send(request("OPTIONS", "sip:x@127.0.0.1", port=peer.port))
            assert (await peer.response()).status == 200  # ...the next one is not
        assert ua.counters["faults"] == 1


async def test_malformed_requests_leave_no_state() -> None:
    answering = Answering()
    async with agent(answering) as ua, RawPeer("udp", "127.0.0.1", ua.local("udp").port) as peer:
        uri = f"sip:bob@127.0.0.1:{ua.local('udp').port}"
        bad = [
            request("INVITE", uri, port=peer.port, contact=c, body=SDP) for c in BAD_CONTACTS
        ] + [
            request("INVITE", uri, port=peer.port, contact="*", body=SDP),
            request("INVITE", uri, port=peer.port, headers=["Record-Route: <http://x>"]),
            fixture("ltgtruri", "udp", peer.port),
            fixture("lwsruri", "udp", peer.port),
        ]
        for data in bad:
            peer.send(data)
            assert (await peer.response()).status == 400
        assert ua._core is not None
        assert ua._core.calls == {} and ua._core._server == {} and answering.calls == []


async def test_a_peer_that_never_reads_is_dropped_not_buffered_without_bound() -> None:
    # A real peer that stops reading fills the kernel's buffers first (megabytes on loopback);
    # what matters is our side once they are full: asyncio's write buffer must not grow forever.
    from callxml.errors import TransportError
    from callxml.sip.aio.transport import MAX_WRITE_BUFFER, _Stream

    async with agent() as ua:
        stream = _Stream(ua._transport, "tcp")

        class Stalled:
            aborted = False

            def is_closing(self) -> bool:
                return self.aborted

            def get_write_buffer_size(self) -> int:
                return MAX_WRITE_BUFFER + 1

            def write(self, data: bytes) -> None:
                raise AssertionError("nothing more may be queued")

            def abort(self) -> None:
                self.aborted = True

        stalled = Stalled()
        stream.transport = stalled  # type: ignore[assignment]
        with pytest.raises(TransportError, match="does not read"):
            stream.send(b"SIP/2.0 200 OK\r\n\r\n")
        assert stalled.aborted and ua.counters["transport.stalled"] == 1
