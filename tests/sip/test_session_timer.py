"""Session timers (RFC 4028): the header values, the UAS decision, the per-call state machine
and two user agent cores keeping (and ending) calls on a fake clock — a 30-minute call costs
nothing and no test sleeps."""

from __future__ import annotations

import pytest

from callxml.errors import ConfigError, RemoteProtocolError
from callxml.sip.events import Address, CallEnded, CallReinvited, Event, InviteReceived
from callxml.sip.message import SipMessage, SipRequest, SipResponse
from callxml.sip.session_timer import (
    DEFAULT_SESSION_TIMER,
    TIMER_TABLE,
    Refresher,
    SessionTimer,
    SessionTimerConfig,
    TimerAction,
    TimerState,
    parse_min_se,
    parse_session_expires,
    uas_negotiate,
)
from callxml.sip.ua import UserAgentConfig, UserAgentCore

from .helpers import Network, request
from .test_ua import A_TCP, A_UDP, B_TCP, B_UDP, SDP_A, SDP_B, TARGET, Phone

# -- header values and the UAS decision ---------------------------------------------------------


def test_parse_session_expires_and_min_se() -> None:
    assert parse_session_expires("1800") == (1800, None)
    assert parse_session_expires("90;refresher=uac") == (90, Refresher.UAC)
    assert parse_session_expires(" 4000 ; refresher=UAS ;x=1") == (4000, Refresher.UAS)
    assert parse_session_expires("999999999") == (86400, None)  # bounded to a day
    for bad in ("", "abc", "-5", "0", "90;refresher=both", "90;;"):
        with pytest.raises(RemoteProtocolError):
            parse_session_expires(bad)
    assert parse_min_se("90") == 90 and parse_min_se("120;x") == 120
    with pytest.raises(RemoteProtocolError):
        parse_min_se("soon")
    with pytest.raises(ConfigError):
        SessionTimerConfig(expires=60, min_se=90)


def _invite(*headers: tuple[str, str]) -> SipRequest:
    invite = request("INVITE")
    for name, value in headers:
        invite.headers.add(name, value)
    return invite


def test_uas_decision_follows_section_9() -> None:
    config = SessionTimerConfig(expires=1800, min_se=90)
    too_small = uas_negotiate(_invite(("Session-Expires", "60")), config)
    assert too_small.too_small == 90  # 422 with Min-SE: 90
    asked = uas_negotiate(_invite(("Supported", "timer"), ("Session-Expires", "600")), config)
    assert (asked.interval, asked.refresher, asked.we_refresh) == (600, Refresher.UAC, False)
    assert asked.response_headers() == [
        ("Session-Expires", "600;refresher=uac"),
        ("Require", "timer"),
    ]
    named = uas_negotiate(_invite(("Session-Expires", "600;refresher=uas")), config)
    assert named.we_refresh and named.response_headers() == [
        ("Session-Expires", "600;refresher=uas")
    ]
    # No Session-Expires: we insert ours (at least their Min-SE); a UAC without the extension
    # never learns it refreshes, so we do.
    plain = uas_negotiate(_invite(("Min-SE", "3600")), config)
    assert (plain.interval, plain.we_refresh) == (3600, True)
    willing = uas_negotiate(_invite(("Supported", "timer, 100rel")), config)
    assert (willing.interval, willing.refresher) == (1800, Refresher.UAC)


def test_timer_table_and_deadlines() -> None:
    assert TIMER_TABLE[(TimerState.RUNNING, next(iter(TIMER_TABLE))[1])]  # a readable table
    ours = SessionTimer(1800, True, now=0.0)
    assert ours.next_deadline() == 900.0  # §10: half the interval
    assert ours.fire(899.0) == ()
    assert ours.fire(900.0) == (TimerAction.SEND_REFRESH,)
    assert ours.state is TimerState.REFRESHING and ours.next_deadline() == 1800.0
    assert ours.refreshed(1800, True, 910.0) == (TimerAction.RESTART,)
    assert ours.next_deadline() == 910.0 + 900
    theirs = SessionTimer(90, False, now=0.0)
    assert theirs.next_deadline() == 60.0  # 90 - min(32, 90/3)
    assert theirs.fire(60.0) == (TimerAction.SEND_BYE,)
    assert theirs.state is TimerState.EXPIRED and theirs.next_deadline() is None
    long = SessionTimer(7200, False, now=0.0)
    assert long.next_deadline() == 7200 - 32
    failing = SessionTimer(1800, True, now=0.0)
    failing.fire(900.0)
    assert failing.refresh_failed(500, 901.0) == (TimerAction.SCHEDULE_RETRY,)
    assert failing.next_deadline() == pytest.approx(901.0 + (1800 - 901) / 2)
    fatal = SessionTimer(1800, True, now=0.0)
    fatal.fire(900.0)
    assert fatal.refresh_failed(481, 901.0) == (TimerAction.SEND_BYE,)


