"""SIP transport layer on asyncio: UDP, TCP and TLS listeners and client connections.

This module owns RFC 3261 §18 and RFC 3581: framing (one datagram = one message; Content-Length
on streams via :class:`~callxml.sip.message.StreamParser`), the Via ``sent-by`` we insert before a
request leaves (§18.1.1, with a bare ``rport``), the ``received``/``rport`` we add to requests that
arrive (§18.2.1, RFC 3581 §4), dropping responses whose top Via is not ours (§18.1.2), and where a
response goes (§18.2.2 + RFC 3581 §4: back over the connection the request came in on, else to
``received``:``rport``). Connections are reused per peer address and bounded in number. A
request for a flow (``Address.flow``, RFC 5626 §5.3) goes over the connection that peer opened or
fails; :meth:`TransportLayer.ping` keeps a connection we opened alive (CRLFCRLF ping, CRLF pong,
RFC 5626 §4.4.1).

It does not know transactions or dialogs: it hands every message it accepts to one callback with
the :class:`Address` it came from, and sends what it is given. Protocol errors from a peer never
escape as exceptions: a bad datagram is dropped, a stream that cannot be framed is closed (§18.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from callxml.errors import ConfigError, LocalProtocolError, RemoteProtocolError, TransportError
from callxml.sip.aio.resolver import (
    HostResolver,
    SystemResolver,
    is_ip_literal,
    resolve_target,
)
from callxml.sip.aio.tls import TlsConfig, client_context, server_context, verify_sip_identity
from callxml.sip.events import Address
from callxml.sip.headers import Via, parse_via, warning_value
from callxml.sip.message import (
    BadMessage,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamParser,
    make_response,
    parse_message,
)
from callxml.sip.target import DEFAULT_PORTS
from callxml.sip.triage import Gate, Verdict, quick_priority

__all__ = [
    "ListenerConfig",
    "MessageHandler",
    "TransportLayer",
    "TransportLimits",
]

logger = logging.getLogger(__name__)

TRANSPORTS = ("udp", "tcp", "tls")
#: Bytes queued for a peer that is not reading before its connection is dropped.
MAX_WRITE_BUFFER = 1 << 20
#: Datagrams read from a UDP socket in one wakeup (then ordered: in-dialog first).
UDP_BATCH = 64
#: The largest datagram read (the parser refuses more than MAX_MESSAGE_SIZE with 513).
MAX_DATAGRAM = 65535
#: Datagrams waiting for a full UDP socket to drain before further ones are dropped.
UDP_SEND_QUEUE = 4096


def label(address: Address) -> str:
    """``tls:[::1]:5061`` — an address for logs and error messages."""
    return f"{address.transport}:{_format_host(address.host)}:{address.port}"


@dataclass(frozen=True)
class ListenerConfig:
    """One listening socket. ``port`` 0 picks a free port. ``advertise`` is the host (and
    optionally ``advertise_port``) to put in Via and Contact when the bound address is not what
    peers should use (a wildcard bind, NAT)."""

    transport: str = "udp"
    host: str = "127.0.0.1"
    port: int = 0
    advertise: str | None = None
    advertise_port: int | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"listener.transport: {self.transport!r} is not udp, tcp or tls")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"listener.port: {self.port} out of range")


@dataclass(frozen=True)
class TransportLimits:
    """Bounds that keep a misbehaving peer from exhausting us (docs/reliability.md).

    Inbound and outbound connections are counted apart, so sockets that peers open to us (idle
    ones included) can never lock us out of a peer we must dial. Every connection is closed
    after ``idle_timeout`` seconds without a byte either way, and a message that has started
    arriving must be complete within ``read_timeout`` (a slowloris peer, a body short of its
    Content-Length). ``connect_timeout`` bounds our TCP connect and every TLS handshake, ours
    and our peers'.
    """

    max_connections: int = 1024  # inbound TCP/TLS connections at once
    connect_timeout: float = 10.0
    max_routes: int = 8192  # remembered request → connection routes for responses
    max_outbound_connections: int = 256
    idle_timeout: float = 120.0
    read_timeout: float = 30.0
    #: After a stream's framing is lost, how long the messages framed before it get to be
    #: answered before the connection closes (§18.3).
    close_linger: float = 1.0

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "idle_timeout", "read_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be more than 0 seconds")
        if self.max_connections < 1 or self.max_outbound_connections < 1:
            raise ConfigError("connection limits must be at least 1")


MessageHandler = Callable[[SipMessage, Address], None]


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _normal_ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _set_param(
    params: tuple[tuple[str, str | None], ...], name: str, value: str | None
) -> tuple[tuple[str, str | None], ...]:
    out = [(k, v) for k, v in params if k.lower() != name]
    index = next((i for i, (k, _) in enumerate(params) if k.lower() == name), len(out))
    out.insert(index, (name, value))
    return tuple(out)


def _replace_top_via(message: SipMessage, via: Via) -> None:
    values = message.headers.get_all("Via")
    message.headers.remove("Via")
    for value in reversed([str(via), *values[1:]]):
        message.headers.insert_first("Via", value)


def _top_via(message: SipMessage) -> Via | None:
    value = message.headers.get("Via")
    if value is None:
        return None
    try:
        return parse_via(value)
    except RemoteProtocolError:
        return None


class _Datagram:
    """One UDP socket, read by us rather than by an asyncio datagram transport.

    Why: asyncio's transport hands over one datagram per loop iteration, in arrival order, so
    under overload the ACKs and BYEs that finish calls wait behind every INVITE queued before
    them — INVITEs that will mostly be refused. Here each wakeup reads what is ready (up to
    :data:`UDP_BATCH` datagrams), triages them (:mod:`callxml.sip.triage`: no full parse) and
    handles responses and in-dialog requests first, new INVITEs last; the layer's
    :class:`~callxml.sip.triage.Gate`, when set, refuses new INVITEs past admission with
    a stateless 503 before they are parsed. Sends go straight to the socket; when it is full
    they wait in a bounded queue for it to drain (UDP is allowed to lose them past that).
    """

    def __init__(self, layer: TransportLayer, sock: socket.socket) -> None:
        self.layer = layer
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._pending: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._ready)

    def _ready(self) -> None:
        batch: list[tuple[bytes, tuple[Any, ...]]] = []
        recv = self.sock.recvfrom
        try:
            for _ in range(UDP_BATCH):
                batch.append(recv(MAX_DATAGRAM))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:  # an ICMP error reported on the socket: nothing to read
            logger.info("UDP error: %s", exc)
        if batch:
            self.layer._datagrams(self, batch)

    def send(self, data: bytes, host: str, port: int) -> None:
        if self._closed:
            raise TransportError("UDP socket is closed")
        if self._pending:
            self._queue(data, (host, port))
            return
        try:
            self.sock.sendto(data, (host, port))
        except (BlockingIOError, InterruptedError):
            self._queue(data, (host, port))
        except OSError as exc:
            raise TransportError(f"UDP send to {host}:{port} failed: {exc}") from exc

    def _queue(self, data: bytes, address: tuple[str, int]) -> None:
        if len(self._pending) >= UDP_SEND_QUEUE:
            self.layer.counters["dropped"] += 1
            return
        if not self._pending:
            self._loop.add_writer(self.sock.fileno(), self._writable)
        self._pending.append((data, address))

    def _writable(self) -> None:
        pending = self._pending
        try:
            while pending:
                data, address = pending[0]
                try:
                    self.sock.sendto(data, address)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    logger.info("UDP send to %s:%s failed: %s", *address, exc)
                pending.popleft()
        except Exception:  # an asyncio entry point
            self.layer._fault("UDP send")
            pending.clear()
        if not pending and not self._closed:
            self._loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self.sock.fileno())
        if self._pending:
            self._loop.remove_writer(self.sock.fileno())
            self._pending.clear()
        self.sock.close()


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection, inbound or outbound, framed by a StreamParser."""

    def __init__(self, layer: TransportLayer, name: str, *, outbound: bool = False) -> None:
        self.layer = layer
        self.name = name
        self.parser = StreamParser(screen=self._screen)
        self.transport: asyncio.Transport | None = None
        self.peer: Address | None = None
        self.local: tuple[str, int] = ("", 0)
        self.certificate: bytes | None = None
        self.verified_names: set[str] = set()
        self.closed = asyncio.get_running_loop().create_future()
        self.outbound = outbound
        self._limits = layer._limits
        self._deadline: asyncio.TimerHandle | None = None
        self._message_started: float | None = None  # when the buffered partial message began
        self._lingering = False
        self._heard: list[asyncio.Future[None]] = []  # pings waiting for bytes from the peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        try:
            self.transport = cast(asyncio.Transport, transport)
            peername = transport.get_extra_info("peername")
            sockname = transport.get_extra_info("sockname")
            self.peer = Address(self.name, str(peername[0]), int(peername[1]))
            self.local = (str(sockname[0]), int(sockname[1]))
            ssl_object = transport.get_extra_info("ssl_object")
            if isinstance(ssl_object, ssl.SSLObject):
                self.certificate = ssl_object.getpeercert(binary_form=True)
            if not self.layer._register(self):
                self.transport.abort()
                return
            self._arm()
        except Exception:
            self.layer._fault("connection set-up")
            transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self._receive(data)
        except Exception:  # an asyncio entry point: contain the bug, lose only this stream
            self.layer._fault(f"stream from {self.peer}")
            self.abort()

    def _receive(self, data: bytes) -> None:
        assert self.peer is not None
        for waiter in self._heard:  # anything from the peer answers our ping (RFC 5626 §4.4.1)
            if not waiter.done():
                waiter.set_result(None)
        pinged, self._heard = bool(self._heard), []
        pings = self.parser.keepalives
        framed: list[SipMessage] = []
        broken = False
        unframed: BadMessage | None = None
        while True:
            try:
                framed += self.parser.feed(data)
            except BadMessage as exc:
                if self.parser.broken:
                    # §18.3: a stream we cannot frame is unusable. Answer what was framed before
                    # the garbage (feed(b"") hands it over), stop reading, close shortly.
                    logger.info("closing %s: cannot frame stream: %s", label(self.peer), exc)
                    self.layer.counters["unframed"] += 1
                    with contextlib.suppress(BadMessage):
                        framed += self.parser.feed(b"")
                    if exc.partial is not None:
                        unframed = exc  # answered after the messages framed before it
                    broken = True
                    break
                self.layer._reject(exc, self.peer, None, self)
                data = b""  # the parser kept its place: carry on after the bad message
                continue
            break
        if self.parser.keepalives > pings and self.is_open:
            self.send(b"\r\n")  # RFC 5626 §4.4.1: a CRLF pong for each CRLFCRLF ping
        if pinged:
            self.parser.take_pong()  # our pong, not half a ping: do not wait for its rest
        for message in framed:
            self.layer._accept(message, self.peer, None, self)
        if broken:
            if unframed is not None:
                self.layer._reject(unframed, self.peer, None, self)
            self.linger()
            return
        if self.parser.buffered == 0:
            self._message_started = None
        elif self._message_started is None:
            self._message_started = asyncio.get_running_loop().time()
        self._arm()

    def _screen(self, data: bytes) -> bool:
        """The layer's :class:`~callxml.sip.triage.Gate` on one framed message, before it is
        parsed: False when the gate answered it (a stateless 503 to a new INVITE past
        admission) or dropped it (the ACK of such a 503). A connection carries one peer's
        messages in order, so unlike UDP there is nothing to reorder: only the parse is saved."""
        gate, peer = self.layer.gate, self.peer
        if gate is None or peer is None:
            return True
        try:
            verdict = gate.decide(data, peer, asyncio.get_running_loop().time())
            if verdict is Verdict.PARSE:
                return True
            if verdict is not Verdict.DROP:
                self.send(verdict)
        except TransportError:
            pass  # the connection is gone or stalled (send aborted it): nothing to answer
        except Exception:  # an asyncio entry point: a bug here must not lose the message
            self.layer._fault(f"screening a message from {label(peer)}")
            return True
        return False

    def linger(self) -> None:
        """Stop reading and close after ``close_linger`` s: time for queued answers to leave."""
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()
        self._lingering = True
        self._cancel_deadline()
        self._deadline = asyncio.get_running_loop().call_later(
            self._limits.close_linger, self.close
        )

    def _arm(self) -> None:
        """(Re)arm the one deadline of this connection: the idle timeout, or, while a message
        is half received, the read timeout counted from its first byte."""
        if self._lingering:
            return  # closing already, on its own deadline
        self._cancel_deadline()
        loop = asyncio.get_running_loop()
        if self._message_started is not None:
            at = self._message_started + self._limits.read_timeout
            why = "message not completed within the read timeout"
        else:
            at = loop.time() + self._limits.idle_timeout
            why = "idle timeout"
        self._deadline = loop.call_at(at, self._expire, why)

    def _expire(self, why: str) -> None:
        self._deadline = None
        if self.is_open:
            logger.info("closing %s: %s", label(self.peer) if self.peer else self.name, why)
            self.layer.counters["timed_out"] += 1
            self.abort()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def ping(self) -> asyncio.Future[None]:
        """Send a CRLFCRLF ping (RFC 5626 §4.4.1); the future is done when the peer next sends
        anything (its pong)."""
        heard = asyncio.get_running_loop().create_future()
        self._heard.append(heard)
        self.send(b"\r\n\r\n")
        return heard

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        for waiter in self._heard:
            if not waiter.done():
                waiter.set_exception(TransportError("the connection closed"))
                waiter.exception()  # mark retrieved: the pinger may have given up
        self._heard = []
        self.layer._unregister(self)
        if not self.closed.done():
            self.closed.set_result(None)

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            where = label(self.peer) if self.peer else self.name
            raise TransportError(f"connection to {where} is closed")
        if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            # A peer that never reads: drop it rather than buffer without bound.
            self.layer.counters["stalled"] += 1
            self.abort()
            raise TransportError(f"{label(self.peer) if self.peer else self.name} does not read")
        self.transport.write(data)
        if self._message_started is None:
            self._arm()  # traffic our way keeps a connection in use alive too

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


