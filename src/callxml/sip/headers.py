"""Parsed SIP header values: Via, name-addr (From/To/Contact/Route), CSeq (RFC 3261 §20, §25.1).

Owns the small grammar the message layer needs beyond "name: value": splitting comma lists while
respecting quotes and ``<...>`` (§7.3.1), ``;name=value`` parameters with their odd whitespace
(SEMI/EQUAL/SLASH allow LWS around them, §25.1), the three value types every transaction and
dialog reads (Via, NameAddr, CSeq) and the random identifiers we put in them (branch, tag,
Call-ID).

Each ``parse_*`` function takes one unfolded header value (the message parser has already joined
folded lines) and raises :class:`~callxml.errors.RemoteProtocolError` (status hint 400) when the
value does not follow the grammar. Each value type formats back with ``str()``, and
``parse(str(x)) == x``. Parameter values are kept *as written*: a quoted-string value keeps its
quotes, so nothing is lost on the way through.

This module does not know about whole messages or transports; URIs inside a name-addr are kept as
strings (any scheme is allowed here, RFC 4475 §3.3.4), :mod:`callxml.sip.uri` parses SIP ones.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass, replace

from callxml.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "CSeq",
    "NameAddr",
    "Params",
    "Via",
    "format_params",
    "is_token",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_cseq",
    "parse_digits",
    "parse_name_addr",
    "parse_params",
    "parse_via",
    "quote_string",
    "split_list",
    "unquote_string",
    "warning_value",
]

#: Longest Warning text we put on the wire (a bound; RFC 3261 §20.43 sets none).
MAX_WARNING_TEXT = 200

#: Parsed header values remembered (the parsers are pure and their results frozen): one message
#: is looked at by the transport, the transaction layer and the UA core, each reading its Via,
#: From, To and CSeq, and parsing them again each time was the bulk of the cost of a message.
PARSE_CACHE = 4096

#: The RFC 3261 §17.1.1.1 magic cookie that starts every branch we (and RFC 3261 peers) make.
BRANCH_MAGIC_COOKIE = "z9hG4bK"
#: Largest CSeq sequence number (§8.1.1.5: "MUST be expressible as a 32-bit unsigned integer").
MAX_CSEQ = 2**32 - 1

Params = tuple[tuple[str, str | None], ...]

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# A parameter value: token, host (incl. IPv6 references and bare IPv6 for received=) or a
# quoted-string (gen-value, §25.1).
_PARAM_VALUE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# A URI inside <...> or an addr-spec: printable ASCII without space, quotes and angle brackets.
_URI_CHARS = re.compile(r"[!#-;=?-~]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?")
_IPV6_REF = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_DIGITS = re.compile(r"[0-9]+")
_WS = " \t"


def _error(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, status_hint=400)


def is_token(text: str) -> bool:
    """True if ``text`` is an RFC 3261 ``token`` (methods, header names, parameter names...)."""
    return _TOKEN.fullmatch(text) is not None


def split_list(value: str, *, strict: bool = False) -> list[str]:
    """See :func:`_split_list`; a fresh list each call (the split itself is memoised)."""
    return list(_split_list(value, strict))


@functools.lru_cache(maxsize=PARSE_CACHE)
def _split_list(value: str, strict: bool) -> tuple[str, ...]:
    """Split a comma-separated header value, ignoring commas in quotes and ``<...>`` (§7.3.1).

    Elements come back stripped of surrounding whitespace. Lenient mode (the default) drops empty
    elements and tolerates an unterminated quote or bracket (the rest is one element); strict mode
    raises :class:`RemoteProtocolError` for either, as the grammar of Via and Contact requires.
    """
    items: list[str] = []
    start = 0
    in_quote = False
    depth = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1  # quoted-pair: skip the escaped character
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(value[start:i].strip(_WS))
            start = i + 1
        i += 1
    if strict and (in_quote or depth):
        raise _error("unterminated quoted string or '<' in a header value")
    items.append(value[start:].strip(_WS))
    if strict:
        if any(not item for item in items):
            raise _error("empty element in a comma-separated header value")
        return tuple(items)
    return tuple(item for item in items if item)


class _Scanner:
    """A cursor over one header value, with the SWS-tolerant steps of §25.1."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> int:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1
        return self.pos - start

    def accept(self, char: str) -> bool:
        """Skip SWS, then consume ``char`` if it is next (SWS after it is skipped too)."""
        save = self.pos
        self.skip_ws()
        if self.peek() == char:
            self.pos += 1
            self.skip_ws()
            return True
        self.pos = save
        return False

    def expect(self, char: str, what: str) -> None:
        if not self.accept(char):
            raise _error(f"expected {char!r} in {what}: {self.text!r}")

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        m = pattern.match(self.text, self.pos)
        if m is None:
            raise _error(f"expected {what} at offset {self.pos} in {self.text!r}")
        self.pos = m.end()
        return m.group()

    def quoted_string(self) -> str:
        """Consume a quoted-string; return it *with* its quotes and escapes, as written."""
        start = self.pos
        if self.peek() != '"':
            raise _error(f"expected a quoted string in {self.text!r}")
        i = self.pos + 1
        n = len(self.text)
        while i < n:
            ch = self.text[i]
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                self.pos = i + 1
                return self.text[start : self.pos]
            i += 1
        raise _error(f"unterminated quoted string in {self.text!r}")


