"""Offer/answer for one audio stream (RFC 3264), as plain functions.

Plain functions over immutable descriptions rather than an offer/answer object with state: the
call (its SIP dialog) already holds what we offered last and what came back, so each step takes
what it needs and returns a new description or raises, and every rule is a unit test with no
call around it.

Owns what we offer, what we answer and what we make of an answer: G.711 (PCMU, PCMA) at 8 kHz,
``telephone-event/8000`` (RFC 4733), ``ptime`` 20, the direction algebra used for hold
(RFC 3264 §6.1, §8.4), and refusing every other stream with port 0 (RFC 3264 §6). The secure-media
rules come from :mod:`callxml.sdp.policy`. Everything is pure and testable without sockets; the
media layer turns a :class:`NegotiatedMedia` into RTP/SRTP sessions.

Naming: ``our_*`` is what we send or chose, ``their_*`` the peer's. With SDES (RFC 4568 §6.1) each
side encrypts what it sends with the key *it* put in its SDP: protect with ``our_crypto``,
unprotect with ``their_crypto``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from callxml.errors import MediaError, SecureMediaError

from .crypto import CryptoAttribute, new_crypto
from .policy import (
    INBOUND_SUITES,
    RTP_AVP,
    RTP_SAVP,
    check_inbound,
    check_outbound_answer,
    new_outbound_crypto,
    new_outbound_cryptos,
)
from .session import (
    Attribute,
    Connection,
    Direction,
    InvalidSdp,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
)

__all__ = [
    "CODECS",
    "DEFAULT_DTMF_PAYLOAD_TYPE",
    "PTIME",
    "Codec",
    "NegotiatedMedia",
    "Offer",
    "answer_direction",
    "answer_offer",
    "build_offer",
    "check_answer",
    "hold",
    "offer_holds",
    "remote_codecs",
    "reoffer",
    "reverse_direction",
    "unhold",
]

PTIME = 20  # ms per packet we send and ask for (RFC 8866 §6.4)
DEFAULT_DTMF_PAYLOAD_TYPE = 101
TELEPHONE_EVENT = "telephone-event"
DTMF_EVENTS = "0-16"  # RFC 4733 §3.2: DTMF digits 0-9, *, #, A-D and flash
SESSION_NAME = "callxml"
RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class Codec:
    """An audio codec we can run: its RTP encoding name, clock rate and static payload type."""

    name: str
    clock_rate: int
    static_payload_type: int


#: Codecs we support, by name (RFC 3551 §6 static payload types).
CODECS: dict[str, Codec] = {
    "PCMU": Codec("PCMU", 8000, 0),
    "PCMA": Codec("PCMA", 8000, 8),
}
_STATIC = {c.static_payload_type: c for c in CODECS.values()}

# -- direction algebra (RFC 3264 §6.1) ------------------------------------------------------------

_FLAGS: dict[Direction, tuple[bool, bool]] = {  # (send, receive)
    "sendrecv": (True, True),
    "sendonly": (True, False),
    "recvonly": (False, True),
    "inactive": (False, False),
}
_BY_FLAGS: dict[tuple[bool, bool], Direction] = {v: k for k, v in _FLAGS.items()}


def reverse_direction(direction: Direction) -> Direction:
    """The direction as seen from the other end: ``sendonly`` ↔ ``recvonly``."""
    send, receive = _FLAGS[direction]
    return _BY_FLAGS[(receive, send)]


def answer_direction(offered: Direction, wanted: Direction = "sendrecv") -> Direction:
    """Our answer's direction: what we want, limited by what the offer allows (RFC 3264 §6.1).

    We may send only if they receive, and receive only if they send.
    """
    their_send, their_receive = _FLAGS[offered]
    our_send, our_receive = _FLAGS[wanted]
    return _BY_FLAGS[(our_send and their_receive, our_receive and their_send)]


def _limit(direction: Direction, *, send: bool, receive: bool) -> Direction:
    our_send, our_receive = _FLAGS[direction]
    return _BY_FLAGS[(our_send and send, our_receive and receive)]


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offer:
    """An offer we sent, and the secrets we keep to check its answer.

    ``our_crypto`` is None for a plain ``RTP/AVP`` offer; ``zrtp`` says the offer is
    ``RTP/AVP`` with our ``a=zrtp-hash`` (RFC 6189 §8.1): the leg is keyed by ZRTP in band.
    """

    sdp: SessionDescription
    our_crypto: CryptoAttribute | None = None
    zrtp: bool = False
    #: Every crypto line offered when there were several (``srtpSuites``); else empty.
    offered_cryptos: tuple[CryptoAttribute, ...] = ()

    @property
    def secure(self) -> bool:
        return self.our_crypto is not None


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The outcome of one offer/answer exchange for the audio stream.

    ``payload_type``/``dtmf_payload_type`` are what we put in the RTP we send (the peer's numbers);
    ``our_payload_type``/``our_dtmf_payload_type`` what the peer puts in RTP it sends us.
    ``direction`` is ours: ``sendonly`` means we send and do not expect media.
    """

    local_sdp: SessionDescription
    remote_sdp: SessionDescription
    media_index: int
    codec: Codec
    payload_type: int
    our_payload_type: int
    dtmf_payload_type: int | None
    our_dtmf_payload_type: int | None
    their_address: str
    their_port: int
    their_ptime: int | None
    direction: Direction
    our_crypto: CryptoAttribute | None = None
    their_crypto: CryptoAttribute | None = None
    #: ZRTP keys this leg in band (RFC 6189): RTP/AVP in SDP, SRTP once ZRTP completes.
    zrtp: bool = False
    #: The peer's ``a=zrtp-hash`` value, which its ZRTP Hello must match (RFC 6189 §8.1).
    their_zrtp_hash: str | None = None

    @property
    def secure(self) -> bool:
        return self.our_crypto is not None

    @property
    def srtp_profile(self) -> int | None:
        """The suite's DTLS-SRTP protection profile number, which is also the
        ``pylibsrtp.Policy`` profile for both directions; None for plain RTP or a suite without
        one."""
        if self.our_crypto is None or self.our_crypto.suite_info is None:
            return None
        return self.our_crypto.suite_info.dtls_srtp_profile


