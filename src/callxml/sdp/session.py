"""SDP session descriptions: parse and serialise (RFC 8866 §5).

Owns the text form of a session description and nothing else: which lines exist, in which order,
and what their fields are. ``str(SessionDescription.parse(text)) == text`` for any description
written in RFC 8866 order with CRLF line ends, and ``parse(str(sd)) == sd`` always, so an offer
we relay or store comes back byte for byte. Unknown attributes are kept as they are.

Every object is a frozen dataclass; change one with :func:`dataclasses.replace` or the small
``with_*`` helpers. Negotiation (what to answer) lives in :mod:`callxml.sdp.negotiate`; this
module must not know about codecs, crypto policy or sockets.

``repr()`` of an ``a=crypto`` attribute hides its key, so a logged ``SessionDescription`` object
never leaks keys; the wire text (``str()``/``bytes()``) of course carries them -- log
``redact(str(sd))`` (:func:`callxml.sdp.crypto.redact`) instead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from callxml.errors import MediaError

from .crypto import redact

__all__ = [
    "DIRECTIONS",
    "MAX_SDP_BYTES",
    "Attribute",
    "Bandwidth",
    "Connection",
    "Direction",
    "InvalidSdp",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "Timing",
]

#: Largest SDP body we parse (bytes); a bound, not an RFC limit.
MAX_SDP_BYTES = 65536
#: Most lines, media sections and line length we parse; bounds, not RFC limits.
MAX_LINES = 2000
MAX_MEDIA = 32
MAX_LINE_LENGTH = 4096

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
#: The direction attributes of RFC 8866 §6.7 (a.k.a. RFC 3264 §5.1).
DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")


class InvalidSdp(MediaError):
    """A session description that does not follow RFC 8866 (or exceeds our bounds).

    A server answers an INVITE carrying one with 488 Not Acceptable Here (or 400).
    """


_LINE = re.compile(r"([a-z])=(.*)")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 8866 §9 token
_DIGITS = re.compile(r"[0-9]{1,20}")


def _int(text: str, what: str, maximum: int = 2**64 - 1) -> int:
    if not _DIGITS.fullmatch(text) or int(text) > maximum:
        raise InvalidSdp(f"bad {what}: {text[:40]!r}")
    return int(text)


def _token(text: str, what: str) -> str:
    if not _TOKEN.fullmatch(text):
        raise InvalidSdp(f"bad {what}: {redact(text[:40])!r}")
    return text


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`` (§5.2)."""

    username: str
    session_id: int
    session_version: int
    network_type: str
    address_type: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        fields = value.split(" ")
        if len(fields) != 6:
            raise InvalidSdp("o= needs 6 fields")
        user, sess_id, version, net, addr_type, address = fields
        return cls(
            _nonempty(user, "o= username"),
            _int(sess_id, "o= sess-id"),
            _int(version, "o= sess-version"),
            _token(net, "o= nettype"),
            _token(addr_type, "o= addrtype"),
            _nonempty(address, "o= address"),
        )

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.network_type} {self.address_type} {self.address}"
        )