def unquote_string(quoted: str) -> str:
    """The text of a quoted-string: quotes removed, quoted-pairs (``\\x``) resolved (§25.1)."""
    out: list[str] = []
    i = 1
    end = len(quoted) - 1
    while i < end:
        ch = quoted[i]
        if ch == "\\" and i + 1 < end:
            out.append(quoted[i + 1])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_NEEDS_ESCAPE = re.compile(r'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f"\\]')


def quote_string(text: str) -> str:
    """Format ``text`` as a quoted-string: ``"``, ``\\`` and control characters become
    quoted-pairs (§25.1). CR and LF cannot be represented and are left for the header check to
    refuse."""
    return '"' + _NEEDS_ESCAPE.sub(lambda m: "\\" + m.group(), text) + '"'


def parse_digits(text: str, maximum: int) -> int | None:
    """``1*DIGIT`` as an int no larger than ``maximum``; None if not digits or too large.

    Leading zeros are fine (RFC 4475 §3.1.1.1); the length is checked before converting, so a
    huge digit string costs nothing (and never trips Python's int-conversion limit).
    """
    if not text or not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0") or "0"
    if len(significant) > len(str(maximum)):
        return None
    value = int(significant)
    return value if value <= maximum else None


def _parse_params(scanner: _Scanner) -> Params:
    """``*( SEMI generic-param )`` up to the end of the value (§25.1)."""
    params: list[tuple[str, str | None]] = []
    while True:
        scanner.skip_ws()
        if scanner.at_end():
            return tuple(params)
        scanner.expect(";", "parameters")
        name = scanner.match(_TOKEN, "a parameter name")
        value: str | None = None
        if scanner.accept("="):
            if scanner.peek() == '"':
                value = scanner.quoted_string()
            else:
                value = scanner.match(_PARAM_VALUE, f"a value for parameter {name!r}")
        params.append((name, value))


def parse_params(text: str) -> Params:
    """Parse ``;name=value;flag...`` (whitespace allowed around ``;`` and ``=``)."""
    return _parse_params(_Scanner(text))


def format_params(params: Params) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def _valid_param_value(value: str) -> bool:
    if value.startswith('"'):
        scanner = _Scanner(value)
        try:
            scanner.quoted_string()
        except RemoteProtocolError:
            return False
        return scanner.at_end() and "\r" not in value and "\n" not in value
    return _PARAM_VALUE.fullmatch(value) is not None


def _get_param(params: Params, name: str) -> str | None:
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return value
    return None


def _has_param(params: Params, name: str) -> bool:
    lname = name.lower()
    return any(key.lower() == lname for key, _ in params)