# -- building SDP ----------------------------------------------------------------------------------


def _audio_section(
    *,
    port: int,
    secure: bool,
    codecs: Sequence[tuple[Codec, int]],
    dtmf_payload_type: int | None,
    direction: Direction,
    crypto: CryptoAttribute | Sequence[CryptoAttribute] | None,
    zrtp_hash: str | None = None,
) -> MediaDescription:
    if not 0 < port <= 65535:
        raise ValueError(f"RTP port out of range: {port}")
    formats = [str(pt) for _, pt in codecs]
    attributes = [Attribute("rtpmap", str(RtpMap(pt, c.name, c.clock_rate))) for c, pt in codecs]
    if dtmf_payload_type is not None:
        formats.append(str(dtmf_payload_type))
        attributes.append(Attribute("rtpmap", f"{dtmf_payload_type} {TELEPHONE_EVENT}/8000"))
        attributes.append(Attribute("fmtp", f"{dtmf_payload_type} {DTMF_EVENTS}"))
    attributes += [Attribute("ptime", str(PTIME)), Attribute(direction)]
    for line in (crypto,) if isinstance(crypto, CryptoAttribute) else (crypto or ()):
        attributes.append(Attribute("crypto", str(line)))
    if zrtp_hash is not None:  # RFC 6189 §8.1: binds the ZRTP Hello to the signalling
        attributes.append(Attribute("zrtp-hash", zrtp_hash))
    return MediaDescription(
        media="audio",
        port=port,
        proto=RTP_SAVP if secure else RTP_AVP,
        formats=tuple(formats),
        attributes=tuple(attributes),
    )


def _session(
    address: str, session_id: int, media: Sequence[MediaDescription]
) -> SessionDescription:
    connection = Connection.for_address(address)
    origin = Origin("-", session_id, 1, "IN", connection.address_type, address)
    return SessionDescription(
        origin=origin,
        session_name=SESSION_NAME,
        connection=connection,
        times=(Timing(0, 0),),
        media=tuple(media),
    )


def _codecs(names: Sequence[str]) -> list[Codec]:
    unknown = [n for n in names if n.upper() not in CODECS]
    if unknown or not names:
        raise ValueError(f"unsupported codecs {unknown}; choose from {sorted(CODECS)}")
    return [CODECS[n.upper()] for n in names]