# -- two cores on a fake clock ------------------------------------------------------------------


def pair(
    a_timer: SessionTimerConfig | None = DEFAULT_SESSION_TIMER,
    b_timer: SessionTimerConfig | None = DEFAULT_SESSION_TIMER,
    *,
    tcp: bool = False,
) -> tuple[Network, Phone, Phone]:
    net = Network()
    a = Phone(
        UserAgentCore(
            UserAgentConfig(local={"udp": A_UDP, "tcp": A_TCP}, user="alice", session_timer=a_timer)
        )
    )
    b = Phone(
        UserAgentCore(
            UserAgentConfig(local={"udp": B_UDP, "tcp": B_TCP}, user="bob", session_timer=b_timer)
        )
    )
    net.attach(A_TCP if tcp else A_UDP, a)
    net.attach(B_TCP if tcp else B_UDP, b)

    def bob_app(event: Event, now: float) -> None:
        if isinstance(event, InviteReceived):
            b.ua.answer(event.call, SDP_B, now)

    b.on_event = bob_app
    return net, a, b


def dial(net: Network, a: Phone) -> str:
    c = a.ua.invite(TARGET, net.now, sdp=SDP_A)
    net._collect()
    return c.id


def sent(net: Network, label: str, source: Address | None = None) -> list[SipMessage]:
    return [s.message for s in net.log if s.label == label and (source in (None, s.source))]


def test_uac_refreshes_with_update_every_half_interval_for_a_long_call() -> None:
    net, a, b = pair()
    cid = dial(net, a)
    net.run(5)
    [invite] = sent(net, "INVITE")
    assert "timer" in invite.headers.get_all("Supported")
    assert invite.headers.get("Session-Expires") == "1800"
    [ok] = sent(net, "200/INVITE")
    assert ok.headers.get("Session-Expires") == "1800;refresher=uac"
    assert "timer" in ok.headers.get_all("Require")  # §9: A must know it refreshes
    net.run(3 * 3600 + 60)  # a three-hour call
    updates = [s for s in net.log if s.label == "UPDATE"]
    assert len(updates) == 12 and all(s.source == A_UDP for s in updates)  # every 15 minutes
    assert [round(s.at) for s in updates[:3]] == [900, 1800, 2700]
    assert all(s.message.body == b"" for s in updates)  # no renegotiation, just a refresh
    assert updates[0].message.headers.get("Session-Expires") == "1800;refresher=uac"
    assert len(b.seen(CallReinvited)) == 12
    assert not a.seen(CallEnded) and not b.seen(CallEnded)
    assert a.ua.calls[cid].session_timer is not None


def test_a_caller_without_timers_is_refreshed_by_us() -> None:
    net, a, _b = pair(a_timer=None)
    dial(net, a)
    net.run(5)
    [invite] = sent(net, "INVITE")
    assert "Session-Expires" not in invite.headers
    assert "timer" not in invite.headers.get_all("Supported")
    [ok] = sent(net, "200/INVITE")
    assert ok.headers.get("Session-Expires") == "1800;refresher=uas"
    assert "Require" not in ok.headers  # A does not know the extension
    net.run(2000)
    assert [s.source for s in net.log if s.label == "UPDATE"] == [B_UDP, B_UDP]


def test_422_is_retried_with_the_min_se_it_names() -> None:
    net, a, b = pair(
        a_timer=SessionTimerConfig(expires=90, min_se=90),
        b_timer=SessionTimerConfig(expires=1800, min_se=1800),
    )
    cid = dial(net, a)
    net.run(5)
    assert net.labels(B_UDP)[:2] == ["100/INVITE", "422/INVITE"]
    [refused] = sent(net, "422/INVITE")
    assert refused.headers.get("Min-SE") == "1800"
    first, second = sent(net, "INVITE")
    assert isinstance(first, SipRequest) and isinstance(second, SipRequest)
    assert (second.cseq.seq, second.call_id) == (2, first.call_id)
    assert second.from_.tag == first.from_.tag and second.vias[0].branch != first.vias[0].branch
    assert second.headers.get("Session-Expires") == "1800"
    assert second.headers.get("Min-SE") == "1800"
    assert a.ua.calls[cid].session_timer is not None
    assert a.ua.calls[cid].session_timer.interval == 1800  # type: ignore[union-attr]
    assert len(b.seen(InviteReceived)) == 1  # the 422 was no call


