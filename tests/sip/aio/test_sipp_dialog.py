"""Dialog maintenance against a real peer: SIPp (Debian ``sip-tester``) and our UserAgent on
loopback. Session timers (RFC 4028) both ways: the 422/Min-SE exchange, Session-Expires in our
answers, our refreshes with UPDATE or re-INVITE, and the BYE when a refresh fails or the peer
stops refreshing.

The SIPp scenarios (tests/sip/sipp/) check the headers of what we send; the tests check what our
side reported. Real intervals are short (3-4 s; RFC 4028's 90 s floor is a configuration, and
the tests lower it) so each test takes a few seconds, not minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from callxml.sip.aio.transport import ListenerConfig
from callxml.sip.aio.useragent import UasCall, UserAgent
from callxml.sip.message import SipRequest
from callxml.sip.session_timer import SessionTimerConfig
from callxml.sip.timers import TimerConfig
from support.sipp import Sipp
from support.waiting import until

pytestmark = pytest.mark.peer

TIMEOUT = 15.0
SDP = (
    b"v=0\r\no=callxml 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 7000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
TIMERS = TimerConfig(t1=0.1, t2=1.0, t4=1.0)
#: 4 s sessions (refreshed every 2 s) and a 2 s floor: far below RFC 4028's 90 s, for the clock.
SHORT = SessionTimerConfig(expires=4, min_se=2)


@asynccontextmanager
async def agent(
    on_incoming: Callable[[UasCall], Any] | None = None,
    session_timer: SessionTimerConfig | None = SHORT,
) -> AsyncIterator[UserAgent]:
    ua = UserAgent(
        listeners=[ListenerConfig("udp"), ListenerConfig("tcp")],
        on_incoming=on_incoming,
        timers=TIMERS,
        session_timer=session_timer,
    )
    await ua.start()
    try:
        yield ua
    finally:
        await ua.close()


class Answering:
    """Answers every call and keeps it, with the re-INVITEs/UPDATEs each one saw."""

    def __init__(self) -> None:
        self.calls: list[UasCall] = []
        self.refreshes: list[SipRequest] = []

    def __call__(self, call: UasCall) -> None:
        self.calls.append(call)
        call.on_reinvite = self.refreshes.append
        call.accept(SDP)


async def test_sipp_gets_422_then_refreshes_with_update(sipp: Sipp) -> None:
    """RFC 4028 §9 with the RFC's own floor: 60 s is too short (422, Min-SE: 90), 90 s is taken
    with SIPp as refresher (Require: timer), and its UPDATE refresh gets the interval back."""
    answering = Answering()
    async with agent(answering, session_timer=SessionTimerConfig()) as ua:
        peer = await sipp.uac(
            "uac_session_timer_422", "udp", f"127.0.0.1:{ua.local('udp').port}", "bob"
        )
        outcome = await peer.result()
        assert len(answering.calls) == 1  # the 422'd INVITE never became a call
        assert await answering.calls[0].wait_ended(TIMEOUT) == "BYE"
    assert outcome.returncode == 0, outcome.explain()
    assert [r.method for r in answering.refreshes] == ["UPDATE"]


async def test_we_hang_up_when_the_refresher_goes_silent(sipp: Sipp) -> None:
    answering = Answering()
    async with agent(answering) as ua:
        peer = await sipp.uac(
            "uac_session_expires", "udp", f"127.0.0.1:{ua.local('udp').port}", "bob"
        )
        await until(lambda: answering.calls, TIMEOUT)
        call = answering.calls[0]
        started = asyncio.get_running_loop().time()
        reason = await call.wait_ended(TIMEOUT)
        waited = asyncio.get_running_loop().time() - started
        outcome = await peer.result()
    assert reason == "session expired"
    assert waited >= 1.5  # §10: 3 - min(32, 3/3) = 2 s after our 200, not at once
    assert outcome.returncode == 0, outcome.explain()


@pytest.mark.parametrize(
    ("scenario", "method"),
    [("uas_session_timer_update", "UPDATE"), ("uas_session_timer_reinvite", "INVITE")],
)
async def test_we_refresh_as_the_refresher(sipp: Sipp, scenario: str, method: str) -> None:
    """SIPp makes us the refresher of 4 s sessions: we refresh every 2 s, with UPDATE when the
    peer allows it and with a re-INVITE of our SDP when it does not."""
    peer = await sipp.uas(scenario, "udp")
    async with agent() as ua:
        call = ua.invite(f"sip:service@127.0.0.1:{peer.port}", sdp=SDP)
        answered: list[str] = []
        call.on_reoffer_answered = lambda sdp, how: answered.append(how)
        result = await call.result(TIMEOUT)
        assert result.answered, result
        wanted = 2 if method == "UPDATE" else 1
        await until(lambda: len(answered) >= wanted, TIMEOUT, what=f"{wanted} refreshes")
        assert set(answered) == {method}
        call.bye()
        outcome = await peer.result()
    assert outcome.returncode == 0, outcome.explain()


async def test_a_refresh_answered_481_ends_the_call_with_bye(sipp: Sipp) -> None:
    peer = await sipp.uas("uas_refresh_refused", "udp")
    async with agent() as ua:
        call = ua.invite(f"sip:service@127.0.0.1:{peer.port}", sdp=SDP)
        assert (await call.result(TIMEOUT)).answered
        assert await call.wait_ended(TIMEOUT) == "481"
        outcome = await peer.result()  # SIPp saw our BYE
    assert outcome.returncode == 0, outcome.explain()


# -- reliable provisional responses (RFC 3262) ---------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_we_prack_a_reliable_183(sipp: Sipp, transport: str) -> None:
    peer = await sipp.uas("uas_100rel", transport)
    async with agent() as ua:
        suffix = "" if transport == "udp" else ";transport=tcp"
        call = ua.invite(f"sip:service@127.0.0.1:{peer.port}{suffix}", sdp=SDP)
        result = await call.result(TIMEOUT)
        assert result.answered, result
        [progress] = call.provisional  # the reliable 183, reported once
        assert progress.status == 183 and b"m=audio 6000" in progress.body
        call.bye()
        outcome = await peer.result()
    assert outcome.returncode == 0, outcome.explain()


async def test_our_reliable_183_is_retransmitted_until_pracked(sipp: Sipp) -> None:
    """SIPp requires 100rel and waits 600 ms before its PRACK: our 183 (T1 = 100 ms here) is
    retransmitted meanwhile, and our 200, asked for at once, waits for the PRACK."""

    def answer(call: UasCall) -> None:
        call.ring(183, sdp=SDP)
        call.accept(SDP)  # held back by the core until the 183 is PRACKed

    async with agent(answer) as ua:
        peer = await sipp.uac("uac_100rel", "udp", f"127.0.0.1:{ua.local('udp').port}", "bob")
        outcome = await peer.result()
    assert outcome.returncode == 0, outcome.explain()
    messages, retransmissions = outcome.message_counts("<----------", "183")
    assert messages == 1 and retransmissions >= 2, outcome.explain()