def build_offer(
    *,
    address: str,
    port: int,
    secure: bool,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf: bool = True,
    dtmf_payload_type: int = DEFAULT_DTMF_PAYLOAD_TYPE,
    direction: Direction = "sendrecv",
    session_id: int | None = None,
    zrtp_hash: str | None = None,
    srtp_suites: Sequence[str] = (),
    random_bytes: RandomBytes = secrets.token_bytes,
) -> Offer:
    """Our initial offer: one audio stream; ``secure`` → RTP/SAVP with one fresh crypto line;
    ``zrtp_hash`` (our ZRTP Hello's hash, not with ``secure``) → RTP/AVP with
    ``a=zrtp-hash`` (RFC 6189 §8.1), keyed in band.

    ``srtp_suites`` (with ``secure``; the ``<Sip srtpSuites>`` extension) offers one crypto
    line per suite, in that order, instead of the single ``AES_CM_128_HMAC_SHA1_80`` line;
    ``ValueError`` names a suite we cannot offer.

    ``address`` is our RTP IP address (IPv4 or IPv6 literal); ``random_bytes`` is injectable for
    tests only -- leave it alone in real calls.
    """
    if secure and zrtp_hash is not None:
        raise ValueError("an offer is keyed by SDES (secure) or by ZRTP, not both")
    several = (
        new_outbound_cryptos(srtp_suites, random_bytes=random_bytes)
        if secure and srtp_suites
        else ()
    )
    crypto = (
        (several[0] if several else new_outbound_crypto(random_bytes=random_bytes))
        if secure
        else None
    )
    section = _audio_section(
        port=port,
        secure=secure,
        codecs=[(c, c.static_payload_type) for c in _codecs(codecs)],
        dtmf_payload_type=dtmf_payload_type if dtmf else None,
        direction=direction,
        crypto=several or crypto,
        zrtp_hash=zrtp_hash,
    )
    sid = secrets.randbits(62) if session_id is None else session_id
    return Offer(_session(address, sid, [section]), crypto, zrtp_hash is not None, several)


def reoffer(
    previous: Offer | NegotiatedMedia,
    *,
    direction: Direction | None = None,
    codecs: Sequence[str] | None = None,
) -> Offer:
    """A re-offer (RFC 3264 §8) of our last SDP, same port and key: with a new ``direction``
    (hold), and/or offering only ``codecs`` (in that order, with our static payload types and
    ``telephone-event`` kept if we offered it) — e.g. to move a bridged leg to the other leg's
    codec so the relay stops transcoding.

    The session version goes up by one only if the SDP changed (RFC 3264 §8, RFC 8866 §5.2).
    """
    if isinstance(previous, Offer):
        sdp, crypto, index = previous.sdp, previous.our_crypto, _first_audio(previous.sdp)
    else:
        sdp, crypto, index = previous.local_sdp, previous.our_crypto, previous.media_index
    media = list(sdp.media)
    section = media[index]
    wanted = direction if direction is not None else sdp.direction_for(section)
    if codecs is None:
        media[index] = section.with_direction(wanted)
    else:
        media[index] = _audio_section(
            port=section.port,
            secure=crypto is not None,
            codecs=[(c, c.static_payload_type) for c in _codecs(codecs)],
            dtmf_payload_type=_dtmf_payload_type(section, section.rtpmaps()),
            direction=wanted,
            crypto=crypto,
        )
    new_sdp = sdp.with_media(media)
    return Offer(new_sdp if new_sdp == sdp else new_sdp.bump_version(), crypto, previous.zrtp)


def hold(previous: Offer | NegotiatedMedia) -> Offer:
    """Re-offer putting the peer on hold: stop receiving (RFC 3264 §8.4: sendonly or inactive)."""
    current = _current_direction(previous)
    return reoffer(previous, direction=_limit(current, send=True, receive=False))


def unhold(previous: Offer | NegotiatedMedia) -> Offer:
    """Re-offer taking the peer off hold: receive again (RFC 3264 §8.4, the reverse of hold)."""
    send, _ = _FLAGS[_current_direction(previous)]
    return reoffer(previous, direction=_BY_FLAGS[(send, True)])


def _current_direction(previous: Offer | NegotiatedMedia) -> Direction:
    if isinstance(previous, NegotiatedMedia):
        sdp, index = previous.local_sdp, previous.media_index
    else:
        sdp, index = previous.sdp, _first_audio(previous.sdp)
    return sdp.direction_for(sdp.media[index])


def _first_audio(sdp: SessionDescription) -> int:
    for index, m in enumerate(sdp.media):
        if m.media == "audio" and m.port != 0:
            return index
    raise MediaError("no active audio stream")