def _nonempty(text: str, what: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise InvalidSdp(f"bad {what}")
    return text


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (§5.7).

    ``address`` is kept as written, multicast ``/ttl/count`` suffixes included; :attr:`host` is the
    address alone.
    """

    network_type: str
    address_type: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Connection:
        fields = value.split(" ")
        if len(fields) != 3:
            raise InvalidSdp("c= needs 3 fields")
        net, addr_type, address = fields
        connection = cls(_token(net, "c= nettype"), _token(addr_type, "c= addrtype"), address)
        _nonempty(address, "c= address")
        if net == "IN" and addr_type in ("IP4", "IP6"):
            try:
                ip = ipaddress.ip_address(connection.host)
            except ValueError:
                # RFC 8866 §5.7 allows an FQDN here; anything else with a space or '/' is bad.
                if not re.fullmatch(r"[A-Za-z0-9.\-]+", connection.host):
                    raise InvalidSdp(f"bad c= address for {addr_type}") from None
            else:
                if ip.version != (4 if addr_type == "IP4" else 6):
                    raise InvalidSdp(f"c= address is not {addr_type}")
        return connection

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """``IN IP4``/``IN IP6`` connection for an IP address string."""
        version = ipaddress.ip_address(address).version
        return cls("IN", f"IP{version}", address)

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def is_null(self) -> bool:
        """``0.0.0.0``: the pre-RFC 3264 way to put a stream on hold (RFC 3264 §8.4)."""
        return self.address_type == "IP4" and self.host == "0.0.0.0"

    def __str__(self) -> str:
        return f"{self.network_type} {self.address_type} {self.address}"


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (§5.8)."""

    bwtype: str
    bandwidth: int

    @classmethod
    def parse(cls, value: str) -> Bandwidth:
        bwtype, sep, amount = value.partition(":")
        if not sep:
            raise InvalidSdp("b= needs <bwtype>:<bandwidth>")
        return cls(_token(bwtype, "b= bwtype"), _int(amount, "b= bandwidth"))

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, slots=True)
class Timing:
    """``t=<start-time> <stop-time>`` with its ``r=`` repeat lines kept as text (§5.9, §5.10)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> Timing:
        fields = value.split(" ")
        if len(fields) != 2:
            raise InvalidSdp("t= needs 2 fields")
        return cls(_int(fields[0], "t= start"), _int(fields[1], "t= stop"))


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>`` (a property attribute, ``value`` None) or ``a=<name>:<value>`` (§5.13)."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, sep, value = text.partition(":")
        return cls(_token(name, "attribute name"), value if sep else None)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"

    def __repr__(self) -> str:
        value = self.value if self.value is None else redact(self.value)
        return f"Attribute(name={self.name!r}, value={value!r})"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`` (§6.6)."""

    payload_type: int
    encoding_name: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        pt, sep, rest = value.partition(" ")
        parts = rest.strip().split("/")
        if not sep or len(parts) not in (2, 3) or not parts[0]:
            raise InvalidSdp("bad a=rtpmap")
        channels = _int(parts[2], "rtpmap channels", 255) if len(parts) == 3 else None
        return cls(
            _int(pt, "rtpmap payload type", 127),
            parts[0],
            _int(parts[1], "rtpmap clock rate", 10_000_000),
            channels,
        )

    def __str__(self) -> str:
        text = f"{self.payload_type} {self.encoding_name}/{self.clock_rate}"
        return text if self.channels is None else f"{text}/{self.channels}"


class _Attributes:
    """Lookups shared by the session and media levels."""

    __slots__ = ()

    attributes: tuple[Attribute, ...]

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=<name>`` ('' for a property attribute), or None if absent."""
        for attr in self.attributes:
            if attr.name == name:
                return "" if attr.value is None else attr.value
        return None

    def attributes_named(self, name: str) -> tuple[str, ...]:
        """Values of every ``a=<name>`` in order ('' for property attributes)."""
        return tuple("" if a.value is None else a.value for a in self.attributes if a.name == name)

    @property
    def direction(self) -> Direction | None:
        """The direction attribute at this level, or None when there is none (§6.7)."""
        for attr in self.attributes:
            for direction in DIRECTIONS:
                if attr.name == direction and attr.value is None:
                    return direction
        return None


@dataclass(frozen=True, slots=True)
class MediaDescription(_Attributes):
    """One ``m=`` section (§5.14) with its ``i=``, ``c=``, ``b=``, ``k=`` and ``a=`` lines."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    title: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    @classmethod
    def parse_m_line(cls, value: str) -> MediaDescription:
        fields = value.split(" ")
        if len(fields) < 4:
            raise InvalidSdp("m= needs media, port, proto and at least one format")
        media, port_text, proto, *formats = fields
        port, sep, count = port_text.partition("/")
        for fmt in formats:
            _token(fmt, "m= format")
        return cls(
            media=_token(media, "m= media"),
            port=_int(port, "m= port", 65535),
            proto=_nonempty(proto, "m= proto"),
            formats=tuple(formats),
            port_count=_int(count, "m= port count", 65535) if sep else None,
        )

    def m_line(self) -> str:
        port = self.port if self.port_count is None else f"{self.port}/{self.port_count}"
        return " ".join([self.media, str(port), self.proto, *self.formats])

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats that are RTP payload type numbers (0..127), in order."""
        return tuple(int(f) for f in self.formats if f.isdigit() and int(f) <= 127)

    def rtpmaps(self) -> dict[int, RtpMap]:
        """``a=rtpmap`` lines by payload type; malformed ones are left out."""
        result: dict[int, RtpMap] = {}
        for value in self.attributes_named("rtpmap"):
            try:
                rtpmap = RtpMap.parse(value)
            except InvalidSdp:
                continue
            result.setdefault(rtpmap.payload_type, rtpmap)
        return result

    def fmtps(self) -> dict[int, str]:
        """``a=fmtp`` parameters by payload type (§6.15)."""
        result: dict[int, str] = {}
        for value in self.attributes_named("fmtp"):
            pt, _, params = value.partition(" ")
            if pt.isdigit() and int(pt) <= 127:
                result.setdefault(int(pt), params.strip())
        return result

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds (§6.4), or None when absent or malformed."""
        value = self.attribute("ptime")
        try:
            ptime = None if value is None else float(value)
        except ValueError:
            return None
        return int(ptime) if ptime is not None and 0 < ptime <= 10_000 else None

    def with_attributes(self, attributes: Iterable[Attribute]) -> MediaDescription:
        return replace(self, attributes=tuple(attributes))

    def with_direction(self, direction: Direction) -> MediaDescription:
        """This section with its direction attribute replaced in place (or added at the end)."""
        attrs: list[Attribute] = []
        pending: Direction | None = direction
        for attr in self.attributes:
            if attr.name in DIRECTIONS and attr.value is None:
                if pending is not None:
                    attrs.append(Attribute(pending))
                pending = None
            else:
                attrs.append(attr)
        if pending is not None:
            attrs.append(Attribute(pending))
        return self.with_attributes(attrs)


