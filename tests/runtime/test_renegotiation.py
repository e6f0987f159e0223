"""Re-offers answered and applied (RFC 3264 §8, RFC 4568 §7.1.4): the pure half of
:mod:`callxml.runtime.renegotiation`, and :func:`apply_change` on a real endpoint.

The answer to a re-offer comes from the same ``answer_offer`` and the same secure-media policy
as the first answer; the endpoint is moved only where something changed."""

from __future__ import annotations

import base64

import pytest

from callxml.media.stream import RtpConfig, RtpEndpoint
from callxml.runtime.renegotiation import answer_reoffer, apply_change, srtp_keys
from callxml.sdp import answer_offer, build_offer
from callxml.sdp.negotiate import remote_codecs, reoffer
from callxml.sip.ua import OfferRefused

KEY_1 = base64.b64encode(bytes(range(30))).decode()
KEY_2 = base64.b64encode(bytes(range(30, 60))).decode()


def offer(*, port: int = 7000, key: str | None = KEY_1, formats: str = "0 8 101") -> bytes:
    proto = "RTP/SAVP" if key else "RTP/AVP"
    crypto = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n" if key else ""
    return (
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} {proto} {formats}\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n" + crypto
    ).encode()


def first(sdp: bytes, *, secure: bool = True):  # type: ignore[no-untyped-def]
    return answer_offer(
        sdp, address="127.0.0.1", port=4000, secure_media_enabled=secure, arrived_over_tls=True
    )


def test_same_keys_keep_our_key_and_origin() -> None:
    current = first(offer())
    again = answer_reoffer(
        offer(port=7002), current, address="127.0.0.1", port=4000, secure_media=True, over_tls=True
    )
    assert again.our_crypto == current.our_crypto  # no rekey: the contexts continue
    assert again.their_port == 7002
    assert again.local_sdp.origin.session_id == current.local_sdp.origin.session_id
    # our SDP did not change (same key, codec, port): same version (RFC 3264 §8)
    assert again.local_sdp.origin.session_version == current.local_sdp.origin.session_version


def test_a_peer_that_rekeys_gets_a_fresh_key_of_ours_too() -> None:
    current = first(offer())
    again = answer_reoffer(
        offer(key=KEY_2), current, address="127.0.0.1", port=4000, secure_media=True, over_tls=True
    )
    assert again.their_crypto is not None and current.their_crypto is not None
    assert again.their_crypto.keying_material() != current.their_crypto.keying_material()
    assert again.our_crypto is not None and current.our_crypto is not None
    assert again.our_crypto.keying_material() != current.our_crypto.keying_material()
    assert again.local_sdp.origin.session_version == current.local_sdp.origin.session_version + 1


def test_a_reoffer_breaking_the_policy_is_refused_with_the_reason() -> None:
    current = first(offer())
    with pytest.raises(OfferRefused, match="Secure media required: offer is RTP/AVP") as info:
        answer_reoffer(
            offer(key=None), current, address="127.0.0.1", port=4000, secure_media=True,
            over_tls=True,
        )  # fmt: skip
    assert info.value.status_hint == 488
    with pytest.raises(OfferRefused, match="no common codec"):
        answer_reoffer(
            offer(key=None, formats="9"),
            first(offer(key=None), secure=False),
            address="127.0.0.1",
            port=4000,
            secure_media=False,
            over_tls=False,
        )


def test_reoffer_with_codecs_and_remote_codecs() -> None:
    ours = build_offer(address="127.0.0.1", port=4000, secure=False)
    media = first(offer(key=None, formats="8 0 101"), secure=False)
    assert remote_codecs(media) == ("PCMA", "PCMU")
    assert media.codec.name == "PCMA"
    narrowed = reoffer(ours, codecs=["PCMU"])
    audio = narrowed.sdp.media[0]
    assert audio.payload_types == (0, 101) and audio.port == 4000
    assert narrowed.sdp.origin.session_version == ours.sdp.origin.session_version + 1
    held = reoffer(narrowed, direction="sendonly")
    assert held.sdp.direction_for(held.sdp.media[0]) == "sendonly"
    assert held.sdp.media[0].payload_types == (0, 101)


async def test_apply_change_touches_only_what_changed() -> None:
    endpoint = await RtpEndpoint.open(RtpConfig(rtcp=False))
    try:
        current = first(offer())
        endpoint.set_remote((current.their_address, current.their_port))
        endpoint.set_srtp(srtp_keys(current))
        session = endpoint._srtp
        same = answer_reoffer(
            offer(), current, address="127.0.0.1", port=4000, secure_media=True, over_tls=True
        )
        assert not apply_change(endpoint, current, same).any
        assert endpoint._srtp is session  # an unchanged context is kept (its ROC with it)
        moved = answer_reoffer(
            offer(port=7010, key=KEY_2, formats="8 101"),
            same,
            address="127.0.0.1",
            port=4000,
            secure_media=True,
            over_tls=True,
        )
        change = apply_change(endpoint, same, moved)
        assert change.codec and change.remote and change.keys
        assert endpoint.remote_address == ("127.0.0.1", 7010)
        assert endpoint.codec.name == "PCMA" and endpoint.payload_type == 8
        assert endpoint._srtp is not session
        held = answer_reoffer(
            offer(port=7010, key=KEY_2, formats="8 101").replace(
                b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0"
            ),
            moved,
            address="127.0.0.1",
            port=4000,
            secure_media=True,
            over_tls=True,
        )
        assert not apply_change(endpoint, moved, held).remote  # never send to 0.0.0.0
        assert endpoint.remote_address == ("127.0.0.1", 7010)
    finally:
        await endpoint.close()