def _with_param(params: Params, name: str, value: str | None) -> Params:
    """Set ``name`` where it was (dropping any repeats), or append it."""
    if not is_token(name) or not (value is None or _valid_param_value(value)):
        raise LocalProtocolError(f"not a valid parameter: {name!r}={value!r}")
    lname = name.lower()
    out: list[tuple[str, str | None]] = []
    placed = False
    for key, old in params:
        if key.lower() != lname:
            out.append((key, old))
        elif not placed:
            out.append((key, value))
            placed = True
    if not placed:
        out.append((name, value))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (§20.42): ``SIP/2.0/UDP host:port;branch=...;received=...;rport``.

    ``transport`` is upper-cased (``UDP``, ``TCP``, ``TLS``, ``SCTP``, or any other token, RFC 4475
    §3.1.1.10); ``host`` keeps IPv6 brackets; parameters keep the order and spelling they had.
    """

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    def param(self, name: str) -> str | None:
        """A parameter's value (case-insensitive name); None when absent or valueless."""
        return _get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> Via:
        """A copy with ``name`` set (replacing any existing value), e.g. ``received`` (§18.2.1)."""
        return replace(self, params=_with_param(self.params, name, value))

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    @property
    def branch_is_rfc3261(self) -> bool:
        """True when the branch starts with the magic cookie (§8.1.1.7): an RFC 3261 peer,
        not an RFC 2543 one (whose rules, such as an optional Contact, still apply)."""
        return (self.branch or "").startswith(BRANCH_MAGIC_COOKIE)

    @property
    def received(self) -> str | None:
        return self.param("received")

    @property
    def rport(self) -> int | bool | None:
        """RFC 3581: ``True`` for a bare ``;rport`` (please fill in), the port once filled in."""
        if not self.has_param("rport"):
            return None
        value = self.param("rport")
        if value is None:
            return True
        return parse_digits(value, 65535)

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


def _parse_host(scanner: _Scanner) -> str:
    if scanner.peek() == "[":
        return scanner.match(_IPV6_REF, "an IPv6 reference")
    return scanner.match(_HOSTNAME, "a host")


def _parse_port(text: str) -> int:
    port = parse_digits(text, 65535)
    if port is None:
        raise _error(f"port out of range: {text}")
    return port