@dataclass(frozen=True, slots=True)
class SessionDescription(_Attributes):
    """A whole session description (RFC 8866 §5), lines in RFC order.

    ``session_name`` None and ``times`` empty mean the (mandatory) ``s=``/``t=`` lines were
    missing; we accept that from lax peers and write back what we got.
    """

    origin: Origin
    session_name: str | None = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    times: tuple[Timing, ...] = (Timing(),)
    zone: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    # -- parsing --------------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: str | bytes) -> SessionDescription:
        """Parse ``data``; raise :class:`InvalidSdp` with a short reason for anything malformed."""
        if isinstance(data, bytes):
            if len(data) > MAX_SDP_BYTES:
                raise InvalidSdp("SDP body too large")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidSdp("SDP is not UTF-8") from None
        else:
            text = data
            if len(text) > MAX_SDP_BYTES:
                raise InvalidSdp("SDP body too large")
        # RFC 8866 §5: lines end in CRLF, but parsers should also accept LF alone.
        lines = text.replace("\r\n", "\n").split("\n")
        while lines and lines[-1] == "":  # the final CRLF, and blank lines some stacks append
            lines.pop()
        if len(lines) > MAX_LINES:
            raise InvalidSdp("too many SDP lines")
        return _Parser().run(lines)

    # -- serialising ----------------------------------------------------------------------------

    def lines(self) -> list[str]:
        out = [f"v={self.version}", f"o={self.origin}"]
        if self.session_name is not None:
            out.append(f"s={self.session_name}")
        _opt(out, "i", self.information)
        _opt(out, "u", self.uri)
        out += [f"e={e}" for e in self.emails] + [f"p={p}" for p in self.phones]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        for timing in self.times:
            out.append(f"t={timing.start} {timing.stop}")
            out += [f"r={r}" for r in timing.repeats]
        _opt(out, "z", self.zone)
        _opt(out, "k", self.key)
        out += [f"a={a}" for a in self.attributes]
        for m in self.media:
            out.append(f"m={m.m_line()}")
            _opt(out, "i", m.title)
            out += [f"c={c}" for c in m.connections] + [f"b={b}" for b in m.bandwidths]
            _opt(out, "k", m.key)
            out += [f"a={a}" for a in m.attributes]
        return out

    def __str__(self) -> str:
        return "".join(line + "\r\n" for line in self.lines())

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")

    # -- helpers --------------------------------------------------------------------------------

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The connection a media section uses: its own ``c=``, else the session's (§5.7)."""
        return media.connections[0] if media.connections else self.connection

    def direction_for(self, media: MediaDescription) -> Direction:
        """A section's direction: its own, else the session's, else ``sendrecv`` (§6.7)."""
        return media.direction or self.direction or "sendrecv"

    def bump_version(self) -> SessionDescription:
        """Same session with ``sess-version`` + 1: needed whenever the content changes (§5.2)."""
        origin = replace(self.origin, session_version=self.origin.session_version + 1)
        return replace(self, origin=origin)

    def with_media(self, media: Iterable[MediaDescription]) -> SessionDescription:
        return replace(self, media=tuple(media))


def _opt(out: list[str], letter: str, value: str | None) -> None:
    if value is not None:
        out.append(f"{letter}={value}")


