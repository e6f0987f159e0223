"""SIP and SIPS URIs (RFC 3261 §19.1, grammar in §25.1).

Owns parsing and formatting of ``sip:``/``sips:`` URIs for both the markup layer (``<Sip>`` nouns)
and the SIP stack (Request-URI, Contact...). It keeps every component *as written* (escapes
included) so that ``str(parse_uri(s))`` gives the same URI back; helpers unescape on demand.

It also decides what callxml's own URI conventions mean: ``;secure=true`` (or the ``sips:``
scheme) asks for SIP over TLS, port 5061 by default, and SRTP media. A ``secure`` value other than
``true``/``false`` is taken as false and reported in :attr:`SipUri.warnings`, so the call log can
say why a call the author thought secure was not.

It must not know about transports or sockets: it only says which transport a URI asks for; the
next hop (port, ``maddr``) and the rest of what a dial target means are
:mod:`callxml.sip.target`'s.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from urllib.parse import unquote

from callxml.errors import RemoteProtocolError

__all__ = ["MAX_HEADERS_LENGTH", "MAX_URI_LENGTH", "InvalidUri", "SipUri", "parse_uri"]

#: Longest URI (scheme to last parameter, headers excluded) we accept; a bound, not an RFC limit.
MAX_URI_LENGTH = 255
#: Longest ``?headers`` part we accept.
MAX_HEADERS_LENGTH = 1024

# RFC 3261 §25.1 character classes.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"
_USER = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
_PASSWORD = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
_PARAMCHAR = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+")
_HNAME = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})+")
_HVALUE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})*")
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*"
    r"[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")

_TRANSPORTS = ("udp", "tcp", "tls")


class InvalidUri(RemoteProtocolError):
    """A URI that does not follow RFC 3261 §25.1, or one beyond our size bounds.

    ``status_hint`` is 416 (Unsupported URI Scheme) for a well-formed URI of another scheme, so a
    SIP element can answer as RFC 3261 §8.2.2.1 asks; 400 otherwise.
    """


@dataclass(frozen=True, slots=True)
class SipUri:
    """A parsed ``sip:``/``sips:`` URI. Components are kept escaped, exactly as written."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def param(self, name: str) -> str | None:
        """The value of a parameter (names compare case-insensitively); None if absent or bare."""
        lname = name.lower()
        for key, value in self.params:
            if key.lower() == lname:
                return value
        return None

    def has_param(self, name: str) -> bool:
        lname = name.lower()
        return any(key.lower() == lname for key, _ in self.params)

    def header(self, name: str) -> str | None:
        """The (unescaped) value of a ``?name=value`` header; names compare case-insensitively."""
        lname = name.lower()
        for key, value in self.headers:
            if unquote(key).lower() == lname:
                return unquote(value)
        return None

    @property
    def secure(self) -> bool:
        """True for ``sips:`` or ``;secure=true``: TLS signalling and SRTP media are required."""
        if self.scheme == "sips":
            return True
        value = self.param("secure")
        return value is not None and value.lower() == "true"

    @property
    def transport(self) -> str:
        """``udp``, ``tcp`` or ``tls``: what the URI asks for (secure always means TLS)."""
        if self.secure:
            return "tls"
        value = (self.param("transport") or "udp").lower()
        return value if value in _TRANSPORTS else "udp"

    @property
    def host_is_ip(self) -> bool:
        return self.host.startswith("[") or bool(_IPV4.fullmatch(self.host))

    @property
    def bare_host(self) -> str:
        """The host without IPv6 brackets, as sockets and TLS hostname checks want it."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unquote(self.user)

    def with_params(self, **changes: str | None) -> SipUri:
        """A copy with parameters set (value None makes a bare parameter); others kept in order."""
        params = list(self.params)
        for name, value in changes.items():
            for index, (key, _) in enumerate(params):
                if key.lower() == name.lower():
                    params[index] = (key, value)
                    break
            else:
                params.append((name, value))
        return replace(self, params=tuple(params))

    def without_headers(self) -> SipUri:
        """The URI as a Request-URI: RFC 3261 §19.1.5 headers go into the request instead."""
        return replace(self, headers=())

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += [":", str(self.port)]
        for name, value in self.params:
            out += [";", name] if value is None else [";", name, "=", value]
        if self.headers:
            out.append("?")
            out.append("&".join(f"{name}={value}" for name, value in self.headers))
        return "".join(out)

    def __repr__(self) -> str:
        # Never show a password in logs or tracebacks.
        shown = replace(self, password="***") if self.password is not None else self
        return f"SipUri({str(shown)!r})"


def parse_uri(text: str) -> SipUri:
    """Parse a SIP or SIPS URI; raise :class:`InvalidUri` naming what is wrong."""
    text = text.strip()
    if not text:
        raise InvalidUri("empty URI")
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        raise InvalidUri(f"not a URI (no scheme): {text[:40]!r}")
    scheme = scheme.lower()
    if scheme not in ("sip", "sips"):
        raise InvalidUri(f"unsupported URI scheme {scheme!r}", status_hint=416)
    # '@' never appears unescaped after the userinfo, but '?' may appear inside it, so the
    # userinfo is cut off first and the headers are looked for only after it.
    userinfo, at, rest = rest.rpartition("@")
    rest, sep, header_text = rest.partition("?")
    if len(text) - len(header_text) - len(sep) > MAX_URI_LENGTH:
        raise InvalidUri(f"URI longer than {MAX_URI_LENGTH} characters")
    if len(header_text) > MAX_HEADERS_LENGTH:
        raise InvalidUri(f"URI headers longer than {MAX_HEADERS_LENGTH} characters")

    user = password = None
    if at:
        user, pcolon, pw = userinfo.partition(":")
        if not _USER.fullmatch(user):
            raise InvalidUri(f"invalid user part {user!r}")
        if pcolon:
            if not _PASSWORD.fullmatch(pw):
                raise InvalidUri("invalid password part")
            password = pw

    hostport, *param_texts = rest.split(";")
    host, port = _parse_hostport(hostport)
    params = tuple(_parse_param(p) for p in param_texts)
    headers = _parse_headers(header_text) if sep else ()

    warnings: list[str] = []
    for name, value in params:
        lname = name.lower()
        if lname == "secure" and (value is None or value.lower() not in ("true", "false")):
            warnings.append(
                f"secure={value or ''} is neither true nor false; treated as false "
                "(plain signalling and RTP)"
            )
        elif lname == "transport" and (value or "").lower() not in _TRANSPORTS:
            warnings.append(f"transport={value or ''} is not supported; using udp")
    return SipUri(
        scheme=scheme,
        host=host,
        user=user,
        password=password,
        port=port,
        params=params,
        headers=headers,
        warnings=tuple(warnings),
    )


def _parse_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InvalidUri("unterminated IPv6 reference")
        host, after = text[: end + 1], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InvalidUri(f"invalid IPv6 address {host!r}") from None
    else:
        host, has_port, port_text = text.partition(":")
        after = ":" + port_text if has_port else ""
        if _IPV4.fullmatch(host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise InvalidUri(f"invalid IPv4 address {host!r}") from None
        elif not _HOSTNAME.fullmatch(host):
            raise InvalidUri(f"invalid host {host!r}")
    if not after:
        return host, None
    if not after.startswith(":") or not after[1:].isdigit() or len(after) > 6:
        raise InvalidUri(f"invalid port {after[1:]!r}")
    port = int(after[1:])
    if not 0 < port < 65536:
        raise InvalidUri(f"port {port} out of range")
    return host, port


def _parse_param(text: str) -> tuple[str, str | None]:
    name, eq, value = text.partition("=")
    if not _PARAMCHAR.fullmatch(name):
        raise InvalidUri(f"invalid URI parameter {text!r}")
    if not eq:
        return name, None
    if not _PARAMCHAR.fullmatch(value):
        raise InvalidUri(f"invalid value for URI parameter {name!r}")
    return name, value


def _parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    headers = []
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if not eq or not _HNAME.fullmatch(name) or not _HVALUE.fullmatch(value):
            raise InvalidUri(f"invalid URI header {item!r}")
        headers.append((name, value))
    return tuple(headers)
