"""Whole SIP messages: Headers, parse_message, serialisation, limits, StreamParser, responses."""

from __future__ import annotations

import pytest

from callxml.errors import CallXmlError, LocalProtocolError, RemoteProtocolError
from callxml.sip import (
    BadMessage,
    CSeq,
    Headers,
    SipRequest,
    SipResponse,
    StreamParser,
    check_request,
    make_response,
    parse_message,
)
from callxml.sip.message import (
    MAX_HEADERS,
    MAX_LINE_LENGTH,
    MAX_MESSAGE_SIZE,
    MAX_VIAS,
    canonical_name,
    unsupported_options,
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)
RESPONSE = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def invite() -> SipRequest:
    message = parse_message(INVITE)
    assert isinstance(message, SipRequest)
    return message


def with_header(raw: bytes, line: bytes) -> bytes:
    """``raw`` with one more header line before Content-Length."""
    return raw.replace(b"Content-Length:", line + b"\r\nContent-Length:", 1)


# -- Headers -------------------------------------------------------------------------------


def test_canonical_names_and_compact_forms() -> None:
    assert canonical_name("v") == "Via"
    assert canonical_name("I") == "Call-ID"
    assert canonical_name("cseq") == "CSeq"
    assert canonical_name("WWW-AUTHENTICATE") == "WWW-Authenticate"
    assert canonical_name("o") == "Event"
    assert canonical_name("X-Custom") == "X-Custom"
    assert canonical_name("q") == "q"  # not a compact form


def test_headers_multidict_operations() -> None:
    h = Headers(
        [("v", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("f", "<sip:a@a>"), ("Via", "SIP/2.0/UDP b")]
    )
    assert h.items() == [
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"),
        ("From", "<sip:a@a>"),
        ("Via", "SIP/2.0/UDP b"),
    ]
    assert "VIA" in h and "from" in h and "To" not in h and 3 not in h
    h.insert_first("Via", "SIP/2.0/TCP new")
    assert h.get_all("via") == ["SIP/2.0/TCP new", "SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b"]
    assert h.get("Via") == "SIP/2.0/TCP new"
    h.set("From", "<sip:b@b>")
    assert h.get("f") == "<sip:b@b>" and len(h.get_all("From")) == 1
    h.set("To", "<sip:c@c>")
    assert list(h)[-1] == ("To", "<sip:c@c>")
    copy = h.copy()
    h.remove("via")
    assert "Via" not in h and "Via" in copy
    assert copy != h and copy == copy.copy()
    h.insert_first("Route", "<sip:p;lr>")
    assert h.items()[0] == ("Route", "<sip:p;lr>")
    assert len(h) == 3


def test_get_all_splits_list_headers_only() -> None:
    h = Headers(
        [
            ("Contact", '"Doe, J" <sip:j@a>, <sip:k@b>'),
            ("Contact", "<sip:l@c>"),
            ("Allow", "INVITE, ACK,BYE"),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("WWW-Authenticate", 'Digest realm="a", nonce="b"'),
            ("X-Unknown", "a, b"),
        ]
    )
    assert h.get_all("m") == ['"Doe, J" <sip:j@a>', "<sip:k@b>", "<sip:l@c>"]
    assert h.fields("Contact") == ['"Doe, J" <sip:j@a>, <sip:k@b>', "<sip:l@c>"]
    assert h.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert h.get("Date") == "Sat, 13 Nov 2010 23:29:00 GMT"
    assert h.get_all("WWW-Authenticate") == ['Digest realm="a", nonce="b"']
    assert h.get("X-Unknown") == "a, b"
    assert h.get("Missing") is None and h.get_all("Missing") == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Evil", "a\r\nVia: injected"),
        ("X-Evil", "a\nb"),
        ("Bad Name", "x"),
        ("", "x"),
        ("A:", "x"),
    ],
)
def test_headers_refuse_injection(name: str, value: str) -> None:
    h = Headers()
    with pytest.raises(LocalProtocolError):
        h.add(name, value)
    with pytest.raises(LocalProtocolError):
        h.set(name, value)
    with pytest.raises(LocalProtocolError):
        h.insert_first(name, value)


