"""Reliable provisional responses (RFC 3262): two user agent cores over the lossy in-memory
network with a fake clock — RSeq/RAck, PRACK in the early dialog, retransmission until the PRACK,
one unacknowledged response at a time, a 2xx that waits for the PRACK of a 183 with SDP, and
what happens when PRACKs are lost or never come."""

from __future__ import annotations

import pytest

from callxml.errors import RemoteProtocolError
from callxml.sip.events import (
    CallCancelled,
    CallEnded,
    CallFailed,
    CallProgress,
    Event,
    InviteReceived,
)
from callxml.sip.message import SipRequest, SipResponse, make_response
from callxml.sip.reliable import ProvisionalOrder, Rack, parse_rack, parse_rseq, reliable_rseq

from .helpers import Network
from .test_ua import A_UDP, B_UDP, SDP_A, SDP_B, TARGET, Phone, make_pair

REQUIRE = [("Require", "100rel")]


def test_header_values() -> None:
    assert parse_rseq("1") == 1 and parse_rseq(" 4294967295 ") == 2**32 - 1
    for bad in ("0", "-1", "x", "4294967296", ""):
        with pytest.raises(RemoteProtocolError):
            parse_rseq(bad)
    assert parse_rack("776656 1 INVITE") == Rack(776656, 1, "INVITE")
    for bad in ("1 INVITE", "1 2 3 4", "0 1 INVITE", "1 x INVITE", "1 1 IN\\VITE"):
        with pytest.raises(RemoteProtocolError):
            parse_rack(bad)
    order = ProvisionalOrder()
    assert order.accept(10) and not order.accept(10) and not order.accept(12)
    assert order.accept(11)


def ringing(b: Phone, *, answer: bool = True, statuses: tuple[int, ...] = (183,)) -> None:
    """B's application: ring with each status (a 183 carries early-media SDP), then answer."""

    def app(event: Event, now: float) -> None:
        if isinstance(event, InviteReceived):
            for status in statuses:
                early = SDP_B if status == 183 else b""
                b.ua.ring(event.call, now, status=status, sdp=early)
            if answer:
                b.ua.answer(event.call, SDP_B, now)

    b.on_event = app


def start(net: Network, a: Phone, *, require: bool = True) -> str:
    call = a.ua.invite(TARGET, net.now, sdp=SDP_A, headers=REQUIRE if require else ())
    net._collect()
    return call.id


def responses(net: Network, label: str) -> list[SipResponse]:
    return [s.message for s in net.log if s.label == label and isinstance(s.message, SipResponse)]


def requests(net: Network, label: str) -> list[SipRequest]:
    return [s.message for s in net.log if s.label == label and isinstance(s.message, SipRequest)]


def test_reliable_183_is_pracked_and_the_2xx_waits_for_the_prack() -> None:
    net, a, b = make_pair(answer=False)
    ringing(b)
    cid = start(net, a)
    net.run(5)
    [invite] = requests(net, "INVITE")
    assert "100rel" in invite.headers.get_all("Supported")
    [progress] = responses(net, "183/INVITE")
    assert "100rel" in progress.headers.get_all("Require")
    rseq = reliable_rseq(progress)
    assert rseq is not None and 1 <= rseq < 2**31
    [prack] = requests(net, "PRACK")
    assert prack.headers.get("RAck") == f"{rseq} 1 INVITE"
    assert prack.cseq.seq == 2 and prack.to.tag == progress.to.tag
    # §3: the 200 to the INVITE left only after the PRACK of the 183 that carried SDP.
    assert net.labels(B_UDP) == ["100/INVITE", "183/INVITE", "200/PRACK", "200/INVITE"]
    assert net.labels(A_UDP) == ["INVITE", "PRACK", "ACK"]
    assert [e.response.status for e in a.seen(CallProgress)] == [183]
    a.ua.bye(cid, net.now)
    net._collect()
    net.run(5)
    [bye] = requests(net, "BYE")
    assert bye.cseq.seq == 3  # the dialog's CSeq carried on after the PRACK
    assert b.seen(CallEnded)


def test_a_lost_prack_is_recovered_by_both_retransmissions() -> None:
    net, a, b = make_pair(answer=False)
    ringing(b)
    net.drop_first("PRACK")
    start(net, a)
    net.run(10)
    pracks = requests(net, "PRACK")
    assert len(pracks) >= 2 and len({p.vias[0].branch for p in pracks}) == 1  # one transaction
    assert len(responses(net, "183/INVITE")) >= 2  # retransmitted until the PRACK (T1...)
    assert [e.response.status for e in a.seen(CallProgress)] == [183]  # reported once
    assert "200/INVITE" in net.labels(B_UDP) and "ACK" in net.labels(A_UDP)


def test_no_prack_at_all_ends_the_call_with_500_after_64_t1() -> None:
    net, a, b = make_pair(answer=False)
    ringing(b)
    net.drop = lambda message, source, destination: (
        isinstance(message, SipRequest) and message.method == "PRACK"
    )
    start(net, a)
    net.run(60)
    sent = [s for s in net.log if s.label == "183/INVITE"]
    # §3: from T1 doubling (0.5, 1, 2... s apart), for 64*T1 = 32 s
    assert [round(s.at - sent[0].at, 2) for s in sent] == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    [failed] = a.seen(CallFailed)
    assert failed.status == 500
    [ended] = b.seen(CallEnded)
    assert ended.reason == "no PRACK"
    assert "200/INVITE" not in net.labels(B_UDP)


