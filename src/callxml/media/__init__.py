"""Media: RTP/RTCP packets, SRTP sessions, G.711, RFC 4733 DTMF, paced streams and the relay.

Sans-IO modules (:mod:`.rtp`, :mod:`.rtcp`, :mod:`.suites`, :mod:`.srtp`, :mod:`.g711`,
:mod:`.dtmf`, :mod:`.jitter`, :mod:`.tone`) never touch sockets or the clock; :mod:`.stream` and
:mod:`.relay` are the thin asyncio skin on top, and :mod:`.mmsg` the batched socket I/O under
it. :mod:`.suites` is pure data that :mod:`callxml.sdp` imports too, so this package's
``__init__`` must stay free of imports. This package knows nothing about SIP or SDP: the SDP
layer hands it addresses, payload types, and SRTP suite + key material.
"""

from __future__ import annotations
