"""RtpEndpoint: one call leg's RTP/SRTP socket on asyncio — paced sending, receiving, RTCP.

Owns binding an even RTP port and the RTCP port above it from a configured range (RFC 3550
§11), symmetric RTP (RFC 4961: we send from the port we receive on, and latch the peer's address
from packets that authenticate), a paced 20 ms sender fed by a PCM frame source, RFC 4733 DTMF
sending in place of audio, the receive path (classify → SRTP unprotect → jitter buffer → G.711
decode → consumer) and periodic RTCP SR/RR (RFC 3550 §6.4). When bridged (see :mod:`.relay`),
received packets skip decoding and go straight to the other leg, with no awaits.

Every received datagram is classified once, by :func:`callxml.media.rtp.classify` (RFC 7983
demultiplexing): RTP goes on to SRTP, the latch and the codec or the other leg; everything else
goes to one method, :meth:`RtpEndpoint._not_media` -- RTCP multiplexed on the port to the RTCP
code, STUN, ZRTP and DTLS to the handler set for them (:meth:`RtpEndpoint.set_packet_handler`;
counted in :class:`RtpStats`, dropped without one), the rest counted as invalid. Both receive
paths below make that same decision.

On Linux the RTP socket is read with recvmmsg(2) from a loop reader instead of an asyncio
datagram transport (``RtpConfig.batched_io``): queued datagrams are read in one system call into
preallocated slots, bridged SRTP is unprotected and re-protected there in place, and the batch
leaves in one sendmmsg(2). The socket side of that (the cffi binding, its self-test, the slots)
is :mod:`callxml.media.mmsg`; anywhere it is unavailable the transport path is used, with the
same behaviour.

The packet formats, SRTP, codecs, DTMF and jitter logic live in the sans-IO modules beside this
one; this file is only the asyncio skin. It knows nothing of SIP or SDP: the caller hands it
addresses, payload types and keys. Keys are never logged; ``repr`` hides them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from callxml.errors import ConfigError, LocalProtocolError, MediaError, TransportError
from callxml.media import rtcp
from callxml.media.dtmf import (
    DEFAULT_PAYLOAD_TYPE,
    DtmfDigit,
    DtmfPacket,
    DtmfReceiver,
    dtmf_packets,
)
from callxml.media.g711 import G711Codec
from callxml.media.jitter import JitterBuffer
from callxml.media.mmsg import (
    BATCH,
    ROUNDS,
    SINGLE_READS,
    Address,
    Batch,
    BatchedSocket,
    mmsg_api,
    parse_sockaddr,
    source_key,
    thread_batch,
)
from callxml.media.rtp import (
    DTLS,
    RTCP,
    RTP,
    STUN,
    ZRTP,
    PacketKind,
    RelayNumbering,
    RtpError,
    RtpPacket,
    RtpSender,
    classify,
)
from callxml.media.srtp import (
    MAX_PACKET_OCTETS,
    InPlaceCalls,
    SrtpSession,
    in_place_available,
)

log = logging.getLogger(__name__)
MAX_DTMF_QUEUE = 64  # received digits kept in dtmf_events (oldest dropped first)
MAX_DTMF_BACKLOG = 4096  # queued outgoing DTMF packets
RESYNC_LAG = 0.2  # s: a sender this far behind its schedule restarts it instead of bursting

#: What :meth:`RtpEndpoint.set_packet_handler` is given: a datagram and its source.
PacketHandler = Callable[[bytes, Address], None]
#: The kinds of datagram on the RTP port that a handler may consume (:func:`classify`).
HANDLED_KINDS = frozenset({PacketKind.STUN, PacketKind.ZRTP, PacketKind.DTLS})


class MediaConsumer(Protocol):
    """Receives what the far end sends: decoded PCM frames in order, and DTMF digits once."""

    def audio_received(self, pcm: bytes, timestamp: int) -> None: ...

    def dtmf_received(self, digit: DtmfDigit) -> None: ...


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """Negotiated SRTP parameters for one leg; ``repr`` hides the keys."""

    suite: str
    our_key: bytes = field(repr=False)
    their_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RtpConfig:
    """How to open an endpoint. ``port_range`` is inclusive; ``None`` lets the OS pick."""

    host: str = "127.0.0.1"
    port_range: tuple[int, int] | None = None
    codec: str = "PCMU"
    payload_type: int | None = None  # defaults to the codec's static PT
    dtmf_payload_type: int = DEFAULT_PAYLOAD_TYPE
    ptime_ms: int = 20
    jitter_depth: int = 3
    rtcp: bool = True  # bind an RTCP socket (RTP port + 1) and send reports
    rtcp_mux: bool = False  # RFC 5761: RTCP on the RTP port instead
    rtcp_interval: float = 5.0
    cname: str = ""
    batched_io: bool = True  # recvmmsg/sendmmsg where available (Linux); else asyncio transport

    def __post_init__(self) -> None:
        if self.ptime_ms not in (10, 20, 30, 40, 60):
            raise ConfigError("ptime_ms must be 10, 20, 30, 40 or 60")
        if self.port_range is not None:
            low, high = self.port_range
            if not 1024 <= low <= high <= 65535:
                raise ConfigError("port_range must be within 1024..65535, low <= high")
        if not 0.1 <= self.rtcp_interval <= 3600:
            raise ConfigError("rtcp_interval must be between 0.1 s and an hour")


@dataclass(slots=True)
class RtpStats:
    """Counters for one endpoint (packets and octets are RTP packets, excluding RTCP)."""

    packets_sent: int = 0
    octets_sent: int = 0
    packets_received: int = 0
    octets_received: int = 0
    dropped_auth: int = 0  # SRTP and SRTCP authentication failures (incl. tampered packets)
    dropped_replay: int = 0  # SRTP and SRTCP replay-window rejections
    dropped_invalid: int = 0  # not RTP, unknown payload type, malformed, too short or long
    late: int = 0  # arrived after their slot was played
    lost: int = 0  # never arrived (skipped by the jitter buffer)
    duplicates: int = 0
    dtmf_digits: int = 0
    rtcp_sent: int = 0
    rtcp_received: int = 0
    # Datagrams on the RTP port for another protocol (see callxml.media.rtp.classify): counted
    # on arrival, handed to the handler set for them, else dropped; never media.
    stun_received: int = 0
    zrtp_received: int = 0
    dropped_unkeyed: int = 0  # RTP/RTCP while keys were awaited (block_clear_media)
    dtls_received: int = 0


def add_stats(total: RtpStats, more: RtpStats) -> None:
    """Add ``more``'s counters into ``total`` (totals over many legs, for metrics)."""
    for name in RtpStats.__dataclass_fields__:
        setattr(total, name, getattr(total, name) + getattr(more, name))


