"""The secure-media policy: which SRTP offers and answers callxml accepts (docs/sdp.md's table).

Owns the rules, as plain functions over parsed SDP, so every row of the policy table is a unit test:

* outbound ``secure=true``: offer ``RTP/SAVP`` with exactly one ``a=crypto`` line,
  ``AES_CM_128_HMAC_SHA1_80``, a fresh 30-byte key+salt, no lifetime, no MKI
  (:func:`new_outbound_crypto`) -- unless the callxml extension ``<Sip srtpSuites>`` asks for
  a list of :data:`SDES_SUITES`, one line each (:func:`new_outbound_cryptos`);
* the answer to that offer must be ``RTP/SAVP`` with one crypto line of our suite and no MKI -- a
  renumbered tag is fine when the suite matches (:func:`check_outbound_answer`);
* inbound, domain secure media enabled: the INVITE arrived over TLS and offers ``RTP/SAVP``; the
  first line in the offer's order whose suite the domain allows (its ``srtp_suites``, by default
  ``AES_CM_128_HMAC_SHA1_80`` and ``_32``; :data:`SDES_SUITES` are all it may allow) and has no
  MKI wins (:func:`check_inbound`, :func:`choose_inbound_crypto`);
* inbound, secure media disabled (the default): ``RTP/AVP`` only.

A refusal raises :class:`~callxml.errors.SecureMediaError` whose ``reason`` is fit for a SIP
``Warning`` header (:func:`warning_header`), ``DialCallStatus=failed`` and the call log: it names
suites, tags and protocols, never key material.

It must not know about codecs, sockets or SIP transactions: the caller says whether the request
came over TLS and whether the domain enables secure media (a bool -- ``secure=maybe`` is already
false by the time it gets here, see :mod:`callxml.sip.uri`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

from callxml.errors import SecureMediaError
from callxml.media.suites import (
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
    AES_256_CM_HMAC_SHA1_32,
    AES_256_CM_HMAC_SHA1_80,
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
)

from .crypto import (
    CryptoAttribute,
    InvalidCrypto,
    find_suite,
    new_crypto,
    parse_crypto,
)
from .session import MediaDescription

__all__ = [
    "INBOUND_SUITES",
    "MEDIA_ENCRYPTIONS",
    "MIN_LIFETIME",
    "OUTBOUND_SUITE",
    "RTP_AVP",
    "RTP_SAVP",
    "SDES_SUITES",
    "check_inbound",
    "check_outbound_answer",
    "check_suites",
    "choose_inbound_crypto",
    "new_outbound_crypto",
    "new_outbound_cryptos",
    "warning_header",
]

RTP_AVP = "RTP/AVP"  # RFC 3551
RTP_SAVP = "RTP/SAVP"  # RFC 3711 §12
#: Suites we accept from an inbound offer unless the domain says otherwise, by RFC 4568 name.
INBOUND_SUITES = (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32)
#: Every suite a domain's ``srtp_suites`` may name: what :mod:`callxml.media.srtp` runs (the
#: tests check the two agree). RFC 4568 §6.2, RFC 6188 §3 (AES-256 counter mode), RFC 7714 §14.2
#: (AEAD AES-GCM). The 192-bit, F8, NULL and 8-octet-tag GCM suites are parsed but never allowed.
SDES_SUITES = (
    AES_CM_128_HMAC_SHA1_80,
    AES_CM_128_HMAC_SHA1_32,
    AES_256_CM_HMAC_SHA1_80,
    AES_256_CM_HMAC_SHA1_32,
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
)
#: The one suite we offer outbound.
OUTBOUND_SUITE = AES_CM_128_HMAC_SHA1_80
#: Shortest key lifetime (packets) we accept: we never re-key, and 2^20 packets is 5.8 h at 50 pps.
MIN_LIFETIME = 2**20
#: A domain's ``media_encryption`` (docs/sdp.md): ``none`` (plain RTP/AVP), ``sdes`` (what
#: ``secure_media = true`` means: RTP/SAVP over TLS), ``zrtp`` (RTP/AVP keyed in band, RFC 6189),
#: ``sdes-or-zrtp`` (either, by the offer's profile).
MEDIA_ENCRYPTIONS = ("none", "sdes", "zrtp", "sdes-or-zrtp")
#: Most skipped lines we list in a refusal reason.
_MAX_LISTED = 6


def warning_header(reason: str, *, code: int = 399, agent: str = "callxml") -> str:
    """A SIP ``Warning`` header value (RFC 3261 §20.43) carrying ``reason``.

    >>> warning_header("Secure media required: offer is RTP/AVP")
    '399 callxml "Secure media required: offer is RTP/AVP"'
    """
    text = "".join(c if c.isprintable() else " " for c in reason)[:200]
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'{code} {agent} "{text}"'


def new_outbound_crypto(
    *, random_bytes: Callable[[int], bytes] = secrets.token_bytes
) -> CryptoAttribute:
    """Our offer's only crypto line: tag 1, AES_CM_128_HMAC_SHA1_80, fresh key, nothing else."""
    return new_crypto(1, OUTBOUND_SUITE, random_bytes=random_bytes)