# -- reading SDP ---------------------------------------------------------------------------------


def _codec_of(media: MediaDescription, pt: int, rtpmaps: dict[int, RtpMap]) -> Codec | None:
    """Which of our codecs payload type ``pt`` means in ``media`` (rtpmap, else RFC 3551 table)."""
    rtpmap = rtpmaps.get(pt)
    if rtpmap is None:
        return _STATIC.get(pt)
    codec = CODECS.get(rtpmap.encoding_name.upper())  # names are case-insensitive (RFC 4855 §3)
    if codec is None or rtpmap.clock_rate != codec.clock_rate or rtpmap.channels not in (None, 1):
        return None
    return codec


def _dtmf_payload_type(media: MediaDescription, rtpmaps: dict[int, RtpMap]) -> int | None:
    for pt in media.payload_types:
        rtpmap = rtpmaps.get(pt)
        if rtpmap and rtpmap.encoding_name.lower() == TELEPHONE_EVENT and rtpmap.clock_rate == 8000:
            return pt
    return None


def _remote_address(sdp: SessionDescription, media: MediaDescription) -> tuple[str, bool]:
    """The address to send RTP to, and whether it is the old ``0.0.0.0`` hold (RFC 3264 §8.4)."""
    connection = sdp.connection_for(media)
    if connection is None:
        raise InvalidSdp("audio stream has no c= line")  # RFC 8866 §5.7
    if connection.network_type != "IN" or connection.address_type not in ("IP4", "IP6"):
        raise MediaError(
            f"unsupported connection {connection.network_type} {connection.address_type}"
        )
    return connection.host, connection.is_null


def offer_holds(sdp: SessionDescription | str | bytes) -> bool:
    """Whether an offer puts us on hold (RFC 3264 §8.4, RFC 6337 §5.3): its audio is
    ``sendonly`` or ``inactive``, or the old-style ``c=0.0.0.0``. A peer holding us may send
    nothing, so an RTP inactivity check must not count that silence against it. Unparseable
    SDP is not a hold (the answerer refuses it anyway)."""
    try:
        parsed = _parse(sdp)
        media = parsed.media[_first_audio(parsed)]
        _, null = _remote_address(parsed, media)
    except (MediaError, ValueError):  # InvalidSdp is a MediaError
        return False
    return null or parsed.direction_for(media) in ("sendonly", "inactive")


def remote_codecs(media: NegotiatedMedia) -> tuple[str, ...]:
    """The codecs we run that the peer's SDP lists for the negotiated stream, in its order: what
    a re-offer to that peer could move to (an offerer lists all it accepts, RFC 3264 §5.1)."""
    section = media.remote_sdp.media[media.media_index]
    rtpmaps = section.rtpmaps()
    found: list[str] = []
    for pt in section.payload_types:
        codec = _codec_of(section, pt, rtpmaps)
        if codec is not None and codec.name not in found:
            found.append(codec.name)
    return tuple(found)


def _parse(sdp: SessionDescription | str | bytes) -> SessionDescription:
    return sdp if isinstance(sdp, SessionDescription) else SessionDescription.parse(sdp)


def _rejected(media: MediaDescription) -> MediaDescription:
    """An answer's line refusing a stream: same media, proto and formats, port 0 (RFC 3264 §6)."""
    return MediaDescription(media.media, 0, media.proto, media.formats)


# -- answering -----------------------------------------------------------------------------------