@functools.lru_cache(maxsize=PARSE_CACHE)
def parse_via(value: str) -> Via:
    """Parse one Via value (already split from its comma list).

    Accepts the LWS the grammar allows around ``/``, ``:``, ``;`` and ``=`` (RFC 4475
    §3.1.1.1) and any transport token; rejects empty parameters (``;;``, RFC 4475 §3.1.2.1).
    """
    s = _Scanner(value.strip(_WS))
    name = s.match(_TOKEN, "a protocol name")
    s.expect("/", "Via")
    version = s.match(_TOKEN, "a protocol version")
    s.expect("/", "Via")
    transport = s.match(_TOKEN, "a transport")
    if not s.skip_ws():
        raise _error(f"expected whitespace after the Via transport: {value!r}")
    host = _parse_host(s)
    port: int | None = None
    if s.accept(":"):
        port = _parse_port(s.match(_DIGITS, "a port"))
    params = _parse_params(s)
    return Via(transport.upper(), host, port, params, f"{name.upper()}/{version}")


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A ``name-addr`` or ``addr-spec`` with header parameters (From, To, Contact, Route...).

    ``display_name`` is the decoded text (quotes and escapes removed), None when absent; ``uri``
    is the URI as written (any scheme; ``*`` for the Contact wildcard of §10.2.2); ``params`` are
    the header parameters after the URI (``tag``, ``expires``, ``q``...), not URI parameters.
    ``str()`` always writes ``<uri>``, so URI parameters can never be mistaken for header ones.
    """

    display_name: str | None
    uri: str
    params: Params = ()

    def param(self, name: str) -> str | None:
        return _get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> NameAddr:
        return replace(self, params=_with_param(self.params, name, value))

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return self.with_param("tag", tag)

    @property
    def is_wildcard(self) -> bool:
        """``Contact: *`` (REGISTER removing every binding, §10.2.2)."""
        return self.uri == "*"

    def __str__(self) -> str:
        if self.is_wildcard:
            return "*" + format_params(self.params)
        name = "" if self.display_name is None else quote_string(self.display_name) + " "
        return f"{name}<{self.uri}>{format_params(self.params)}"


def _check_uri(uri: str, *, bracketed: bool) -> str:
    """A URI is ``scheme ":" something`` without spaces, quotes or angle brackets (§25.1)."""
    colon = uri.find(":")
    if colon <= 0 or not _SCHEME.fullmatch(uri[:colon]) or colon == len(uri) - 1:
        raise _error(f"not a URI: {uri!r}")
    if not _URI_CHARS.fullmatch(uri):
        raise _error(f"illegal character in URI {uri!r}")
    if not bracketed and ("?" in uri or "," in uri):
        # §20: a URI with a comma, question mark or semicolon MUST be enclosed in <>.
        raise _error(f"URI with '?' or ',' must be enclosed in <>: {uri!r}")
    return uri


_DISPLAY_TOKENS = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*")


@functools.lru_cache(maxsize=PARSE_CACHE)
def parse_name_addr(value: str) -> NameAddr:
    """Parse ``[display-name] <URI> *(;param)`` or ``addr-spec *(;param)`` (§20.10, §20.20...).

    In the addr-spec form, everything after the first ``;`` is a header parameter (RFC 4475
    §3.3.12). An unquoted display name must be tokens separated by whitespace (RFC 4475
    §3.1.2.15); no whitespace is allowed inside ``<...>`` (§3.1.2.14).
    """
    text = value.strip(_WS)
    s = _Scanner(text)
    display: str | None = None
    if text.startswith("*"):
        s.pos = 1
        return NameAddr(None, "*", _parse_params(s))
    if text.startswith('"'):
        display = unquote_string(s.quoted_string())
        s.skip_ws()
        if s.peek() != "<":
            raise _error(f"expected '<' after the display name: {value!r}")
    else:
        lt = text.find("<")
        if lt < 0:
            # addr-spec: the URI ends at the first ';' (the rest are header parameters).
            semi = text.find(";")
            end = len(text) if semi < 0 else semi
            uri = text[:end].rstrip(_WS)
            s.pos = end
            return NameAddr(None, _check_uri(uri, bracketed=False), _parse_params(s))
        words = text[:lt].strip(_WS)
        if words:
            if not _DISPLAY_TOKENS.fullmatch(words):
                raise _error(f"display name must be tokens or a quoted string: {words!r}")
            display = " ".join(words.split())
        s.pos = lt
    s.pos += 1  # the '<'
    gt = text.find(">", s.pos)
    if gt < 0:
        raise _error(f"missing '>' in {value!r}")
    uri = _check_uri(text[s.pos : gt], bracketed=True)
    s.pos = gt + 1
    return NameAddr(display, uri, _parse_params(s))


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: 42 INVITE`` (§20.16): sequence number below 2**32 and the request's method."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


@functools.lru_cache(maxsize=PARSE_CACHE)
def parse_cseq(value: str) -> CSeq:
    """Parse a CSeq value; leading zeros are fine (RFC 4475 §3.1.1.1), over 2**32-1 is not."""
    s = _Scanner(value.strip(_WS))
    digits = s.match(_DIGITS, "a CSeq number")
    seq = parse_digits(digits, MAX_CSEQ)
    if seq is None:
        raise _error(f"CSeq number out of range: {digits[:40]}")
    if not s.skip_ws():
        raise _error(f"expected whitespace in CSeq: {value!r}")
    method = s.match(_TOKEN, "a method")
    if not s.at_end():
        raise _error(f"trailing characters in CSeq: {value!r}")
    return CSeq(seq, method)


def new_branch() -> str:
    """A fresh Via branch: the RFC 3261 magic cookie plus 64 random bits (§8.1.1.7)."""
    return BRANCH_MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    """A fresh From/To tag with 64 random bits (§19.3 asks for at least 32)."""
    return secrets.token_hex(8)


def new_call_id(host: str) -> str:
    """A fresh, globally unique Call-ID: 96 random bits ``@host`` (§8.1.1.4)."""
    return f"{secrets.token_hex(12)}@{host}"


def warning_value(agent: str, text: str, code: int = 399) -> str:
    """A ``Warning`` header value (RFC 3261 §20.43): ``399 agent "text"``; quotes and
    backslashes in ``text`` are escaped, control characters dropped, length bounded."""
    if not 300 <= code <= 399:
        raise LocalProtocolError(f"warn-code must be 3xx: {code}")
    clean = "".join(ch for ch in text if ch.isprintable())[:MAX_WARNING_TEXT]
    escaped = clean.replace("\\", "\\\\").replace('"', '\\"')
    return f'{code} {agent} "{escaped}"'