# -- parse_message -------------------------------------------------------------------------


def test_parse_request_values() -> None:
    m = invite()
    assert (m.method, m.uri, m.version) == ("INVITE", "sip:bob@biloxi.example.com", "SIP/2.0")
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert m.cseq == CSeq(314159, "INVITE")
    assert m.max_forwards == 70
    assert m.vias[0].branch == "z9hG4bK776asdhds" and m.vias[0].rport is True
    assert (m.from_.display_name, m.from_.tag) == ("Alice", "1928301774")
    assert m.to.tag is None
    assert m.contacts[0].uri == "sip:alice@pc33.atlanta.example.com"
    assert m.content_type == "application/sdp" and m.media_type == "application/sdp"
    assert m.body == b"v=0\n"


def test_parse_response_values() -> None:
    m = parse_message(RESPONSE)
    assert isinstance(m, SipResponse)
    assert (m.status, m.reason) == (180, "Ringing")
    assert m.to.tag == "a6c85cf"
    assert m.vias[0].received == "192.0.2.1"
    assert m.body == b"" and m.content_type is None


def test_serialise_is_exact_and_stable() -> None:
    assert bytes(invite()) == INVITE
    assert bytes(parse_message(RESPONSE)) == RESPONSE


def test_serialise_sets_content_length_from_the_body() -> None:
    m = invite()
    m.body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    wire = bytes(m)
    assert b"Content-Length: %d\r\n" % len(m.body) in wire and wire.count(b"Content-Length") == 1
    assert parse_message(wire).body == m.body
    built = SipRequest("OPTIONS", "sip:a@b", Headers([("Call-ID", "x")]))
    assert bytes(built) == b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"


def test_serialising_an_impossible_start_line_is_our_error() -> None:
    with pytest.raises(LocalProtocolError):
        bytes(SipRequest("INVITE", "sip:a b", Headers()))
    with pytest.raises(LocalProtocolError):
        bytes(SipRequest("IN VITE", "sip:a", Headers()))
    with pytest.raises(LocalProtocolError):
        bytes(SipResponse(200, "OK\r\nVia: x", Headers()))
    with pytest.raises(LocalProtocolError):
        bytes(SipResponse(99, "Low", Headers()))


def test_leading_crlfs_are_skipped_and_header_names_are_case_insensitive() -> None:
    raw = b"\r\n\r\n" + INVITE.replace(b"Call-ID:", b"call-id  :").replace(b"CSeq:", b"cSeQ:")
    m = parse_message(raw)
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert ("CSeq", "314159 INVITE") in m.headers.items()


def test_folded_header_lines_are_joined() -> None:
    raw = INVITE.replace(b"Subject", b"X").replace(
        b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nSubject: one\r\n \t two\r\n\tthree\r\n"
    )
    assert parse_message(raw).headers.get("Subject") == "one two three"


def test_body_without_content_length_is_the_rest_of_the_datagram() -> None:
    raw = INVITE.replace(b"Content-Length: 4\r\n", b"")
    assert parse_message(raw).body == b"v=0\n"


def test_extra_octets_after_the_body_are_ignored() -> None:
    assert parse_message(INVITE + b"garbage").body == b"v=0\n"