def answer_offer(
    offer: SessionDescription | str | bytes,
    *,
    address: str,
    port: int,
    secure_media_enabled: bool = False,
    arrived_over_tls: bool = False,
    srtp_suites: Sequence[str] = INBOUND_SUITES,
    zrtp_hash: str | None = None,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf: bool = True,
    direction: Direction = "sendrecv",
    previous: NegotiatedMedia | None = None,
    session_id: int | None = None,
    random_bytes: RandomBytes = secrets.token_bytes,
) -> NegotiatedMedia:
    """Answer an offer (RFC 3264 §6): accept the first usable audio stream, refuse the rest.

    The codec is the first in the *offer's* order that we support; the answer lists it and
    ``telephone-event`` (if offered), with the offer's payload type numbers. With secure media the
    answer carries the offerer's crypto tag and a fresh key of our own (policy.py).

    ``previous`` is the last negotiation of this dialog when answering a re-offer: our origin is
    kept, the version bumped only if our SDP changed, and our key kept if the suite did not change.
    ``srtp_suites`` are the SDES suites the domain allows (policy.py). ``zrtp_hash`` (our ZRTP
    Hello's hash) says ZRTP may key the leg: an ``RTP/AVP`` offer is then answered with
    ``a=zrtp-hash`` and :attr:`NegotiatedMedia.zrtp` set -- with ``secure_media_enabled`` too,
    that is the domain's ``sdes-or-zrtp``: SDES on ``RTP/SAVP`` (over TLS), ZRTP on ``RTP/AVP``.

    Raises :class:`SecureMediaError` (488, with :func:`~callxml.sdp.policy.warning_header`) when
    the secure-media policy refuses, :class:`MediaError` when no stream is usable (488), and
    :class:`InvalidSdp` for a malformed offer.
    """
    remote = _parse(offer)
    if secure_media_enabled and not arrived_over_tls and zrtp_hash is None:
        raise SecureMediaError("Secure media required: request did not arrive over TLS")
    choice = _choose_stream(
        remote,
        _codecs(codecs),
        secure_media_enabled=secure_media_enabled,
        arrived_over_tls=arrived_over_tls,
        srtp_suites=srtp_suites,
        zrtp=zrtp_hash is not None,
    )
    media = remote.media[choice.index]
    offered = remote.direction_for(media)
    if choice.null_hold:
        offered = _limit(offered, send=True, receive=False)
    our_direction = answer_direction(offered, direction)
    dtmf_pt = _dtmf_payload_type(media, media.rtpmaps()) if dtmf else None
    their_crypto = choice.their_crypto
    our_crypto = None
    if their_crypto is not None:
        kept = previous.our_crypto if previous is not None else None
        if kept is not None and kept.suite_info == their_crypto.suite_info:
            our_crypto = replace(kept, tag=their_crypto.tag)
        else:
            our_crypto = new_crypto(their_crypto.tag, their_crypto.suite, random_bytes=random_bytes)
    zrtp = zrtp_hash is not None and their_crypto is None
    section = _audio_section(
        port=port,
        secure=their_crypto is not None,
        codecs=[(choice.codec, choice.payload_type)],
        dtmf_payload_type=dtmf_pt,
        direction=our_direction,
        crypto=our_crypto,
        zrtp_hash=zrtp_hash if zrtp else None,
    )
    answer_media = [
        section if i == choice.index else _rejected(m) for i, m in enumerate(remote.media)
    ]
    return NegotiatedMedia(
        local_sdp=_answer_session(address, answer_media, previous, session_id),
        remote_sdp=remote,
        media_index=choice.index,
        codec=choice.codec,
        payload_type=choice.payload_type,
        our_payload_type=choice.payload_type,
        dtmf_payload_type=dtmf_pt,
        our_dtmf_payload_type=dtmf_pt,
        their_address=choice.host,
        their_port=media.port,
        their_ptime=media.ptime,
        direction=our_direction,
        our_crypto=our_crypto,
        their_crypto=their_crypto,
        zrtp=zrtp,
        their_zrtp_hash=_zrtp_hash(media) if zrtp else None,
    )


def _zrtp_hash(media: MediaDescription) -> str | None:
    """The first ``a=zrtp-hash`` of a stream (RFC 6189 §8.1), or None."""
    values = media.attributes_named("zrtp-hash")
    return values[0] if values else None


@dataclass(frozen=True, slots=True)
class _Choice:
    """The offered stream we accept and what we chose in it."""

    index: int
    codec: Codec
    payload_type: int
    host: str
    null_hold: bool
    their_crypto: CryptoAttribute | None


def _choose_stream(
    remote: SessionDescription,
    ours: list[Codec],
    *,
    secure_media_enabled: bool,
    arrived_over_tls: bool,
    srtp_suites: Sequence[str],
    zrtp: bool = False,
) -> _Choice:
    """The first active audio stream that passes the policy and has a codec we run.

    When none does, the reason of the first failure is raised: with one audio stream (the usual
    case) that is the reason for that stream.
    """
    failure: MediaError | None = None
    for index, media in enumerate(remote.media):
        if media.media != "audio" or media.port == 0:
            continue
        try:
            their_crypto = check_inbound(
                media,
                secure_media_enabled=secure_media_enabled,
                arrived_over_tls=arrived_over_tls,
                suites=srtp_suites,
                zrtp=zrtp,
            )
            rtpmaps = media.rtpmaps()
            for pt in media.payload_types:
                codec = _codec_of(media, pt, rtpmaps)
                if codec is not None and codec in ours:
                    host, null_hold = _remote_address(remote, media)
                    return _Choice(index, codec, pt, host, null_hold, their_crypto)
            raise MediaError(
                f"no common codec: offered {' '.join(media.formats)}; "
                f"we support {', '.join(c.name for c in ours)}"
            )
        except MediaError as exc:
            failure = failure or exc
    raise failure or MediaError("offer has no active audio stream")


