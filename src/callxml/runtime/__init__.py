"""The runtime: the only layer that joins SIP, SDP, media and the interpreter (asyncio).

:mod:`.phone` dials and receives calls (:class:`Phone`), :mod:`.incoming` decides on an incoming
INVITE (:class:`IncomingCall`), :mod:`.leg` is one call with its media (:class:`CallLeg`),
:mod:`.bridge` relays two legs' media; :mod:`.session` drives a call flow on a leg and
:mod:`.dial` runs ``<Dial>``.
"""

from __future__ import annotations

from .bridge import Bridge, bridge
from .incoming import IncomingCall
from .leg import CallLeg, Leg, MediaSettings
from .phone import DialResult, Phone, dial_status

__all__ = [
    "Bridge",
    "CallLeg",
    "DialResult",
    "IncomingCall",
    "Leg",
    "MediaSettings",
    "Phone",
    "bridge",
    "dial_status",
]