@dataclass
class _Route:
    """How a request reached us, so its responses can go back the same way (§18.2.2)."""

    peer: Address
    datagram: _Datagram | None
    stream: _Stream | None


@dataclass
class _Listener:
    config: ListenerConfig
    bound: Address
    datagram: _Datagram | None = None
    server: asyncio.Server | None = None

    @property
    def sent_by(self) -> tuple[str, int]:
        host = self.config.advertise or self.bound.host
        return host, self.config.advertise_port or self.bound.port


class TransportLayer:
    """All our sockets. ``handler(message, peer)`` receives every accepted message.

    Call :meth:`listen` for each configured listener, then :meth:`send_request` /
    :meth:`send_response`; :meth:`close` releases everything.
    """

    def __init__(
        self,
        handler: MessageHandler,
        *,
        tls: TlsConfig | None = None,
        resolver: HostResolver | None = None,
        limits: TransportLimits | None = None,
    ) -> None:
        self._handler = handler
        self._tls = tls or TlsConfig()
        self._resolver: HostResolver = resolver or SystemResolver()
        self._limits = limits or TransportLimits()
        self._listeners: list[_Listener] = []
        self._connections: dict[tuple[str, str, int], _Stream] = {}
        self._connecting: dict[tuple[str, str, int], asyncio.Future[_Stream]] = {}
        self._routes: OrderedDict[tuple[str, str, int | None], _Route] = OrderedDict()
        self._our_sent_by: set[tuple[str, int]] = set()
        self._client_ssl: ssl.SSLContext | None = None
        self._closed = False
        #: Stateless admission of new INVITEs before parsing, on every transport (set by the
        #: user agent): each UDP datagram, each message framed on a TCP/TLS connection.
        self.gate: Gate | None = None
        #: What the transport refused or lost, by kind (``bad_message`` answered, ``dropped``
        #: unanswerable, ``refused`` over a connection limit, ``timed_out``, ``fault``...).
        self.counters: Counter[str] = Counter()

    # -- setup -------------------------------------------------------------------------------

    async def listen(self, config: ListenerConfig) -> Address:
        """Open a listener; returns the address it is bound to (port filled in)."""
        loop = asyncio.get_running_loop()
        try:
            if config.transport == "udp":
                infos = await loop.getaddrinfo(
                    config.host, config.port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP
                )
                family, kind, proto, _, address = infos[0]
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    sock.bind(address)
                    datagram = _Datagram(self, sock)
                except BaseException:
                    sock.close()
                    raise
                sockname = sock.getsockname()
                bound = Address("udp", str(sockname[0]), int(sockname[1]))
                listener = _Listener(config, bound, datagram=datagram)
            else:
                ctx = server_context(self._tls) if config.transport == "tls" else None
                name = config.transport
                server = await loop.create_server(
                    lambda: _Stream(self, name),
                    config.host,
                    config.port,
                    ssl=ctx,
                    ssl_handshake_timeout=self._limits.connect_timeout if ctx else None,
                )
                sockname = server.sockets[0].getsockname()
                bound = Address(name, str(sockname[0]), int(sockname[1]))
                listener = _Listener(config, bound, server=server)
        except OSError as exc:
            raise TransportError(
                f"cannot listen on {config.transport}:{config.host}:{config.port}: {exc}"
            ) from exc
        self._listeners.append(listener)
        self._our_sent_by.add(_sent_by_key(*listener.sent_by))
        logger.debug("listening on %s", bound)
        return bound

    def local_address(self, transport: str, family_of: str | None = None) -> tuple[str, int]:
        """The host and port we advertise for ``transport`` (for Via and Contact).

        ``family_of`` (an IP literal) picks a listener of the same address family.
        """
        listener = self._listener_for(transport, family_of)
        if listener is None:
            raise TransportError(f"no {transport} listener")
        return listener.sent_by

    @property
    def listeners(self) -> list[Address]:
        return [listener.bound for listener in self._listeners]

    def _listener_for(self, transport: str, family_of: str | None) -> _Listener | None:
        candidates = [lst for lst in self._listeners if lst.config.transport == transport]
        if family_of is not None:
            family = _family(family_of)
            same = [lst for lst in candidates if _family(lst.bound.host) == family]
            candidates = same or candidates
        return candidates[0] if candidates else None

    async def close(self) -> None:
        """Close every listener and connection."""
        self._closed = True
        for listener in self._listeners:
            if listener.datagram is not None:
                listener.datagram.close()
            if listener.server is not None:
                listener.server.close()
        streams = list(self._connections.values())
        for stream in streams:
            stream.close()
        for future in self._connecting.values():
            future.cancel()
        if streams:
            await asyncio.wait([s.closed for s in streams], timeout=2.0)
        for listener in self._listeners:
            if listener.server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(listener.server.wait_closed(), 2.0)
        self._listeners.clear()
        self._routes.clear()

    # -- receiving ---------------------------------------------------------------------------

    def _datagrams(self, datagram: _Datagram, batch: list[tuple[bytes, tuple[Any, ...]]]) -> None:
        """One wakeup's datagrams: triaged, ordered (responses and in-dialog requests first,
        new INVITEs last: a flood of INVITEs never starves the ACKs and BYEs that finish
        calls), refused by the :attr:`gate` where admission says no, the rest parsed."""
        ordered: list[tuple[int, int, bytes, tuple[Any, ...]]] = []
        for data, addr in batch:
            try:
                if not data.strip(b"\r\n"):
                    continue  # RFC 5626 §4.4.2-style keep-alive (CRLF): nothing to parse
                rank = quick_priority(data) if len(batch) > 1 else 0
                ordered.append((rank, len(ordered), data, addr))
            except Exception:  # an asyncio entry point: a bug here must not stop the socket
                self._fault("UDP datagram")
        if len(ordered) > 1:
            ordered.sort(key=_batch_order)
        gate = self.gate
        now = asyncio.get_running_loop().time() if gate is not None else 0.0
        for _, _, data, addr in ordered:
            try:
                peer = Address("udp", str(addr[0]), int(addr[1]))
                if gate is not None:
                    verdict = gate.decide(data, peer, now)
                    if verdict is Verdict.DROP:
                        continue
                    if verdict is not Verdict.PARSE:
                        datagram.send(verdict, peer.host, peer.port)  # straight back
                        continue
                try:
                    message = parse_message(data)
                except BadMessage as exc:
                    self._reject(exc, peer, datagram, None)
                    continue
                self._accept(message, peer, datagram, None)
            except Exception:  # an asyncio entry point: a bug here must not stop the socket
                self._fault("UDP datagram")

    def _accept(
        self,
        message: SipMessage,
        peer: Address,
        datagram: _Datagram | None,
        stream: _Stream | None,
    ) -> None:
        via = _top_via(message)
        if via is None:
            logger.info("dropping message without a usable Via from %s", peer)
            self.counters["dropped"] += 1
            return
        if isinstance(message, SipResponse):
            # §18.1.2: a response whose top Via we did not write is not for us.
            if _sent_by_key(via.host, via.port or DEFAULT_PORTS[peer.transport]) not in (
                self._our_sent_by
            ):
                logger.info("dropping response for sent-by %s:%s from %s", via.host, via.port, peer)
                self.counters["dropped"] += 1
                return
        else:
            _replace_top_via(message, _stamp_received(via, peer))
            self._remember_route(via, _Route(peer, datagram, stream))
        try:
            self._handler(message, peer)
        except Exception:  # a bug upstairs must not kill the socket
            self._fault(f"handling a message from {label(peer)}")

    def _fault(self, where: str) -> None:
        """A bug contained at an asyncio entry point (the exception being handled)."""
        self.counters["fault"] += 1
        logger.exception("SIP transport fault in %s", where)

    def _reject(
        self,
        exc: BadMessage,
        peer: Address,
        datagram: _Datagram | None,
        stream: _Stream | None,
    ) -> None:
        """A malformed message: answer a request statelessly with ``status_hint`` when it can
        still be answered (§8.2, §16.3), drop anything else (responses: §18.1.2)."""
        partial = exc.partial
        logger.info("bad message from %s: %s", label(peer), exc)
        if not isinstance(partial, SipRequest) or partial.method == "ACK":
            self.counters["dropped"] += 1
            return
        listener = self._listener_for(peer.transport, peer.host)
        agent = "{}:{}".format(*listener.sent_by) if listener is not None else "callxml"
        try:
            warning = warning_value(agent, str(exc))
            response = make_response(partial, exc.status_hint, headers=(("Warning", warning),))
            data = bytes(response)
        except (RemoteProtocolError, LocalProtocolError, ValueError) as error:
            logger.info("cannot answer the bad request from %s: %s", label(peer), error)
            self.counters["dropped"] += 1
            return
        self.counters["bad_message"] += 1
        try:
            if stream is not None:
                stream.send(data)
            elif datagram is not None:
                datagram.send(data, peer.host, peer.port)  # straight back to the source
        except TransportError as error:
            logger.info("cannot answer the bad request from %s: %s", label(peer), error)

    def _remember_route(self, via: Via, route: _Route) -> None:
        key = _route_key(via)
        self._routes[key] = route
        self._routes.move_to_end(key)
        while len(self._routes) > self._limits.max_routes:
            self._routes.popitem(last=False)

    def _register(self, stream: _Stream) -> bool:
        assert stream.peer is not None
        if self._closed:
            return False
        if not stream.outbound:
            inbound = sum(not s.outbound for s in self._connections.values())
            if inbound >= self._limits.max_connections:
                self.counters["refused"] += 1
                logger.warning("refusing connection from %s: connection limit", stream.peer)
                return False
        key = (stream.name, stream.peer.host, stream.peer.port)
        self._connections.setdefault(key, stream)
        return True

    def _unregister(self, stream: _Stream) -> None:
        if stream.peer is None:
            return
        key = (stream.name, stream.peer.host, stream.peer.port)
        if self._connections.get(key) is stream:
            del self._connections[key]

    # -- sending -----------------------------------------------------------------------------

    async def send_request(self, request: SipRequest, destination: Address) -> Address:
        """Send ``request`` to ``destination``; returns the IP-literal address it went to.

        A host name is resolved first (A/AAAA through the resolver seam; for TCP/TLS each
        address is tried in turn). On a copy, the top Via's transport and sent-by are set to
        ours and a bare ``rport`` added (§18.1.1, RFC 3581 §3); branch and other parameters are
        kept (give requests our sent-by already, see :meth:`local_address`, so keys agree). A
        TCP/TLS connection to the same address is reused, else opened (and, for TLS, verified
        against ``server_name``, RFC 5922). Raises TransportError.
        """
        via = _top_via(request)
        if via is None:
            raise TransportError("request has no usable top Via")
        # Stamp a copy: the transaction keeps the request it made (and retransmits it through us).
        request = replace(request, headers=request.headers.copy())
        if destination.flow and destination.transport != "udp":
            return self._send_over_flow(request, via, destination)
        candidates = await resolve_target(destination, self._resolver)
        if destination.transport == "udp":
            target = candidates[0]
            listener = self._listener_for("udp", target.host)
            if listener is None or listener.datagram is None:
                raise TransportError("no UDP listener to send from")
            if _family(listener.bound.host) != _family(target.host):
                raise TransportError(f"no UDP listener of the address family of {label(target)}")
            sent_by = self._sent_by_for(listener, target.host)
            self._stamp_via(request, via, "UDP", sent_by)
            listener.datagram.send(bytes(request), target.host, target.port)
            return target
        errors: list[str] = []
        for target in candidates:
            try:
                stream = await self._connection(target)
            except TransportError as exc:
                errors.append(str(exc))
                continue
            listener = self._listener_for(target.transport, target.host)
            sent_by = listener.sent_by if listener is not None else stream.local
            self._stamp_via(request, via, target.transport.upper(), sent_by)
            stream.send(bytes(request))
            return target
        raise TransportError("; ".join(errors))

    def _send_over_flow(self, request: SipRequest, via: Via, destination: Address) -> Address:
        """RFC 5626 §5.3: over the connection the peer opened (its REGISTER came over it), or
        not at all: a new connection to a NATed source port would reach nobody."""
        key = (destination.transport, destination.host, destination.port)
        stream = self._connections.get(key)
        if stream is None or not stream.is_open:
            raise TransportError(f"the flow {label(destination)} is gone (RFC 5626 §5.3)")
        listener = self._listener_for(destination.transport, destination.host)
        sent_by = listener.sent_by if listener is not None else stream.local
        self._stamp_via(request, via, destination.transport.upper(), sent_by)
        stream.send(bytes(request))
        return destination

    async def ping(self, destination: Address, timeout: float = 10.0) -> None:
        """Keep the connection to ``destination`` alive: a CRLFCRLF ping, and a pong (any bytes)
        within ``timeout`` seconds (RFC 5626 §4.4.1). Raises TransportError when there is no
        open connection or no pong came (the connection is then closed: the flow failed)."""
        key = (destination.transport, destination.host, destination.port)
        stream = self._connections.get(key)
        if stream is None or not stream.is_open:
            raise TransportError(f"no connection to {label(destination)}")
        try:
            await asyncio.wait_for(stream.ping(), timeout)
        except TimeoutError:
            self.counters["timed_out"] += 1
            stream.abort()
            raise TransportError(
                f"no pong from {label(destination)} within {timeout:g} s"
            ) from None

    def _stamp_via(
        self, request: SipRequest, via: Via, token: str, sent_by: tuple[str, int]
    ) -> None:
        host, port = sent_by
        params = via.params
        if via.rport is None:
            params = (*params, ("rport", None))
        _replace_top_via(
            request,
            replace(via, transport=token, host=_format_host(host), port=port, params=params),
        )
        self._our_sent_by.add(_sent_by_key(host, port))

    def _sent_by_for(self, listener: _Listener, destination_host: str) -> tuple[str, int]:
        host, port = listener.sent_by
        if _normal_ip(host) in ("0.0.0.0", "::"):
            # A wildcard bind has no address of its own; use the one the kernel routes from.
            host = _route_source(destination_host)
        return host, port

    async def send_response(self, response: SipResponse, arrival: Address | None = None) -> Address:
        """Send ``response`` where RFC 3261 §18.2.2 and RFC 3581 §4 say; returns the peer.

        ``arrival`` is where the request came from: the response goes back over *that*
        transport, whatever the Via claims. Following the Via's transport would let a spoofed
        UDP request with ``Via: SIP/2.0/TCP victim:port`` make us open connections anywhere.
        """
        via = _top_via(response)
        if via is None:
            raise TransportError("response has no usable top Via")
        transport = arrival.transport if arrival is not None else via.transport.lower()
        if transport not in TRANSPORTS:
            raise TransportError(f"cannot send a response over {via.transport}")
        route = self._routes.get(_route_key(via))
        data = bytes(response)
        if route is not None and route.stream is not None and route.stream.is_open:
            route.stream.send(data)
            return route.peer
        host = via.received or via.host.strip("[]")
        rport = via.rport if isinstance(via.rport, int) and via.rport is not True else None
        if transport == "udp":
            port = rport if (rport and via.received) else via.port or DEFAULT_PORTS["udp"]
            address = await self._address(host, port, transport)
            datagram = route.datagram if route is not None else None
            if datagram is None:
                listener = self._listener_for("udp", address)
                datagram = listener.datagram if listener is not None else None
            if datagram is None:
                raise TransportError("no UDP listener to send the response from")
            datagram.send(data, address, port)
            return Address("udp", address, port)
        # §18.2.2: the connection is gone; open one to received (or sent-by) and sent-by port.
        port = via.port or DEFAULT_PORTS[transport]
        address = await self._address(host, port, transport)
        stream = await self._connection(Address(transport, address, port, via.host.strip("[]")))
        stream.send(data)
        assert stream.peer is not None
        return stream.peer

    async def _address(self, host: str, port: int, transport: str) -> str:
        literal = _normal_ip(host)
        if literal is not None:
            return literal
        found = await self._resolver.lookup(host, port, transport)
        if not found:
            raise TransportError(f"cannot resolve {host!r}")
        return found[0]

    async def _connection(self, destination: Address) -> _Stream:
        key = (destination.transport, destination.host, destination.port)
        stream = self._connections.get(key)
        if stream is not None and stream.is_open:
            self._check_identity(stream, destination)
            return stream
        pending = self._connecting.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._connect(destination))
            self._connecting[key] = pending
            pending.add_done_callback(lambda _: self._connecting.pop(key, None))
        stream = await asyncio.shield(pending)
        try:
            self._check_identity(stream, destination)
        except TransportError:
            if not stream.verified_names:
                stream.close()  # a fresh connection to the wrong peer is of no use to anyone
            raise
        return stream

    def _check_identity(self, stream: _Stream, destination: Address) -> None:
        """RFC 5922 §7.2 for every name a TLS connection is used for (reuse included)."""
        if destination.transport != "tls" or not self._tls.verify:
            return
        server_name = destination.server_name or destination.host
        name = server_name.lower()
        if name in stream.verified_names:
            return
        verify_sip_identity(
            stream.certificate, server_name, allow_wildcards=self._tls.allow_wildcards
        )
        stream.verified_names.add(name)

    async def _connect(self, destination: Address) -> _Stream:
        if self._closed:
            raise TransportError("transport layer is closed")
        outbound = sum(s.outbound for s in self._connections.values())
        if outbound + len(self._connecting) > self._limits.max_outbound_connections:
            raise TransportError("outbound connection limit reached")
        loop = asyncio.get_running_loop()
        ctx: ssl.SSLContext | None = None
        server_hostname: str | None = None
        if destination.transport == "tls":
            if self._client_ssl is None:
                self._client_ssl = client_context(self._tls)
            ctx = self._client_ssl
            # SNI carries the domain we want (RFC 6066 §3); IP literals are never sent as SNI.
            name = destination.server_name or destination.host
            server_hostname = "" if is_ip_literal(name) else name
        where = label(destination)
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Stream(self, destination.transport, outbound=True),
                    destination.host,
                    destination.port,
                    ssl=ctx,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=self._limits.connect_timeout if ctx else None,
                ),
                self._limits.connect_timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(
                f"TLS certificate of {destination.server_name or destination.host} ({where}) "
                f"not trusted: "
                f"{exc.verify_message or exc}"
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot connect to {where}: {exc or 'timed out'}") from exc
        if not protocol.is_open:
            raise TransportError(f"connection to {where} closed at once")
        return protocol


def _batch_order(item: tuple[int, int, bytes, object]) -> tuple[int, int]:
    return item[0], item[1]  # priority, then arrival


def _sent_by_key(host: str, port: int) -> tuple[str, int]:
    return (_normal_ip(host) or host.lower().rstrip(".")), port


def _route_key(via: Via) -> tuple[str, str, int | None]:
    return (via.branch or "", via.host.lower(), via.port)


def _stamp_received(via: Via, peer: Address) -> Via:
    """§18.2.1 ``received`` and RFC 3581 §4 ``rport`` on an arriving request's top Via."""
    params = via.params
    if via.rport is True or (via.rport is None and any(k.lower() == "rport" for k, _ in params)):
        params = _set_param(params, "rport", str(peer.port))
        params = _set_param(params, "received", peer.host)
    elif _normal_ip(via.host) != peer.host:
        params = _set_param(params, "received", peer.host)
    return replace(via, params=params)


def _route_source(destination: str) -> str:
    """The local address the kernel would use towards ``destination`` (no packet is sent)."""
    with socket.socket(_family(destination), socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((destination, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1" if _family(destination) == socket.AF_INET else "::1"
