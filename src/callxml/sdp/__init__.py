"""SDP for callxml: session descriptions (RFC 8866), offer/answer (RFC 3264), SDES ``a=crypto``
(RFC 4568) and the secure-media policy. Pure code: no sockets, no clocks, no asyncio.

Modules: :mod:`.session` (parse/serialise), :mod:`.crypto` (``a=crypto``; it re-exports the SRTP
suite table, which lives in :mod:`callxml.media.suites`), :mod:`.policy` (which SRTP
offers/answers we accept), :mod:`.negotiate` (offer/answer functions).
"""

from __future__ import annotations

from .crypto import (
    SUITES,
    CryptoAttribute,
    InvalidCrypto,
    KeyParam,
    SrtpSuite,
    find_suite,
    new_crypto,
    parse_crypto,
    redact,
)
from .negotiate import (
    CODECS,
    Codec,
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
from .policy import (
    INBOUND_SUITES,
    OUTBOUND_SUITE,
    check_inbound,
    check_outbound_answer,
    choose_inbound_crypto,
    warning_header,
)
from .session import (
    Attribute,
    Bandwidth,
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
    "INBOUND_SUITES",
    "OUTBOUND_SUITE",
    "SUITES",
    "Attribute",
    "Bandwidth",
    "Codec",
    "Connection",
    "CryptoAttribute",
    "Direction",
    "InvalidCrypto",
    "InvalidSdp",
    "KeyParam",
    "MediaDescription",
    "NegotiatedMedia",
    "Offer",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "SrtpSuite",
    "Timing",
    "answer_direction",
    "answer_offer",
    "build_offer",
    "check_answer",
    "check_inbound",
    "check_outbound_answer",
    "choose_inbound_crypto",
    "find_suite",
    "hold",
    "new_crypto",
    "parse_crypto",
    "redact",
    "reoffer",
    "reverse_direction",
    "unhold",
    "warning_header",
]