def test_refresh_lost_ends_the_call_with_bye() -> None:
    config = SessionTimerConfig(expires=90, min_se=90)
    net, a, _b = pair(a_timer=config, b_timer=config)
    dial(net, a)
    net.run(5)
    net.drop = lambda message, source, destination: source == B_UDP  # B is gone
    net.run(200)
    [ended] = a.seen(CallEnded)
    assert ended.reason == "408"  # Timer F on our UPDATE: §10 says BYE
    updates = [s.at for s in net.log if s.label == "UPDATE"]
    assert updates[0] == pytest.approx(45.0, abs=0.1)
    bye = [s for s in net.log if s.label == "BYE"]
    assert bye and bye[0].source == A_UDP and bye[0].at < 90  # before the session expired


def test_no_refresh_from_the_refresher_means_bye_before_expiry() -> None:
    config = SessionTimerConfig(expires=90, min_se=90)
    net, a, b = pair(a_timer=config, b_timer=config)
    dial(net, a)
    net.run(5)
    net.drop = lambda message, source, destination: message_label(message) == "UPDATE"
    net.run(200)
    [ended_b] = b.seen(CallEnded)
    assert ended_b.reason == "session expired" and not ended_b.by_peer
    [bye] = [s for s in net.log if s.label == "BYE"]
    # §10: the side that does not refresh sends BYE min(32, interval/3) before the end.
    assert bye.source == B_UDP and bye.at == pytest.approx(0.02 + 90 - 30, abs=0.05)
    [ended_a] = a.seen(CallEnded)
    assert ended_a.by_peer


def message_label(message: SipMessage) -> str:
    return message.method if isinstance(message, SipRequest) else str(message.status)


def test_a_peer_without_update_is_refreshed_with_a_reinvite_of_our_sdp() -> None:
    net, a, b = pair()
    cid = dial(net, a)
    net.run(5)
    a.ua.calls[cid].peer_allows = frozenset({"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"})
    net.run(1000)
    reinvites = [s.message for s in net.log if s.label == "INVITE"][1:]
    assert len(reinvites) == 1 and reinvites[0].body == SDP_A  # unchanged SDP, same version
    assert reinvites[0].headers.get("Session-Expires") == "1800;refresher=uac"
    assert "UPDATE" not in net.labels(A_UDP)
    assert net.labels(A_UDP)[-1] == "ACK"
    assert not a.seen(CallEnded) and not b.seen(CallEnded)


def test_a_refresh_asking_too_little_gets_422_and_is_retried() -> None:
    net, a, _b = pair(a_timer=SessionTimerConfig(expires=1800, min_se=30))
    cid = dial(net, a)
    net.run(5)
    timer = a.ua.calls[cid].session_timer
    assert timer is not None
    timer.interval = 60  # as if a proxy had negotiated 60 s with A
    a.ua._schedule_call(a.ua.calls[cid])  # (the core reschedules whenever it moves a deadline)
    net.run(40)  # the refresh at 30 s asks for 60 s: B (Min-SE 90) says 422
    assert "422/UPDATE" in net.labels(B_UDP)
    refreshes = sent(net, "UPDATE", A_UDP)
    assert [m.headers.get("Session-Expires") for m in refreshes] == [
        "60;refresher=uac",
        "90;refresher=uac",
    ]
    assert timer.interval == 90 and not a.seen(CallEnded)


def test_malformed_session_expires_is_a_400_and_require_timer_without_timers_a_420() -> None:
    _net, _a, b = pair()
    bad = _invite(("Session-Expires", "soon"))
    b.receive(bad, A_UDP, 0.0)
    statuses = [m.status for m, _ in b.ua.outgoing() if isinstance(m, SipResponse)]
    assert statuses[-1] == 400
    off = Phone(UserAgentCore(UserAgentConfig(local={"udp": B_UDP}, session_timer=None)))
    off.receive(_invite(("Require", "timer")), A_UDP, 0.0)
    [refused] = [m for m, _ in off.ua.outgoing() if isinstance(m, SipResponse) and m.status > 100]
    assert refused.status == 420 and refused.headers.get("Unsupported") == "timer"
    ok = Phone(UserAgentCore(UserAgentConfig(local={"udp": B_UDP})))
    ok.receive(_invite(("Require", "timer"), ("Session-Expires", "1800")), A_UDP, 0.0)
    assert ok.seen(InviteReceived)  # with timers on, Require: timer is fine