def test_version_is_case_insensitive_and_normalised() -> None:
    m = parse_message(INVITE.replace(b"SIP/2.0\r\n", b"sip/2.0\r\n", 1))
    assert m.version == "SIP/2.0"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"", 400),
        (b"\r\n\r\n", 400),
        (INVITE.replace(b"\r\n\r\n", b"\r\n"), 400),  # no blank line
        (INVITE.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
        (INVITE.replace(b"SIP/2.0\r\n", b"HTTP/1.1\r\n", 1), 400),
        (INVITE.replace(b"INVITE sip", b"INVITE\tsip", 1), 400),
        (INVITE.replace(b"INVITE sip", b"INV(TE sip", 1), 400),
        (INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400),
        (INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: seventy"), 400),
        (INVITE.replace(b"Content-Length: 4", b"Content-Length: 5"), 400),
        (INVITE.replace(b"Content-Length: 4", b"Content-Length: 4x"), 400),
        (INVITE.replace(b"Content-Length: 4", b"Content-Length: 99999999999999999999"), 513),
        (INVITE.replace(b"Call-ID: a84b", b"Call-ID: a 84b"), 400),
        (INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), 400),
        (INVITE.replace(b"Contact: <", b"Contact: *, <"), 400),
        (with_header(INVITE, b"Route: <sip:a;lr>,"), 400),
        (with_header(INVITE, b"No colon here"), 400),
        (with_header(INVITE, b"Bad Name: x"), 400),
        (with_header(INVITE, b": empty name"), 400),
        (with_header(INVITE, b"X-Bare: a\rb"), 400),
        (with_header(INVITE, b"X-Latin1: caf\xe9"), 400),
        (INVITE.replace(b"Via:", b" Via:", 1).replace(b"INVITE sip", b"INVITE sip", 1), 400),
        (RESPONSE.replace(b"180 Ringing", b"099 Low"), 400),
        (RESPONSE.replace(b"180 Ringing", b"1800 Ringing"), 400),
        (RESPONSE.replace(b"180 Ringing", b"180 Ring\x00ing"), 400),
        (RESPONSE.replace(b"Via: SIP/2.0/UDP pc33.atlanta.example.com;", b"Via: x;"), 400),
        (RESPONSE.replace(b"CSeq: 314159 INVITE\r\n", b""), 400),
    ],
)
def test_malformed_messages_raise_bad_message(raw: bytes, status: int) -> None:
    with pytest.raises(BadMessage) as info:
        parse_message(raw)
    assert isinstance(info.value, RemoteProtocolError) and isinstance(info.value, CallXmlError)
    assert info.value.status_hint == status


def test_a_continuation_before_any_header_is_rejected() -> None:
    raw = INVITE.replace(b"SIP/2.0\r\nVia:", b"SIP/2.0\r\n Via:", 1)
    with pytest.raises(BadMessage, match="continuation"):
        parse_message(raw)


def test_contact_wildcard_is_allowed_alone() -> None:
    raw = INVITE.replace(b"Contact: <sip:alice@pc33.atlanta.example.com>", b"Contact: *")
    (star,) = parse_message(raw).contacts
    assert star.is_wildcard


# -- limits --------------------------------------------------------------------------------


def test_message_size_limit() -> None:
    big = INVITE.replace(b"Content-Length: 4", b"Content-Length: %d" % MAX_MESSAGE_SIZE)
    with pytest.raises(BadMessage) as info:
        parse_message(big + b"x" * MAX_MESSAGE_SIZE)
    assert info.value.status_hint == 513
    length = MAX_MESSAGE_SIZE - len(INVITE)  # the 4-byte body makes room for 4 more digits
    ok = INVITE.replace(b"Content-Length: 4", b"Content-Length: %d" % length)
    ok = ok[: ok.index(b"\r\n\r\n") + 4] + b"x" * length
    assert len(ok) == MAX_MESSAGE_SIZE
    assert len(parse_message(ok).body) == length


def test_header_count_limit() -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS))
    with pytest.raises(BadMessage, match="too many header"):
        parse_message(with_header(INVITE, many.rstrip(b"\r\n")))
    fine = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS - 20))
    assert len(parse_message(with_header(INVITE, fine.rstrip(b"\r\n"))).headers) > 200


def test_header_line_length_limit_counts_folded_lines() -> None:
    with pytest.raises(BadMessage, match="too long"):
        parse_message(with_header(INVITE, b"X-Long: " + b"a" * MAX_LINE_LENGTH))
    folded = b"X-Folded: a" + b"\r\n " + b"\r\n ".join([b"b" * 1000] * 9)
    with pytest.raises(BadMessage, match="too long"):
        parse_message(with_header(INVITE, folded))
    with pytest.raises(BadMessage):
        parse_message(INVITE.replace(b"sip:bob@", b"sip:" + b"b" * MAX_LINE_LENGTH + b"@", 1))