def new_outbound_cryptos(
    suites: Sequence[str], *, random_bytes: Callable[[int], bytes] = secrets.token_bytes
) -> tuple[CryptoAttribute, ...]:
    """The crypto lines of an offer that asks for more than :data:`OUTBOUND_SUITE` (the
    ``<Sip srtpSuites>`` extension): tags 1.. in ``suites``' order (our preference, RFC 4568
    §7.1.1), a fresh key each. ``ValueError`` for a suite outside :data:`SDES_SUITES`."""
    return tuple(
        new_crypto(tag, suite, random_bytes=random_bytes)
        for tag, suite in enumerate(check_suites(suites), start=1)
    )


def check_suites(names: Sequence[str]) -> tuple[str, ...]:
    """A domain's ``srtp_suites`` in RFC spelling, order kept: each must be one of
    :data:`SDES_SUITES` (any spelling :func:`~callxml.sdp.crypto.find_suite` knows), none twice,
    at least one. ``ValueError`` says which name is wrong."""
    chosen: list[str] = []
    for name in names:
        suite = find_suite(name) if isinstance(name, str) else None
        if suite is None or suite.name not in SDES_SUITES:
            raise ValueError(f"{name!r} is not one of {', '.join(SDES_SUITES)}")
        if suite.name in chosen:
            raise ValueError(f"{suite.name} is listed twice")
        chosen.append(suite.name)
    if not chosen:
        raise ValueError("at least one suite is needed")
    return tuple(chosen)


def _inbound_problem(crypto: CryptoAttribute, suites: Sequence[str]) -> str | None:
    """Why an offered line is not acceptable to us, or None if it is."""
    suite = find_suite(crypto.suite)
    if suite is None or suite.name not in SDES_SUITES:
        return "suite not supported"
    if suite.name not in suites:
        return "suite not allowed by this domain"
    if crypto.has_mki:
        return "MKI not supported"  # hosted platforms refuse MKI outright; so do we
    if len(crypto.key_params) != 1:
        return "several keys"  # RFC 4568 §6.1: several keys need MKIs anyway
    if crypto.session_params:
        # RFC 4568 §6.3.7: a line whose session parameters we cannot honour is not acceptable.
        return "session parameters not supported"
    lifetime = crypto.key_params[0].lifetime_packets
    if lifetime is not None and lifetime < MIN_LIFETIME:
        return "key lifetime too short"
    return None


def choose_inbound_crypto(
    media: MediaDescription, suites: Sequence[str] = INBOUND_SUITES
) -> CryptoAttribute:
    """The first acceptable ``a=crypto`` of a stream, in the offer's order (RFC 4568 §7.1.2:
    the offerer lists its lines in order of preference, and we honour it).

    Acceptable: suite in ``suites`` (the domain's ``srtp_suites``, :data:`INBOUND_SUITES` by
    default), one key, no MKI, no session parameters, a lifetime of at least
    :data:`MIN_LIFETIME` if any. Malformed lines are skipped too.
    """
    skipped: list[str] = []
    for value in media.attributes_named("crypto"):
        try:
            crypto = parse_crypto(value)
        except InvalidCrypto as exc:
            skipped.append(f"malformed line ({exc})")
            continue
        problem = _inbound_problem(crypto, suites)
        if problem is None:
            return crypto
        skipped.append(f"tag {crypto.tag} {crypto.suite} ({problem})")
    if not skipped:
        raise SecureMediaError("Secure media required: RTP/SAVP offer has no a=crypto line")
    listed = "; ".join(skipped[:_MAX_LISTED]) + ("; ..." if len(skipped) > _MAX_LISTED else "")
    raise SecureMediaError(
        f"Secure media required: no acceptable a=crypto (need {' or '.join(suites)} "
        f"without MKI); skipped: {listed}"
    )


