"""Triage before the parser (issue 16, overload): classification, priorities, the gate's
stateless refusals on a fake clock, and the rule that matters most — triage only takes a
shortcut for a message the full parser (and the UA's header checks) would have accepted.

Everything here is pure: bytes, an address and ``now`` in, verdicts and bytes out.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callxml.errors import RemoteProtocolError
from callxml.sip import triage
from callxml.sip.events import Address
from callxml.sip.message import BadMessage, SipRequest, SipResponse, parse_message
from callxml.sip.triage import (
    IN_DIALOG,
    MAX_REMEMBERED,
    NEW_CALL,
    OTHER,
    REFUSAL_TAG_PREFIX,
    REMEMBER_SECONDS,
    Gate,
    Triaged,
    Verdict,
    classify,
    priority,
    quick_priority,
)
from callxml.sip.ua import header_problem

FIXTURES = Path(__file__).parent / "fixtures" / "rfc4475"
TORTURE = {path.stem: path.read_bytes() for path in sorted(FIXTURES.glob("*.dat"))}
SOURCE = Address("udp", "192.0.2.7", 5062)
AGENT = "192.0.2.1:5060"
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPECIAL = b'\r\n \t:;,<>"\\%@/=?*[]0123456789\x00\xff\xc3'
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n"


def sipp_invite(
    n: int = 1, *, branch: str | None = None, extra: str = "", to_tag: str | None = None
) -> bytes:
    """An INVITE as SIPp's uac_admitted scenario sends it."""
    to = "<sip:ivr@demo.test>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        "INVITE sip:ivr@demo.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.7:5062;branch={branch or f'z9hG4bK-{n}-1-0'};rport\r\n"
        f'From: "sipp" <sip:sipp@192.0.2.7:5062>;tag={n}SIPpTag001\r\n'
        f"To: {to}\r\n"
        f"Call-ID: {n}-4242@192.0.2.7\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:sipp@192.0.2.7:5062;transport=UDP>\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n"
    )
    return head.encode() + SDP


