"""SIP messages: parse and serialise requests and responses (RFC 3261 §7, §18.3, §20).

Owns the bytes ↔ :class:`SipRequest`/:class:`SipResponse` step and nothing around it: which
transport a datagram came on, transactions and dialogs live elsewhere. Two entry points:

- :func:`parse_message` takes one whole message (a UDP datagram, or one message framed by
  :class:`StreamParser`) and returns a request or a response, or raises :class:`BadMessage` (a
  :class:`~callxml.errors.RemoteProtocolError`) whose ``status_hint`` says what a server should
  answer: 400 for bad syntax, 505 for another SIP version, 513 for an oversized message.
- :class:`StreamParser` frames messages on TCP/TLS by Content-Length (§18.3): a stream may carry
  several messages or half of one; CRLF keep-alives between messages are skipped (RFC 5626 §4.4.1).

``bytes(message)`` serialises (always with a correct Content-Length), and
``parse_message(bytes(parse_message(data)))`` equals ``parse_message(data)``.

What "parses" means here: the syntax of the start line, every header line, and of the headers
every SIP element depends on (Via, From, To, Call-ID, CSeq, Max-Forwards, Contact, Route,
Record-Route, Content-Length) is checked, those mandatory ones must be present and the
single-valued ones must appear once (RFC 4475 §3.3.1, §3.3.8), and a request's CSeq method
matches its method (§8.1.1.5, RFC 4475 §3.1.2.17). Other headers are kept verbatim, unparsed.
Application-level refusals of a well-formed request (416, 415, 420, 501...) are
:func:`check_request`'s job. Every size and count is bounded (see the ``MAX_*`` constants).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field

from callxml.errors import LocalProtocolError, RemoteProtocolError
from callxml.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    is_token,
    parse_cseq,
    parse_digits,
    parse_name_addr,
    parse_via,
    split_list,
)

__all__ = [
    "COMPACT_FORMS",
    "MAX_HEADERS",
    "MAX_LINE_LENGTH",
    "MAX_MESSAGE_SIZE",
    "MAX_VIAS",
    "REASON_PHRASES",
    "BadMessage",
    "Headers",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamParser",
    "canonical_name",
    "check_request",
    "make_response",
    "parse_message",
    "unsupported_options",
]

#: Largest message we accept, start line to last body byte (the size of a UDP datagram).
MAX_MESSAGE_SIZE = 65536
#: Most header fields (after unfolding) in one message.
MAX_HEADERS = 256
#: Longest header field, name and value, after unfolding (and longest start line).
MAX_LINE_LENGTH = 8192
#: Most Via values in one message; more means a loop (Max-Forwards starts at 70, §8.1.1.6).
MAX_VIAS = 70

# RFC 3261 §7.3.3 compact forms, plus later RFCs: o/u RFC 6665, r RFC 3515, b RFC 3892,
# x RFC 4028, y RFC 8224, a/j/d RFC 3841, n RFC 4474.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN_NAMES = (
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
)
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN_NAMES}

# Headers whose grammar is a comma-separated list (§7.3.1); get_all() splits these. Headers
# whose values may contain commas without being lists (Date, the auth headers) are not here.
_LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Path",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Reject-Contact",
        "Request-Disposition",
        "Require",
        "Route",
        "Service-Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    )
)
# Headers that must appear at most once (RFC 4475 §3.3.8, §3.3.9).
_SINGLE_HEADERS = (
    "To",
    "From",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
)
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")

_WS = " \t"
_VERSION = re.compile(r"SIP/([0-9]+)\.([0-9]+)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS = re.compile(r"[0-9]{3}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_REQUEST_URI = re.compile(r"[!#-;=?-~]+")  # printable ASCII without SP, '"', '<', '>'
# Call-ID = word ["@" word] (§25.1)
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALL_ID = re.compile(rf"{_WORD}(?:@{_WORD})?")


@functools.lru_cache(maxsize=1024)
def _lower_canonical(name: str) -> str:
    return canonical_name(name).lower()


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name: compact forms expanded, known names recased.

    Unknown names come back as given (they compare case-insensitively anyway).
    """
    lower = name.lower()
    if len(lower) == 1 and lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    return _CANONICAL.get(lower, name)