def test_one_unacknowledged_provisional_at_a_time() -> None:
    net, a, b = make_pair(answer=False)
    ringing(b, statuses=(180, 183))
    start(net, a)
    net.run(5)
    ringing_180, progress_183 = responses(net, "180/INVITE")[0], responses(net, "183/INVITE")[0]
    first, second = reliable_rseq(ringing_180), reliable_rseq(progress_183)
    assert first is not None and second == first + 1
    assert [p.headers.get("RAck") for p in requests(net, "PRACK")] == [
        f"{first} 1 INVITE",
        f"{second} 1 INVITE",
    ]
    order = net.labels(B_UDP)
    assert order.index("200/PRACK") < order.index("183/INVITE")  # the 183 waited its turn
    assert [e.response.status for e in a.seen(CallProgress)] == [180, 183]


def test_a_reliable_180_without_sdp_does_not_hold_up_the_answer() -> None:
    net, a, b = make_pair(answer=False)
    ringing(b, statuses=(180,))
    start(net, a)
    net.run(0.015)  # the 180 and the 200 left together; the PRACK is still on its way
    assert net.labels(B_UDP)[:3] == ["100/INVITE", "180/INVITE", "200/INVITE"]
    net.run(5)
    # The PRACK for the 180 the 200 overtook still matches it: 200, not a 481 that would
    # make the caller tear the new dialog down (RFC 3261 §12.2.1.2).
    assert "200/PRACK" in net.labels(B_UDP) and "481/PRACK" not in net.labels(B_UDP)
    assert not a.seen(CallEnded) and not b.seen(CallEnded)


def test_without_require_provisionals_are_not_reliable() -> None:
    net, a, b = make_pair(answer=False)
    ringing(b)
    start(net, a, require=False)
    net.run(5)
    [progress] = responses(net, "183/INVITE")
    assert "RSeq" not in progress.headers and not requests(net, "PRACK")


def test_our_uac_drops_retransmitted_and_out_of_order_reliable_provisionals() -> None:
    net = Network()
    a = make_pair()[1]
    call = a.ua.invite(TARGET, 0.0, sdp=SDP_A)
    invite = call.invite
    a.ua.outgoing()

    def reliable(rseq: int) -> SipResponse:
        headers = [("Require", "100rel"), ("RSeq", str(rseq)), ("Contact", f"<{TARGET}>")]
        return make_response(invite, 183, to_tag="bob-1", headers=headers, body=SDP_B)

    for rseq in (7, 7, 9, 8):
        a.receive(reliable(rseq), B_UDP, 0.1)
    pracks = [m for m, _ in a.ua.outgoing() if isinstance(m, SipRequest) and m.method == "PRACK"]
    assert [p.headers.get("RAck") for p in pracks] == ["7 1 INVITE", "8 1 INVITE"]
    assert len(a.seen(CallProgress)) == 2  # the repeat and the gap were not passed up
    del net


def _reliable_call(net: Network, a: Phone, b: Phone) -> tuple[str, SipResponse]:
    ringing(b, answer=False)
    start(net, a)
    net.drop = lambda message, source, destination: (
        isinstance(message, SipRequest) and message.method == "PRACK"
    )
    net.run(0.05)
    [progress] = responses(net, "183/INVITE")[:1]
    [incoming] = b.seen(InviteReceived)
    return incoming.call, progress


def test_prack_that_matches_nothing_is_481_and_a_bad_rack_400() -> None:
    net, a, b = make_pair(answer=False)
    _, progress = _reliable_call(net, a, b)
    dialog = next(iter(a.ua.calls.values())).early[progress.to.tag or ""][0]
    via = "SIP/2.0/UDP 127.0.0.1:5060;rport"
    for rack, status in (("99 1 INVITE", 481), ("1 1", 400)):
        prack = dialog.create_request("PRACK", via=via, headers=(("RAck", rack),))
        b.receive(prack, A_UDP, net.now)
        [reply] = [m for m, _ in b.ua.outgoing() if isinstance(m, SipResponse) and m.status > 100]
        assert reply.status == status


def test_bye_in_the_early_dialog_ends_the_call_like_a_cancel() -> None:
    net, a, b = make_pair(answer=False)
    bid, progress = _reliable_call(net, a, b)
    dialog = next(iter(a.ua.calls.values())).early[progress.to.tag or ""][0]
    bye = dialog.create_request("BYE", via="SIP/2.0/UDP 127.0.0.1:5060;rport")
    b.receive(bye, A_UDP, net.now)
    statuses = sorted(m.status for m, _ in b.ua.outgoing() if isinstance(m, SipResponse))
    assert 200 in statuses and 487 in statuses
    assert b.seen(CallCancelled) and b.ua.calls[bid].state.value == "ended"
