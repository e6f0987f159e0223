"""Session modification in the user agent core: re-INVITE (RFC 3261 §14) and UPDATE
(RFC 3311) both ways, answered by a per-call answerer, over the lossy in-memory network with a
fake clock (no sockets, no sleeping).

The answerer is the seam the runtime uses: the core calls it with the peer's offer and our current
SDP, sends what it returns in the 2xx (or refuses with its :class:`OfferRefused`), and tells the
application afterwards (``CallReinvited``); our own offers come back as ``ReofferAnswered`` or
``ReofferFailed``.
"""

from __future__ import annotations

import pytest

from callxml.errors import LocalProtocolError
from callxml.sip.events import (
    CallEnded,
    CallReinvited,
    InviteReceived,
    ReofferAnswered,
    ReofferFailed,
)
from callxml.sip.message import SipRequest, SipResponse
from callxml.sip.ua import OfferRefused

from .helpers import Network
from .test_ua import A_UDP, B_UDP, SDP_A, SDP_B, Phone, call, make_pair

NEW_B = SDP_B.replace(b"o=bob 20 1", b"o=bob 20 2").replace(b"5000", b"5002")
NEW_A = SDP_A.replace(b"o=alice 10 1", b"o=alice 10 2").replace(b"4000", b"4002")


def _established() -> tuple[Network, Phone, Phone, str, str]:
    net, a, b = make_pair()
    cid = call(net, a)
    net.run(5)
    [incoming] = b.seen(InviteReceived)
    return net, a, b, cid, incoming.call


def _sent(net: Network, label: str) -> list[SipRequest | SipResponse]:
    return [s.message for s in net.log if s.label == label]


def _run(net: Network, seconds: float = 5) -> None:
    net._collect()
    net.run(seconds)


def test_peer_update_with_an_offer_is_answered_by_the_call_answerer() -> None:
    net, a, b, cid, bid = _established()
    offers: list[tuple[bytes, bytes]] = []

    def answerer(offer: bytes, current: bytes) -> bytes:
        offers.append((offer, current))
        return NEW_B

    b.ua.set_answerer(bid, answerer)
    a.ua.update(cid, net.now, sdp=NEW_A)
    _run(net)
    assert offers == [(NEW_A, SDP_B)]
    [ok] = _sent(net, "200/UPDATE")
    assert ok.body == NEW_B and ok.headers.get("Contact")  # RFC 3311 §5.2: a target refresh
    [reinvited] = b.seen(CallReinvited)
    assert reinvited.request.method == "UPDATE"
    [answered] = a.seen(ReofferAnswered)
    assert (answered.method, answered.sdp) == ("UPDATE", NEW_B)
    assert a.ua.calls[cid].local_sdp == NEW_A and a.ua.calls[cid].remote_sdp == NEW_B
    assert b.ua.calls[bid].local_sdp == NEW_B and b.ua.calls[bid].remote_sdp == NEW_A
    [update] = _sent(net, "UPDATE")
    assert isinstance(update, SipRequest) and update.headers.get("Contact")
    assert "UPDATE" in update.headers.get_all("Allow")


def test_update_without_a_body_is_a_refresh_answered_without_sdp() -> None:
    net, a, b, cid, bid = _established()

    def answerer(offer: bytes, current: bytes) -> bytes:
        raise AssertionError("a refresh without a body is no offer")

    b.ua.set_answerer(bid, answerer)
    a.ua.update(cid, net.now)
    _run(net)
    [ok] = _sent(net, "200/UPDATE")
    assert ok.body == b""
    [answered] = a.seen(ReofferAnswered)
    assert answered.sdp == b"" and a.ua.calls[cid].local_sdp == SDP_A


def test_an_offer_the_answerer_refuses_gets_488_with_a_warning_and_nothing_changes() -> None:
    net, a, b, cid, bid = _established()

    def refuse(offer: bytes, current: bytes) -> bytes:
        raise OfferRefused("Secure media required: offer is RTP/AVP")

    b.ua.set_answerer(bid, refuse)
    a.ua.reinvite(cid, NEW_A, net.now)
    _run(net)
    [refused] = _sent(net, "488/INVITE")
    assert "Secure media required" in (refused.headers.get("Warning") or "")
    [failed] = a.seen(ReofferFailed)
    assert (failed.status, failed.method) == (488, "INVITE")
    assert a.ua.calls[cid].local_sdp == SDP_A  # RFC 3264 §8: the old session stays
    assert b.ua.calls[bid].remote_sdp == SDP_A and not b.seen(CallReinvited)
    assert not a.seen(CallEnded) and not b.seen(CallEnded)


