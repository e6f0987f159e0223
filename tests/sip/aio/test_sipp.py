"""Real peer: SIPp (Debian ``sip-tester``) against our UserAgent on loopback, UDP and TCP.

Scenarios are in tests/sip/sipp/. SIPp runs with ``-timeout 20s -timeout_error`` and every
await here has its own bound, so a broken stack fails the test instead of hanging CI.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from callxml.sip.aio.transport import ListenerConfig
from callxml.sip.aio.useragent import UasCall, UserAgent
from callxml.sip.auth import Credentials
from callxml.sip.timers import TimerConfig
from support.sipp import Sipp

pytestmark = pytest.mark.peer

TIMEOUT = 15.0
OFFER = b"v=0\r\no=callxml 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
ANSWER = OFFER
# T1 = 100 ms so a dropped INVITE is retransmitted quickly; Timer B is still 6.4 s.
TIMERS = TimerConfig(t1=0.1, t2=1.0, t4=1.0)
TRANSPORTS = ["udp", "tcp"]


@asynccontextmanager
async def agent(
    on_incoming: Callable[[UasCall], Any] | None = None,
) -> AsyncIterator[UserAgent]:
    ua = UserAgent(
        listeners=[ListenerConfig("udp"), ListenerConfig("tcp")],
        on_incoming=on_incoming,
        timers=TIMERS,
    )
    await ua.start()
    try:
        yield ua
    finally:
        await ua.close()


def target(port: int, transport: str) -> str:
    return f"sip:service@127.0.0.1:{port}" + ("" if transport == "udp" else ";transport=tcp")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_our_uac_calls_sipp_uas(sipp: Sipp, transport: str) -> None:
    peer = await sipp.uas("uas_answer", transport)
    async with agent() as ua:
        call = ua.invite(target(peer.port, transport), sdp=OFFER)
        result = await call.result(TIMEOUT)
        assert result.answered, result
        assert [r.status for r in call.provisional] == [180]  # 100 is hop-by-hop only
        assert result.response is not None and b"m=audio 6000 RTP/AVP 0" in result.response.body
        await asyncio.sleep(0.05)  # a moment of "talk"; no timer of ours depends on it
        call.bye()
        outcome = await peer.result()
    assert outcome.returncode == 0, outcome.explain()
    assert outcome.counter("SuccessfulCall") == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_our_uac_answers_a_401_challenge(sipp: Sipp, transport: str) -> None:
    peer = await sipp.uas("uas_auth", transport)
    async with agent() as ua:
        call = ua.invite(
            target(peer.port, transport), sdp=OFFER, credentials=Credentials("alice", "s3cret")
        )
        result = await call.result(TIMEOUT)
        assert result.answered, result
        call.bye()
        outcome = await peer.result()
    assert outcome.returncode == 0, outcome.explain()
    assert outcome.counter("SuccessfulCall") == 1


async def test_sipp_refuses_wrong_digest_password(sipp: Sipp) -> None:
    peer = await sipp.uas("uas_auth", "udp")
    async with agent() as ua:
        call = ua.invite(
            target(peer.port, "udp"), sdp=OFFER, credentials=Credentials("alice", "wrong")
        )
        result = await call.result(TIMEOUT)
        assert result.status == 403
        outcome = await peer.result()
    assert outcome.returncode != 0  # SIPp's verifyauth said no: the scenario fails
    assert outcome.counter("FailedCall") == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_our_uac_gets_486_busy(sipp: Sipp, transport: str) -> None:
    peer = await sipp.uas("uas_busy", transport)
    async with agent() as ua:
        call = ua.invite(target(peer.port, transport), sdp=OFFER)
        result = await call.result(TIMEOUT)
        assert (result.status, result.reason) == (486, "Busy Here")
        outcome = await peer.result()  # SIPp needs our ACK for the 486 to succeed
    assert outcome.returncode == 0, outcome.explain()
    assert outcome.counter("SuccessfulCall") == 1


async def test_udp_invite_is_retransmitted_when_sipp_drops_it(sipp: Sipp) -> None:
    peer = await sipp.uas("uas_drop_first_invite", "udp")
    async with agent() as ua:
        call = ua.invite(target(peer.port, "udp"), sdp=OFFER)
        result = await call.result(TIMEOUT)
        assert result.answered, result
        call.bye()
        outcome = await peer.result()
    assert outcome.returncode == 0, outcome.explain()
    # SIPp sat on the INVITE for 450 ms: with T1 = 100 ms, Timer A fired at 100, 300 ms
    # (and maybe 700 ms under load), so SIPp saw at least two retransmissions (§17.1.1.2).
    messages, retransmissions = outcome.message_counts("---------->", "INVITE")
    assert messages == 1
    assert retransmissions >= 2, outcome.explain()


@pytest.mark.parametrize("transport", ["tcp"])
async def test_no_retransmission_over_tcp(sipp: Sipp, transport: str) -> None:
    peer = await sipp.uas("uas_drop_first_invite", transport)
    async with agent() as ua:
        call = ua.invite(target(peer.port, transport), sdp=OFFER)
        assert (await call.result(TIMEOUT)).answered
        call.bye()
        outcome = await peer.result()
    assert outcome.returncode == 0, outcome.explain()
    assert outcome.message_counts("---------->", "INVITE") == (1, 0)  # reliable: §17.1.1.2


class Recorder:
    def __init__(self, accept: bool) -> None:
        self.accept = accept
        self.calls: list[UasCall] = []

    def __call__(self, call: UasCall) -> None:
        self.calls.append(call)
        call.ring()
        if self.accept:
            call.accept(ANSWER)
        else:
            call.reject(488, warning="secure media required")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sipp_uac_calls_our_uas(sipp: Sipp, transport: str) -> None:
    recorder = Recorder(accept=True)
    async with agent(recorder) as ua:
        here = f"127.0.0.1:{ua.local(transport).port}"
        peer = await sipp.uac("uac_call", transport, here, "bob")
        outcome = await peer.result()
        assert len(recorder.calls) == 1
        inbound = recorder.calls[0]
        assert await inbound.wait_ended(TIMEOUT) == "BYE"
    assert outcome.returncode == 0, outcome.explain()
    assert outcome.counter("SuccessfulCall") == 1
    assert inbound.transport == transport
    assert (inbound.peer.host, inbound.peer.port) == ("127.0.0.1", peer.port)
    assert inbound.request.uri.startswith("sip:bob@") and b"m=audio 6000" in inbound.sdp


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sipp_uac_is_rejected_with_a_warning(sipp: Sipp, transport: str) -> None:
    recorder = Recorder(accept=False)
    async with agent(recorder) as ua:
        here = f"127.0.0.1:{ua.local(transport).port}"
        peer = await sipp.uac("uac_rejected", transport, here, "bob")
        outcome = await peer.result()
    assert outcome.returncode == 0, outcome.explain()  # SIPp checked the 488 and its Warning
    assert outcome.counter("SuccessfulCall") == 1
    assert len(recorder.calls) == 1