class BadMessage(RemoteProtocolError):
    """Bytes that are not an acceptable SIP message.

    ``status_hint`` is the status a server should answer a request with (400, 505, 513).
    ``partial`` is the message as far as it could be read (start line and header fields parsed,
    core headers maybe invalid or missing), so that a stateless error response can still copy
    its Via, From, To, Call-ID and CSeq (:func:`make_response`); None when even the start line or
    the header lines were unreadable. Responses that fail to parse are simply dropped (§18.1.2).
    """

    def __init__(
        self, message: str, *, status_hint: int = 400, partial: SipMessage | None = None
    ) -> None:
        super().__init__(message, status_hint=status_hint)
        self.partial = partial


class Headers:
    """An ordered multi-dict of header fields; names are case-insensitive.

    Names are stored canonically (``f`` → ``From``, ``call-id`` → ``Call-ID``). Values are kept
    as one string per header *field*, exactly as received (after unfolding); :meth:`get_all` and
    :meth:`get` split comma lists for headers whose grammar is a list (Via, Contact, Route...).
    Adding a value that contains CR or LF, or a name that is not a token, raises
    :class:`~callxml.errors.LocalProtocolError`: header injection is never possible.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = []
        for name, value in fields:
            self.add(name, value)

    @staticmethod
    def _check(name: str, value: str) -> str:
        if not is_token(name):
            raise LocalProtocolError(f"not a valid header name: {name!r}")
        if "\r" in value or "\n" in value:
            raise LocalProtocolError(f"CR or LF in the value of header {name}")
        return canonical_name(name)

    def get(self, name: str) -> str | None:
        """The first value (the first list element for list headers), or None."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order, comma-separated lists split (respecting quotes/<>)."""
        lname = _lower_canonical(name)
        is_list = lname in _LIST_HEADERS
        values: list[str] = []
        for key, value in self._fields:
            if key.lower() == lname:
                if is_list:
                    values.extend(split_list(value))
                else:
                    values.append(value)
        return values

    def fields(self, name: str) -> list[str]:
        """The raw field values of ``name`` (one per header line, lists not split)."""
        lname = _lower_canonical(name)
        return [value for key, value in self._fields if key.lower() == lname]

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        self._fields.append((self._check(name, value), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of ``name`` by one, where the first one was (else at the end)."""
        canonical = self._check(name, value)
        lname = canonical.lower()
        out: list[tuple[str, str]] = []
        placed = False
        for key, old in self._fields:
            if key.lower() == lname:
                if not placed:
                    out.append((canonical, value))
                    placed = True
            else:
                out.append((key, old))
        if not placed:
            out.append((canonical, value))
        self._fields = out

    def remove(self, name: str) -> None:
        """Remove every field of ``name`` (no error if there is none)."""
        lname = _lower_canonical(name)
        self._fields = [(k, v) for k, v in self._fields if k.lower() != lname]

    def insert_first(self, name: str, value: str) -> None:
        """Insert a field before the first field of the same name (at the top if none), e.g. a
        new top Via (§16.6 step 8)."""
        canonical = self._check(name, value)
        lname = canonical.lower()
        for index, (key, _) in enumerate(self._fields):
            if key.lower() == lname:
                self._fields.insert(index, (canonical, value))
                return
        self._fields.insert(0, (canonical, value))

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def copy(self) -> Headers:
        new = Headers()
        new._fields = list(self._fields)
        return new

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._fields))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        lname = _lower_canonical(name)
        return any(key.lower() == lname for key, _ in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k.lower(), v) for k, v in self._fields] == [
            (k.lower(), v) for k, v in other._fields
        ]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise RemoteProtocolError(f"missing {name} header", status_hint=400)
    return value


class _MessageMixin:
    """Properties computed from the headers; shared by requests and responses."""

    headers: Headers
    body: bytes

    @property
    def call_id(self) -> str:
        return _required(self.headers, "Call-ID")

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(_required(self.headers, "CSeq"))

    @property
    def vias(self) -> list[Via]:
        """Every Via value, the top (most recent) first."""
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(_required(self.headers, "From"))

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(_required(self.headers, "To"))

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value in order (``Contact: *`` is one wildcard :class:`NameAddr`)."""
        return [parse_name_addr(v) for v in self.headers.get_all("Contact")]

    @property
    def routes(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self.headers.get_all("Route")]

    @property
    def record_routes(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self.headers.get_all("Record-Route")]

    @property
    def content_type(self) -> str | None:
        """The Content-Type value as written (e.g. ``application/sdp``), None if absent."""
        return self.headers.get("Content-Type")

    @property
    def media_type(self) -> str | None:
        """The Content-Type's ``type/subtype`` alone, lower-cased (parameters dropped)."""
        value = self.content_type
        if value is None:
            return None
        return value.split(";", 1)[0].strip(_WS).lower()

    def _serialise(self, start_line: str) -> bytes:
        lines = [start_line]
        length_written = False
        for name, value in self.headers:
            if name == "Content-Length":
                if length_written:
                    continue
                value = str(len(self.body))
                length_written = True
            lines.append(f"{name}: {value}")
        if not length_written:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass(eq=True)
class SipRequest(_MessageMixin):
    """A SIP request; ``uri`` is the Request-URI as written (any scheme, RFC 4475 §3.3.2)."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else _parse_max_forwards(value)

    def __bytes__(self) -> bytes:
        if not is_token(self.method) or not _REQUEST_URI.fullmatch(self.uri):
            raise LocalProtocolError(f"cannot send request line {self.method} {self.uri}")
        return self._serialise(f"{self.method} {self.uri} {self.version}")


@dataclass(eq=True)
class SipResponse(_MessageMixin):
    """A SIP response."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def __bytes__(self) -> bytes:
        if not 100 <= self.status <= 699 or "\r" in self.reason or "\n" in self.reason:
            raise LocalProtocolError(f"cannot send status line {self.status} {self.reason!r}")
        return self._serialise(f"{self.version} {self.status} {self.reason}")


SipMessage = SipRequest | SipResponse


def _parse_max_forwards(value: str) -> int:
    """Max-Forwards (§20.22): 1*DIGIT, at most 255 (RFC 4475 §3.1.2.4)."""
    hops = parse_digits(value.strip(_WS), 255)
    if hops is None:
        raise RemoteProtocolError(f"bad Max-Forwards: {value[:40]!r}", status_hint=400)
    return hops


def _parse_content_length(values: list[str]) -> int | None:
    """Content-Length (§20.14): one field, 1*DIGIT; never a negative count (RFC 4475 §3.1.2.3)."""
    if not values:
        return None
    if len(values) > 1:
        raise BadMessage("more than one Content-Length header")
    text = values[0].strip(_WS)
    if not text.isascii() or not text.isdigit():
        raise BadMessage(f"bad Content-Length: {values[0][:40]!r}")
    length = parse_digits(text, MAX_MESSAGE_SIZE)
    if length is None:
        raise BadMessage(f"Content-Length too large: {text[:40]}", status_hint=513)
    return length


# -- parsing ------------------------------------------------------------------------------


def _split_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Decode the start line and header fields; unfold continuation lines (§7.3.1)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessage(f"header section is not UTF-8: {exc}") from None
    lines = text.split("\r\n")
    start_line = lines[0]
    if len(start_line) > MAX_LINE_LENGTH:
        raise BadMessage("start line too long", status_hint=414)
    if _CONTROL.search(start_line):
        raise BadMessage("control character in the start line")
    fields: list[tuple[str, str]] = []
    current: list[str] = []  # [name, value parts...] of the field being unfolded
    length = 0

    def finish() -> None:
        name, *parts = current
        fields.append((name, " ".join(parts).strip(_WS)))

    for line in lines[1:]:
        if "\r" in line or "\n" in line:
            raise BadMessage("bare CR or LF in the header section")
        if line[:1] in (" ", "\t"):
            if not current:
                raise BadMessage("continuation line before the first header")
            length += len(line)
            if length > MAX_LINE_LENGTH:
                raise BadMessage("header line too long")
            current.append(line.strip(_WS))
            continue
        if current:
            finish()
        colon = line.find(":")
        name = line[:colon].rstrip(_WS) if colon > 0 else ""
        if not is_token(name):
            raise BadMessage(f"malformed header line: {line[:80]!r}")
        if len(fields) >= MAX_HEADERS:
            raise BadMessage("too many header fields")
        length = len(line)
        if length > MAX_LINE_LENGTH:
            raise BadMessage("header line too long")
        current = [canonical_name(name), line[colon + 1 :].strip(_WS)]
    if current:
        finish()
    return start_line, fields


def _check_version(version: str) -> tuple[str, bool]:
    """``(normalised version, is 2.0)``; raise for something that is not a SIP version."""
    if _VERSION.fullmatch(version) is None:
        raise BadMessage(f"not a SIP version: {version[:40]!r}")
    version = version.upper()
    return version, version == "SIP/2.0"


def _check_request_uri(uri: str) -> None:
    """Request-URI = SIP-URI / SIPS-URI / absoluteURI (§25.1), no LWS, no <> (RFC 4475 §3.1.2.7)."""
    colon = uri.find(":")
    if colon <= 0 or not _SCHEME.fullmatch(uri[:colon]) or not _REQUEST_URI.fullmatch(uri):
        raise BadMessage(f"malformed Request-URI: {uri[:80]!r}")
    if uri[:colon].lower() in ("sip", "sips"):
        # §19.1.1 table 1: no headers (and no method) in a Request-URI (RFC 4475 §3.1.2.11).
        hostpart = uri[colon + 1 :].rpartition("@")[2]
        if "?" in hostpart:
            raise BadMessage(f"header parts are not allowed in a Request-URI: {uri[:80]!r}")


def _parse_start_line(line: str, headers: Headers, body: bytes) -> tuple[SipMessage, bool]:
    """Build the message from its start line (§7.1, §7.2); also say whether the version is 2.0."""
    if line.upper().startswith("SIP/"):
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase; tolerate "SIP/2.0 100" with
        # no SP (RFC 4475 §3.1.1.13 has the SP but an empty phrase).
        parts = line.split(" ", 2)
        if len(parts) < 2 or not _STATUS.fullmatch(parts[1]):
            raise BadMessage(f"malformed status line: {line[:80]!r}")
        version, ok = _check_version(parts[0])
        status = int(parts[1])
        if not 100 <= status <= 699:
            raise BadMessage(f"status code out of range: {status}")
        reason = parts[2] if len(parts) == 3 else ""
        return SipResponse(status, reason, headers, body, version), ok
    # Request-Line = Method SP Request-URI SP SIP-Version: exactly two single spaces
    # (RFC 4475 §3.1.2.8-10 reject extra or trailing whitespace).
    parts = line.split(" ")
    if len(parts) != 3 or not is_token(parts[0]):
        raise BadMessage(f"malformed request line: {line[:80]!r}")
    method, uri, version_text = parts
    _check_request_uri(uri)
    version, ok = _check_version(version_text)
    return SipRequest(method, uri, headers, body, version), ok


def _validate(message: SipMessage) -> None:
    """Check the headers every element relies on (RFC 3261 §8.1.1, §8.2 and §20)."""
    headers = message.headers
    for name in _MANDATORY:
        if name not in headers:
            raise BadMessage(f"missing mandatory header {name}")
    for name in _SINGLE_HEADERS:
        if len(headers.fields(name)) > 1:
            raise BadMessage(f"more than one {name} header")
    vias: list[str] = []
    for value in headers.fields("Via"):
        vias.extend(split_list(value, strict=True))
        if len(vias) > MAX_VIAS:
            raise BadMessage("too many Via values")
    for via in vias:
        parse_via(via)
    for name in ("From", "To"):
        parse_name_addr(_required(headers, name))
    for name in ("Contact", "Route", "Record-Route"):
        values = [v for f in headers.fields(name) for v in split_list(f, strict=True)]
        for value in values:
            parsed = parse_name_addr(value)
            if parsed.is_wildcard and (name != "Contact" or len(values) > 1):
                raise BadMessage("'*' is only allowed as the sole Contact value (§10.2.2)")
    if not _CALL_ID.fullmatch(message.call_id):
        raise BadMessage(f"malformed Call-ID: {message.call_id[:80]!r}")
    cseq = message.cseq
    if isinstance(message, SipRequest):
        for value in headers.fields("Max-Forwards"):
            _parse_max_forwards(value)
        if cseq.method != message.method:
            raise BadMessage(
                f"CSeq method {cseq.method} does not match request method {message.method}"
            )


def parse_message(data: bytes) -> SipMessage:
    """Parse one SIP message (a datagram, or one message framed by :class:`StreamParser`).

    Leading CRLFs are skipped (§7.5). The body is Content-Length octets after the blank line;
    trailing octets are ignored (RFC 4475 §3.1.1.8); without Content-Length the body is the rest
    of the data (§18.3, RFC 4475 §3.4.1). Raises :class:`BadMessage` with ``status_hint`` 400
    (bad syntax, Content-Length past the end), 505 (SIP version other than 2.0) or 513 (over
    :data:`MAX_MESSAGE_SIZE`).
    """
    try:
        return _parse_message(data)
    except BadMessage as exc:
        if exc.partial is None:
            exc.partial = _salvage(data)
        raise


#: Header fields a stateless error response copies (§8.2.6.2): what :func:`_salvage` keeps.
_ROUTING = frozenset({"Via", "From", "To", "Call-ID", "CSeq"})


def _salvage(data: bytes) -> SipRequest | None:
    """A request that failed before its header fields were read (a bad Request-URI, an
    oversize message, an over-long or undecodable line), read leniently so far as a stateless
    error response needs: the method and the Via, From, To, Call-ID and CSeq fields, each
    as long as the strict parser would allow. None for a response or when even that fails;
    the caller then drops the message (there is nowhere to send an answer)."""
    head = bytes(data[:MAX_MESSAGE_SIZE]).lstrip(b"\r\n")
    end = head.find(b"\r\n\r\n")
    lines = (head if end < 0 else head[:end]).split(b"\r\n")
    start = lines[0].decode("utf-8", "replace")
    method = start.split(" ", 1)[0]
    if start.upper().startswith("SIP/") or not is_token(method) or method == "ACK":
        return None
    headers = Headers()
    for raw in lines[1 : MAX_HEADERS + 1]:
        line = raw.decode("utf-8", "replace")
        name, colon, value = line.partition(":")
        name = canonical_name(name.strip(_WS))
        if (
            not colon
            or name not in _ROUTING
            or len(line) > MAX_LINE_LENGTH
            or _CONTROL.search(value)
            or not is_token(name)
        ):
            continue
        if name != "Via" and name in headers:
            continue
        headers.add(name, value.strip(_WS))
    if any(name not in headers for name in _MANDATORY):
        return None
    try:
        parse_via(headers.get_all("Via")[0])
    except (RemoteProtocolError, IndexError):
        return None
    return SipRequest(method, "sip:invalid", headers, b"")


def _parse_message(data: bytes) -> SipMessage:
    if len(data) > MAX_MESSAGE_SIZE:
        raise BadMessage(f"message larger than {MAX_MESSAGE_SIZE} bytes", status_hint=513)
    data = bytes(data)
    offset = 0
    while data.startswith(b"\r\n", offset):
        offset += 2
    end = data.find(b"\r\n\r\n", offset)
    if end < 0:
        raise BadMessage("no empty line ends the header section")
    start_line, fields = _split_head(data[offset:end])
    rest = data[end + 4 :]
    try:
        headers = Headers(fields)
    except LocalProtocolError as exc:  # pragma: no cover - _split_head checked the names
        raise BadMessage(str(exc)) from None
    message, version_ok = _parse_start_line(start_line, headers, b"")
    try:
        length = _parse_content_length(headers.fields("Content-Length"))
        if length is not None and length > len(rest):
            raise BadMessage(f"Content-Length {length} is larger than the {len(rest)} body octets")
    except BadMessage as exc:
        exc.partial = message  # RFC 4475 §3.1.2.2/3: over UDP, answer 400
        raise
    message.body = rest if length is None else rest[:length]
    if not version_ok:
        raise BadMessage(
            f"SIP version {message.version} is not supported", status_hint=505, partial=message
        )
    try:
        _validate(message)
    except BadMessage as exc:
        exc.partial = message
        raise
    except RemoteProtocolError as exc:
        raise BadMessage(str(exc), status_hint=exc.status_hint, partial=message) from None
    return message


class StreamParser:
    """Frame SIP messages on a stream transport (TCP, TLS) by Content-Length (§18.3).

    :meth:`feed` takes whatever bytes arrived and returns the complete messages among them (0..n);
    the rest waits in a buffer of at most ``max_message_size`` bytes. On a stream, Content-Length
    is mandatory. Two ways to fail:

    - the framing is lost (garbage, no Content-Length, oversize): :meth:`feed` raises
      :class:`BadMessage` and :attr:`broken` becomes True. Close the connection.
    - one framed message is invalid: :meth:`feed` raises its :class:`BadMessage` (with
      ``partial``) but the stream stays in sync and parsing carries on with the next call.

    Either way, messages completed before the error in the same call are not lost: the next
    ``feed(b"")`` returns them (and, once a broken parser has nothing left, raises again).

    ``keepalives`` counts CRLFCRLF pings seen between messages (RFC 5626 §4.4.1: answer each
    with a CRLF pong).

    ``screen``, when given, sees each framed message's bytes before they are parsed and returns
    False to take it away (it answered or dropped it): under overload a flood of new INVITEs
    on a connection is refused without paying for the parser (:mod:`callxml.sip.triage`).
    """

    def __init__(
        self,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        screen: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.max_message_size = max_message_size
        self._screen = screen
        self.keepalives = 0
        self._buffer = bytearray()
        self._scan_from = 0  # where to resume the search for the end of the header section
        self._frame_size: int | None = None  # size of the message being received, once known
        self._ready: list[SipMessage] = []
        self._error: BadMessage | None = None

    @property
    def broken(self) -> bool:
        return self._error is not None

    @property
    def buffered(self) -> int:
        """Bytes waiting for the rest of their message."""
        return len(self._buffer)

    def _fail(self, message: str, status_hint: int = 400) -> BadMessage:
        # What can be read of the head still gets a stateless answer before the stream closes.
        partial = _salvage(bytes(self._buffer[: self.max_message_size]))
        self._error = BadMessage(message, status_hint=status_hint, partial=partial)
        self._buffer.clear()
        return self._error

    def feed(self, data: bytes) -> list[SipMessage]:
        """Add received bytes; return the messages they complete (oldest first)."""
        if self._error is not None:
            if self._ready:
                ready, self._ready = self._ready, []
                return ready
            raise BadMessage(f"stream already failed: {self._error}", status_hint=400)
        self._buffer += data
        while self._next_message():
            pass
        ready, self._ready = self._ready, []
        return ready

    def take_pong(self) -> bool:
        """Drop a lone CRLF waiting in the buffer and return True: the pong to a ping we sent
        (RFC 5626 §4.4.1). Only the side that pinged may call this: anywhere else a lone CRLF
        may be the first half of a CRLFCRLF ping, which must be answered."""
        if self._frame_size is None and self._buffer == b"\r\n":
            self._buffer.clear()
            self._scan_from = 0
            return True
        return False

    def _skip_keepalives(self) -> bool:
        """Drop CRLFs between messages (RFC 5626 §4.4.1, RFC 3261 §7.5); False to wait."""
        buf = self._buffer
        while buf[:1] == b"\r":
            if buf.startswith(b"\r\n\r\n"):
                self.keepalives += 1
                del buf[:4]
            elif b"\r\n\r\n".startswith(buf):
                return False  # maybe the first half of a ping
            elif buf.startswith(b"\r\n"):
                del buf[:2]  # a pong, or a stray CRLF before a start line
            else:
                break
        return True

    def _next_message(self) -> bool:
        """Frame and parse one message from the buffer; False when more bytes are needed."""
        buf = self._buffer
        if self._frame_size is None:
            if not self._skip_keepalives():
                return False
            end = buf.find(b"\r\n\r\n", self._scan_from)
            if end < 0:
                if len(buf) > self.max_message_size:
                    raise self._fail("header section larger than the message size limit", 513)
                self._scan_from = max(0, len(buf) - 3)
                return False
            try:
                _, fields = _split_head(bytes(buf[:end]))
                length = _parse_content_length([v for k, v in fields if k == "Content-Length"])
            except BadMessage as exc:
                raise self._fail(f"cannot frame message: {exc}", exc.status_hint) from None
            if length is None:
                raise self._fail("no Content-Length on a stream transport (§18.3)")
            self._frame_size = end + 4 + length
            self._scan_from = 0
            if self._frame_size > self.max_message_size:
                raise self._fail(f"message of {self._frame_size} bytes is too large", 513)
        if len(buf) < self._frame_size:
            return False
        chunk = bytes(buf[: self._frame_size])
        del buf[: self._frame_size]
        self._frame_size = None
        if self._screen is not None and not self._screen(chunk):
            return True  # answered or dropped before parsing
        self._ready.append(parse_message(chunk))  # a bad one raises; the stream stays in sync
        return True


# -- responses ----------------------------------------------------------------------------

#: Reason phrases of RFC 3261 §21 and the extensions callxml meets.
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """A response to ``request`` (§8.2.6): Via (all, in order), From, To, Call-ID and CSeq are
    copied; ``to_tag`` is added to To unless it already has a tag (§8.2.6.2); a 100 Trying
    copies Timestamp (§8.2.6.1). ``headers`` are appended. Record-Route copying for
    dialog-creating responses (§12.1.1) is the dialog layer's business.

    Works on a :attr:`BadMessage.partial` too (missing headers are simply not copied).
    """
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status code out of range: {status}")
    out = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in request.headers.fields(name):
            if name == "To" and to_tag is not None and status != 100:
                try:
                    to = parse_name_addr(value)
                except RemoteProtocolError:
                    pass
                else:
                    if to.tag is None:
                        value = str(to.with_tag(to_tag))
            out.add(name, value)
    if status == 100:
        for value in request.headers.fields("Timestamp"):
            out.add("Timestamp", value)
    for name, value in headers:
        out.add(name, value)
    phrase = reason if reason is not None else REASON_PHRASES.get(status, "Unknown")
    return SipResponse(status, phrase, out, body)


def check_request(
    request: SipRequest,
    *,
    methods: Collection[str] | None = None,
    supported: Collection[str] | None = None,
    content_types: Collection[str] | None = None,
    answer_types: Collection[str] | None = None,
) -> int | None:
    """The status a UAS must answer a well-formed but unacceptable request with, or None.

    Follows the order of RFC 3261 §8.2: version (505), method (501 when ``methods`` is given and
    lacks it, §8.2.1), Request-URI scheme (416 for anything but sip/sips, §8.2.2.1, RFC 4475
    §3.3.2), Require (420 for option tags not in ``supported``, §8.2.2.3, RFC 4475 §3.3.5),
    Content-Type (415 for a body of a type not in ``content_types``, §8.2.3, RFC 4475 §3.3.6),
    Accept (406 when the request's Accept lists none of ``answer_types``, RFC 4475 §3.3.15).
    A check whose collection is None is skipped. Messages from :func:`parse_message` already
    passed the syntax checks (400), the version check (505) and the size limit (513).
    """
    if request.version.upper() != "SIP/2.0":
        return 505
    if methods is not None and request.method not in methods and request.method != "ACK":
        return 501
    scheme = request.uri.partition(":")[0].lower()
    if scheme not in ("sip", "sips"):
        return 416
    if request.method in ("ACK", "CANCEL"):
        return None  # §8.2.2.3: Require is not to be checked for ACK/CANCEL...
    if supported is not None and unsupported_options(request, supported):
        return 420
    if content_types is not None and request.body:
        media = request.media_type
        if media is None or media not in {t.lower() for t in content_types}:
            return 415
    if answer_types is not None and "Accept" in request.headers:
        accepted = {
            v.split(";", 1)[0].strip(_WS).lower() for v in request.headers.get_all("Accept")
        }
        wanted = {t.lower() for t in answer_types}
        if accepted and not _accepts(accepted, wanted):
            return 406
    return None


def unsupported_options(request: SipRequest, supported: Collection[str]) -> list[str]:
    """Option tags in Require that are not in ``supported``: list them in Unsupported (§20.40)."""
    ours = {tag.lower() for tag in supported}
    return [tag for tag in request.headers.get_all("Require") if tag.lower() not in ours]


def _accepts(accepted: set[str], wanted: set[str]) -> bool:
    for media in wanted:
        major = media.split("/", 1)[0]
        if media in accepted or f"{major}/*" in accepted or "*/*" in accepted:
            return True
    return False