def _answer_session(
    address: str,
    media: list[MediaDescription],
    previous: NegotiatedMedia | None,
    session_id: int | None,
) -> SessionDescription:
    if previous is None:
        sid = secrets.randbits(62) if session_id is None else session_id
        return _session(address, sid, media)
    last = previous.local_sdp
    candidate = replace(_session(address, last.origin.session_id, media), origin=last.origin)
    return last if candidate == last else candidate.bump_version()


# -- checking an answer ----------------------------------------------------------------------------


def check_answer(offer: Offer, answer: SessionDescription | str | bytes) -> NegotiatedMedia:
    """Check the peer's answer to our :class:`Offer` and say what was agreed (RFC 3264 §5, §6).

    Raises :class:`SecureMediaError` when the answer breaks the secure-media policy, and
    :class:`MediaError` when it is unusable otherwise (stream refused, no common codec, wrong
    number of m= lines); the caller ACKs, then BYEs, with ``DialCallStatus=failed`` and the reason.
    """
    remote = _parse(answer)
    ours = offer.sdp
    if len(remote.media) != len(ours.media):
        raise MediaError(
            f"answer has {len(remote.media)} m= lines, "
            f"the offer had {len(ours.media)} (RFC 3264 §6)"
        )
    index = _first_audio(ours)
    media = remote.media[index]
    if media.media != "audio":
        raise MediaError(f"answer has m={media.media} where we offered audio")
    if media.port == 0:
        raise MediaError("answer refused the audio stream (port 0)")
    their_crypto = check_outbound_answer(offer.offered_cryptos or offer.our_crypto, media)
    our_crypto = offer.our_crypto
    if their_crypto is not None and offer.offered_cryptos:  # the line whose suite they took
        our_crypto = next(
            c for c in offer.offered_cryptos if c.suite_info == their_crypto.suite_info
        )
    our_media = ours.media[index]
    our_rtpmaps = our_media.rtpmaps()
    offered = {
        codec: pt
        for pt in our_media.payload_types
        if (codec := _codec_of(our_media, pt, our_rtpmaps)) is not None
    }
    rtpmaps = media.rtpmaps()
    chosen = None
    for pt in media.payload_types:
        # RFC 3264 §6.1: the answer's numbers are what the answerer receives; ours stay ours.
        codec = _codec_of(media, pt, rtpmaps) or _codec_of(our_media, pt, our_rtpmaps)
        if codec is not None and codec in offered:
            chosen = (codec, pt)
            break
    if chosen is None:
        raise MediaError(f"no common codec in the answer: {' '.join(media.formats)}")
    host, null_hold = _remote_address(remote, media)
    their_direction = remote.direction_for(media)
    if null_hold:
        their_direction = _limit(their_direction, send=True, receive=False)
    direction = answer_direction(their_direction, ours.direction_for(our_media))
    our_dtmf = _dtmf_payload_type(our_media, our_rtpmaps)
    their_dtmf = None
    if our_dtmf is not None:
        their_dtmf = _dtmf_payload_type(media, rtpmaps)
        if their_dtmf is None and our_dtmf in media.payload_types and our_dtmf not in rtpmaps:
            their_dtmf = our_dtmf  # listed without an rtpmap: our offer's mapping applies
    return NegotiatedMedia(
        local_sdp=ours,
        remote_sdp=remote,
        media_index=index,
        codec=chosen[0],
        payload_type=chosen[1],
        our_payload_type=offered[chosen[0]],
        dtmf_payload_type=their_dtmf,
        our_dtmf_payload_type=our_dtmf if their_dtmf is not None else None,
        their_address=host,
        their_port=media.port,
        their_ptime=media.ptime,
        direction=direction,
        our_crypto=our_crypto,
        their_crypto=their_crypto,
        zrtp=offer.zrtp,
        their_zrtp_hash=_zrtp_hash(media) if offer.zrtp else None,
    )