@dataclass
class _MediaLines:
    """The lines of one media section while it is being parsed."""

    m: MediaDescription
    title: list[str]
    connections: list[Connection]
    bandwidths: list[Bandwidth]
    key: list[str]
    attributes: list[Attribute]

    def finish(self) -> MediaDescription:
        return replace(
            self.m,
            title=self.title[0] if self.title else None,
            connections=tuple(self.connections),
            bandwidths=tuple(self.bandwidths),
            key=self.key[0] if self.key else None,
            attributes=tuple(self.attributes),
        )

    def add(self, letter: str, value: str) -> None:
        if letter in ("i", "k"):
            target = self.title if letter == "i" else self.key
            if target:
                raise InvalidSdp(f"more than one {letter}= line in a media section")
            target.append(value)
        elif letter == "c":
            self.connections.append(Connection.parse(value))
        elif letter == "b":
            self.bandwidths.append(Bandwidth.parse(value))
        elif letter == "a":
            self.attributes.append(Attribute.parse(value))
        else:
            raise InvalidSdp(f"{letter}= is not allowed in a media section")


class _Parser:
    """Walks the lines once; session-level fields until the first ``m=``, then media sections."""

    def __init__(self) -> None:
        self.once: dict[str, str] = {}  # s= i= u= z= k= as written
        self.origin: Origin | None = None
        self.connection: Connection | None = None
        self.attributes: list[Attribute] = []
        self.emails: list[str] = []
        self.phones: list[str] = []
        self.bandwidths: list[Bandwidth] = []
        self.times: list[Timing] = []
        self.media: list[MediaDescription] = []

    def run(self, lines: list[str]) -> SessionDescription:
        if not lines or lines[0] != "v=0":
            raise InvalidSdp("SDP must start with v=0")
        current: _MediaLines | None = None
        for number, line in enumerate(lines[1:], start=2):
            if len(line) > MAX_LINE_LENGTH:
                raise InvalidSdp(f"line {number} too long")
            match = _LINE.fullmatch(line)
            if match is None or "\x00" in line or "\r" in line:
                raise InvalidSdp(f"line {number} is not <type>=<value>")
            letter, value = match[1], match[2]
            try:
                if letter == "m":
                    if current is not None:
                        self.media.append(current.finish())
                    if len(self.media) >= MAX_MEDIA:
                        raise InvalidSdp("too many m= sections")
                    current = _MediaLines(MediaDescription.parse_m_line(value), [], [], [], [], [])
                elif current is not None:
                    current.add(letter, value)
                else:
                    self.session_line(letter, value)
            except InvalidSdp as exc:
                raise InvalidSdp(f"line {number}: {exc}") from None
        if current is not None:
            self.media.append(current.finish())
        if self.origin is None:
            raise InvalidSdp("SDP has no o= line")
        return SessionDescription(
            origin=self.origin,
            session_name=self.once.get("s"),
            information=self.once.get("i"),
            uri=self.once.get("u"),
            emails=tuple(self.emails),
            phones=tuple(self.phones),
            connection=self.connection,
            bandwidths=tuple(self.bandwidths),
            times=tuple(self.times),
            zone=self.once.get("z"),
            key=self.once.get("k"),
            attributes=tuple(self.attributes),
            media=tuple(self.media),
        )

    def session_line(self, letter: str, value: str) -> None:
        if letter == "o":
            if self.origin is not None:
                raise InvalidSdp("more than one o= line")
            self.origin = Origin.parse(value)
        elif letter == "c":
            if self.connection is not None:
                raise InvalidSdp("more than one session-level c= line")
            self.connection = Connection.parse(value)
        elif letter in "siuzk":
            if letter in self.once:
                raise InvalidSdp(f"more than one {letter}= line")
            self.once[letter] = value
        elif letter == "e":
            self.emails.append(value)
        elif letter == "p":
            self.phones.append(value)
        elif letter == "b":
            self.bandwidths.append(Bandwidth.parse(value))
        elif letter == "t":
            self.times.append(Timing.parse(value))
        elif letter == "r":
            if not self.times:
                raise InvalidSdp("r= before t=")
            last = self.times[-1]
            self.times[-1] = replace(last, repeats=(*last.repeats, value))
        elif letter == "a":
            self.attributes.append(Attribute.parse(value))
        elif letter == "v":
            raise InvalidSdp("more than one v= line")
        else:
            # RFC 8866 §5: a parser must ignore or reject a description with an unknown type.
            raise InvalidSdp(f"unknown type {letter}=")