def test_via_count_limit() -> None:
    vias = b",".join([b"SIP/2.0/UDP h%d" % i for i in range(MAX_VIAS - 1)])
    m = parse_message(with_header(INVITE, b"Via: " + vias))
    assert len(m.vias) == MAX_VIAS
    with pytest.raises(BadMessage, match="too many Via"):
        parse_message(with_header(INVITE, b"Via: " + vias + b",SIP/2.0/UDP more"))


# -- partial messages and make_response ----------------------------------------------------


def test_bad_message_carries_the_partial_request_for_a_stateless_400() -> None:
    raw = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: banana")
    with pytest.raises(BadMessage) as info:
        parse_message(raw)
    partial = info.value.partial
    assert isinstance(partial, SipRequest)
    answer = make_response(partial, 400, to_tag="xyz")
    assert answer.headers.get("CSeq") == "banana"  # copied verbatim, not re-parsed
    assert answer.to.tag == "xyz"
    wire = bytes(answer)
    assert wire.startswith(b"SIP/2.0 400 Bad Request\r\n")


def test_unreadable_start_line_has_no_partial() -> None:
    with pytest.raises(BadMessage) as info:
        parse_message(b"hello world\r\n\r\n")
    assert info.value.partial is None


def test_make_response_copies_the_right_headers() -> None:
    request = parse_message(
        with_header(INVITE, b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\nTimestamp: 54")
    )
    assert isinstance(request, SipRequest)
    ok = make_response(request, 200, to_tag="t1", headers=[("Contact", "<sip:bob@192.0.2.4>")])
    assert (ok.status, ok.reason) == (200, "OK")
    assert ok.headers.get_all("Via") == request.headers.get_all("Via")
    assert [name for name, _ in ok.headers] == [
        "Via",
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
    ]
    assert ok.to.tag == "t1" and ok.to.uri == request.to.uri
    assert ok.from_ == request.from_ and ok.cseq == request.cseq and ok.call_id == request.call_id
    trying = make_response(request, 100, to_tag="t1")
    assert trying.to.tag is None and trying.headers.get("Timestamp") == "54"
    assert make_response(request, 486, "Gone Fishing").reason == "Gone Fishing"
    assert make_response(request, 499).reason == "Unknown"
    again = parse_message(bytes(ok))
    assert isinstance(again, SipResponse) and again.to.tag == "t1"
    # An in-dialog request's To already has a tag: it is kept.
    request.headers.set("To", "<sip:bob@biloxi.example.com>;tag=t1")
    assert make_response(request, 200, to_tag="other").to.tag == "t1"
    with pytest.raises(LocalProtocolError):
        make_response(request, 700)


# -- check_request -------------------------------------------------------------------------


def test_check_request_order_and_opt_in_checks() -> None:
    m = invite()
    assert check_request(m) is None
    assert (
        check_request(m, methods={"INVITE"}, supported=(), content_types={"application/sdp"})
        is None
    )
    assert check_request(m, methods={"OPTIONS"}) == 501
    m.headers.add("Require", "100rel, foo")
    assert unsupported_options(m, {"100REL"}) == ["foo"]
    assert check_request(m, supported={"100rel"}) == 420
    assert check_request(m, supported={"100rel", "foo"}) is None
    assert check_request(m, content_types={"text/plain"}) == 415
    m.headers.add("Accept", "application/*;q=0.5, text/plain")
    assert check_request(m, answer_types={"application/sdp"}) is None
    m.headers.set("Accept", "text/plain")
    assert check_request(m, answer_types={"application/sdp"}) == 406
    m.uri = "tel:+15551234"
    assert check_request(m) == 416
    m.version = "SIP/3.0"
    assert check_request(m) == 505


def test_check_request_never_refuses_ack_for_extensions() -> None:
    ack = parse_message(
        INVITE.replace(b"INVITE sip", b"ACK sip", 1).replace(b"314159 INVITE", b"314159 ACK")
    )
    assert isinstance(ack, SipRequest)
    ack.headers.add("Require", "foo")
    assert check_request(ack, methods={"INVITE"}, supported=(), content_types=()) is None


# -- StreamParser --------------------------------------------------------------------------


def test_stream_parser_frames_several_messages_in_one_chunk() -> None:
    parser = StreamParser()
    messages = parser.feed(INVITE + RESPONSE + INVITE)
    assert [type(m).__name__ for m in messages] == ["SipRequest", "SipResponse", "SipRequest"]
    assert parser.buffered == 0


def test_stream_parser_every_split_point() -> None:
    stream = INVITE + b"\r\n\r\n" + RESPONSE
    for cut in range(len(stream) + 1):
        parser = StreamParser()
        got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert [bytes(m) for m in got] == [INVITE, RESPONSE], cut
        assert parser.keepalives == 1 and parser.buffered == 0


def test_stream_parser_byte_by_byte() -> None:
    parser = StreamParser()
    got = []
    for i in range(len(INVITE) * 2):
        got += parser.feed((INVITE * 2)[i : i + 1])
    assert len(got) == 2 and got[0] == got[1] == invite()


def test_stream_parser_keepalives() -> None:
    parser = StreamParser()
    assert parser.feed(b"\r\n\r\n\r\n\r\n") == []
    assert parser.keepalives == 2
    assert parser.feed(b"\r\n") == []  # half a ping, or a pong: wait
    assert parser.feed(b"\r\n") == [] and parser.keepalives == 3
    assert parser.feed(b"\r\n" + RESPONSE)[0] == parse_message(RESPONSE)  # a pong, then a message


def test_stream_parser_requires_content_length() -> None:
    parser = StreamParser()
    with pytest.raises(BadMessage, match="Content-Length"):
        parser.feed(INVITE.replace(b"Content-Length: 4\r\n", b""))
    assert parser.broken


def test_stream_parser_bounds_its_buffer() -> None:
    parser = StreamParser()
    assert parser.feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"a" * 1000) == []
    with pytest.raises(BadMessage) as info:
        for _ in range(MAX_MESSAGE_SIZE // 1000 + 1):
            parser.feed(b"a" * 1000)
    assert info.value.status_hint == 513 and parser.broken and parser.buffered == 0
    announce = StreamParser()
    with pytest.raises(BadMessage) as info:
        announce.feed(
            INVITE.replace(b"Content-Length: 4", b"Content-Length: %d" % MAX_MESSAGE_SIZE)
        )
    assert info.value.status_hint == 513


def test_stream_parser_stays_in_sync_after_one_bad_message() -> None:
    bad = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE")
    parser = StreamParser()
    with pytest.raises(BadMessage, match="CSeq") as info:
        parser.feed(RESPONSE + bad + INVITE)
    assert isinstance(info.value.partial, SipRequest)
    assert not parser.broken
    # The one framed before the bad one, then parsing carries on with the one after it.
    assert parser.feed(b"") == [parse_message(RESPONSE), invite()]
    assert parser.feed(b"") == []


def test_stream_parser_garbage_breaks_the_stream() -> None:
    parser = StreamParser()
    with pytest.raises(BadMessage):
        parser.feed(b"\x16\x03\x01 TLS hello?\r\n\r\n")
    assert parser.broken


def test_a_pong_is_taken_only_by_the_side_that_pinged() -> None:
    """RFC 5626 §4.4.1: a lone CRLF may be half a ping (wait for the rest) unless we pinged."""
    parser = StreamParser()
    assert parser.feed(b"\r\n") == [] and parser.buffered == 2  # maybe half a ping
    assert parser.take_pong() and parser.buffered == 0
    parser.feed(b"\r\n\r\n")
    assert parser.keepalives == 1 and not parser.take_pong()
