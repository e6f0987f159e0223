"""Comparing relayed RTP with what was sent, as a receiver would.

A bridge renumbers every relayed packet into the outgoing leg's own stream (its SSRC, its
sequence numbers and timestamps: :class:`callxml.media.rtp.RelayNumbering`), so a relayed packet
is not byte for byte the packet sent. What must survive is what a receiver relies on: the
payloads and payload types in order, the gaps between sequence numbers and between timestamps,
and one SSRC per stream. :func:`normalized` keeps exactly that, so tests compare
``normalized(got) == normalized(sent)``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

__all__ = ["normalized"]


def normalized(packets: Sequence[bytes]) -> list[bytes]:
    """``packets`` with sequence numbers and timestamps made relative to the first packet, the
    SSRC zeroed and the first packet's marker bit cleared (a renumbered stream marks its start).

    Raises AssertionError when the packets do not share one SSRC.
    """
    if not packets:
        return []
    ssrcs = {struct.unpack_from("!I", p, 8)[0] for p in packets}
    assert len(ssrcs) == 1, f"one stream expected, saw SSRCs {sorted(ssrcs)}"
    seq0, ts0 = struct.unpack_from("!HI", packets[0], 2)
    out = []
    for index, packet in enumerate(packets):
        seq, ts = struct.unpack_from("!HI", packet, 2)
        first = packet[1] & 0x7F if index == 0 else packet[1]
        header = struct.pack(
            "!BBHII", packet[0], first, (seq - seq0) & 0xFFFF, (ts - ts0) & 0xFFFFFFFF, 0
        )
        out.append(header + packet[12:])
    return out
