"""SDP parse/serialise (RFC 8866): exact round trips on captured-style offers, fields, errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callxml.sdp.session import (
    MAX_SDP_BYTES,
    Attribute,
    Bandwidth,
    Connection,
    InvalidSdp,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
)

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = sorted(p.name for p in FIXTURES.glob("*.sdp"))


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_is_exact(name: str) -> None:
    raw = load(name)
    sd = SessionDescription.parse(raw)
    assert bytes(sd) == raw
    assert str(sd) == raw.decode()
    assert SessionDescription.parse(bytes(sd)) == sd
    assert SessionDescription.parse(str(sd)) == sd


def test_fixture_count() -> None:
    assert len(NAMES) >= 10


def test_freeswitch_fields() -> None:
    sd = SessionDescription.parse(load("freeswitch_avp.sdp"))
    assert sd.version == 0
    assert sd.origin == Origin("FreeSWITCH", 1712345678, 1712345679, "IN", "IP4", "203.0.113.10")
    assert sd.session_name == "FreeSWITCH"
    assert sd.connection == Connection("IN", "IP4", "203.0.113.10")
    assert sd.times == (Timing(0, 0),)
    (audio,) = sd.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 24572, "RTP/AVP")
    assert audio.formats == ("102", "9", "0", "8", "103", "101")
    assert audio.payload_types == (102, 9, 0, 8, 103, 101)
    maps = audio.rtpmaps()
    assert maps[102] == RtpMap(102, "opus", 48000, 2)
    assert maps[0] == RtpMap(0, "PCMU", 8000)
    assert maps[101] == RtpMap(101, "telephone-event", 8000)
    assert audio.fmtps()[101] == "0-16"
    assert audio.fmtps()[102].startswith("useinbandfec=1; maxaveragebitrate=30000")
    assert audio.ptime == 20
    assert audio.direction == "sendrecv"
    assert audio.attribute("rtcp") == "24573 IN IP4 203.0.113.10"  # unknown to us, kept
    assert sd.connection_for(audio) == sd.connection


def test_ipv6_bandwidth_and_unknown_attribute() -> None:
    sd = SessionDescription.parse(load("sipjs_ipv6_avp.sdp"))
    assert sd.origin.address_type == "IP6"
    assert sd.connection == Connection("IN", "IP6", "2001:db8::10")
    assert sd.bandwidths == (Bandwidth("AS", 84),)
    audio = sd.media[0]
    assert audio.bandwidths == (Bandwidth("TIAS", 64000),)
    assert audio.attribute("x-custom-attr") == "keep me"
    assert sd.direction_for(audio) == "recvonly"


def test_webrtc_offer_media_level_connection_and_session_attributes() -> None:
    sd = SessionDescription.parse(load("webrtc_chrome.sdp"))
    assert sd.connection is None
    assert sd.attribute("group") == "BUNDLE 0 1"
    assert sd.attribute("extmap-allow-mixed") == ""  # property attribute
    assert sd.attribute("msid-semantic") == " WMS 7f3c0c2e-3a9b-4e4e-9d1e-0b0a2d7a1c11"
    audio, data = sd.media
    assert audio.proto == "UDP/TLS/RTP/SAVPF"
    assert sd.connection_for(audio) == Connection("IN", "IP4", "0.0.0.0")
    assert data.formats == ("webrtc-datachannel",)
    assert data.payload_types == ()
    assert audio.rtpmaps()[126] == RtpMap(126, "telephone-event", 8000)


def test_session_direction_applies_when_media_has_none() -> None:
    text = (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\na=sendonly\r\nm=audio 0 RTP/AVP 0\r\n"
    )
    sd = SessionDescription.parse(text)
    assert sd.media[0].direction is None
    assert sd.direction_for(sd.media[0]) == "sendonly"


def test_default_direction_is_sendrecv() -> None:
    sd = SessionDescription.parse(load("carrier_answer_183.sdp"))
    assert sd.direction_for(sd.media[0]) == "sendrecv"


def test_every_rfc_8866_line_type_round_trips() -> None:
    # The example of RFC 8866 §5 plus the optional lines it leaves out.
    text = (
        "v=0\r\n"
        "o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1\r\n"
        "s=Call to John Smith\r\n"
        "i=SDP Offer #1\r\n"
        "u=http://www.jdoe.example.com/home.html\r\n"
        "e=Jane Doe <jane@jdoe.example.com>\r\n"
        "p=+1 617 555-6011\r\n"
        "c=IN IP4 198.51.100.1\r\n"
        "b=CT:128\r\n"
        "t=3724394400 3724398000\r\n"
        "r=604800 3600 0 90000\r\n"
        "t=0 0\r\n"
        "z=2882844526 -1h 2898848070 0\r\n"
        "k=prompt\r\n"
        "a=recvonly\r\n"
        "m=audio 49170 RTP/AVP 0\r\n"
        "i=voice\r\n"
        "c=IN IP4 233.252.0.1/127/2\r\n"
        "c=IN IP4 233.252.0.3/127\r\n"
        "b=AS:64\r\n"
        "k=prompt\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "m=video 51372/2 RTP/AVP 99\r\n"
        "a=rtpmap:99 h263-1998/90000\r\n"
    )
    sd = SessionDescription.parse(text)
    assert str(sd) == text
    assert sd.times[0].repeats == ("604800 3600 0 90000",)
    assert len(sd.times) == 2
    assert sd.media[0].connections[0].host == "233.252.0.1"
    assert sd.media[1].port_count == 2
    assert sd.emails == ("Jane Doe <jane@jdoe.example.com>",)


def test_lf_only_input_is_accepted_and_written_with_crlf() -> None:
    raw = load("asterisk_savp.sdp").decode()
    lf = raw.replace("\r\n", "\n")
    sd = SessionDescription.parse(lf)
    assert str(sd) == raw


def test_empty_attribute_value_differs_from_property_attribute() -> None:
    text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\na=foo:\r\na=bar\r\n"
    sd = SessionDescription.parse(text)
    assert sd.attributes == (Attribute("foo", ""), Attribute("bar"))
    assert str(sd) == text


def test_bump_version_only_changes_version() -> None:
    sd = SessionDescription.parse(load("freeswitch_avp.sdp"))
    bumped = sd.bump_version()
    assert bumped.origin.session_version == sd.origin.session_version + 1
    assert bumped.origin.session_id == sd.origin.session_id
    assert replace(bumped, origin=sd.origin) == sd


def test_with_direction_replaces_in_place() -> None:
    audio = SessionDescription.parse(load("freeswitch_avp.sdp")).media[0]
    held = audio.with_direction("sendonly")
    assert held.direction == "sendonly"
    assert [a.name for a in held.attributes] == [
        a.name.replace("sendrecv", "sendonly") for a in audio.attributes
    ]
    bare = MediaDescription("audio", 1, "RTP/AVP", ("0",))
    assert bare.with_direction("inactive").attributes == (Attribute("inactive"),)


def test_repr_hides_crypto_keys() -> None:
    sd = SessionDescription.parse(load("asterisk_savp.sdp"))
    key = sd.media[0].attributes_named("crypto")[0].split("inline:")[1]
    assert key in str(sd)
    assert key not in repr(sd)
    assert "inline:<redacted>" in repr(sd)


def test_bytes_input_must_be_utf8() -> None:
    with pytest.raises(InvalidSdp, match="UTF-8"):
        SessionDescription.parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\xff\r\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "v=0"),
        ("v=1\r\n", "v=0"),
        ("o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n", "v=0"),
        ("v=0\r\ns=-\r\nt=0 0\r\n", "no o="),
        ("v=0\r\no=- 1 IN IP4 192.0.2.1\r\n", "6 fields"),
        ("v=0\r\no=- x 1 IN IP4 192.0.2.1\r\n", "sess-id"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\no=- 1 1 IN IP4 192.0.2.1\r\n", "more than one o="),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n", "more than one v="),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nx=unknown\r\n", "unknown type"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nnot a line\r\n", "line 3"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 2001:db8::1\r\n", "not IP4"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP6 192.0.2.1\r\n", "not IP6"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4\r\n", "3 fields"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nr=1 2 3\r\n", "r= before t="),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nt=0\r\n", "t= needs"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nb=AS\r\n", "b= needs"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 70000 RTP/AVP 0\r\n", "port"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP\r\n", "at least one format"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\ns=x\r\n", "not allowed"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\ni=a\r\ni=b\r\n", "more than"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\na=:x\r\n", "attribute name"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\na=x\x00y\r\n", "line 3"),
        ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nv=0\rx\r\n", "line 3"),
    ],
)
def test_malformed_sdp_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidSdp, match=message):
        SessionDescription.parse(text)


def test_size_bounds() -> None:
    head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
    with pytest.raises(InvalidSdp, match="too large"):
        SessionDescription.parse(head + "a=x:" + "y" * MAX_SDP_BYTES + "\r\n")
    with pytest.raises(InvalidSdp, match="too large"):
        SessionDescription.parse((head + "a=x:" + "y" * MAX_SDP_BYTES + "\r\n").encode())
    with pytest.raises(InvalidSdp, match="too many SDP lines"):
        SessionDescription.parse(head + "a=x\r\n" * 3000)
    with pytest.raises(InvalidSdp, match="too many m="):
        SessionDescription.parse(head + "m=audio 0 RTP/AVP 0\r\n" * 40)
    with pytest.raises(InvalidSdp, match="too long"):
        SessionDescription.parse(head + "a=x:" + "y" * 5000 + "\r\n")


def test_lax_peer_without_s_and_t_round_trips() -> None:
    text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n"
    sd = SessionDescription.parse(text)
    assert sd.session_name is None
    assert sd.times == ()
    assert str(sd) == text


def test_fqdn_connection_is_allowed() -> None:
    assert Connection.parse("IN IP4 media.example.com").host == "media.example.com"
    with pytest.raises(InvalidSdp):
        Connection.parse("IN IP4 bad_host!")


def test_malformed_rtpmap_is_ignored_by_lookup() -> None:
    media = MediaDescription(
        "audio",
        1,
        "RTP/AVP",
        ("0", "96"),
        attributes=(Attribute("rtpmap", "96 nonsense"), Attribute("rtpmap", "0 PCMU/8000")),
    )
    assert media.rtpmaps() == {0: RtpMap(0, "PCMU", 8000)}


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_value = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n\x00"),
    max_size=30,
)
_attribute = st.builds(Attribute, _token, st.none() | _value)
_media = st.builds(
    MediaDescription,
    media=st.sampled_from(["audio", "video", "application"]),
    port=st.integers(0, 65535),
    proto=st.sampled_from(["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF"]),
    formats=st.lists(st.integers(0, 127).map(str), min_size=1, max_size=5).map(tuple),
    attributes=st.lists(_attribute, max_size=5).map(tuple),
)


@given(
    session_id=st.integers(0, 2**63),
    version=st.integers(0, 2**63),
    name=_value.filter(lambda s: s.strip() == s),
    attributes=st.lists(_attribute, max_size=5),
    media=st.lists(_media, max_size=4),
)
def test_serialise_then_parse_is_identity(
    session_id: int,
    version: int,
    name: str,
    attributes: list[Attribute],
    media: list[MediaDescription],
) -> None:
    sd = SessionDescription(
        origin=Origin("-", session_id, version, "IN", "IP4", "192.0.2.1"),
        session_name=name,
        connection=Connection("IN", "IP4", "192.0.2.1"),
        attributes=tuple(attributes),
        media=tuple(media),
    )
    assert SessionDescription.parse(bytes(sd)) == sd


def test_trailing_blank_lines_are_tolerated() -> None:
    raw = load("carrier_answer_183.sdp")
    assert bytes(SessionDescription.parse(raw + b"\r\n\r\n")) == raw


@pytest.mark.parametrize(
    ("value", "expected"), [("20", 20), ("30.0", 30), ("inf", None), ("1e400", None), ("x", None)]
)
def test_ptime_is_read_safely(value: str, expected: int | None) -> None:
    media = MediaDescription("audio", 1, "RTP/AVP", ("0",), attributes=(Attribute("ptime", value),))
    assert media.ptime == expected


_line = st.tuples(
    st.sampled_from("vosicbtrzkamexy"),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40),
).map(lambda t: f"{t[0]}={t[1]}")


@given(lines=st.lists(_line, max_size=15), head=st.booleans())
def test_random_input_parses_or_fails_cleanly(lines: list[str], head: bool) -> None:
    prefix = ["v=0", "o=- 1 1 IN IP4 192.0.2.1"] if head else []
    text = "\r\n".join(prefix + lines) + "\r\n"
    try:
        sd = SessionDescription.parse(text)
    except InvalidSdp:
        return
    assert SessionDescription.parse(str(sd)) == sd
    for media in sd.media:
        media.rtpmaps(), media.fmtps(), media.ptime, sd.direction_for(media)
