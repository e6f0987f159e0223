"""A raw SIP peer on loopback: exact bytes out, whatever comes back in.

Malformed input (an unusable Contact, a Via that lies about its transport, a Request-URI in
angle brackets, half a message over TCP) cannot be produced by a well-behaved user agent, and
SIPp rewrites what it sends. Tests that probe how the engine takes bad input send the bytes
themselves through :class:`RawPeer`, over a real UDP or TCP socket, and read what comes back
(parsed when it parses). :func:`request` builds a valid request to mutate from.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import ssl
from collections.abc import Sequence

from callxml.sip.message import BadMessage, SipMessage, SipResponse, parse_message

__all__ = ["SDP", "RawPeer", "request"]

SDP = (
    b"v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)


def request(
    method: str,
    uri: str,
    *,
    port: int,
    transport: str = "udp",
    contact: str | None = None,
    headers: Sequence[str] = (),
    body: bytes = b"",
    call_id: str | None = None,
    cseq: int = 1,
    via_transport: str | None = None,
    to: str | None = None,
) -> bytes:
    """A well-formed request from a peer at 127.0.0.1:``port`` (change what the test needs);
    ``to`` is the To URI (default: the Request-URI; a REGISTER's is its address of record)."""
    branch = "z9hG4bK" + secrets.token_hex(8)
    call_id = call_id or secrets.token_hex(8) + "@127.0.0.1"
    token = (via_transport or transport).upper()
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{token} 127.0.0.1:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:peer@127.0.0.1>;tag={secrets.token_hex(4)}",
        f"To: <{to or uri}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    if contact is None and method == "INVITE":
        suffix = "" if transport == "udp" else f";transport={transport}"
        contact = f"<sip:peer@127.0.0.1:{port}{suffix}>"
    if contact:
        lines.append(f"Contact: {contact}")
    lines += list(headers)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, inbox: asyncio.Queue[bytes]) -> None:
        self.inbox = inbox

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.inbox.put_nowait(data)


class RawPeer:
    """One socket (``udp``, ``tcp`` or ``tls``: give ``tls`` the client context) to
    ``host``:``port``. :meth:`send` raw bytes, :meth:`response` waits for the next message
    back, parsed."""

    def __init__(
        self, transport: str, host: str, port: int, *, tls: ssl.SSLContext | None = None
    ) -> None:
        if (transport == "tls") != (tls is not None):
            raise ValueError("a tls RawPeer needs an SSL context (and only it)")
        self.tls = tls
        self.transport = transport
        self.host = host
        self.target_port = port
        self.port = 0
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._udp: asyncio.DatagramTransport | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._buffer = b""

    async def __aenter__(self) -> RawPeer:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Collector(self.inbox), local_addr=("127.0.0.1", 0)
            )
            self._udp = udp
        else:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.target_port, ssl=self.tls
            )
            self._pump = loop.create_task(self._read())
        sock = (self._udp or self._writer).get_extra_info("socket")  # type: ignore[union-attr]
        self.port = int(sock.getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._pump is not None:
            self._pump.cancel()

    async def _read(self) -> None:
        assert self._reader is not None
        while data := await self._reader.read(65536):
            self.inbox.put_nowait(data)
        self.inbox.put_nowait(b"")  # closed by the other side

    def send(self, data: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(data, (self.host, self.target_port))
        else:
            assert self._writer is not None
            self._writer.write(data)

    @property
    def closed(self) -> bool:
        """True once the other side closed a TCP connection."""
        return self._reader is not None and self._reader.at_eof()

    async def message(self, timeout: float = 5.0) -> SipMessage:
        """The next message that arrives (raises TimeoutError after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while True:
                if self.transport != "udp":
                    framed = self._frame()
                    if framed is not None:
                        return parse_message(framed)
                data = await self.inbox.get()
                if data == b"":
                    raise ConnectionResetError("the connection was closed")
                if self.transport == "udp":
                    if data.strip(b"\r\n"):
                        return parse_message(data)
                else:
                    self._buffer += data

    def _frame(self) -> bytes | None:
        self._buffer = self._buffer.lstrip(b"\r\n")
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        length = 0
        for line in self._buffer[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() in (b"content-length", b"l"):
                length = int(value.strip())
        size = end + 4 + length
        if len(self._buffer) < size:
            return None
        chunk, self._buffer = self._buffer[:size], self._buffer[size:]
        return chunk

    async def response(self, timeout: float = 5.0, *, final: bool = True) -> SipResponse:
        """The next response (skipping provisional ones when ``final``) to what was sent."""
        while True:
            message = await self.message(timeout)
            if not isinstance(message, SipResponse):
                continue
            if final and message.status < 200:
                continue
            return message

    async def silence(self, seconds: float) -> list[SipMessage]:
        """Whatever arrives within ``seconds`` (parsed; unparseable data is skipped), or until
        the other side closes the connection."""
        got: list[SipMessage] = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            async with asyncio.timeout(seconds):
                while True:
                    with contextlib.suppress(BadMessage):
                        got.append(await self.message(seconds))
        return got


def tcp_listener() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (nothing accepts): to see if anyone connects."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    return sock