def test_offerless_reinvite_gets_our_offer_and_the_ack_carries_the_answer() -> None:
    """A peer that refreshes with an offer-less re-INVITE (some carriers do): our 200 offers our
    current SDP (§14.2), and the answer in its ACK is reported to the application."""
    net, a, b, cid, bid = _established()
    calls: list[bytes] = []

    def answerer(offer: bytes, current: bytes) -> bytes:
        calls.append(offer)
        return current  # no offer: we offer what we have

    b.ua.set_answerer(bid, answerer)
    dialog = a.ua.calls[cid].dialog  # A's side of the dialog, to write the peer's requests
    assert dialog is not None
    via = "SIP/2.0/UDP 127.0.0.1:5060;rport"
    reinvite = dialog.create_request("INVITE", via=via, contact="<sip:alice@127.0.0.1:5060>")
    b.receive(reinvite, A_UDP, net.now)
    [ok] = [m for m, _ in b.ua.outgoing() if isinstance(m, SipResponse) and m.status == 200]
    assert ok.body == SDP_B and calls == [b""]
    assert not b.seen(ReofferAnswered)
    ack = dialog.create_ack(reinvite.cseq.seq, via=via, body=NEW_A)
    b.receive(ack, A_UDP, net.now + 0.01)
    [answered] = b.seen(ReofferAnswered)
    assert (answered.method, answered.sdp) == ("INVITE", NEW_A)
    assert b.ua.calls[bid].remote_sdp == NEW_A


def test_we_never_send_an_offerless_reinvite() -> None:
    net, a, _b, cid, _bid = _established()
    with pytest.raises(LocalProtocolError, match="carries an offer"):
        a.ua.reinvite(cid, b"", net.now)


def test_our_update_answered_481_ends_the_call_with_bye() -> None:
    net, a, b, cid, bid = _established()
    b.ua.calls.pop(bid)  # B forgot the dialog: it answers 481 (§12.2.2)
    b.ua._dialogs.clear()
    a.ua.update(cid, net.now, sdp=NEW_A)
    _run(net)
    assert "481/UPDATE" in net.labels(B_UDP)
    [ended] = a.seen(CallEnded)
    assert ended.reason == "481" and net.labels(A_UDP)[-1] == "BYE"
    assert not a.seen(ReofferFailed)


def test_our_reinvite_that_times_out_ends_the_call() -> None:
    net, a, _b, cid, _bid = _established()
    net.drop = lambda message, source, destination: source == B_UDP  # B has gone
    a.ua.reinvite(cid, NEW_A, net.now)
    _run(net, 60)
    [ended] = a.seen(CallEnded)
    assert ended.reason == "408"  # §14.1: no response at all ends the dialog
    assert net.labels(A_UDP)[-1] == "BYE"


def test_update_refused_by_a_peer_without_update_is_a_failure_not_a_hangup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, a, b, cid, _bid = _established()
    with monkeypatch.context() as patch:  # B answers 405, as an RFC 3261-only peer would
        patch.setattr(b.ua, "_on_update", lambda call, txn, req, now: b.ua._reply(txn, 405, now))
        a.ua.update(cid, net.now)
        _run(net)
    [failed] = a.seen(ReofferFailed)
    assert (failed.status, failed.method) == (405, "UPDATE")
    assert not a.seen(CallEnded)
    a.ua.update(cid, net.now)  # the call is still usable
    _run(net)
    assert len(a.seen(ReofferAnswered)) == 1


def test_update_glare_is_491_and_both_offers_get_through_after_the_waits() -> None:
    net, a, b, cid, bid = _established()
    a.ua.update(cid, net.now, sdp=NEW_A)
    b.ua.update(bid, net.now, sdp=NEW_B)
    _run(net, 10)
    assert net.labels(A_UDP).count("491/UPDATE") == 1
    assert net.labels(B_UDP).count("491/UPDATE") == 1
    assert [e.method for e in a.seen(ReofferAnswered)] == ["UPDATE"]
    assert [e.method for e in b.seen(ReofferAnswered)] == ["UPDATE"]
    assert a.ua.calls[cid].local_sdp == NEW_A and b.ua.calls[bid].local_sdp == NEW_B


def test_a_second_offer_while_one_is_pending_is_refused_locally() -> None:
    net, a, _b, cid, _bid = _established()
    a.ua.update(cid, net.now, sdp=NEW_A)
    with pytest.raises(LocalProtocolError, match="pending"):  # one at a time, RFC 3311 §5.1
        a.ua.reinvite(cid, NEW_A, net.now)
