"""The runtime: the only layer that joins SIP, SDP, media and the interpreter (asyncio).

:mod:`.leg` owns call legs (one SIP dialog with its RTP/SRTP endpoint), the :class:`Phone` that
dials and receives them, and bridging; the session/engine modules drive call flows on top.
"""

from __future__ import annotations

from .leg import (
    DIAL_STATUSES,
    Bridge,
    CallLeg,
    DialResult,
    IncomingCall,
    MediaSettings,
    Phone,
    bridge,
    dial_status,
)

__all__ = [
    "DIAL_STATUSES",
    "Bridge",
    "CallLeg",
    "DialResult",
    "IncomingCall",
    "MediaSettings",
    "Phone",
    "bridge",
    "dial_status",
]