def check_inbound(
    media: MediaDescription,
    *,
    secure_media_enabled: bool,
    arrived_over_tls: bool,
    suites: Sequence[str] = INBOUND_SUITES,
    zrtp: bool = False,
) -> CryptoAttribute | None:
    """Apply the inbound rows of the policy to one offered audio stream (``suites``: the
    domain's ``srtp_suites``; ``zrtp``: ZRTP may key an ``RTP/AVP`` offer, RFC 6189).

    Returns the offerer's chosen crypto line when secure media is enabled, None when it is not;
    raises :class:`SecureMediaError` (→ 488 with a ``Warning``) when the stream is unacceptable.
    """
    if secure_media_enabled and zrtp and media.proto == RTP_AVP:
        return None  # sdes-or-zrtp: a plain offer is keyed by ZRTP in band, TLS or not
    if secure_media_enabled:
        if not arrived_over_tls:
            raise SecureMediaError("Secure media required: request did not arrive over TLS")
        if media.proto != RTP_SAVP:
            raise SecureMediaError(f"Secure media required: offer is {media.proto}")
        return choose_inbound_crypto(media, suites)
    if media.proto != RTP_AVP:
        if zrtp:
            raise SecureMediaError(f"ZRTP required: offer is {media.proto}, expected RTP/AVP")
        raise SecureMediaError(f"Secure media disabled for this domain: offer is {media.proto}")
    # a=crypto is only defined for SRTP transports (RFC 4568 §5); on RTP/AVP we ignore it.
    return None


def check_outbound_answer(
    our_crypto: CryptoAttribute | Sequence[CryptoAttribute] | None, media: MediaDescription
) -> CryptoAttribute | None:
    """Check the answered audio stream against what we offered; return the answerer's crypto.

    ``our_crypto`` None means we offered plain ``RTP/AVP``; several lines (the ``srtpSuites``
    extension) mean the answer may take any one of their suites (RFC 4568 §7.1.2). Any
    violation raises :class:`SecureMediaError`: the leg fails (ACK then BYE,
    ``DialCallStatus=failed``).
    """
    crypto_lines = media.attributes_named("crypto")
    offered = (our_crypto,) if isinstance(our_crypto, CryptoAttribute) else tuple(our_crypto or ())
    if not offered:
        if media.proto != RTP_AVP:
            raise SecureMediaError(f"Media answer is {media.proto} but we offered RTP/AVP")
        if crypto_lines:
            raise SecureMediaError("Media answer has a=crypto but we did not offer SRTP")
        return None
    if media.proto != RTP_SAVP:
        raise SecureMediaError(f"Secure media answer refused: answer is {media.proto}")
    if len(crypto_lines) != 1:
        raise SecureMediaError(
            f"Secure media answer refused: {len(crypto_lines)} a=crypto lines, expected 1"
        )
    try:
        theirs = parse_crypto(crypto_lines[0])
    except InvalidCrypto as exc:
        raise SecureMediaError(f"Secure media answer refused: malformed a=crypto ({exc})") from None
    suite = find_suite(theirs.suite)
    ours = next((c for c in offered if suite is not None and c.suite_info == suite), None)
    if ours is None:
        expected = " or ".join(c.suite for c in offered)
        raise SecureMediaError(
            f"Secure media answer refused: suite {theirs.suite}, expected {expected}"
        )
    # RFC 4568 §7.1.3 wants our tag back; peers renumber, and the suite matching is what counts.
    if theirs.has_mki:
        raise SecureMediaError("Secure media answer refused: MKI not supported")
    if len(theirs.key_params) != 1 or theirs.session_params:
        raise SecureMediaError("Secure media answer refused: extra keys or session parameters")
    lifetime = theirs.key_params[0].lifetime_packets
    if lifetime is not None and lifetime < MIN_LIFETIME:
        raise SecureMediaError("Secure media answer refused: key lifetime too short")
    if theirs.keying_material() == ours.keying_material():
        raise SecureMediaError("Secure media answer refused: answer reuses our key")
    return theirs