class _RtcpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: RtpEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._endpoint.rtcp_received(data, addr)


def _bind_pair(
    host: str, port_range: tuple[int, int] | None, want_rtcp: bool
) -> tuple[socket.socket, socket.socket | None]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def bind(port: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    if port_range is None:
        if not want_rtcp:
            return bind(0), None
        for _ in range(64):  # let the OS pick until it hands us an even port with a free odd one
            rtp_sock = bind(0)
            port = rtp_sock.getsockname()[1]
            if port % 2 == 0 and port < 65535:
                try:
                    return rtp_sock, bind(port + 1)
                except OSError:
                    pass
            rtp_sock.close()
        raise TransportError("no free RTP/RTCP port pair")
    low, high = port_range
    low += low % 2  # RFC 3550 §11: RTP on an even port, RTCP on the next odd one
    evens = list(range(low, high + 1, 2))
    if not evens:
        raise ConfigError("port_range holds no even port")
    start = secrets.randbelow(len(evens))
    for port in evens[start:] + evens[:start]:
        if want_rtcp and port + 1 > high:
            continue
        try:
            rtp_sock = bind(port)
        except OSError:
            continue
        if not want_rtcp:
            return rtp_sock, None
        try:
            return rtp_sock, bind(port + 1)
        except OSError:
            rtp_sock.close()
    raise TransportError(f"no free RTP port pair in {port_range[0]}..{port_range[1]}")


class _DatagramSink(Protocol):
    """What the endpoint needs of its RTP transport (asyncio's, or :class:`BatchedSocket`)."""

    def sendto(self, data: bytes, addr: Address) -> None: ...

    def is_closing(self) -> bool: ...

    def close(self) -> None: ...


class RtpEndpoint(asyncio.DatagramProtocol):
    """One leg's media endpoint. Create with ``await RtpEndpoint.open(config)``."""

    def __init__(self, config: RtpConfig, consumer: MediaConsumer | None = None) -> None:
        self.config = config
        self.consumer = consumer
        self.stats = RtpStats()
        self.codec = G711Codec(config.codec)
        self.payload_type = (
            config.payload_type if config.payload_type is not None else self.codec.payload_type
        )
        self.dtmf_payload_type = config.dtmf_payload_type
        self.frame_samples = 8000 * config.ptime_ms // 1000
        self.dtmf_events: asyncio.Queue[DtmfDigit] = asyncio.Queue(MAX_DTMF_QUEUE)
        self._sender = RtpSender()
        # Relayed packets join our stream; a new incoming source reads our clock, brought up
        # to date first when the sender is parked during a bridge.
        self._numbering = RelayNumbering(self._sender, self._catch_up_clock)
        self._jitter: JitterBuffer[tuple[int, bytes]] = JitterBuffer(config.jitter_depth)
        self._dtmf_rx = DtmfReceiver()
        self._reception = rtcp.ReceptionStats()
        self._srtp: SrtpSession | None = None
        self._transport: _DatagramSink | None = None
        self._io: BatchedSocket | None = None  # the same object as _transport when batched
        self._remote_raw: bytes | None = None  # _remote as a struct sockaddr (batched I/O)
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._remote: Address | None = None
        self._remote_rtcp: Address | None = None
        self._latched = False
        self._forward: Callable[[bytes], None] | None = None  # set by the relay when bridged
        self._forward_ep: RtpEndpoint | None = None  # ...or this, for the pass-through path
        self._handlers: dict[PacketKind, PacketHandler] = {}  # STUN/ZRTP/DTLS consumers
        self._srtp_seen = (0, 0)  # SRTP drop counters already copied into stats
        self._tx_task: asyncio.Task[None] | None = None
        self._rtcp_task: asyncio.Task[None] | None = None
        self._source: Iterator[bytes] | AsyncIterator[bytes] | None = None
        self._source_done: asyncio.Future[int] | None = None
        self._source_frames = 0
        self._dtmf_tx: deque[DtmfPacket | asyncio.Future[None] | None] = deque()
        self._dtmf_timestamp = 0
        self._talkspurt = True  # the next audio packet starts a talkspurt (marker bit)
        self._last_tick: float | None = None
        self._closed = False
        self._continuous = False  # keep_sending(): silence fills every interval with no source
        self._silence_payload = ("", b"")  # (codec, one ptime of encoded silence)
        self._blocked = False  # no media either way until keys are set (ZRTP legs)
        # _relay_one's libsrtp calls, bound for (the target's session it was bound for)
        self._relay_calls: tuple[SrtpSession | None, InPlaceCalls] | None = None
        self.local_address: Address = ("", 0)
        self.rtcp_address: Address | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        config: RtpConfig | None = None,
        *,
        consumer: MediaConsumer | None = None,
        remote: Address | None = None,
        srtp: SrtpKeys | None = None,
    ) -> RtpEndpoint:
        """Bind the sockets and start the RTCP timer; ``remote``/``srtp`` may come later."""
        config = config or RtpConfig()
        self = cls(config, consumer)
        loop = asyncio.get_running_loop()
        want_rtcp = config.rtcp and not config.rtcp_mux
        rtp_sock, rtcp_sock = _bind_pair(config.host, config.port_range, want_rtcp)
        try:
            # Batching pays only with in-place SRTP in the slots (see callxml.media.mmsg).
            api = mmsg_api() if config.batched_io and in_place_available() else None
            if api is not None:
                io = BatchedSocket(rtp_sock, thread_batch(api))
                try:
                    io.start(loop, self._readable)
                    self._io = io
                except NotImplementedError:  # e.g. the proactor loop: no add_reader
                    pass
            if self._io is not None:
                self._transport = self._io
            else:
                transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=rtp_sock)
                self._transport = transport
            self.local_address = rtp_sock.getsockname()[:2]
            if rtcp_sock is not None:
                rtcp_transport, _ = await loop.create_datagram_endpoint(
                    lambda: _RtcpProtocol(self), sock=rtcp_sock
                )
                self._rtcp_transport = rtcp_transport
                self.rtcp_address = rtcp_sock.getsockname()[:2]
            elif config.rtcp_mux:
                self.rtcp_address = self.local_address
        except BaseException:
            if self._io is not None:
                self._io.close()  # stop reading before the socket goes
                self._io = self._transport = None
            rtp_sock.close()
            if rtcp_sock is not None:
                rtcp_sock.close()
            raise
        if srtp is not None:
            self.set_srtp(srtp)
        if remote is not None:
            self.set_remote(remote)
        if config.rtcp:
            self._rtcp_task = loop.create_task(self._rtcp_loop())
        return self

    async def close(self) -> None:
        """Stop sending, send an RTCP BYE, release the sockets. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._forward = None
        self._forward_ep = None
        tasks = [t for t in (self._tx_task, self._rtcp_task) if t is not None]
        for task in tasks:
            task.cancel()
        try:
            for task in tasks:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            if self.config.rtcp:
                self._send_rtcp(bye=True)
        finally:
            self._finish_pending()
            for transport in (self._transport, self._rtcp_transport):
                if transport is not None:
                    transport.close()
            self._transport = self._rtcp_transport = None

    async def __aenter__(self) -> RtpEndpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        secure = f"srtp={self._srtp.suite.name}" if self._srtp else "rtp"
        return f"RtpEndpoint(local={self.local_address}, remote={self._remote}, {secure})"

    # -- configuration from the signalling layer -------------------------------------------

    @property
    def remote_address(self) -> Address | None:
        return self._remote

    def set_remote(self, address: Address, rtcp_address: Address | None = None) -> None:
        """Where to send (from SDP). Symmetric RTP may later move it to the real source."""
        self._remote = (address[0], address[1])
        self._remote_changed()
        if rtcp_address is not None:
            self._remote_rtcp = rtcp_address
        elif self.config.rtcp_mux:
            self._remote_rtcp = self._remote
        else:
            self._remote_rtcp = (address[0], address[1] + 1)
        self._latched = False

    def set_srtp(self, keys: SrtpKeys | None) -> None:
        """Switch the leg to SRTP with the negotiated suite and keys (``None``: plain RTP).
        Keys end :meth:`block_clear_media`."""
        self._srtp = (
            None
            if keys is None
            else SrtpSession(keys.suite, our_key=keys.our_key, their_key=keys.their_key)
        )
        self._relay_calls = None
        self._srtp_seen = (0, 0)
        if keys is not None:
            self._blocked = False

    def block_clear_media(self) -> None:
        """Neither send nor take RTP/RTCP until :meth:`set_srtp` gives keys: a leg keyed in
        band (ZRTP) must not play, bridge or hear media in the clear meanwhile. What would have
        gone out is dropped; what comes in is counted in ``dropped_unkeyed``. Packets for a
        handler (ZRTP itself) still flow, and :meth:`send_control` still sends."""
        self._blocked = True

    @property
    def media_blocked(self) -> bool:
        return self._blocked

    def send_control(self, packet: bytes) -> None:
        """Send a non-media datagram (a ZRTP packet) to the peer's RTP address, as is: never
        protected, never blocked, not counted as media."""
        remote = self._remote
        transport = self._transport
        if remote is None or transport is None or transport.is_closing():
            return
        transport.sendto(packet, remote)

    def set_payload_types(self, codec: str, payload_type: int, dtmf_payload_type: int) -> None:
        """Apply the negotiated codec and payload types (from the SDP answer)."""
        self.codec = G711Codec(codec)
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type

    def keep_sending(self, on: bool = True) -> None:
        """Send a packet every ``ptime`` for as long as the endpoint is open: the current
        source's frame, DTMF, or silence in the negotiated codec when there is nothing to say.

        Carriers and SBCs hang up calls after an RTP inactivity timeout and NAT bindings expire
        when nothing flows, so an answered leg must never fall silent on the wire — not during
        a ``<Pause>``, a webhook fetch or a ``<Gather>`` wait. The one RTP clock keeps running, so
        sequence numbers and timestamps stay continuous across prompts and silence. While the
        endpoint is bridged (:meth:`pass_through_to`, :meth:`set_forward`: the relay then sends
        the other leg's audio out of it) nothing is generated; the clock still runs.
        """
        self._continuous = on
        if on and not self._closed:
            self._ensure_sending()

    @property
    def _bridged(self) -> bool:
        # The relay always wires both directions, so a leg that forwards what it receives is
        # also the one the other leg's audio leaves through.
        return self._forward is not None or self._forward_ep is not None

    @property
    def secure(self) -> bool:
        return self._srtp is not None

    @property
    def ssrc(self) -> int:
        return self._sender.ssrc

    # -- receiving -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable etc. on UDP: the peer may not be up yet; keep going.
        log.debug("RTP socket error on %s: %s", self.local_address, exc)

    def datagram_received(self, data: bytes, addr: Address) -> None:  # type: ignore[override]
        """Hot path, one datagram: classify, then for RTP unprotect, latch, and pass through /
        forward (bridged) or deliver. The batched reader's bridged loop (:meth:`_relay_batch`)
        is the same decision over a batch of slots."""
        size = len(data)
        kind = classify(data, size)
        if kind is not RTP:
            self._not_media(kind, data, addr)
            return
        stats = self.stats
        if self._blocked:
            stats.dropped_unkeyed += 1
            return
        srtp = self._srtp
        target = self._forward_ep
        if target is not None:
            # Bridged pass-through: the legs agree on codec and payload types, so the packet
            # only changes keys and is renumbered into the target's own stream. SRTP on both
            # sides is one libsrtp unprotect+protect in place, the renumbering in between.
            out = target._srtp
            renumber = target._numbering.rewrite
            packet: bytes | bytearray
            if srtp is not None and out is not None:
                relayed = srtp.relay_to(data, out, renumber)
                if relayed is None:
                    self._srtp_dropped(srtp)
                    return
                packet = relayed
            else:
                if srtp is not None:
                    plain = srtp.unprotect(data)
                    if plain is None:
                        self._srtp_dropped(srtp)
                        return
                    data = plain
                packet = bytearray(data)
                renumber(packet)
                if out is not None:
                    try:
                        packet = out.protect(bytes(packet))
                    except MediaError:  # e.g. a repeated sequence number (RFC 3711 §3.3.2)
                        stats.dropped_invalid += 1
                        return
            if addr != self._remote or not self._latched:
                self._latch(addr)
            stats.packets_received += 1
            stats.octets_received += size
            target.send_ready(bytes(packet))
            return
        if srtp is not None:
            plain = srtp.unprotect(data)
            if plain is None:
                self._srtp_dropped(srtp)
                return
            data = plain
        if addr != self._remote or not self._latched:
            self._latch(addr)
        stats.packets_received += 1
        stats.octets_received += size
        forward = self._forward
        if forward is not None:
            forward(data)
            return
        self._deliver(data)

    def _not_media(self, kind: PacketKind, data: bytes, addr: Address) -> None:
        """Every received datagram that :func:`classify` did not call RTP, from both receive
        paths: RTCP multiplexed on this port, the kinds a handler may take (counted whether or
        not one is set; without one they are dropped), and the rest dropped as invalid. A new
        protocol demultiplexed on the RTP port needs a kind in :func:`classify` and a branch
        here, nowhere else. Nothing here latches: only media that passed its checks does."""
        if kind is RTCP:
            if self._blocked:
                self.stats.dropped_unkeyed += 1
                return
            self.rtcp_received(data, addr)
            return
        stats = self.stats
        if kind is STUN:
            stats.stun_received += 1
        elif kind is ZRTP:
            stats.zrtp_received += 1
        elif kind is DTLS:
            stats.dtls_received += 1
        else:
            stats.dropped_invalid += 1
            return
        handler = self._handlers.get(kind)
        if handler is not None:
            try:
                handler(data, addr)
            except Exception:  # a consumer's bug must not stop this leg's media
                log.exception("RTP port %s handler failed", kind.name)

    def set_packet_handler(self, kind: PacketKind, handler: PacketHandler | None) -> None:
        """Hand every received ``kind`` datagram (STUN, ZRTP or DTLS) to ``handler``, called
        synchronously on the receive path with the datagram and its source; ``None`` goes back
        to counting and dropping them. They never reach the codec or the relay, and never
        move the symmetric-RTP latch."""
        if kind not in HANDLED_KINDS:
            raise ValueError(f"no handler can take {kind.name} packets")
        if handler is None:
            self._handlers.pop(kind, None)
        else:
            self._handlers[kind] = handler

    def _srtp_dropped(self, srtp: SrtpSession) -> None:
        stats = self.stats
        auth, replays = self._srtp_seen
        if srtp.auth_failures != auth:
            stats.dropped_auth += 1
        elif srtp.replays != replays:
            stats.dropped_replay += 1
        else:
            stats.dropped_invalid += 1
        self._srtp_seen = (srtp.auth_failures, srtp.replays)

    def _latch(self, addr: Address) -> None:
        # RFC 4961 symmetric RTP: follow the source of authenticated SRTP always (NAT rebinding);
        # for plain RTP, where anyone can forge a packet, latch once only.
        if self._srtp is None and self._latched:
            return
        self._remote = (addr[0], addr[1])
        self._remote_changed()
        if not self.config.rtcp_mux:
            self._remote_rtcp = (addr[0], addr[1] + 1)
        else:
            self._remote_rtcp = self._remote
        self._latched = True

    def _remote_changed(self) -> None:
        io = self._io
        if io is not None:
            io.set_peer(self._remote)
            self._remote_raw = io.peer_raw

    def _readable(self) -> None:
        """Batched receive: whatever the socket holds, in one recvmmsg per BATCH datagrams.

        recvmmsg pays for itself only when datagrams queue up; at call rates (one datagram per
        wakeup) one plain recvfrom is cheaper. So after a recvmmsg that found at most one
        datagram, the next SINGLE_READS wakeups read one datagram each, with the very same
        per-packet code as the asyncio transport path; then recvmmsg looks again.
        """
        io = self._io
        if io is None:
            return
        if io.single_reads:
            io.single_reads -= 1
            target = self._forward_ep
            if (
                target is not None
                and self._srtp is not None
                and not (self._blocked or target._blocked)
            ):
                self._relay_one(io, target, self._srtp)
                return
            try:
                data, addr = io.sock.recvfrom(MAX_PACKET_OCTETS + 1)  # longer: classified invalid
            except OSError:  # nothing there after all (or an error the next read reports)
                return
            self.datagram_received(data, addr)
            return
        batch = io.batch
        for _ in range(ROUNDS):
            count = batch.receive(io.fd, io.family)
            target = self._forward_ep
            if (
                target is not None
                and target._io is not None
                and target._io.batch is batch
                and not (self._blocked or target._blocked)
            ):
                self._relay_batch(batch, count, target)
            else:
                datagram, received = batch.datagram, self.datagram_received
                for i, size in enumerate(batch.sizes[0:count].tolist()):
                    received(*datagram(i, size))
            if count <= 1:
                io.single_reads = SINGLE_READS
            if count < BATCH or io.is_closing():
                return

    def _relay_one(self, io: BatchedSocket, target: RtpEndpoint, srtp: SrtpSession) -> None:
        """The bridged pass-through hot path of an SRTP leg for a single read (call rates: one
        datagram per socket per wakeup): what :meth:`datagram_received` decides for one packet
        -- the same :func:`classify`, :meth:`_not_media` for all but RTP, the SRTP checks and
        drop counters, the renumbering, the latch and the counters -- on the datagram read
        straight into this thread's first batch slot, unprotected and re-protected there
        (:meth:`SrtpSession.in_place_calls`, bound once per pair of sessions) and sent from
        there: no bytes objects, no copies, no Python call but the renumbering between the two
        libsrtp calls."""
        batch = io.batch
        view = batch.slot_views[0]
        try:
            size, addr = io.sock.recvfrom_into(view, MAX_PACKET_OCTETS + 1)
        except OSError:  # nothing there after all (or an error the next read reports)
            return
        kind = classify(view, size)
        if kind is not RTP:
            self._not_media(kind, bytes(view[0:size]), addr)
            return
        out = target._srtp
        calls = self._relay_calls
        if calls is None or calls[0] is not out:
            try:
                calls = self._relay_calls = (out, srtp.in_place_calls(out))
            except MediaError:  # a session without the in-place binding: the generic path
                self.datagram_received(bytes(view[0:size]), addr)
                return
        unprotect, rx_ctx, protect, tx_ctx, length, size_cell = calls[1]
        slot = batch.slots[0]
        size_cell[0] = size  # classify passed it: at most MAX_PACKET_OCTETS
        status = unprotect(rx_ctx, slot, length)
        if status:
            srtp.count_status(status)
            self._srtp_dropped(srtp)
            return
        target._numbering.rewrite(view)
        if tx_ctx is not None and protect(tx_ctx, slot, length):
            srtp.other_failures += 1  # e.g. far too old for the send window
            self._srtp_dropped(srtp)
            return
        new_size: int = size_cell[0]
        if addr != self._remote or not self._latched:
            self._latch(addr)
        stats = self.stats
        stats.packets_received += 1
        stats.octets_received += size
        # target.send_ready, without copying the packet out of the slot
        remote, transport = target._remote, target._transport
        if remote is None or transport is None or target._blocked:
            return
        packet = view[0:new_size]
        if target._io is not None:
            target._io.sendto(packet, remote)
        else:
            transport.sendto(bytes(packet), remote)
        target_stats = target.stats
        target_stats.packets_sent += 1
        target_stats.octets_sent += new_size

    def _relay_batch(self, batch: Batch, count: int, target: RtpEndpoint) -> None:
        """The bridged pass-through hot path on a batch: what :meth:`datagram_received` decides
        for one packet -- the same :func:`classify`, the same :meth:`_not_media` for all but
        RTP, the same SRTP checks, latch and counters -- done in the slots, then one sendmmsg
        out of ``target``.

        Per packet it costs two libsrtp calls and a few list and memoryview items: the sizes
        and IPv4 sources of the whole batch are read in one call each, the libsrtp calls are
        bound once (:meth:`SrtpSession.in_place_calls`), and the send sizes are written through
        a memoryview.
        """
        io, target_io = self._io, target._io
        if io is None or target_io is None:
            return
        stats = self.stats
        srtp = self._srtp
        out = target._srtp
        rx_ctx = tx_ctx = None
        if srtp is not None:
            unprotect, rx_ctx, protect, tx_ctx, length, size_cell = srtp.in_place_calls(out)
        protect_in_place = out.protect_in_place if out is not None and srtp is None else None
        sizes: list[int] = batch.sizes[0:count].tolist()
        slots, packets = batch.slots, batch.slot_views
        views, name_size = batch.name_views, io.name_size
        sources: list[int] | list[bytes]
        if name_size == 16:  # sockaddr_in: its first 8 octets say it all (the rest is zero)
            sources = batch.source_words[0:count].tolist()
        else:
            sources = [views[i][0:name_size] for i in range(count)]
        remote_key = source_key(self._remote_raw) if self._latched else None
        tx_iovs, tx_sizes = target_io.tx_iovs, target_io.tx_sizes
        kind_of, rtp = classify, RTP
        renumber = target._numbering.rewrite
        ready = received_octets = sent_octets = 0
        rest = count  # where the per-packet path takes over (a handler changed the leg)
        for i in range(count):
            size = sizes[i]
            kind = kind_of(packets[i], size)
            if kind is not rtp:
                self._not_media(kind, *batch.datagram(i, size))
                if (
                    self._srtp is not srtp
                    or self._forward_ep is not target
                    or target._srtp is not out
                ):
                    rest = i + 1  # re-keyed or re-routed (a ZRTP handler may): bound state is stale
                    break
                remote_key = source_key(self._remote_raw) if self._latched else None
                continue
            slot = slots[i]
            if rx_ctx is not None:  # SRTP in: unprotect, renumber, re-protect in the slot
                size_cell[0] = size
                status = unprotect(rx_ctx, slot, length)
                if status:
                    assert srtp is not None  # rx_ctx came from it
                    srtp.count_status(status)
                    self._srtp_dropped(srtp)
                    continue
                renumber(packets[i])
                if tx_ctx is not None and protect(tx_ctx, slot, length):
                    assert srtp is not None
                    srtp.other_failures += 1  # e.g. far too old for the send window
                    self._srtp_dropped(srtp)
                    continue
                new_size = size_cell[0]
            elif protect_in_place is not None:
                renumber(packets[i])
                new_size = protect_in_place(slot, size)
                if new_size < 0:  # e.g. a repeated sequence number (RFC 3711 §3.3.2)
                    stats.dropped_invalid += 1
                    continue
            else:
                renumber(packets[i])
                new_size = size
            if sources[i] != remote_key:  # a new source, or not latched yet
                raw = views[i][0:name_size]
                addr = parse_sockaddr(raw)
                if addr != self._remote or not self._latched:
                    self._latch(addr)  # RFC 4961 symmetric RTP
                if addr == self._remote:
                    self._remote_raw = raw
                remote_key = source_key(self._remote_raw) if self._latched else None
            received_octets += size
            if ready != i:
                tx_iovs[ready].iov_base = slot
            tx_sizes[ready] = new_size
            sent_octets += new_size
            ready += 1
        stats.packets_received += ready
        stats.octets_received += received_octets
        if ready:
            target._send_relayed(target_io, ready, sent_octets, moved=ready != count)
        for i in range(rest, count):  # after the change, in order, with the leg's new state
            self.datagram_received(*batch.datagram(i, sizes[i]))

    def _send_relayed(self, io: BatchedSocket, count: int, octets: int, *, moved: bool) -> None:
        """Send the first ``count`` prepared send slots of ``io`` to our peer (sendmmsg)."""
        tx_iovs = io.tx_iovs
        if io.peer_raw is not None and not io.is_closing():
            sent = io.send_prepared(count)
            if sent < count:  # full send buffer: UDP drops the rest
                octets = sum(io.tx_sizes[0:sent])
            stats = self.stats
            stats.packets_sent += sent
            stats.octets_sent += octets
        elif self._remote is not None:  # an address sendmmsg cannot take (a host name)
            ffi = io.batch.api.ffi
            for i in range(count):
                self.send_ready(ffi.buffer(tx_iovs[i].iov_base, tx_iovs[i].iov_len)[:])
        if moved:  # put each send slot back on its own buffer
            slots = io.batch.slots
            for i in range(count):
                tx_iovs[i].iov_base = slots[i]

    def _deliver(self, data: bytes) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.stats.dropped_invalid += 1
            return
        loop_time = asyncio.get_running_loop().time()
        self._reception.update(
            packet.ssrc, packet.sequence_number, packet.timestamp, int(loop_time * 8000)
        )
        pt = packet.payload_type
        if pt == self.dtmf_payload_type:
            digit = self._dtmf_rx.receive(packet.timestamp, packet.payload)
            if digit is not None:
                self.stats.dtmf_digits += 1
                if self.dtmf_events.full():
                    self.dtmf_events.get_nowait()
                self.dtmf_events.put_nowait(digit)
                if self.consumer is not None:
                    self.consumer.dtmf_received(digit)
            return
        if pt != self.payload_type:
            self.stats.dropped_invalid += 1
            return
        jitter = self._jitter
        ready = jitter.push(packet.sequence_number, (packet.timestamp, packet.payload))
        self.stats.late = jitter.late
        self.stats.lost = jitter.lost
        self.stats.duplicates = jitter.duplicates
        if self.consumer is not None:
            decode = self.codec.decode
            for timestamp, payload in ready:
                self.consumer.audio_received(decode(payload), timestamp)

    # -- RTCP ----------------------------------------------------------------------------------

    def rtcp_received(self, data: bytes, addr: Address) -> None:
        """An RTCP packet from the RTCP port, or one multiplexed on the RTP port."""
        srtp = self._srtp
        if srtp is not None:
            plain = srtp.unprotect_rtcp(data)
            if plain is None:
                self._srtp_dropped(srtp)
                return
            data = plain
        try:
            packets = rtcp.parse_compound(data)
        except rtcp.RtcpError:
            self.stats.dropped_invalid += 1
            return
        self.stats.rtcp_received += 1
        now = asyncio.get_running_loop().time()
        for packet in packets:
            if isinstance(packet, rtcp.SenderReport):
                self._reception.sender_report_received(packet.ntp_timestamp, now)

    def _send_rtcp(self, *, bye: bool = False) -> None:
        transport = self._rtcp_transport or self._transport
        if transport is None or self._remote_rtcp is None or transport.is_closing():
            return
        if self._blocked:
            return
        now = asyncio.get_running_loop().time()
        self._catch_up_clock()  # the SR's RTP timestamp is "now" on our clock
        block = self._reception.report_block(now)
        blocks = (block,) if block is not None else ()
        sender = self._sender
        report: rtcp.RtcpPacket
        if sender.packets_sent:
            report = rtcp.SenderReport(
                sender.ssrc,
                rtcp.ntp_timestamp(time.time()),
                sender.timestamp,
                sender.packets_sent,
                sender.octets_sent,
                blocks,
            )
        else:
            report = rtcp.ReceiverReport(sender.ssrc, blocks)
        cname = self.config.cname or f"callxml-{sender.ssrc:08x}"
        parts: list[rtcp.RtcpPacket] = [report, rtcp.SourceDescription(sender.ssrc, cname)]
        if bye:
            parts.append(rtcp.Bye((sender.ssrc,)))
        data = rtcp.build_compound(*parts)
        if self._srtp is not None:
            data = self._srtp.protect_rtcp(data)
        transport.sendto(data, self._remote_rtcp)
        self.stats.rtcp_sent += 1

    async def _rtcp_loop(self) -> None:
        interval = self.config.rtcp_interval
        while True:
            # RFC 3550 §6.3.1: randomise the interval to 0.5-1.5 times the nominal value.
            await asyncio.sleep(interval * (0.5 + secrets.randbelow(1000) / 1000))
            try:
                self._send_rtcp()
            except MediaError as exc:
                log.warning("RTCP send failed: %s", exc)

    # -- sending -------------------------------------------------------------------------------

    def send_relayed(self, rtp: bytes) -> None:
        """Send a packet relayed from another leg (plain RTP): renumbered into this leg's own
        stream (:class:`~callxml.media.rtp.RelayNumbering`), protected on SRTP legs."""
        packet = bytearray(rtp)
        self._numbering.rewrite(packet)
        self.send_packet(bytes(packet))

    def send_packet(self, rtp: bytes) -> None:
        """Send one ready-made RTP packet now (protecting it on SRTP legs)."""
        remote = self._remote
        transport = self._transport
        if remote is None or transport is None or self._blocked:
            return
        srtp = self._srtp
        if srtp is not None:
            rtp = srtp.protect(rtp)
        transport.sendto(rtp, remote)
        stats = self.stats
        stats.packets_sent += 1
        stats.octets_sent += len(rtp)

    def send_ready(self, packet: bytes) -> None:
        """Send a packet that is already protected for this leg (or plain RTP on an RTP leg)."""
        remote = self._remote
        transport = self._transport
        if remote is None or transport is None or self._blocked:
            return
        transport.sendto(packet, remote)
        stats = self.stats
        stats.packets_sent += 1
        stats.octets_sent += len(packet)

    def _send_media(self, payload_type: int, payload: bytes, marker: bool, ts: int | None) -> None:
        packet = self._sender.build(payload_type, payload, marker=marker, timestamp=ts)
        self.send_packet(packet)

    async def play(self, source: Iterable[bytes] | AsyncIterable[bytes]) -> int:
        """Send PCM frames (16-bit mono 8 kHz, one ``ptime`` each) paced in real time.

        Returns the number of frames sent once the source is exhausted. Playing a new source
        replaces the current one (whose ``play`` then returns early). DTMF queued with
        :meth:`send_dtmf` goes out in between frames.
        """
        self._check_open()
        self._end_source()
        if isinstance(source, AsyncIterable):
            self._source = aiter(source)
        else:
            self._source = iter(source)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._source_done = done
        self._source_frames = 0
        self._ensure_sending()
        try:
            return await done
        except asyncio.CancelledError:  # barge-in by cancelling play(): stop this source
            if self._source_done is done:
                self._end_source()
            raise

    def stop_playing(self) -> None:
        """Stop the current source (its ``play`` returns the frames sent so far)."""
        self._end_source()

    async def send_dtmf(
        self, digits: str, *, duration_ms: int = 100, gap_ms: int = 60, volume: int = 10
    ) -> None:
        """Send key presses as RFC 4733 events, paced, with ``gap_ms`` between them."""
        self._check_open()
        if len(digits) > 128 or len(self._dtmf_tx) > MAX_DTMF_BACKLOG:
            raise LocalProtocolError("at most 128 DTMF digits at once, and a bounded backlog")
        ptime = self.config.ptime_ms
        packets = [
            dtmf_packets(d, duration_ms=duration_ms, volume=volume, packet_ms=ptime) for d in digits
        ]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for index, event in enumerate(packets):
            if index:
                self._dtmf_tx.extend([None] * (gap_ms // ptime))
            self._dtmf_tx.extend(event)
        self._dtmf_tx.append(done)
        self._ensure_sending()
        await done

    def _check_open(self) -> None:
        if self._closed or self._transport is None:
            raise MediaError("the RTP endpoint is closed")

    def _end_source(self) -> None:
        if self._source_done is not None and not self._source_done.done():
            self._source_done.set_result(self._source_frames)
        self._source = None
        self._source_done = None

    def _finish_pending(self) -> None:
        self._end_source()
        while self._dtmf_tx:
            item = self._dtmf_tx.popleft()
            if isinstance(item, asyncio.Future) and not item.done():
                item.set_result(None)

    def _ensure_sending(self) -> None:
        if self._tx_task is None or self._tx_task.done():
            self._tx_task = asyncio.get_running_loop().create_task(self._transmit_loop())

    async def _transmit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        ptime = self.config.ptime_ms / 1000
        samples = self.frame_samples
        now = loop.time()
        if self._last_tick is not None:
            # The media clock kept running while we were silent (RFC 3550 §5.1 timestamp).
            idle = int((now - self._last_tick) * 8000) - samples
            if idle > 0:
                self._sender.advance(idle)
        deadline = now
        try:
            while await self._tick():
                self._sender.advance(samples)
                self._last_tick = deadline
                deadline += ptime
                delay = deadline - loop.time()
                if delay < -RESYNC_LAG:
                    deadline = loop.time()
                    delay = 0
                await asyncio.sleep(max(0.0, delay))
        except Exception as exc:  # a broken source must not leave play() waiting forever
            log.warning("RTP sender stopped: %s", exc)
            self._finish_pending()
        finally:
            self._last_tick = loop.time()
            self._talkspurt = True

    async def _tick(self) -> bool:
        """Send what belongs in this packet interval; False when there is nothing left (only
        without :meth:`keep_sending`: then silence is what belongs)."""
        queue = self._dtmf_tx
        while queue:
            item = queue.popleft()
            if isinstance(item, asyncio.Future):
                if not item.done():
                    item.set_result(None)
                continue
            if item is None:  # inter-digit gap: the clock runs; silence if we keep sending
                self._talkspurt = True
                return self._silence() or True
            if item.marker:  # RFC 4733 §2.5.1.2: every packet keeps the event's start time
                self._dtmf_timestamp = self._sender.timestamp
            self._send_media(
                self.dtmf_payload_type, item.payload, item.marker, self._dtmf_timestamp
            )
            self._talkspurt = True
            return True
        source = self._source
        if source is not None:
            frame: bytes | None
            try:
                if isinstance(source, AsyncIterator):
                    frame = await anext(source)
                else:
                    frame = next(source)
            except (StopIteration, StopAsyncIteration):
                frame = None
            except Exception as exc:  # a broken source must not stop the stream or the call
                log.warning("RTP source failed: %s", exc)
                frame = None
            if frame is None:
                if self._source is source:
                    self._end_source()
            elif self._source is not source:  # replaced while we awaited the frame
                return True
            else:
                expected = 2 * self.frame_samples
                if len(frame) != expected:
                    frame = frame[:expected].ljust(expected, b"\x00")
                self._send_media(self.payload_type, self.codec.encode(frame), self._talkspurt, None)
                self._talkspurt = False
                self._source_frames += 1
                return True
        if self._continuous:
            if self._bridged:
                # The relay's packets are the stream now: stop waking every ptime for nothing
                # (at call rates that was one more wakeup per relayed packet). The clock is
                # brought forward when read (_catch_up_clock) and when the loop starts again,
                # which unbridging does (_unbridged).
                return False
            self._silence()
            return True
        return bool(self._dtmf_tx)

    def _catch_up_clock(self) -> None:
        """Advance the RTP clock of a continuous leg whose sender is parked (bridged: see
        :meth:`_tick`) by the whole frames since its last tick, as the ticks would have; the
        relay's renumbering and RTCP read it. A ticking or non-continuous sender is left as
        it is (the first keeps it current; the second catches up when it next sends)."""
        last = self._last_tick
        if not self._continuous or last is None:
            return
        if self._tx_task is not None and not self._tx_task.done():
            return
        ptime = self.config.ptime_ms / 1000
        frames = int((asyncio.get_running_loop().time() - last) / ptime)
        if frames > 0:
            self._sender.advance(frames * self.frame_samples)
            self._last_tick = last + frames * ptime

    def _unbridged(self) -> None:
        """The relay let go of this leg: our own stream (silence, prompts) carries on after
        the relayed packets, and a continuous sender parked while bridged starts again."""
        self._numbering.sync()
        if self._continuous and not self._closed:
            self._ensure_sending()

    def _silence(self) -> bool:
        """One packet of silence in the negotiated codec, when keeping the stream going and
        not bridged; returns whether one was sent."""
        if not self._continuous or self._bridged:
            return False
        codec = self.codec.name
        if self._silence_payload[0] != codec:
            self._silence_payload = (codec, self.codec.encode(bytes(2 * self.frame_samples)))
        self._send_media(self.payload_type, self._silence_payload[1], False, None)
        return True

    def flush_received(self) -> None:
        """Deliver whatever the jitter buffer still holds (end of call)."""
        for timestamp, payload in self._jitter.flush():
            if self.consumer is not None:
                self.consumer.audio_received(self.codec.decode(payload), timestamp)
        self.stats.lost = self._jitter.lost

    def set_forward(self, forward: Callable[[bytes], None] | None) -> None:
        """Hand every authenticated received RTP packet to ``forward`` instead of decoding it.

        The relay uses this to bridge legs; ``None`` returns to normal delivery.
        """
        self._forward_ep = None
        self._forward = forward
        if forward is None:
            self._unbridged()

    def pass_through_to(self, target: RtpEndpoint | None) -> None:
        """Re-send every authenticated received packet on ``target`` untouched but for the keys.

        Only valid while both legs use the same codec and payload types (the relay checks);
        ``None`` returns to normal delivery.
        """
        self._forward = None
        self._forward_ep = target
        if target is None:
            self._unbridged()
