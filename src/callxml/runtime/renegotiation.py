"""Offer/answer after the first one: the peer's re-offers answered, our re-offers checked, and
the endpoint moved to what was agreed while the audio keeps flowing.

A call's media can change after it is answered: a re-INVITE or UPDATE (RFC 3261 §14,
RFC 3311) may move the peer's address or port, pick another codec, or bring new SRTP keys
(RFC 4568 §7.1.4: a re-offer carries keys, new ones when the offerer rekeys). The SIP core
asks the leg for the answer synchronously (its :data:`~callxml.sip.ua.Answerer`); this module
computes it with the same :func:`~callxml.sdp.answer_offer` and the same secure-media policy
that answered the first offer, and says what to change on the :class:`RtpEndpoint` once the 2xx
is on its way (:func:`apply_change`). Nothing is torn down: the socket, our SSRC and our RTP
clock stay, so the far end hears one continuous stream.

Pure apart from the endpoint calls in :func:`apply_change`; keys are never logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from callxml.errors import MediaError, SecureMediaError
from callxml.media.dtmf import DEFAULT_PAYLOAD_TYPE
from callxml.media.stream import RtpEndpoint, SrtpKeys
from callxml.sdp import NegotiatedMedia, Offer, answer_offer, check_answer
from callxml.sdp.policy import INBOUND_SUITES
from callxml.sip.ua import OfferRefused

__all__ = ["MediaChange", "answer_reoffer", "apply_change", "check_reoffer_answer", "srtp_keys"]

#: Connection addresses that mean "do not send" (RFC 3264 §8.4's old hold), never a destination.
NULL_ADDRESSES = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True, slots=True)
class MediaChange:
    """What a renegotiation changed on the endpoint: the codec or payload types (a bridge must
    rewire its relay), where we send, and the SRTP keys."""

    codec: bool = False
    remote: bool = False
    keys: bool = False

    @property
    def any(self) -> bool:
        return self.codec or self.remote or self.keys


def _their_key(media: NegotiatedMedia) -> bytes | None:
    return media.their_crypto.keying_material() if media.their_crypto is not None else None


def answer_reoffer(
    offer: bytes,
    current: NegotiatedMedia,
    *,
    address: str,
    port: int,
    secure_media: bool,
    over_tls: bool,
    srtp_suites: Sequence[str] = INBOUND_SUITES,
    zrtp_hash: str | None = None,
) -> NegotiatedMedia:
    """Answer the peer's re-offer under the policy the call was set up with.

    Our origin line is kept and its version bumped only if our SDP changed (RFC 3264 §8). Our
    SRTP key is kept while the peer keeps its own; when the peer rekeys (RFC 4568 §7.1.4) we
    answer with a fresh key too, so both directions start new crypto contexts together and the
    rollover counters of the old ones never matter. A refusal (secure-media policy, no usable
    stream, bad SDP) raises :class:`~callxml.sip.ua.OfferRefused`: 488 with a Warning, and the
    session stays as it was.
    """
    try:
        new = answer_offer(
            offer,
            address=address,
            port=port,
            secure_media_enabled=secure_media,
            arrived_over_tls=over_tls,
            srtp_suites=srtp_suites,
            zrtp_hash=zrtp_hash,
            previous=current,
        )
        if new.their_crypto is not None and _their_key(new) != _their_key(current):
            new = answer_offer(
                offer,
                address=address,
                port=port,
                secure_media_enabled=secure_media,
                arrived_over_tls=over_tls,
                srtp_suites=srtp_suites,
                zrtp_hash=zrtp_hash,
                previous=replace(current, our_crypto=None),
            )
    except MediaError as exc:
        reason = exc.reason if isinstance(exc, SecureMediaError) else str(exc)
        raise OfferRefused(reason) from exc
    return new


def check_reoffer_answer(offer: Offer, answer: bytes) -> NegotiatedMedia:
    """What the peer's answer to our re-offer agreed (:func:`~callxml.sdp.check_answer`: the same
    checks, and the same secure-media rules, as for the first answer). Raises
    :class:`~callxml.errors.MediaError` when it is unusable."""
    return check_answer(offer, answer)


def srtp_keys(media: NegotiatedMedia) -> SrtpKeys | None:
    """The endpoint's keys for ``media``: protect with ours, unprotect with theirs (RFC 4568
    §6.1); None for plain RTP."""
    ours, theirs = media.our_crypto, media.their_crypto
    if ours is None or theirs is None or ours.suite_info is None:
        return None
    return SrtpKeys(ours.suite_info.name, ours.keying_material(), theirs.keying_material())


def _keys(media: NegotiatedMedia) -> tuple[bytes, bytes] | None:
    keys = srtp_keys(media)
    return None if keys is None else (keys.our_key, keys.their_key)


def apply_change(endpoint: RtpEndpoint, old: NegotiatedMedia, new: NegotiatedMedia) -> MediaChange:
    """Move ``endpoint`` from ``old`` to ``new``, touching only what changed.

    The codec and payload types, the destination (not to a null ``c=`` address, which is a
    hold: we keep the old one and stop sending elsewhere), the SRTP keys (a new session only
    when a key changed: an unchanged context keeps its rollover counter). The caller rewires a
    bridge when :attr:`MediaChange.codec` is set.
    """
    codec = (old.codec, old.payload_type, old.dtmf_payload_type) != (
        new.codec,
        new.payload_type,
        new.dtmf_payload_type,
    )
    if codec:
        dtmf = new.dtmf_payload_type
        endpoint.set_payload_types(
            new.codec.name, new.payload_type, dtmf if dtmf is not None else DEFAULT_PAYLOAD_TYPE
        )
    moved = (new.their_address, new.their_port) != (old.their_address, old.their_port)
    remote = moved and new.their_address not in NULL_ADDRESSES and new.their_port > 0
    if remote:
        endpoint.set_remote((new.their_address, new.their_port))
    # A ZRTP leg's keys come from its exchange, never from SDP: left alone (they would be
    # "none" in both descriptions, and setting that would drop the leg to plain RTP).
    keys = not new.zrtp and _keys(old) != _keys(new)
    if keys:
        endpoint.set_srtp(srtp_keys(new))
    return MediaChange(codec, remote, keys)
