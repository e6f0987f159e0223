"""Property tests for the message parser: only our own error ever escapes, and whatever parses
serialises and parses back to the same thing.

Inputs are random bytes, mutations of the RFC 4475 torture messages (byte flips, cuts, and
insertions of the characters SIP grammar cares about), random chunkings of a stream, and
messages generated from random header values.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from callxml.errors import RemoteProtocolError
from callxml.sip.headers import (
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_via,
    split_list,
)
from callxml.sip.message import (
    BadMessage,
    Headers,
    SipMessage,
    SipRequest,
    StreamParser,
    parse_message,
)

FIXTURES = Path(__file__).parent / "fixtures" / "rfc4475"
SAMPLES = [path.read_bytes() for path in sorted(FIXTURES.glob("*.dat"))]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPECIAL = b'\r\n \t:;,<>"\\%@/=?*[]0123456789\x00\xff\xc3'


def check_accepted(message: SipMessage) -> None:
    """Everything a parsed message promises: properties work, serialising is stable."""
    message.vias, message.from_, message.to, message.cseq, message.call_id  # noqa: B018
    message.contacts, message.routes, message.record_routes  # noqa: B018
    if isinstance(message, SipRequest):
        message.max_forwards  # noqa: B018
    wire = bytes(message)
    again = parse_message(wire)
    assert bytes(again) == wire
    assert again.body == message.body


def parse_or_reject(data: bytes) -> SipMessage | None:
    try:
        message = parse_message(data)
    except BadMessage as exc:
        assert exc.status_hint in (400, 414, 505, 513)
        return None
    check_accepted(message)
    return message


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    parse_or_reject(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_after_a_request_line(data: bytes) -> None:
    parse_or_reject(b"OPTIONS sip:a@b SIP/2.0\r\n" + data + b"\r\n\r\n")


@st.composite
def mutated_sample(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "flip" and pos < len(data):
            data[pos] = draw(st.sampled_from(SPECIAL + b"aZ"))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=3).map(bytes)) or b":"
            if draw(st.booleans()):
                data[pos:pos] = bytes([draw(st.sampled_from(SPECIAL))])
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            del data[pos:]
    return bytes(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_sample())
def test_mutated_torture_messages_are_parsed_or_rejected_cleanly(data: bytes) -> None:
    parse_or_reject(data)


@FUZZ
@given(st.sampled_from(SAMPLES), st.lists(st.integers(0, 3000), max_size=6))
def test_stream_framing_matches_datagram_parsing(sample: bytes, cuts: list[int]) -> None:
    try:
        message = parse_message(sample)
    except BadMessage:
        assume(False)
        return
    wire = bytes(message)  # always carries a correct Content-Length
    stream = wire + b"\r\n\r\n" + wire
    parser = StreamParser()
    got: list[SipMessage] = []
    points = sorted({min(c, len(stream)) for c in cuts})
    for start, end in zip([0, *points], [*points, len(stream)], strict=True):
        got += parser.feed(stream[start:end])
    assert [bytes(m) for m in got] == [wire, wire]
    assert parser.keepalives == 1 and parser.buffered == 0 and not parser.broken


@FUZZ
@given(st.lists(st.binary(max_size=400), max_size=8))
def test_stream_parser_on_garbage_only_raises_our_error(chunks: list[bytes]) -> None:
    parser = StreamParser()
    for chunk in chunks:
        try:
            for message in parser.feed(chunk):
                check_accepted(message)
        except BadMessage:
            if parser.broken:
                return
    assert parser.buffered <= 8 * 400


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=80)
GRAMMAR_TEXT = st.text(alphabet=' \t"\\<>;,=:/@*[]sipSIP2.0UDPab%', max_size=60)


@FUZZ
@given(st.one_of(TEXT, GRAMMAR_TEXT))
def test_header_value_parsers_raise_only_our_error(text: str) -> None:
    for parse in (parse_via, parse_name_addr, parse_cseq, parse_params):
        try:
            value = parse(text)
        except RemoteProtocolError:
            continue
        if isinstance(value, (Via, NameAddr)):
            assert type(value) is type(parse(str(value)))
            assert parse(str(value)) == value
    split_list(text)
    try:
        split_list(text, strict=True)
    except RemoteProtocolError:
        pass


TOKEN = st.text(alphabet="abcXYZ019-.!%*_+`'~", min_size=1, max_size=12)
DISPLAY = st.one_of(
    st.none(), st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20)
)
PARAMS = st.lists(
    st.tuples(TOKEN, st.one_of(st.none(), TOKEN, TOKEN.map(lambda t: f'"{t} ;,"'))), max_size=3
).map(tuple)
URI = st.builds(
    lambda user, host: f"sip:{user}@{host}.example.com", TOKEN, TOKEN.filter(str.isalnum)
)


@FUZZ
@given(DISPLAY, URI, PARAMS, st.integers(0, 2**32 - 1), TOKEN, st.binary(max_size=100))
def test_generated_messages_round_trip(
    display: str | None,
    uri: str,
    params: tuple[tuple[str, str | None], ...],
    seq: int,
    method: str,
    body: bytes,
) -> None:
    to = NameAddr(display, uri, params)
    via = Via("UDP", "host.example.com", 5060, (("branch", "z9hG4bK" + method), *params))
    request = SipRequest(
        method,
        uri,
        Headers(
            [
                ("Via", str(via)),
                ("To", str(to)),
                ("From", str(to.with_tag("x"))),
                ("Call-ID", f"{method}@host"),
                ("CSeq", f"{seq} {method}"),
                ("Contact", f"{to}, <{uri}>"),
            ]
        ),
        body,
    )
    parsed = parse_message(bytes(request))
    assert isinstance(parsed, SipRequest)
    assert parsed.to == to and parsed.from_.tag == "x"
    assert parsed.vias == [via]
    assert (parsed.cseq.seq, parsed.cseq.method) == (seq, method)
    assert parsed.contacts == [to, NameAddr(None, uri)]
    assert parsed.body == body
    check_accepted(parsed)
