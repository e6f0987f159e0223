"""The user agent core end to end: two UAs over the lossy in-memory network (no sockets, so
drops and retransmissions are deterministic).

Every message crosses the wire as bytes; the clock is fake, so Timer B (32 s) or the 2xx
retransmission give-up (64*T1) cost nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TypeVar

import pytest

from callxml.errors import LocalProtocolError
from callxml.sip.auth import Credentials, DigestServer
from callxml.sip.events import (
    Address,
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallFailed,
    CallProgress,
    CallReinvited,
    DialogConfirmed,
    Event,
    InviteReceived,
    ReofferAnswered,
)
from callxml.sip.message import SipMessage, SipRequest, SipResponse
from callxml.sip.ua import (
    AuthenticatorSelector,
    CallState,
    UserAgentConfig,
    UserAgentCore,
    answer_hold,
)

from .helpers import Network, describe, request

A_UDP = Address("udp", "127.0.0.1", 5060)
B_UDP = Address("udp", "127.0.0.1", 5070)
A_TCP = Address("tcp", "127.0.0.1", 5062)
B_TCP = Address("tcp", "127.0.0.1", 5072)

SDP_A = (
    b"v=0\r\no=alice 10 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n"
)
SDP_B = (
    b"v=0\r\no=bob 20 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n"
)
TARGET = "sip:bob@127.0.0.1:5070"
E = TypeVar("E")


class Phone:
    """A UA plus what the application saw; ``on_event`` plays the application."""

    def __init__(self, ua: UserAgentCore) -> None:
        self.ua = ua
        self.log: list[Event] = []
        self.on_event: Callable[[Event, float], None] | None = None

    def receive(self, message: SipMessage, source: Address, now: float) -> None:
        self.ua.receive(message, source, now)
        self.drain(now)

    def handle_timer(self, now: float) -> None:
        self.ua.handle_timer(now)
        self.drain(now)

    def outgoing(self) -> list[tuple[SipMessage, Address]]:
        return self.ua.outgoing()

    def next_timer(self) -> float | None:
        return self.ua.next_timer()

    def drain(self, now: float) -> None:
        while events := self.ua.events():
            for event in events:
                self.log.append(event)
                if self.on_event is not None:
                    self.on_event(event, now)

    def seen(self, kind: type[E]) -> list[E]:
        return [e for e in self.log if isinstance(e, kind)]


def make_pair(
    *,
    tcp: bool = False,
    authenticator: DigestServer | AuthenticatorSelector | None = None,
    answer: bool = True,
) -> tuple[Network, Phone, Phone]:
    net = Network()
    a = Phone(UserAgentCore(UserAgentConfig(local={"udp": A_UDP, "tcp": A_TCP}, user="alice")))
    b = Phone(
        UserAgentCore(
            UserAgentConfig(
                local={"udp": B_UDP, "tcp": B_TCP}, user="bob", authenticator=authenticator
            )
        )
    )
    net.attach(A_TCP if tcp else A_UDP, a)
    net.attach(B_TCP if tcp else B_UDP, b)
    if answer:

        def bob_app(event: Event, now: float) -> None:
            if isinstance(event, InviteReceived):
                b.ua.ring(event.call, now)
                b.ua.answer(event.call, SDP_B, now)

        b.on_event = bob_app
    return net, a, b


def call(net: Network, a: Phone, target: str = TARGET, **kw: object) -> str:
    c = a.ua.invite(target, net.now, sdp=SDP_A, **kw)  # type: ignore[arg-type]
    a.drain(net.now)
    net._collect()
    return c.id


def test_basic_call_and_bye() -> None:
    net, a, b = make_pair()
    cid = call(net, a)
    net.run(5)
    assert net.labels(A_UDP) == ["INVITE", "ACK"]
    assert net.labels(B_UDP) == ["100/INVITE", "180/INVITE", "200/INVITE"]
    [answered] = a.seen(CallAnswered)
    assert isinstance(answered, CallAnswered) and answered.response.body == SDP_B
    assert [e.response.status for e in a.seen(CallProgress)] == [180]
    [incoming] = b.seen(InviteReceived)
    assert isinstance(incoming, InviteReceived) and incoming.request.body == SDP_A
    assert len(b.seen(DialogConfirmed)) == 1
    bcall = b.ua.calls[incoming.call]
    assert a.ua.calls[cid].state is CallState.CONFIRMED and bcall.state is CallState.CONFIRMED
    # Dialog state agrees on both sides (§12).
    da, db = a.ua.calls[cid].dialog, bcall.dialog
    assert da is not None and db is not None
    assert (da.call_id, da.local_tag, da.remote_tag) == (db.call_id, db.remote_tag, db.local_tag)
    assert da.remote_target == "sip:bob@127.0.0.1:5070" and db.remote_target.startswith(
        "sip:alice@127.0.0.1:5060"
    )
    a.ua.bye(cid, net.now)
    net._collect()
    net.run(5)
    assert net.labels(A_UDP)[-1] == "BYE" and net.labels(B_UDP)[-1] == "200/BYE"
    [ended] = b.seen(CallEnded)
    assert isinstance(ended, CallEnded) and ended.by_peer
    bye = next(s.message for s in net.log if s.label == "BYE")
    assert isinstance(bye, SipRequest) and bye.cseq.seq == 2  # local CSeq incremented


def test_uas_hangs_up_with_bye() -> None:
    net, a, b = make_pair()
    cid = call(net, a)
    net.run(5)
    [incoming] = b.seen(InviteReceived)
    b.ua.bye(incoming.call, net.now)
    net._collect()
    net.run(5)
    [ended] = a.seen(CallEnded)
    assert isinstance(ended, CallEnded) and ended.by_peer
    assert a.ua.calls[cid].state is CallState.ENDED
    bye = next(s.message for s in net.log if s.label == "BYE")
    assert isinstance(bye, SipRequest)
    assert bye.uri.startswith("sip:alice@127.0.0.1:5060")  # the remote target from Contact


def test_lost_invite_is_retransmitted() -> None:
    net, a, _b = make_pair()
    net.drop_first("INVITE")
    call(net, a)
    net.run(5)
    assert net.labels(A_UDP)[:2] == ["INVITE", "INVITE"]
    assert [s.at for s in net.log if s.label == "INVITE"] == [0.0, 0.5]  # Timer A = T1
    assert len(a.seen(CallAnswered)) == 1


def test_lost_200_and_ack_are_recovered() -> None:
    net, a, b = make_pair()
    lost = {"200/INVITE": 1, "ACK": 1}

    def rule(message: SipMessage, source: Address, destination: Address) -> bool:
        label = describe(message)
        if lost.get(label, 0) > 0:
            lost[label] -= 1
            return True
        return False

    net.drop = rule
    call(net, a)
    net.run(10)
    # B retransmits the 2xx (§13.3.1.4) until an ACK gets through; A ACKs each one.
    assert net.labels(B_UDP).count("200/INVITE") == 3
    assert net.labels(A_UDP).count("ACK") == 2
    assert len(a.seen(CallAnswered)) == 1  # retransmitted 2xx absorbed
    assert len(b.seen(DialogConfirmed)) == 1
    assert not b.seen(CallEnded)


def test_no_ack_ends_the_call_with_bye() -> None:
    net, a, b = make_pair()
    net.drop = lambda m, s, d: describe(m) == "ACK"
    call(net, a)
    net.run(60)
    times = [s.at for s in net.log if s.label == "200/INVITE" and s.source == B_UDP]
    gaps = [round(y - x, 6) for x, y in itertools.pairwise(times)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0] and max(gaps) == 4.0  # T1 doubling, capped at T2
    [ended] = b.seen(CallEnded)
    assert isinstance(ended, CallEnded) and not ended.by_peer and ended.reason == "no ACK"
    assert "BYE" in net.labels(B_UDP)
    assert a.seen(CallEnded)  # A got the BYE


def _hang_up_on_answer(b: Phone) -> None:
    """B answers and hangs up at once, before any ACK can have arrived (a flow that is
    ``<Hangup/>`` right after the answer)."""

    def bob_app(event: Event, now: float) -> None:
        if isinstance(event, InviteReceived):
            b.ua.answer(event.call, SDP_B, now)
            b.ua.hangup(event.call, now)
            b.ua.hangup(event.call, now)  # twice: still one BYE

    b.on_event = bob_app


def test_a_callee_hanging_up_before_the_ack_sends_its_bye_after_it() -> None:
    """§15: the callee MUST NOT send BYE before the ACK of its 2xx. The call ends for B's
    application at once; the BYE leaves when the ACK arrives, so it can never overtake the 2xx
    (as it could through a proxy relaying them in two processes)."""
    net, a, b = make_pair(answer=False)
    _hang_up_on_answer(b)
    cid = call(net, a)
    net.run(5)
    [incoming] = b.seen(InviteReceived)
    [ended] = b.seen(CallEnded)
    assert not ended.by_peer and ended.reason == "local BYE"
    labels = net.labels(B_UDP)
    assert labels.count("BYE") == 1 and labels.index("200/INVITE") < labels.index("BYE")
    sent = [(s.label, s.at) for s in net.log if s.label in ("ACK", "BYE")]
    assert [label for label, _ in sent] == ["ACK", "BYE"]
    assert len(a.seen(CallAnswered)) == 1 and a.ua.calls[cid].state is CallState.ENDED
    [a_ended] = a.seen(CallEnded)
    assert a_ended.by_peer
    assert b.ua.calls[incoming.call].state is CallState.ENDED
    assert not b.seen(DialogConfirmed)  # the application had hung up already
    assert len(b.seen(CallEnded)) == 1


def test_a_callee_hanging_up_before_an_ack_that_never_comes_sends_bye_at_the_give_up() -> None:
    net, a, b = make_pair(answer=False)
    _hang_up_on_answer(b)
    net.drop = lambda m, s, d: describe(m) == "ACK"
    call(net, a)
    net.run(60)
    labels = net.labels(B_UDP)
    assert labels.count("BYE") == 1 and labels.count("200/INVITE") > 3
    bye_at = next(s.at for s in net.log if s.label == "BYE")
    assert bye_at >= 64 * 0.5  # §13.3.1.4: after the 2xx retransmissions gave up
    assert a.seen(CallEnded)


def test_reject_is_acked_inside_the_transaction() -> None:
    net, a, b = make_pair(answer=False)
    b.on_event = lambda e, now: (
        b.ua.reject(e.call, 486, now) if isinstance(e, InviteReceived) else None
    )
    net.drop_first("ACK")  # B's Timer G retransmits the 486, A ACKs again
    cid = call(net, a)
    net.run(60)
    [failed] = a.seen(CallFailed)
    assert isinstance(failed, CallFailed) and failed.status == 486
    assert net.labels(B_UDP).count("486/INVITE") == 2
    acks = [s.message for s in net.log if s.label == "ACK"]
    assert len(acks) == 2
    invite = a.ua.calls.get(cid)
    assert invite is None or invite.state is CallState.ENDED
    first_invite = next(s.message for s in net.log if s.label == "INVITE")
    assert acks[0].vias[0].branch == first_invite.vias[0].branch  # same transaction


def test_cancel_pending_invite() -> None:
    net, a, b = make_pair(answer=False)
    b.on_event = lambda e, now: b.ua.ring(e.call, now) if isinstance(e, InviteReceived) else None
    cid = call(net, a)
    net.run(1)
    a.ua.cancel(cid, net.now)
    net._collect()
    net.run(60)
    assert "CANCEL" in net.labels(A_UDP)
    assert "200/CANCEL" in net.labels(B_UDP) and "487/INVITE" in net.labels(B_UDP)
    [failed] = a.seen(CallFailed)
    assert isinstance(failed, CallFailed) and failed.status == 487
    assert len(b.seen(CallCancelled)) == 1
    assert net.labels(A_UDP)[-1] == "ACK"  # the 487 is ACKed
    cancel = next(s.message for s in net.log if s.label == "CANCEL")
    invite = next(s.message for s in net.log if s.label == "INVITE")
    assert cancel.vias[0].branch == invite.vias[0].branch  # §9.1
    assert cancel.cseq.seq == invite.cseq.seq


def test_cancel_waits_for_a_provisional() -> None:
    net, a, _b = make_pair(answer=False)
    net.drop_first("100/INVITE")
    cid = call(net, a)
    a.ua.cancel(cid, 0.0)
    net._collect()
    net.run(0.3)
    assert "CANCEL" not in net.labels(A_UDP)  # §9.1: not before a provisional response
    net.run(60)
    assert "CANCEL" in net.labels(A_UDP)
    assert [e.status for e in a.seen(CallFailed)] == [487]


def test_unreachable_peer_times_out_with_timer_b() -> None:
    net = Network()
    a = Phone(UserAgentCore(UserAgentConfig(local={"udp": A_UDP})))
    net.attach(A_UDP, a)
    call(net, a)
    net.run(100)
    assert net.labels(A_UDP) == ["INVITE"] * 7  # 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5
    [failed] = a.seen(CallFailed)
    assert isinstance(failed, CallFailed) and failed.status == 408
    assert net.now == pytest.approx(64.0)  # the ended call is forgotten 64*T1 after B
    assert a.ua.calls == {} and a.ua.next_timer() is None


def test_call_over_tcp_never_retransmits() -> None:
    net, a, _b = make_pair(tcp=True)
    net.drop_first("INVITE")  # a lossy "reliable" link: nothing retransmits the INVITE
    call(net, a, "sip:bob@127.0.0.1:5072;transport=tcp")
    net.run(100)
    assert net.labels(A_TCP) == ["INVITE"]
    assert [e.status for e in a.seen(CallFailed)] == [408]
    net2, a2, _b2 = make_pair(tcp=True)
    call(net2, a2, "sip:bob@127.0.0.1:5072;transport=tcp")
    net2.run(5)
    assert len(a2.seen(CallAnswered)) == 1
    invite = next(s.message for s in net2.log if s.label == "INVITE")
    assert invite.vias[0].transport == "TCP"
    assert "transport=tcp" in (invite.headers.get("Contact") or "")


# --- authentication -----------------------------------------------------------------------

SECRET = b"test-secret-0123456789"


def test_digest_challenge_answered() -> None:
    server = DigestServer("example.test", SECRET, {"alice": "s3cret"}.get)
    net, a, b = make_pair(authenticator=server)
    call(net, a, credentials=Credentials("alice", "s3cret"))
    net.run(5)
    assert net.labels(A_UDP) == ["INVITE", "ACK", "INVITE", "ACK"]
    assert net.labels(B_UDP)[:2] == ["100/INVITE", "401/INVITE"]
    assert len(a.seen(CallAnswered)) == 1 and len(b.seen(InviteReceived)) == 1
    invites = [s.message for s in net.log if s.label == "INVITE"]
    assert invites[1].cseq.seq == invites[0].cseq.seq + 1  # §22.2: CSeq incremented
    assert invites[1].call_id == invites[0].call_id
    assert invites[1].vias[0].branch != invites[0].vias[0].branch
    assert "algorithm=SHA-256" in (invites[1].headers.get("Authorization") or "")


def test_wrong_password_fails_without_looping() -> None:
    server = DigestServer("example.test", SECRET, {"alice": "s3cret"}.get)
    net, a, b = make_pair(authenticator=server)
    call(net, a, credentials=Credentials("alice", "wrong"))
    net.run(60)
    assert net.labels(A_UDP).count("INVITE") == 2
    # The retry's credentials are refused outright: 403, not another challenge (§22.3).
    assert [e.status for e in a.seen(CallFailed)] == [403]
    assert [x for x in net.labels(B_UDP) if not x.startswith("100")] == [
        "401/INVITE",
        "403/INVITE",
    ]
    assert not b.seen(InviteReceived)


def test_no_credentials_fails_on_401() -> None:
    server = DigestServer("example.test", SECRET, {"alice": "s3cret"}.get)
    net, a, _b = make_pair(authenticator=server)
    call(net, a)
    net.run(60)
    assert [e.status for e in a.seen(CallFailed)] == [401]


def per_domain_servers() -> dict[str, DigestServer]:
    return {
        "a.test": DigestServer("a.test", SECRET, {"alice": "pw-a"}.get),
        "b.test": DigestServer("b.test", SECRET, {"alice": "pw-b"}.get),
    }


def by_host(servers: dict[str, DigestServer]) -> AuthenticatorSelector:
    def select(request: SipRequest, source: Address) -> DigestServer | None:
        host = request.uri.split("@", 1)[-1].split(";")[0].split(":")[0]
        return servers.get(host)

    return select


@pytest.mark.parametrize(("domain", "password"), [("a.test", "pw-a"), ("b.test", "pw-b")])
def test_selector_challenges_with_the_realm_of_the_request(domain: str, password: str) -> None:
    net, a, b = make_pair(authenticator=by_host(per_domain_servers()))
    call(net, a, f"sip:bob@{domain}", credentials=Credentials("alice", password), destination=B_UDP)
    net.run(5)
    challenge = next(s.message for s in net.log if s.label == "401/INVITE")
    assert f'realm="{domain}"' in (challenge.headers.get("WWW-Authenticate") or "")
    assert len(a.seen(CallAnswered)) == 1
    [incoming] = b.seen(InviteReceived)
    assert b.ua.calls[incoming.call].auth_user == "alice"


def test_selector_password_of_another_domain_is_refused() -> None:
    net, a, b = make_pair(authenticator=by_host(per_domain_servers()))
    call(net, a, "sip:bob@a.test", credentials=Credentials("alice", "pw-b"), destination=B_UDP)
    net.run(60)
    assert [e.status for e in a.seen(CallFailed)] == [403]
    assert not b.seen(InviteReceived)


def test_selector_none_lets_the_request_through() -> None:
    net, a, b = make_pair(authenticator=by_host(per_domain_servers()))
    call(net, a, "sip:bob@open.test", destination=B_UDP)
    net.run(5)
    assert net.labels(A_UDP) == ["INVITE", "ACK"]  # never challenged
    assert "401/INVITE" not in net.labels(B_UDP)
    [incoming] = b.seen(InviteReceived)
    assert b.ua.calls[incoming.call].auth_user is None


def test_selector_sees_the_source_address() -> None:
    server = DigestServer("example.test", SECRET, {"alice": "s3cret"}.get)
    sources: list[Address] = []

    def trust_a(request: SipRequest, source: Address) -> DigestServer | None:
        sources.append(source)
        return None if source == A_UDP else server

    net, a, _b = make_pair(authenticator=trust_a)
    call(net, a)
    net.run(5)
    assert sources == [A_UDP]
    assert len(a.seen(CallAnswered)) == 1 and "401/INVITE" not in net.labels(B_UDP)


def test_stale_nonce_is_rechallenged_with_stale_and_bounded() -> None:
    # A nonce that is already expired when the retry arrives: the password is right, so the
    # answer is a fresh challenge with stale=true (RFC 7616 §3.3); the client retries a bounded
    # number of times, then the call fails.
    server = DigestServer("example.test", SECRET, {"alice": "s3cret"}.get, nonce_lifetime=0.001)
    net, a, b = make_pair(authenticator=server)
    call(net, a, credentials=Credentials("alice", "s3cret"))
    net.run(60)
    challenges = [s.message for s in net.log if s.label == "401/INVITE"]
    assert len(challenges) == 4  # the first, then one per retry (MAX_AUTH_ATTEMPTS = 3)
    assert "stale" not in (challenges[0].headers.get("WWW-Authenticate") or "")
    assert all("stale=TRUE" in (c.headers.get("WWW-Authenticate") or "") for c in challenges[1:])
    assert [e.status for e in a.seen(CallFailed)] == [401]
    assert not b.seen(InviteReceived)


def _invite_with(authorization: str | None, branch: str) -> SipRequest:
    invite = request("INVITE", uri="sip:bob@example.test", branch=branch, body=SDP_A)
    invite.headers.add("Content-Type", "application/sdp")
    if authorization is not None:
        invite.headers.add("Authorization", authorization)
    return invite


def _final_status(ua: UserAgentCore) -> SipResponse:
    finals = [m for m, _ in ua.outgoing() if isinstance(m, SipResponse) and m.status >= 200]
    assert len(finals) == 1
    return finals[0]


def _answer(server: DigestServer, now: float, password: str = "s3cret") -> str:
    from callxml.sip.auth import DigestClient

    [challenge, *_] = server.challenges(now)
    creds = Credentials("alice", password)
    return str(DigestClient().authorize(challenge, creds, "INVITE", "sip:bob@example.test"))


@pytest.mark.parametrize(
    ("authorization", "status", "stale"),
    [
        ("foreign-nonce", 401, False),  # a nonce we did not sign (another secret, a restart)
        ("other-realm", 401, False),  # credentials for another realm only (§22.3)
        ("garbage", 401, False),  # not parseable Digest: ignored, challenged
        ("wrong-password", 403, False),
        ("expired", 401, True),
        ("good", None, False),
    ],
)
def test_server_verdicts(authorization: str, status: int | None, stale: bool) -> None:
    server = DigestServer("example.test", SECRET, {"alice": "s3cret"}.get)
    ua = UserAgentCore(UserAgentConfig(local={"udp": B_UDP}, authenticator=server))
    values = {
        "foreign-nonce": _answer(DigestServer("example.test", b"another-secret-16b", str), 1000.0),
        "other-realm": _answer(DigestServer("other.test", SECRET, str), 1000.0),
        "garbage": 'Digest username="alice", nonce=',
        "wrong-password": _answer(server, 1000.0, "nope"),
        "expired": _answer(server, 0.0),
        "good": _answer(server, 1000.0),
    }
    ua.receive(_invite_with(values[authorization], "z9hG4bK-v1"), A_UDP, 1000.5)
    if status is None:
        [incoming] = [e for e in ua.events() if isinstance(e, InviteReceived)]
        assert ua.calls[incoming.call].auth_user == "alice"
        return
    response = _final_status(ua)
    assert response.status == status and not ua.events()
    offered = response.headers.get_all("WWW-Authenticate")
    if status == 401:
        assert offered and all('realm="example.test"' in c for c in offered)
        assert all(("stale=TRUE" in c) == stale for c in offered)
    else:
        assert offered == []


def test_several_authorization_headers_use_ours() -> None:
    server = DigestServer("example.test", SECRET, {"alice": "s3cret"}.get)
    ua = UserAgentCore(UserAgentConfig(local={"udp": B_UDP}, authenticator=server))
    invite = _invite_with(_answer(DigestServer("other.test", SECRET, str), 0.0), "z9hG4bK-v2")
    invite.headers.add("Authorization", _answer(server, 0.0))
    ua.receive(invite, A_UDP, 1.0)
    assert [e for e in ua.events() if isinstance(e, InviteReceived)]


# --- re-INVITE, OPTIONS, errors -------------------------------------------------------------


def test_reinvite_hold_and_unhold() -> None:
    net, a, b = make_pair()
    cid = call(net, a)
    net.run(5)
    hold = SDP_A.replace(b"o=alice 10 1", b"o=alice 10 2").replace(b"sendrecv", b"sendonly")
    a.ua.reinvite(cid, hold, net.now)
    net._collect()
    net.run(5)
    [reinvited] = b.seen(CallReinvited)
    assert isinstance(reinvited, CallReinvited)
    answer = a.ua.calls[cid].remote_sdp
    assert b"a=recvonly" in answer and b"a=sendrecv" not in answer
    assert b"o=bob 20 2 " in answer  # version bumped: the SDP changed (RFC 3264 §8)
    reinvites = [s.message for s in net.log if s.label == "INVITE"][1:]
    assert reinvites[0].to.tag is not None and reinvites[0].cseq.seq == 2
    assert net.labels(A_UDP)[-1] == "ACK"
    unhold = hold.replace(b"o=alice 10 2", b"o=alice 10 3").replace(b"sendonly", b"sendrecv")
    a.ua.reinvite(cid, unhold, net.now)
    net._collect()
    net.run(5)
    assert b"a=sendrecv" in a.ua.calls[cid].remote_sdp
    assert b"o=bob 20 3 " in a.ua.calls[cid].remote_sdp
    assert len(b.seen(CallReinvited)) == 2
    assert not b.seen(CallEnded)  # the re-INVITE 2xx was ACKed, no give-up BYE
    net.run(60)
    assert not b.seen(CallEnded) and not a.seen(CallEnded)


def test_answer_hold_unit() -> None:
    assert answer_hold(b"", SDP_B) == SDP_B
    assert answer_hold(SDP_A, b"") is None
    inactive = answer_hold(SDP_A.replace(b"sendrecv", b"inactive"), SDP_B)
    assert inactive is not None and b"a=inactive" in inactive and b"o=bob 20 2 " in inactive
    same = answer_hold(SDP_A, SDP_B)
    assert same is not None and b"o=bob 20 1 " in same  # unchanged: same version


def _inject(b: Phone, req: SipRequest, now: float = 0.0) -> list[SipResponse]:
    b.receive(req, A_UDP, now)
    return [m for m, _ in b.outgoing() if isinstance(m, SipResponse)]


def test_options_answered_outside_and_inside_dialog() -> None:
    net, a, b = make_pair()
    [ok] = _inject(b, request("OPTIONS"))
    assert ok.status == 200 and "BYE" in ok.headers.get_all("Allow")
    assert ok.headers.get("Accept") == "application/sdp" and ok.to.tag is not None
    cid = call(net, a)
    net.run(5)
    dialog = a.ua.calls[cid].dialog
    assert dialog is not None
    req = dialog.create_request("OPTIONS", via="SIP/2.0/UDP 127.0.0.1:5060")
    [in_dialog] = _inject(b, req, net.now)
    assert in_dialog.status == 200 and in_dialog.to.tag == dialog.remote_tag


def test_unknown_dialog_and_methods() -> None:
    _, _, b = make_pair()
    assert [r.status for r in _inject(b, request("BYE", to_tag="nope"))] == [481]
    assert [r.status for r in _inject(b, request("BYE", branch="z9hG4bK-2"))] == [481]
    [r405] = _inject(b, request("REGISTER", branch="z9hG4bK-3"))
    assert r405.status == 405 and "BYE" in r405.headers.get_all("Allow")
    assert [r.status for r in _inject(b, request("FROB", branch="z9hG4bK-4"))] == [501]
    assert [r.status for r in _inject(b, request("CANCEL", branch="z9hG4bK-5"))] == [481]
    req = request("OPTIONS", branch="z9hG4bK-6")
    req.headers.add("Require", "precondition")  # RFC 3312: an extension we do not support
    [r420] = _inject(b, req)
    assert r420.status == 420 and r420.headers.get("Unsupported") == "precondition"
    tel = request("INVITE", uri="tel:+15551234567", branch="z9hG4bK-7")
    assert [r.status for r in _inject(b, tel)] == [100, 416]


def test_retransmitted_request_absorbed_by_server_transaction() -> None:
    _, _, b = make_pair(answer=False)
    req = request("OPTIONS", branch="z9hG4bK-r")
    [first] = _inject(b, req)
    [again] = _inject(b, req, 0.5)
    assert first.status == again.status == 200
    assert first.to.tag == again.to.tag  # the same response, not a new one


def test_in_dialog_cseq_going_backwards_gets_500() -> None:
    net, a, b = make_pair()
    cid = call(net, a)
    net.run(5)
    dialog = a.ua.calls[cid].dialog
    assert dialog is not None
    req = dialog.create_request("OPTIONS", via="SIP/2.0/UDP 127.0.0.1:5060", cseq=0)
    assert [r.status for r in _inject(b, req, net.now)] == [500]


def test_api_misuse_raises_local_protocol_error() -> None:
    net, a, _b = make_pair()
    cid = call(net, a)
    with pytest.raises(LocalProtocolError):
        a.ua.bye(cid, 0.0)  # not answered yet
    with pytest.raises(LocalProtocolError):
        a.ua.answer(cid, SDP_A, 0.0)  # not an incoming call
    with pytest.raises(LocalProtocolError):
        a.ua.invite("sip:x@y;transport=tls", 0.0)  # no TLS address configured


def test_server_transaction_bound_answers_503_statelessly(monkeypatch: pytest.MonkeyPatch) -> None:
    import callxml.sip.ua as ua_module

    monkeypatch.setattr(ua_module, "MAX_SERVER_TRANSACTIONS", 2)
    _, _, b = make_pair(answer=False)
    statuses = [
        [r.status for r in _inject(b, request("OPTIONS", branch=f"z9hG4bK-o{i}"))] for i in range(3)
    ]
    assert statuses == [[200], [200], [503]]


def test_2xx_crossing_cancel_is_acked_then_hung_up() -> None:
    net, a, b = make_pair()
    cid = call(net, a)
    net.run(0.015)  # B has answered; nothing has reached A yet
    a.ua.cancel(cid, net.now)
    net._collect()
    net.run(60)
    labels_a = net.labels(A_UDP)
    assert labels_a[:4] == ["INVITE", "CANCEL", "ACK", "BYE"]
    assert "487/INVITE" not in net.labels(B_UDP)  # too late to cancel: the 2xx was sent
    assert [e.status for e in a.seen(CallFailed)] == [487]
    assert not a.seen(CallAnswered)
    [ended] = b.seen(CallEnded)
    assert isinstance(ended, CallEnded) and ended.by_peer


def test_reinvite_glare_gets_491_both_ways() -> None:
    net, a, b = make_pair()
    cid = call(net, a)
    net.run(5)
    [incoming] = b.seen(InviteReceived)
    a.ua._random.seed(1)  # §14.1's waits are random: fix them so the steps below are exact
    b.ua._random.seed(1)  # (B waits 0.27 s, A 2.36 s; the bounds below hold for any seed)
    a.ua.reinvite(cid, SDP_A, net.now)
    b.ua.reinvite(incoming.call, SDP_B, net.now)
    net._collect()
    net.run(0.2)
    assert net.labels(A_UDP).count("491/INVITE") == 1
    assert net.labels(B_UDP).count("491/INVITE") == 1
    assert a.ua.calls[cid].reinvite_key is None
    assert b.ua.calls[incoming.call].reinvite_key is None
    # §14.1: B (not the Call-ID's owner) retries within 2 s, A (the owner) after 2.1-4 s, so
    # the retries do not collide again and both modifications go through.
    net.run(10)
    assert net.labels(A_UDP).count("491/INVITE") == 1
    assert net.labels(B_UDP).count("491/INVITE") == 1
    assert len(b.seen(CallReinvited)) == 1 and len(a.seen(CallReinvited)) == 1
    [answered_a] = a.seen(ReofferAnswered)
    [answered_b] = b.seen(ReofferAnswered)
    assert answered_a.method == answered_b.method == "INVITE"
    glare = [s for s in net.log if s.label == "491/INVITE"]
    arrived = max(s.at for s in glare) + net.latency  # when each side learnt of the glare
    reinvites = [s for s in net.log if s.label == "INVITE" and s.message.to.tag]
    retried = reinvites[2:]  # the first two met in glare
    assert [s.source for s in retried] == [B_UDP, A_UDP]
    assert 0.0 <= retried[0].at - arrived <= 2.0 + 1e-9
    assert 2.1 - 1e-9 <= retried[1].at - arrived <= 4.0 + 1e-9


def test_tls_contact_is_sips_only_for_sips_requests() -> None:
    """RFC 3261 §8.1.1.8: a TLS hop for a ``sip:`` URI keeps a ``sip:`` Contact (transport=tls);
    only a ``sips:`` Request-URI gets a ``sips:`` Contact (baresip cannot route to one it did not
    ask for)."""
    tls = Address("tls", "127.0.0.1", 5061)
    core = UserAgentCore(UserAgentConfig(local={"tls": tls}, user="callxml"))
    plain = core.invite("sip:jack@example.com;secure=true", 0.0, destination=tls)
    secure = core.invite("sips:jack@example.com", 0.0, destination=tls)
    contacts = {
        msg.call_id: msg.headers.get("Contact")
        for msg, _ in core.outgoing()
        if isinstance(msg, SipRequest)
    }
    assert contacts[plain.invite.call_id] == "<sip:callxml@127.0.0.1:5061;transport=tls>"
    assert contacts[secure.invite.call_id] == "<sips:callxml@127.0.0.1:5061>"
