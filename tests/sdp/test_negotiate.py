"""Offer/answer (RFC 3264) for one audio stream: codecs, DTMF, ptime, direction, hold, SRTP keys."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import pylibsrtp
import pytest

from callxml.errors import MediaError, SecureMediaError
from callxml.sdp.negotiate import (
    CODECS,
    NegotiatedMedia,
    Offer,
    answer_direction,
    answer_offer,
    build_offer,
    check_answer,
    hold,
    reoffer,
    reverse_direction,
    unhold,
)
from callxml.sdp.session import Connection, Direction, InvalidSdp, SessionDescription

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> SessionDescription:
    return SessionDescription.parse((FIXTURES / name).read_bytes())


def plain(media: str, *, direction: str = "sendrecv", connection: str = "192.0.2.9") -> bytes:
    return (
        f"v=0\r\no=peer 10 10 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 {connection}\r\nt=0 0\r\n"
        f"{media}a={direction}\r\n"
    ).encode()


def answer(offer: SessionDescription | bytes, **kwargs: Any) -> NegotiatedMedia:
    kwargs.setdefault("port", 6000)
    return answer_offer(offer, address="198.51.100.1", **kwargs)


# -- offers ------------------------------------------------------------------------------------


def test_secure_offer_text() -> None:
    offer = build_offer(
        address="192.0.2.1",
        port=4000,
        secure=True,
        session_id=123,
        random_bytes=lambda n: bytes(range(n)),
    )
    assert str(offer.sdp) == (
        "v=0\r\n"
        "o=- 123 1 IN IP4 192.0.2.1\r\n"
        "s=callxml\r\n"
        "c=IN IP4 192.0.2.1\r\n"
        "t=0 0\r\n"
        "m=audio 4000 RTP/SAVP 0 8 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\r\n"
    )
    assert SessionDescription.parse(bytes(offer.sdp)) == offer.sdp


def test_plain_ipv6_offer_with_codec_order_and_no_dtmf() -> None:
    offer = build_offer(
        address="2001:db8::1", port=4002, secure=False, codecs=("PCMA",), dtmf=False
    )
    assert offer.our_crypto is None
    assert offer.sdp.connection == Connection("IN", "IP6", "2001:db8::1")
    assert offer.sdp.origin.address_type == "IP6"
    audio = offer.sdp.media[0]
    assert (audio.proto, audio.formats) == ("RTP/AVP", ("8",))
    assert audio.attributes_named("rtpmap") == ("8 PCMA/8000",)


def test_offer_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        build_offer(address="192.0.2.1", port=4000, secure=False, codecs=("G729",))
    with pytest.raises(ValueError):
        build_offer(address="192.0.2.1", port=4000, secure=False, codecs=())
    with pytest.raises(ValueError):
        build_offer(address="not-an-ip", port=4000, secure=False)
    with pytest.raises(ValueError):
        build_offer(address="192.0.2.1", port=70000, secure=False)
    with pytest.raises(ValueError):
        answer(load("freeswitch_avp.sdp"), port=0)


def test_session_ids_differ_per_offer() -> None:
    a = build_offer(address="192.0.2.1", port=4000, secure=False)
    b = build_offer(address="192.0.2.1", port=4000, secure=False)
    assert a.sdp.origin.session_id != b.sdp.origin.session_id


# -- answering offers --------------------------------------------------------------------------


def test_answer_freeswitch_offer() -> None:
    media = answer(load("freeswitch_avp.sdp"))
    assert media.codec == CODECS["PCMU"]  # first of the offer's order we support (opus, G722 not)
    assert (media.payload_type, media.dtmf_payload_type) == (0, 101)  # 101 is the 8 kHz one
    assert (media.their_address, media.their_port, media.their_ptime) == ("203.0.113.10", 24572, 20)
    assert media.direction == "sendrecv"
    assert str(media.local_sdp).split("\r\n")[5:11] == [
        "m=audio 6000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]


def test_answer_follows_the_offer_order() -> None:
    media = answer(load("asterisk_pjsip_avp.sdp"))  # 3 111 8 0 101
    assert media.codec.name == "PCMA" and media.payload_type == 8
    only_pcmu = answer(load("asterisk_pjsip_avp.sdp"), codecs=("PCMU",))
    assert only_pcmu.codec.name == "PCMU"


def test_answer_without_dtmf() -> None:
    media = answer(load("freeswitch_avp.sdp"), dtmf=False)
    assert media.dtmf_payload_type is None
    assert media.local_sdp.media[0].formats == ("0",)


def test_non_audio_streams_are_refused_with_port_zero() -> None:
    offer = load("linphone_savp.sdp")
    media = answer(offer, secure_media_enabled=True, arrived_over_tls=True)
    audio, video = media.local_sdp.media
    assert audio.port == 6000 and media.media_index == 0
    assert (video.media, video.port, video.proto, video.formats) == (
        "video",
        0,
        "RTP/SAVP",
        ("96", "97"),
    )
    assert video.attributes == ()
    assert media.dtmf_payload_type == 100  # telephone-event/8000, not /48000 or /16000
    assert media.codec.name == "PCMU"


def test_second_audio_stream_used_when_first_fails_policy() -> None:
    key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"
    offer = plain(
        "m=audio 4000 RTP/AVP 0\r\n"
        "m=audio 4002 RTP/SAVP 0\r\n"
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
    )
    media = answer(offer, secure_media_enabled=True, arrived_over_tls=True)
    assert media.media_index == 1 and media.their_port == 4002
    assert [m.port for m in media.local_sdp.media] == [0, 6000]


def test_no_common_codec_is_a_media_error_not_a_policy_error() -> None:
    offer = plain("m=audio 4000 RTP/AVP 18 9\r\na=rtpmap:18 G729/8000\r\n")
    with pytest.raises(MediaError, match="no common codec: offered 18 9") as info:
        answer(offer)
    assert not isinstance(info.value, SecureMediaError)


def test_codec_names_are_case_insensitive_and_clock_rate_matters() -> None:
    media = answer(
        plain("m=audio 4000 RTP/AVP 96 97\r\na=rtpmap:96 pcmu/16000\r\na=rtpmap:97 pcma/8000\r\n")
    )
    assert (media.codec.name, media.payload_type) == ("PCMA", 97)


def test_offer_without_audio() -> None:
    with pytest.raises(MediaError, match="no active audio stream"):
        answer(plain("m=video 4000 RTP/AVP 96\r\nm=audio 0 RTP/AVP 0\r\n"))


def test_offer_without_connection() -> None:
    text = b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    with pytest.raises(InvalidSdp, match="no c= line"):
        answer(text)


def test_malformed_offer() -> None:
    with pytest.raises(InvalidSdp):
        answer(b"v=0\r\nnonsense\r\n")


def test_ipv6_recvonly_offer() -> None:
    media = answer(load("sipjs_ipv6_avp.sdp"))
    assert media.their_address == "2001:db8::10"
    assert media.direction == "sendonly"  # they only receive
    assert media.local_sdp.media[0].direction == "sendonly"
    assert media.codec.name == "PCMA"


def test_old_style_hold_with_null_address() -> None:
    media = answer(plain("m=audio 4000 RTP/AVP 0\r\n", connection="0.0.0.0"))
    assert media.direction == "recvonly"  # do not send to 0.0.0.0


# -- direction algebra ---------------------------------------------------------------------------

TABLE: list[tuple[Direction, Direction, Direction]] = [
    # offered,  wanted,     answer   (RFC 3264 §6.1)
    ("sendrecv", "sendrecv", "sendrecv"),
    ("sendrecv", "sendonly", "sendonly"),
    ("sendrecv", "recvonly", "recvonly"),
    ("sendrecv", "inactive", "inactive"),
    ("sendonly", "sendrecv", "recvonly"),
    ("sendonly", "sendonly", "inactive"),
    ("sendonly", "recvonly", "recvonly"),
    ("sendonly", "inactive", "inactive"),
    ("recvonly", "sendrecv", "sendonly"),
    ("recvonly", "sendonly", "sendonly"),
    ("recvonly", "recvonly", "inactive"),
    ("recvonly", "inactive", "inactive"),
    ("inactive", "sendrecv", "inactive"),
    ("inactive", "sendonly", "inactive"),
    ("inactive", "recvonly", "inactive"),
    ("inactive", "inactive", "inactive"),
]


@pytest.mark.parametrize(("offered", "wanted", "expected"), TABLE)
def test_answer_direction(offered: Direction, wanted: Direction, expected: Direction) -> None:
    assert answer_direction(offered, wanted) == expected
    media = answer(plain("m=audio 4000 RTP/AVP 0\r\n", direction=offered), direction=wanted)
    assert media.direction == expected
    assert media.local_sdp.media[0].direction == expected


def test_reverse_direction() -> None:
    assert [reverse_direction(d) for d in ("sendrecv", "sendonly", "recvonly", "inactive")] == [
        "sendrecv",
        "recvonly",
        "sendonly",
        "inactive",
    ]


# -- hold, unhold and re-offers ------------------------------------------------------------------


def test_hold_and_unhold_bump_the_version_and_keep_the_key() -> None:
    offer = build_offer(address="192.0.2.1", port=4000, secure=True, session_id=9)
    held = hold(offer)
    assert held.sdp.media[0].direction == "sendonly"
    assert held.sdp.origin.session_version == 2
    assert held.sdp.origin.session_id == 9
    assert held.our_crypto == offer.our_crypto
    assert held.sdp.media[0].attributes_named("crypto") == offer.sdp.media[0].attributes_named(
        "crypto"
    )
    resumed = unhold(held)
    assert resumed.sdp.media[0].direction == "sendrecv"
    assert resumed.sdp.origin.session_version == 3
    assert replace(resumed.sdp, origin=offer.sdp.origin) == offer.sdp


def test_unchanged_reoffer_keeps_the_version() -> None:
    offer = build_offer(address="192.0.2.1", port=4000, secure=False)
    assert reoffer(offer, direction="sendrecv").sdp == offer.sdp
    held = hold(offer)
    assert hold(held).sdp == held.sdp  # holding twice changes nothing


def test_hold_when_only_receiving_goes_inactive() -> None:
    offer = build_offer(address="192.0.2.1", port=4000, secure=False, direction="recvonly")
    assert hold(offer).sdp.media[0].direction == "inactive"
    assert unhold(hold(offer)).sdp.media[0].direction == "recvonly"


def test_hold_from_the_answering_side() -> None:
    media = answer(load("freeswitch_avp.sdp"))
    held = hold(media)
    assert held.sdp.origin.session_id == media.local_sdp.origin.session_id
    assert held.sdp.origin.session_version == media.local_sdp.origin.session_version + 1
    assert held.sdp.media[0].direction == "sendonly"
    assert held.sdp.media[0].formats == ("0", "101")


def test_answering_a_reoffer_keeps_origin_and_key() -> None:
    offer = load("asterisk_savp.sdp")
    first = answer(offer, secure_media_enabled=True, arrived_over_tls=True)
    # Same offer again (session refresh): identical answer, same version.
    again = answer(offer, secure_media_enabled=True, arrived_over_tls=True, previous=first)
    assert again.local_sdp == first.local_sdp
    assert again.our_crypto == first.our_crypto
    # The peer puts us on hold: our answer changes to recvonly, version + 1, key kept.
    audio = offer.media[0].with_direction("sendonly")
    held_offer = offer.with_media([audio]).bump_version()
    held = answer(held_offer, secure_media_enabled=True, arrived_over_tls=True, previous=first)
    assert held.direction == "recvonly"
    assert held.local_sdp.origin.session_id == first.local_sdp.origin.session_id
    assert held.local_sdp.origin.session_version == first.local_sdp.origin.session_version + 1
    assert held.our_crypto == first.our_crypto


# -- checking answers ----------------------------------------------------------------------------


@pytest.fixture
def plain_offer() -> Offer:
    return build_offer(address="192.0.2.1", port=4000, secure=False)


def test_check_answer_picks_the_answer_codec(plain_offer: Offer) -> None:
    media = check_answer(plain_offer, plain("m=audio 5000 RTP/AVP 8 0 101\r\n"))
    assert media.codec.name == "PCMA"
    assert (media.their_address, media.their_port) == ("192.0.2.9", 5000)
    assert media.dtmf_payload_type == 101  # no rtpmap in the answer: our numbering applies


def test_check_answer_with_other_dtmf_number(plain_offer: Offer) -> None:
    media = check_answer(
        plain_offer,
        plain("m=audio 5000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"),
    )
    assert (media.dtmf_payload_type, media.our_dtmf_payload_type) == (96, 101)
    no_dtmf = check_answer(plain_offer, plain("m=audio 5000 RTP/AVP 0\r\n"))
    assert no_dtmf.dtmf_payload_type is None and no_dtmf.our_dtmf_payload_type is None


def test_check_answer_direction(plain_offer: Offer) -> None:
    assert (
        check_answer(
            plain_offer, plain("m=audio 5000 RTP/AVP 0\r\n", direction="recvonly")
        ).direction
        == "sendonly"
    )
    held = hold(plain_offer)
    assert (
        check_answer(held, plain("m=audio 5000 RTP/AVP 0\r\n", direction="recvonly")).direction
        == "sendonly"
    )
    assert (
        check_answer(held, plain("m=audio 5000 RTP/AVP 0\r\n", direction="inactive")).direction
        == "inactive"
    )


@pytest.mark.parametrize(
    ("media", "reason"),
    [
        ("m=audio 0 RTP/AVP 0\r\n", "refused the audio stream"),
        ("m=audio 5000 RTP/AVP 18\r\n", "no common codec"),
        ("m=video 5000 RTP/AVP 0\r\n", "m=video"),
        ("m=audio 5000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n", "2 m= lines"),
    ],
)
def test_unusable_answers(plain_offer: Offer, media: str, reason: str) -> None:
    with pytest.raises(MediaError, match=reason):
        check_answer(plain_offer, plain(media))


# -- the whole exchange, with real SRTP ----------------------------------------------------------


def _rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, 160 * seq, 0x1234ABCD) + b"\xff" * 160


@pytest.mark.parametrize("first", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
def test_offer_answer_check_then_srtp_both_ways(first: str) -> None:
    offer = build_offer(address="192.0.2.1", port=4000, secure=True)
    if first.endswith("_32"):  # a peer's offer with _32 first, answered by us
        text = str(offer.sdp).replace("AES_CM_128_HMAC_SHA1_80", first)
        theirs = SessionDescription.parse(text)
        callee = answer(theirs, secure_media_enabled=True, arrived_over_tls=True)
        assert callee.srtp_profile == pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32
        return
    callee = answer(bytes(offer.sdp), secure_media_enabled=True, arrived_over_tls=True)
    caller = check_answer(offer, bytes(callee.local_sdp))
    assert caller.their_crypto == callee.our_crypto
    assert callee.their_crypto == caller.our_crypto
    assert caller.srtp_profile == callee.srtp_profile == 1

    def session(media: NegotiatedMedia, *, outbound: bool) -> pylibsrtp.Session:
        crypto = media.our_crypto if outbound else media.their_crypto
        assert crypto is not None and media.srtp_profile is not None
        kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
        policy = pylibsrtp.Policy(
            key=crypto.keying_material(), ssrc_type=kind, srtp_profile=media.srtp_profile
        )
        return pylibsrtp.Session(policy=policy)

    packet = _rtp(1)
    protected = session(caller, outbound=True).protect(packet)
    assert protected != packet and len(protected) == len(packet) + 10
    assert session(callee, outbound=False).unprotect(protected) == packet
    reply = session(callee, outbound=True).protect(_rtp(2))
    assert session(caller, outbound=False).unprotect(reply) == _rtp(2)
