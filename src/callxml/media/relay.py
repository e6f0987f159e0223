"""Bridging two call legs: relay RTP/SRTP from one endpoint to the other, both ways.

Owns wiring two :class:`~callxml.media.stream.RtpEndpoint` objects so that every packet that
authenticates on one leg is re-sent on the other, protected with that leg's own keys (SRTP on one
side and RTP on the other is fine: each endpoint unprotects/protects with its own session). The
hot path is synchronous inside ``datagram_received`` (unprotect → protect → sendto, no awaits,
no parsing) whenever both legs use the same codec and payload types; otherwise the payload type
byte is rewritten, and PCMU↔PCMA is transcoded through linear PCM (RFC 3550 §7.1: a translator
may change encoding but keeps SSRC, sequence numbers and timestamps).
"""

from __future__ import annotations

from collections.abc import Callable

from callxml.media.rtp import RtpError, RtpPacket
from callxml.media.stream import RtpEndpoint


def _same_media(source: RtpEndpoint, target: RtpEndpoint) -> bool:
    return (
        source.codec.name == target.codec.name
        and source.payload_type == target.payload_type
        and source.dtmf_payload_type == target.dtmf_payload_type
    )


def make_forwarder(source: RtpEndpoint, target: RtpEndpoint) -> Callable[[bytes], None]:
    """The function that re-sends a packet received on ``source`` out of ``target``.

    Wrap it to watch the packets (e.g. for DTMF during a bridge) and install it with
    :meth:`RtpEndpoint.set_forward`.
    """
    send = target.send_relayed
    same_codec = source.codec.name == target.codec.name
    if _same_media(source, target):
        return send  # the packet goes out untouched (but re-protected)

    audio_pt, dtmf_pt = source.payload_type, source.dtmf_payload_type
    decode, encode = source.codec.decode, target.codec.encode

    def forward(data: bytes) -> None:
        pt = data[1] & 0x7F
        if pt == dtmf_pt:
            data = data[:1] + bytes(((data[1] & 0x80) | target.dtmf_payload_type,)) + data[2:]
        elif pt == audio_pt:
            if same_codec:
                data = data[:1] + bytes(((data[1] & 0x80) | target.payload_type,)) + data[2:]
            else:
                try:
                    packet = RtpPacket.parse(data)
                except RtpError:
                    return
                data = bytes(
                    RtpPacket(
                        payload_type=target.payload_type,
                        sequence_number=packet.sequence_number,
                        timestamp=packet.timestamp,
                        ssrc=packet.ssrc,
                        payload=encode(decode(packet.payload)),
                        marker=packet.marker,
                        csrc=packet.csrc,
                    )
                )
        else:
            return  # a payload type the other leg did not negotiate (comfort noise...)
        send(data)

    return forward


class MediaRelay:
    """Relays media between two endpoints while started; stopping returns both to normal."""

    def __init__(self, leg_a: RtpEndpoint, leg_b: RtpEndpoint) -> None:
        if leg_a is leg_b:
            raise ValueError("cannot bridge an endpoint to itself")
        self.leg_a = leg_a
        self.leg_b = leg_b
        self.active = False

    def start(self) -> None:
        """Begin relaying both directions (stop any playback on the legs first if needed).

        Call again after renegotiating codecs or payload types on either leg; new SRTP keys
        (:meth:`RtpEndpoint.set_srtp`) take effect without it.
        """
        for source, target in ((self.leg_a, self.leg_b), (self.leg_b, self.leg_a)):
            if _same_media(source, target):
                source.pass_through_to(target)
            else:
                source.set_forward(make_forwarder(source, target))
        self.active = True

    def stop(self) -> None:
        self.leg_a.pass_through_to(None)
        self.leg_b.pass_through_to(None)
        self.active = False

    def __enter__(self) -> MediaRelay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MediaRelay({self.leg_a!r} <-> {self.leg_b!r}, active={self.active})"
