"""The secure-media policy table (docs/sdp.md), one test per row at least, plus the edge cases."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import pytest

from callxml.errors import MediaError, SecureMediaError
from callxml.media.suites import SUITES
from callxml.sdp.crypto import parse_crypto
from callxml.sdp.negotiate import NegotiatedMedia, Offer, answer_offer, build_offer, check_answer
from callxml.sdp.policy import (
    INBOUND_SUITES,
    SDES_SUITES,
    check_inbound,
    check_outbound_answer,
    check_suites,
    choose_inbound_crypto,
    warning_header,
)
from callxml.sdp.session import Attribute, MediaDescription, SessionDescription
from callxml.sip.uri import parse_uri

FIXTURES = Path(__file__).parent / "fixtures"
KEY_A = base64.b64encode(bytes(range(30))).decode()
KEY_B = base64.b64encode(bytes(range(100, 130))).decode()
KEY_256 = base64.b64encode(bytes(range(46))).decode()


def load(name: str) -> SessionDescription:
    return SessionDescription.parse((FIXTURES / name).read_bytes())


def savp(*crypto_lines: str, proto: str = "RTP/SAVP") -> SessionDescription:
    lines = "".join(f"a=crypto:{c}\r\n" for c in crypto_lines)
    return SessionDescription.parse(
        "v=0\r\no=- 5 5 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        f"m=audio 4000 {proto} 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n{lines}"
    )


def answer(offer: SessionDescription, *, enabled: bool = True, tls: bool = True) -> NegotiatedMedia:
    return answer_offer(
        offer, address="198.51.100.1", port=6000, secure_media_enabled=enabled, arrived_over_tls=tls
    )


def refusal(offer: SessionDescription, *, enabled: bool = True, tls: bool = True) -> str:
    with pytest.raises(SecureMediaError) as info:
        answer(offer, enabled=enabled, tls=tls)
    assert info.value.status == 488
    return info.value.reason


# -- row: outbound <Sip> URI with ;secure=true ---------------------------------------------------


def test_row_outbound_secure_offer_has_exactly_one_fresh_crypto_line() -> None:
    offers = [build_offer(address="192.0.2.1", port=4000, secure=True) for _ in range(2)]
    for offer in offers:
        (audio,) = offer.sdp.media
        assert audio.proto == "RTP/SAVP"
        (line,) = audio.attributes_named("crypto")
        tag, suite, key = line.split(" ")
        assert (tag, suite) == ("1", "AES_CM_128_HMAC_SHA1_80")
        assert key.startswith("inline:") and len(key) == len("inline:") + 40  # no |lifetime|MKI
        assert len(base64.b64decode(key[7:])) == 30
        assert offer.our_crypto is not None and str(offer.our_crypto) == line
    assert offers[0].our_crypto != offers[1].our_crypto  # fresh per call


# -- row: outbound answer ------------------------------------------------------------------------


@pytest.fixture
def secure_offer() -> Offer:
    return build_offer(
        address="192.0.2.1", port=4000, secure=True, random_bytes=lambda n: bytes(range(n))
    )


def answer_with(*crypto: str, proto: str = "RTP/SAVP") -> SessionDescription:
    return savp(*crypto, proto=proto)


def test_row_outbound_answer_accepted(secure_offer: Offer) -> None:
    media = check_answer(secure_offer, answer_with(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}"))
    assert media.their_crypto is not None
    assert media.their_crypto.keying_material() == bytes(range(100, 130))
    assert media.our_crypto == secure_offer.our_crypto
    assert media.srtp_profile == 1


def test_outbound_answer_renumbered_tag_is_accepted_when_the_suite_matches(
    secure_offer: Offer,
) -> None:
    # The carrier article's 183 answers with tag 5 -- peers renumber; the suite is what counts.
    media = check_answer(secure_offer, load("carrier_answer_183.sdp"))
    assert media.their_crypto is not None and media.their_crypto.tag == 5
    assert (media.their_address, media.their_port) == ("192.0.2.77", 29078)
    assert media.dtmf_payload_type == 101


@pytest.mark.parametrize(
    ("sdp", "reason"),
    [
        (answer_with(proto="RTP/AVP"), "answer is RTP/AVP"),
        (answer_with(), "0 a=crypto lines, expected 1"),
        (
            answer_with(
                f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}",
                f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}",
            ),
            "2 a=crypto lines",
        ),
        (answer_with(f"1 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}"), "suite AES_CM_128_HMAC_SHA1_32"),
        (answer_with(f"1 AES_256_CM_HMAC_SHA1_80 inline:{KEY_256}"), "suite AES_256"),
        (answer_with(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}|1:4"), "MKI"),
        (answer_with(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}|2^10"), "lifetime"),
        (answer_with(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B} KDR=1"), "session parameters"),
        (answer_with("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA"), "malformed"),
        (answer_with(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"), "reuses our key"),
    ],
)
def test_row_outbound_bad_answer_fails_the_leg(
    secure_offer: Offer, sdp: SessionDescription, reason: str
) -> None:
    with pytest.raises(SecureMediaError, match=reason) as info:
        check_answer(secure_offer, sdp)
    assert KEY_B not in info.value.reason and KEY_A not in info.value.reason


def test_outbound_answer_with_lifetime_is_accepted(secure_offer: Offer) -> None:
    media = check_answer(
        secure_offer, answer_with(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}|2^31")
    )
    assert media.their_crypto is not None


def test_plain_offer_refuses_an_srtp_answer() -> None:
    plain = build_offer(address="192.0.2.1", port=4000, secure=False)
    with pytest.raises(SecureMediaError, match="answer is RTP/SAVP but we offered RTP/AVP"):
        check_answer(plain, answer_with(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}"))
    with pytest.raises(SecureMediaError, match="did not offer SRTP"):
        check_answer(
            plain, answer_with(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}", proto="RTP/AVP")
        )
    assert check_answer(plain, answer_with(proto="RTP/AVP")).their_crypto is None


# -- row: secure other than true/false -----------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "secure"),
    [
        ("sip:jack@example.com;secure=true", True),
        ("sip:jack@example.com;secure=false", False),
        ("sip:jack@example.com;secure=maybe", False),
        ("sip:jack@example.com", False),
    ],
)
def test_row_secure_maybe_is_treated_as_false(uri: str, secure: bool) -> None:
    offer = build_offer(address="192.0.2.1", port=4000, secure=parse_uri(uri).secure)
    assert offer.sdp.media[0].proto == ("RTP/SAVP" if secure else "RTP/AVP")
    assert bool(offer.sdp.media[0].attributes_named("crypto")) is secure
    assert offer.secure is secure


# -- row: inbound, domain secure media enabled ---------------------------------------------------


def test_row_inbound_enabled_accepts_tls_savp_with_acceptable_crypto() -> None:
    offer = load("asterisk_savp.sdp")
    media = answer(offer)
    their = parse_crypto(offer.media[0].attributes_named("crypto")[0])
    assert media.their_crypto == their
    (line,) = media.local_sdp.media[0].attributes_named("crypto")
    assert media.local_sdp.media[0].proto == "RTP/SAVP"
    assert line.startswith("1 AES_CM_128_HMAC_SHA1_80 inline:")
    assert media.our_crypto is not None
    assert media.our_crypto.keying_material() != their.keying_material()


def test_inbound_enabled_refuses_request_not_over_tls() -> None:
    reason = refusal(load("asterisk_savp.sdp"), tls=False)
    assert reason == "Secure media required: request did not arrive over TLS"
    with pytest.raises(SecureMediaError):
        check_inbound(
            load("asterisk_savp.sdp").media[0], secure_media_enabled=True, arrived_over_tls=False
        )


def test_inbound_enabled_refuses_plain_rtp() -> None:
    assert refusal(load("freeswitch_avp.sdp")) == "Secure media required: offer is RTP/AVP"


def test_inbound_enabled_refuses_the_carrier_offer_as_printed_on_rtp_avp() -> None:
    # The carrier article prints its 9-suite offer on RTP/AVP: a=crypto means nothing there.
    assert refusal(load("carrier_offer_9_suites.sdp")) == "Secure media required: offer is RTP/AVP"


def test_carrier_nine_suite_offer_on_savp_picks_tag_5() -> None:
    offer = load("carrier_offer_9_suites.sdp")
    audio = replace(offer.media[0], proto="RTP/SAVP")
    media = answer(offer.with_media([audio]))
    assert media.their_crypto is not None and media.their_crypto.tag == 5
    assert (
        media.local_sdp.media[0]
        .attributes_named("crypto")[0]
        .startswith("5 AES_CM_128_HMAC_SHA1_80 inline:")
    )


def test_aead_null_auth_192_256_are_skipped() -> None:
    offer = load("carrier_offer_9_suites.sdp")
    lines = [v for v in offer.media[0].attributes_named("crypto") if "AES_CM_128_HMAC" not in v]
    assert len(lines) == 7
    reason = refusal(savp(*lines))
    for suite in ("AEAD_AES_256_GCM_8", "AES_192_CM_HMAC_SHA1_80"):
        assert f"{suite} (suite not supported)" in reason
    # runnable, but the default srtp_suites allow only the AES-128 counter-mode pair
    assert "AES_256_CM_HMAC_SHA1_80 (suite not allowed by this domain)" in reason
    assert reason.endswith("; ...")  # seven skipped lines, six listed
    assert "inline" not in reason


def test_fs_spelling_of_256_is_skipped_then_128_80_chosen() -> None:
    media = answer(load("freeswitch_savp.sdp"))
    assert media.their_crypto is not None
    assert (media.their_crypto.tag, media.their_crypto.suite) == (5, "AES_CM_128_HMAC_SHA1_80")


def test_32_is_chosen_when_first() -> None:
    media = answer(load("baresip_savp.sdp"))  # baresip lists AES_CM_128_HMAC_SHA1_32 first
    assert media.their_crypto is not None
    assert (media.their_crypto.tag, media.their_crypto.suite) == (1, "AES_CM_128_HMAC_SHA1_32")
    (line,) = media.local_sdp.media[0].attributes_named("crypto")
    assert line.startswith("1 AES_CM_128_HMAC_SHA1_32 inline:")
    assert media.srtp_profile == 2


def test_mki_lines_are_skipped() -> None:
    media = answer(load("linphone_savp.sdp"))  # tag 1 carries |2^31|1:1
    assert media.their_crypto is not None and media.their_crypto.tag == 2
    reason = refusal(savp(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^31|1:1"))
    assert "tag 1 AES_CM_128_HMAC_SHA1_80 (MKI not supported)" in reason


def test_savp_offer_with_no_acceptable_line_is_refused() -> None:
    reason = refusal(savp(f"1 AES_256_CM_HMAC_SHA1_80 inline:{KEY_256}"))
    assert reason.startswith("Secure media required: no acceptable a=crypto")
    assert refusal(savp()) == "Secure media required: RTP/SAVP offer has no a=crypto line"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A};inline:{KEY_B}", "several keys"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A} UNENCRYPTED_SRTP", "session parameters"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^10", "lifetime too short"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "malformed line"),
    ],
)
def test_other_unacceptable_lines_are_skipped(line: str, problem: str) -> None:
    assert problem in refusal(savp(line))
    good = f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}"
    assert choose_inbound_crypto(savp(line, good).media[0]).tag == 2


def test_acceptable_lifetime_is_fine() -> None:
    assert choose_inbound_crypto(savp(f"3 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^31").media[0])


# -- row: inbound, domain secure media disabled (default) ----------------------------------------


@pytest.mark.parametrize("tls", [False, True])
def test_row_inbound_disabled_answers_plain_rtp_over_any_transport(tls: bool) -> None:
    media = answer(load("asterisk_pjsip_avp.sdp"), enabled=False, tls=tls)
    assert media.local_sdp.media[0].proto == "RTP/AVP"
    assert media.our_crypto is None and media.their_crypto is None
    assert media.local_sdp.media[0].attributes_named("crypto") == ()


def test_default_is_disabled() -> None:
    media = answer_offer(load("freeswitch_avp.sdp"), address="198.51.100.1", port=6000)
    assert not media.secure
    with pytest.raises(SecureMediaError, match="disabled"):
        answer_offer(load("asterisk_savp.sdp"), address="198.51.100.1", port=6000)


def test_inbound_disabled_refuses_srtp_offer() -> None:
    reason = refusal(load("asterisk_savp.sdp"), enabled=False)
    assert reason == "Secure media disabled for this domain: offer is RTP/SAVP"


def test_inbound_disabled_ignores_crypto_on_rtp_avp() -> None:
    media = answer(load("carrier_offer_9_suites.sdp"), enabled=False, tls=False)
    assert media.local_sdp.media[0].proto == "RTP/AVP"
    assert media.local_sdp.media[0].attributes_named("crypto") == ()


def test_dtls_webrtc_offer_is_refused_either_way() -> None:
    for enabled in (False, True):
        assert "offer is UDP/TLS/RTP/SAVPF" in refusal(load("webrtc_chrome.sdp"), enabled=enabled)


# -- row: the answer we send ---------------------------------------------------------------------


def test_row_our_answer_never_echoes_their_key_and_keeps_their_tag() -> None:
    offer = savp(f"42 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}")
    keys = set()
    for _ in range(3):
        media = answer(offer)
        assert media.our_crypto is not None
        assert media.our_crypto.tag == 42
        assert media.our_crypto.keying_material() != bytes(range(30))
        keys.add(media.our_crypto.keying_material())
    assert len(keys) == 3  # fresh per call


def test_keys_do_not_leak_into_reprs_or_reasons() -> None:
    media = answer(savp(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"))
    assert KEY_A not in repr(media)
    assert media.our_crypto is not None
    ours = str(media.our_crypto).split("inline:")[1]
    assert ours not in repr(media)


# -- Warning header ------------------------------------------------------------------------------


def test_warning_header() -> None:
    assert (
        warning_header("Secure media required: offer is RTP/AVP")
        == '399 callxml "Secure media required: offer is RTP/AVP"'
    )
    assert warning_header('a "quoted"\r\nthing', code=305) == '305 callxml "a \\"quoted\\"  thing"'
    assert len(warning_header("x" * 1000)) < 230


def test_check_functions_directly() -> None:
    audio = MediaDescription(
        "audio",
        1,
        "RTP/SAVP",
        ("0",),
        attributes=(Attribute("crypto", f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"),),
    )
    assert check_inbound(audio, secure_media_enabled=True, arrived_over_tls=True) is not None
    assert check_outbound_answer(None, replace(audio, proto="RTP/AVP", attributes=())) is None
    with pytest.raises(MediaError):
        check_inbound(audio, secure_media_enabled=False, arrived_over_tls=True)


# -- a domain's srtp_suites ----------------------------------------------------------------------


def test_sdes_suites_are_exactly_what_the_srtp_layer_runs() -> None:
    from callxml.media.srtp import PROFILES

    assert set(SDES_SUITES) == set(PROFILES)
    assert INBOUND_SUITES == ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")


@pytest.mark.parametrize(
    "suite",
    ["AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_256_CM_HMAC_SHA1_80", "AES_256_CM_HMAC_SHA1_32"],
)
def test_a_domain_allowing_a_wider_suite_answers_it_with_a_fresh_key_of_its_size(
    suite: str,
) -> None:
    size = SUITES[suite].key_salt_octets
    theirs = base64.b64encode(bytes(range(size))).decode()
    offer = savp(f"1 {suite} inline:{theirs}")
    media = answer_offer(
        offer,
        address="198.51.100.1",
        port=6000,
        secure_media_enabled=True,
        arrived_over_tls=True,
        srtp_suites=(suite, "AES_CM_128_HMAC_SHA1_80"),
    )
    assert media.our_crypto is not None and media.our_crypto.suite == suite
    assert len(media.our_crypto.keying_material()) == size
    assert media.our_crypto.keying_material() != bytes(range(size))
    # the default domain refuses the same offer, naming the suite and why
    reason = refusal(offer)
    assert f"tag 1 {suite} (suite not allowed by this domain)" in reason


def test_the_offer_order_wins_among_allowed_suites() -> None:
    """RFC 4568 §7.1.2: the offerer's order is its preference; the domain's list only allows."""
    gcm = base64.b64encode(bytes(44)).decode()
    offer = savp(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}", f"2 AEAD_AES_256_GCM inline:{gcm}")
    media = answer_offer(
        offer,
        address="198.51.100.1",
        port=6000,
        secure_media_enabled=True,
        arrived_over_tls=True,
        srtp_suites=("AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"),
    )
    assert media.their_crypto is not None and media.their_crypto.tag == 1
    only_gcm = answer_offer(
        offer,
        address="198.51.100.1",
        port=6000,
        secure_media_enabled=True,
        arrived_over_tls=True,
        srtp_suites=("AEAD_AES_256_GCM",),
    )
    assert only_gcm.their_crypto is not None and only_gcm.their_crypto.tag == 2


def test_check_suites() -> None:
    assert check_suites(["aead_aes_256_gcm", "AES_CM_256_HMAC_SHA1_80"]) == (
        "AEAD_AES_256_GCM",
        "AES_256_CM_HMAC_SHA1_80",
    )
    for bad in (["AES_192_CM_HMAC_SHA1_80"], ["NOPE"], [], ["AEAD_AES_128_GCM"] * 2, [3]):
        with pytest.raises(ValueError):
            check_suites(bad)  # type: ignore[arg-type]


# -- ZRTP (RFC 6189): a=zrtp-hash and the media_encryption rows ---------------------------------

HELLO_HASH = "1.10 " + "ab" * 32


def avp(*extra: str) -> SessionDescription:
    lines = "".join(f"a={e}\r\n" for e in extra)
    return SessionDescription.parse(
        "v=0\r\no=- 5 5 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        f"m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n{lines}"
    )


def test_a_zrtp_offer_is_rtp_avp_with_our_hello_hash() -> None:
    offer = build_offer(address="192.0.2.1", port=4000, secure=False, zrtp_hash=HELLO_HASH)
    (audio,) = offer.sdp.media
    assert offer.zrtp and not offer.secure and audio.proto == "RTP/AVP"
    assert audio.attributes_named("zrtp-hash") == (HELLO_HASH,)
    assert not audio.attributes_named("crypto")
    with pytest.raises(ValueError):
        build_offer(address="192.0.2.1", port=4000, secure=True, zrtp_hash=HELLO_HASH)


def test_zrtp_domain_answers_an_avp_offer_with_its_hash_and_keeps_theirs() -> None:
    theirs = "1.10 " + "cd" * 32
    media = answer_offer(
        avp(f"zrtp-hash:{theirs}"), address="198.51.100.1", port=6000, zrtp_hash=HELLO_HASH
    )
    assert media.zrtp and media.their_zrtp_hash == theirs and not media.secure
    assert media.local_sdp.media[0].attributes_named("zrtp-hash") == (HELLO_HASH,)
    plain = answer_offer(avp(), address="198.51.100.1", port=6000)
    assert not plain.zrtp and not plain.local_sdp.media[0].attributes_named("zrtp-hash")


def test_zrtp_domain_refuses_an_srtp_offer() -> None:
    with pytest.raises(SecureMediaError) as info:
        answer_offer(
            savp(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"),
            address="198.51.100.1",
            port=6000,
            arrived_over_tls=True,
            zrtp_hash=HELLO_HASH,
        )
    assert info.value.reason == "ZRTP required: offer is RTP/SAVP, expected RTP/AVP"


def test_sdes_or_zrtp_takes_either_by_the_offer_s_profile() -> None:
    both = {"secure_media_enabled": True, "zrtp_hash": HELLO_HASH}
    sdes = answer_offer(
        savp(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"),
        address="198.51.100.1",
        port=6000,
        arrived_over_tls=True,
        **both,  # type: ignore[arg-type]
    )
    assert sdes.secure and not sdes.zrtp
    assert not sdes.local_sdp.media[0].attributes_named("zrtp-hash")
    zrtp = answer_offer(avp(), address="198.51.100.1", port=6000, **both)  # type: ignore[arg-type]
    assert zrtp.zrtp and not zrtp.secure  # ZRTP needs no TLS: it is end to end on the media
    with pytest.raises(SecureMediaError) as info:  # SDES keys in SDP still need TLS
        answer_offer(
            savp(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}"),
            address="198.51.100.1",
            port=6000,
            **both,  # type: ignore[arg-type]
        )
    assert "did not arrive over TLS" in info.value.reason


def test_the_answer_to_a_zrtp_offer_must_be_plain_rtp() -> None:
    offer = build_offer(address="192.0.2.1", port=4000, secure=False, zrtp_hash=HELLO_HASH)
    theirs = "1.10 " + "ef" * 32
    media = check_answer(offer, avp(f"zrtp-hash:{theirs}"))
    assert media.zrtp and media.their_zrtp_hash == theirs
    with pytest.raises(SecureMediaError):
        check_answer(offer, savp(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}"))


def test_an_offer_asking_for_more_suites_lists_them_in_order_and_takes_the_answered_one() -> None:
    offer = build_offer(
        address="192.0.2.1",
        port=4000,
        secure=True,
        srtp_suites=("AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"),
    )
    lines = offer.sdp.media[0].attributes_named("crypto")
    assert [line.split()[:2] for line in lines] == [
        ["1", "AEAD_AES_256_GCM"],
        ["2", "AES_CM_128_HMAC_SHA1_80"],
    ]
    assert [len(c.keying_material()) for c in offer.offered_cryptos] == [44, 30]
    media = check_answer(offer, answer_with(f"2 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}"))
    assert media.our_crypto is offer.offered_cryptos[1] and media.srtp_profile == 1
    with pytest.raises(SecureMediaError) as info:
        check_answer(offer, answer_with(f"1 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B}"))
    assert "expected AEAD_AES_256_GCM or AES_CM_128_HMAC_SHA1_80" in info.value.reason
    with pytest.raises(ValueError):
        build_offer(
            address="192.0.2.1", port=4000, secure=True, srtp_suites=("F8_128_HMAC_SHA1_80",)
        )
    plain = build_offer(address="192.0.2.1", port=4000, secure=True)
    assert len(plain.sdp.media[0].attributes_named("crypto")) == 1 and not plain.offered_cryptos