def in_dialog(method: str, *, tag: str = "abc123", cseq: int = 2) -> bytes:
    return (
        f"{method} sip:sipp@192.0.2.7:5062 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-dlg-7\r\n"
        'From: "sipp" <sip:sipp@192.0.2.7:5062>;tag=1SIPpTag001\r\n'
        f"To: <sip:ivr@demo.test>;tag={tag}\r\n"
        "Call-ID: 1-4242@192.0.2.7\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def response(status: int, method: str = "BYE") -> bytes:
    return (
        f"SIP/2.0 {status} OK\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKours\r\n"
        "From: <sip:ivr@demo.test>;tag=abc123\r\n"
        'To: "sipp" <sip:sipp@192.0.2.7:5062>;tag=1SIPpTag001\r\n'
        "Call-ID: 1-4242@192.0.2.7\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def refuse_all(
    reason: str = "over capacity (max_setups)", retry: int = 7
) -> tuple[Gate, list[tuple[Address, float]]]:
    asked: list[tuple[Address, float]] = []

    def admit(source: Address, now: float) -> tuple[str, int] | None:
        asked.append((source, now))
        return reason, retry

    return Gate(admit, AGENT), asked


def admit_all() -> tuple[Gate, list[tuple[Address, float]]]:
    asked: list[tuple[Address, float]] = []

    def admit(source: Address, now: float) -> tuple[str, int] | None:
        asked.append((source, now))
        return None

    return Gate(admit, AGENT), asked


def parser_accepts(data: bytes) -> SipRequest | SipResponse | None:
    """What the full path would take without a 400: the parser, then for requests the UA's
    header checks. None when either refuses."""
    try:
        message = parse_message(data)
    except BadMessage:
        return None
    if isinstance(message, SipRequest):
        try:
            if header_problem(message) is not None:
                return None
        except RemoteProtocolError:
            return None
    return message


def assert_never_shortcuts_what_the_parser_refuses(data: bytes) -> None:
    """The invariant: a clean request is one the parser takes, with the same values; and what
    triage reads for ordering agrees with the parser whenever the parser takes it."""
    found = classify(data)
    if found is None:
        return
    accepted = parser_accepts(data)
    if found.clean:
        assert isinstance(accepted, SipRequest), data
        assert found.request
        assert accepted.method == found.method
        assert accepted.vias[0].branch == found.branch
        assert accepted.call_id == found.call_id
        assert accepted.to.tag == found.to_tag
        assert accepted.cseq.method == found.method
        assert len(accepted.vias) == len(found.vias)
    if accepted is not None:
        assert isinstance(accepted, SipRequest) == found.request
        if isinstance(accepted, SipRequest):
            assert accepted.method == found.method
        assert accepted.cseq.method == found.method or not found.clean


# -- classification ------------------------------------------------------------------------


def test_a_sipp_invite_is_clean_and_read_right() -> None:
    found = classify(sipp_invite(5))
    assert found == Triaged(
        request=True,
        method="INVITE",
        status=0,
        branch="z9hG4bK-5-1-0",
        call_id="5-4242@192.0.2.7",
        to_tag=None,
        clean=True,
        vias=("SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-5-1-0;rport",),
        from_='"sipp" <sip:sipp@192.0.2.7:5062>;tag=5SIPpTag001',
        to="<sip:ivr@demo.test>",
        cseq="1 INVITE",
    )
    assert_never_shortcuts_what_the_parser_refuses(sipp_invite(5))


def test_compact_forms_are_read() -> None:
    data = (
        b"INVITE sip:ivr@demo.test SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKcompact\r\n"
        b"f: <sip:a@192.0.2.7>;tag=1\r\nt: <sip:ivr@demo.test>\r\ni: c1@192.0.2.7\r\n"
        b"CSeq: 1 INVITE\r\nm: <sip:a@192.0.2.7:5062>\r\nl: 0\r\n\r\n"
    )
    found = classify(data)
    assert found is not None and found.clean and found.call_id == "c1@192.0.2.7"
    assert_never_shortcuts_what_the_parser_refuses(data)


def test_what_triage_leaves_to_the_parser() -> None:
    unclean = {
        "a Route": sipp_invite(extra="Route: <sip:proxy.test;lr>\r\n"),
        "credentials": sipp_invite(extra='Authorization: Digest username="a"\r\n'),
        "folding": sipp_invite(extra="Subject: a\r\n  folded\r\n"),
        "two Content-Types": sipp_invite(extra="Content-Type: text/plain\r\n"),
        "no Contact": sipp_invite().replace(
            b"Contact: <sip:sipp@192.0.2.7:5062;transport=UDP>\r\n", b""
        ),
        "an RFC 2543 branch": sipp_invite(branch="1234"),
        "an IPv6 Via": sipp_invite().replace(b"192.0.2.7:5062;branch", b"[::1]:5062;branch"),
        "a bad Contact": sipp_invite().replace(b"<sip:sipp@192.0.2.7", b"<aaaaa:x"),
        "CSeq of another method": sipp_invite().replace(b"1 INVITE", b"1 BYE"),
        "non-ASCII": sipp_invite(extra="Subject: caf\u00e9\r\n"),
        "a tab": sipp_invite(extra="Subject:\ta\r\n"),
        "Content-Length past the end": sipp_invite().replace(
            f"Content-Length: {len(SDP)}".encode(), b"Content-Length: 999"
        ),
        "a From without a tag": sipp_invite().replace(b";tag=1SIPpTag001", b""),
    }
    for name, data in unclean.items():
        found = classify(data)
        assert found is None or not found.clean, name
        assert_never_shortcuts_what_the_parser_refuses(data)


def test_unreadable_messages_are_none() -> None:
    for data in (b"", b"\r\n\r\n", b"garbage", b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"):
        assert classify(data) is None


def test_priorities_put_in_dialog_work_first_and_new_invites_last() -> None:
    cancel = sipp_invite().replace(b"INVITE", b"CANCEL").replace(b"Content-Length: ", b"X: ")
    compact = in_dialog("INVITE").replace(b"\r\nTo: ", b"\r\nt : ")
    cases = {
        response(200): IN_DIALOG,
        response(180, "INVITE"): IN_DIALOG,
        cancel: IN_DIALOG,  # no To tag, still the end of a call
        compact: IN_DIALOG,
        sipp_invite().replace(b"INVITE", b"OPTIONS"): OTHER,
        sipp_invite(): NEW_CALL,
        # A "tag" inside the To URI is not a To tag.
        sipp_invite().replace(b"<sip:ivr@demo.test>", b"<sip:ivr@demo.test;tag=1>"): NEW_CALL,
        sipp_invite().replace(b"<sip:ivr@demo.test>", b"<sip:ivr@demo.test;tag=1;x>"): NEW_CALL,
    }
    for method in ("ACK", "BYE", "CANCEL", "INVITE", "UPDATE", "INFO"):
        cases[in_dialog(method)] = IN_DIALOG
    for data, expected in cases.items():
        assert_never_shortcuts_what_the_parser_refuses(data)
        assert quick_priority(data) == expected, data  # what the transport orders by
        assert priority(classify(data)) == expected, data  # the same from a full triage
    assert priority(None) == OTHER  # unreadable: the parser decides, in arrival order
    assert quick_priority(b"garbage") == OTHER


# -- never a shortcut for what the parser refuses --------------------------------------------


def test_rfc4475_torture_messages_are_never_shortcut_wrongly() -> None:
    for name, data in TORTURE.items():
        found = classify(data)
        assert found is None or not found.clean or parser_accepts(data) is not None, name
        assert_never_shortcuts_what_the_parser_refuses(data)


def test_no_torture_message_is_refused_or_dropped_by_the_gate() -> None:
    gate, asked = refuse_all()
    for name, data in TORTURE.items():
        verdict = gate.decide(data, SOURCE, 0.0)
        if verdict is not Verdict.PARSE:
            assert parser_accepts(data) is not None, name
    # The torture set is exotic on purpose: none of it is inside the narrow grammar.
    assert asked == []


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    # Half the time the clean INVITE (so that mutants near the narrow grammar are common),
    # else an in-dialog request or a torture message.
    others = [in_dialog("ACK"), in_dialog("BYE"), *TORTURE.values()]
    base = sipp_invite(3) if draw(st.booleans()) else draw(st.sampled_from(others))
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut", "duplicate"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "flip" and pos < len(data):
            data[pos] = draw(st.sampled_from(SPECIAL))
        elif kind == "insert":
            data[pos:pos] = (
                draw(st.binary(min_size=1, max_size=4))
                if draw(st.booleans())
                else bytes([draw(st.sampled_from(SPECIAL))])
            )
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "cut":
            del data[pos:]
        elif kind == "duplicate":
            start = data.rfind(b"\r\n", 0, pos)
            end = data.find(b"\r\n", pos)
            if 0 <= start < end:
                data[end:end] = data[start:end]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_messages_are_never_shortcut_wrongly(data: bytes) -> None:
    assert_never_shortcuts_what_the_parser_refuses(data)


@FUZZ
@given(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    st.sampled_from(["Via", "From", "To", "Contact", "Call-ID", "CSeq", "Max-Forwards"]),
)
def test_random_values_of_the_checked_headers(value: str, name: str) -> None:
    lines = sipp_invite(9).split(b"\r\n")
    prefix = f"{name}:".encode()
    changed = [f"{name}: {value}".encode() if ln.startswith(prefix) else ln for ln in lines]
    assert_never_shortcuts_what_the_parser_refuses(b"\r\n".join(changed))


# -- the gate, on a fake clock -------------------------------------------------------------


def test_a_refused_invite_gets_a_stateless_503_built_from_its_own_headers() -> None:
    gate, asked = refuse_all()
    data = sipp_invite(4)
    answer = gate.decide(data, SOURCE, 10.0)
    assert isinstance(answer, bytes)
    refused = parse_message(answer)
    request = parse_message(data)
    assert isinstance(refused, SipResponse) and isinstance(request, SipRequest)
    assert (refused.status, refused.reason) == (503, "Service Unavailable")
    assert refused.headers.get("Retry-After") == "7"
    assert refused.headers.get("Warning") == f'399 {AGENT} "over capacity (max_setups)"'
    via = refused.vias[0]
    assert via.branch == request.vias[0].branch
    assert (via.received, via.rport) == ("192.0.2.7", 5062)  # §18.2.1, RFC 3581 §4
    assert refused.from_ == request.from_ and refused.call_id == request.call_id
    assert refused.cseq == request.cseq
    assert refused.to.uri == request.to.uri
    assert refused.to.tag is not None and refused.to.tag.startswith(REFUSAL_TAG_PREFIX)
    assert asked == [(SOURCE, 10.0)]
    assert gate.counters == {"refused": 1}


def test_every_via_is_returned_in_order() -> None:
    gate, _ = refuse_all()
    data = sipp_invite(1).replace(
        b"Max-Forwards", b"Via: SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bKproxy\r\nMax-Forwards"
    )
    answer = gate.decide(data, SOURCE, 0.0)
    assert isinstance(answer, bytes)
    refused = parse_message(answer)
    assert [v.branch for v in refused.vias] == ["z9hG4bK-1-1-0", "z9hG4bKproxy"]


def test_a_retransmission_gets_the_same_503_without_asking_again() -> None:
    gate, asked = refuse_all()
    data = sipp_invite(2)
    first = gate.decide(data, SOURCE, 0.0)
    again = gate.decide(data, SOURCE, 0.5)
    assert isinstance(first, bytes) and again == first
    assert len(asked) == 1
    assert gate.counters == {"refused": 1, "replayed": 1}
    later = gate.decide(data, SOURCE, REMEMBER_SECONDS + 1.0)
    assert isinstance(later, bytes) and later != first  # forgotten: asked again, a new tag
    assert len(asked) == 2


def test_the_same_branch_from_another_source_is_its_own_request() -> None:
    gate, asked = refuse_all()
    data = sipp_invite(2)
    gate.decide(data, SOURCE, 0.0)
    gate.decide(data, Address("udp", "203.0.113.9", 5062), 0.0)
    assert len(asked) == 2  # a cached 503 is never reflected to someone else


def test_an_admitted_invite_is_asked_once_and_known_to_the_core() -> None:
    gate, asked = admit_all()
    data = sipp_invite(8)
    assert gate.decide(data, SOURCE, 0.0) is Verdict.PARSE
    assert gate.decide(data, SOURCE, 0.4) is Verdict.PARSE  # retransmission
    assert len(asked) == 1
    assert gate.admitted("z9hG4bK-8-1-0", SOURCE)
    assert not gate.admitted("z9hG4bK-8-1-0", Address("udp", "192.0.2.7", 9999))
    assert not gate.admitted(None, SOURCE)
    assert gate.counters == {}


def test_acks_of_refusals_are_dropped_and_other_acks_parsed() -> None:
    gate, _ = refuse_all()
    data = sipp_invite(6)
    answer = gate.decide(data, SOURCE, 0.0)
    assert isinstance(answer, bytes)
    tag = parse_message(answer).to.tag
    assert tag is not None
    ack = in_dialog("ACK", tag=tag, cseq=1)
    assert gate.decide(ack, SOURCE, 0.1) is Verdict.DROP
    ours = in_dialog("ACK", tag="a1b2c3", cseq=1)
    assert gate.decide(ours, SOURCE, 0.1) is Verdict.PARSE
    assert gate.counters["acks"] == 1


def test_only_clean_out_of_dialog_invites_are_offered() -> None:
    gate, asked = refuse_all()
    for data in (
        in_dialog("INVITE"),  # a re-INVITE: never subject to admission
        in_dialog("BYE"),
        sipp_invite().replace(b"INVITE", b"OPTIONS"),
        sipp_invite(extra="Route: <sip:p.test;lr>\r\n"),  # not clean: the core admits it
        response(200),
        b"garbage",
    ):
        assert gate.decide(data, SOURCE, 0.0) is Verdict.PARSE
    assert asked == []


def test_remembered_branches_are_bounded() -> None:
    gate = Gate(lambda source, now: ("busy", 1), AGENT, max_remembered=3)
    for n in range(5):
        data = sipp_invite(n)
        gate.decide(data, SOURCE, 0.0)
    assert len(gate._seen) == 3
    assert MAX_REMEMBERED >= 10_000


def with_value(name: str, value: str) -> bytes:
    lines = sipp_invite(9).split(b"\r\n")
    prefix = f"{name}:".encode()
    return b"\r\n".join(
        f"{name}: {value}".encode() if ln.startswith(prefix) else ln for ln in lines
    )


GRAMMAR = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@GRAMMAR
@given(st.data())
def test_every_value_the_narrow_grammar_allows_the_parser_takes(data: st.DataObject) -> None:
    """Values generated *from* triage's own patterns: each must make a clean message that the
    parser and the UA's header checks accept (the grammar is a subset of theirs)."""
    name, pattern, suffix = data.draw(
        st.sampled_from(
            [
                ("Via", triage._VIA, ";branch=z9hG4bKab"),
                ("From", triage._NAME_ADDR, ";tag=x1"),
                ("To", triage._NAME_ADDR, ""),
                ("Contact", triage._CONTACT, ""),
                ("Call-ID", triage._CALL_ID, ""),
            ]
        )
    )
    value = data.draw(st.from_regex(pattern, fullmatch=True).filter(lambda v: "\n" not in v))
    message = with_value(name, value + ("" if suffix.split("=")[0] in value else suffix))
    found = classify(message)
    assert found is not None
    if found.to_tag is None and name != "To":
        assert found.clean, message
    assert_never_shortcuts_what_the_parser_refuses(message)


@GRAMMAR
@given(st.from_regex(triage._REQUEST_LINE, fullmatch=True).filter(lambda v: "\n" not in v))
def test_every_request_line_the_narrow_grammar_allows_the_parser_takes(line: str) -> None:
    method = line.split(" ", 1)[0]
    data = sipp_invite(9).replace(b"INVITE sip:ivr@demo.test SIP/2.0", line.encode())
    data = data.replace(b"CSeq: 1 INVITE", f"CSeq: 1 {method}".encode())
    assert_never_shortcuts_what_the_parser_refuses(data)
