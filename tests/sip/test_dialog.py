"""Dialogs (RFC 3261 §12): creation on both sides, route sets, CSeq, in-dialog requests."""

from __future__ import annotations

import pytest

from callxml.errors import LocalProtocolError, RemoteProtocolError
from callxml.sip.dialog import Dialog, DialogState
from callxml.sip.events import Address
from callxml.sip.message import SipRequest, SipResponse, make_response, parse_message
from callxml.sip.target import next_hop

from .helpers import request

VIA = "SIP/2.0/UDP 127.0.0.1:5060;rport"


def invite_with_record_route() -> SipRequest:
    req = request("INVITE")
    req.headers.add("Record-Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
    return req


def ok_for(req: SipRequest, contact: str = "<sip:bob@192.0.2.4:5070>") -> SipResponse:
    resp = make_response(req, 200, to_tag="bob-tag")
    for value in req.headers.fields("Record-Route"):
        resp.headers.add("Record-Route", value)
    resp.headers.add("Contact", contact)
    return resp


def test_uac_dialog_reverses_record_route_and_targets_contact() -> None:
    req = invite_with_record_route()
    d = Dialog.for_uac(req, ok_for(req))
    assert d.state is DialogState.CONFIRMED
    assert (d.call_id, d.local_tag, d.remote_tag) == ("call-1@127.0.0.1", "alice-tag", "bob-tag")
    assert d.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]  # §12.1.2
    assert d.remote_target == "sip:bob@192.0.2.4:5070"
    assert d.local_seq == 1 and d.remote_seq is None
    assert d.next_hop == "sip:p2.example.com;lr"
    assert d.destination() == Address("udp", "p2.example.com", 5060, "p2.example.com")


def test_uas_dialog_keeps_record_route_order() -> None:
    req = invite_with_record_route()
    d = Dialog.for_uas(req, "bob-tag")
    assert d.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]  # §12.1.1
    assert d.remote_target == "sip:alice@127.0.0.1:5060"
    assert (d.local_tag, d.remote_tag, d.remote_seq) == ("bob-tag", "alice-tag", 1)


def test_loose_routing_request() -> None:
    req = invite_with_record_route()
    d = Dialog.for_uac(req, ok_for(req))
    bye = d.create_request("BYE", via=VIA)
    assert bye.uri == "sip:bob@192.0.2.4:5070"  # Request-URI is the remote target
    assert bye.headers.get_all("Route") == d.route_set
    assert (bye.cseq.seq, bye.cseq.method) == (2, "BYE")
    assert bye.from_.tag == "alice-tag" and bye.to.tag == "bob-tag"
    assert bye.vias[0].branch and bye.vias[0].branch.startswith("z9hG4bK")
    # It survives the wire.
    assert bytes(parse_message(bytes(bye))) == bytes(bye)


def test_strict_routing_request() -> None:
    req = request("INVITE")
    req.headers.add("Record-Route", "<sip:strict.example.com>")
    d = Dialog.for_uac(req, ok_for(req))
    bye = d.create_request("BYE", via=VIA)
    # §12.2.1.1: Request-URI = first route; remote target appended as the last Route.
    assert bye.uri == "sip:strict.example.com"
    assert bye.headers.get_all("Route") == ["<sip:bob@192.0.2.4:5070>"]


def test_ack_for_2xx_reuses_invite_cseq_with_new_branch() -> None:
    req = request("INVITE", branch="z9hG4bK-inv")
    d = Dialog.for_uac(req, ok_for(req))
    ack = d.create_ack(1, via=VIA)
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert ack.vias[0].branch != "z9hG4bK-inv"
    assert d.local_seq == 1  # ACK does not consume a sequence number
    with pytest.raises(LocalProtocolError):
        d.create_request("ACK", via=VIA)  # must say which INVITE


def test_remote_cseq_must_not_go_backwards() -> None:
    d = Dialog.for_uas(request("INVITE", cseq=5), "bob-tag")
    assert d.check_remote_seq(request("BYE", cseq=7))
    assert d.remote_seq == 7
    assert not d.check_remote_seq(request("INFO", cseq=6))  # §12.2.2: answer 500
    assert d.check_remote_seq(request("ACK", cseq=5))  # ACK/CANCEL are not counted


def test_target_refresh_and_terminated_dialog() -> None:
    req = request("INVITE")
    d = Dialog.for_uac(req, ok_for(req))
    reinvite = request("INVITE", cseq=2, to_tag="alice-tag")
    reinvite.headers.set("Contact", "<sip:bob@198.51.100.7:5080>")
    d.refresh_target(reinvite)
    assert d.remote_target == "sip:bob@198.51.100.7:5080"
    d.state = DialogState.TERMINATED
    with pytest.raises(LocalProtocolError):
        d.create_request("BYE", via=VIA)


def test_dialog_needs_tags() -> None:
    req = request("INVITE")
    resp = make_response(req, 200)  # no To tag
    with pytest.raises(RemoteProtocolError):
        Dialog.for_uac(req, resp)


def test_sips_dialog_and_next_hop() -> None:
    req = request("INVITE", uri="sips:bob@example.com")
    d = Dialog.for_uac(req, ok_for(req, "<sips:bob@192.0.2.4>"))
    assert d.secure and d.destination().transport == "tls" and d.destination().port == 5061
    assert next_hop("sip:[2001:db8::1]:5070;transport=tcp") == Address(
        "tcp", "2001:db8::1", 5070, "2001:db8::1"
    )
    assert next_hop("sip:x@example.com;maddr=192.0.2.9").host == "192.0.2.9"
