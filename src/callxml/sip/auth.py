"""SIP digest authentication, both sides, pure (RFC 3261 §22, RFC 7616, RFC 8760).

This module owns the digest arithmetic, the ``WWW-Authenticate``/``Authorization`` header
grammar (parse and format in pairs), the client's nonce counts and the server's nonces. It knows
nothing about transactions or sockets: the user agent core hands it header values, methods and
URIs, and gets header values back.

Client (UAC) side::

    client = DigestClient()
    challenge = select_challenge(response.headers.get_all("WWW-Authenticate"))
    value = client.authorize(challenge, creds, "INVITE", "sip:bob@example.com")
    request.headers.set("Authorization", str(value))

Server side: :class:`DigestServer` issues stateless, HMAC-signed nonces carrying their issue time
(so an expired one is answered with ``stale=true``, RFC 7616 §3.3), compares responses in constant
time and rejects replayed nonce counts with a bounded table (RFC 7616 §3.4.1, §5.4).

Supported: algorithms ``MD5``, ``MD5-sess``, ``SHA-256``, ``SHA-256-sess``, ``SHA-512-256``,
``SHA-512-256-sess`` (RFC 8760 §2); ``qop=auth`` and ``qop=auth-int``; RFC 2069 responses without
qop on the client side (old servers). Not supported: ``userhash=true`` (RFC 7616 §3.4.4), the
``charset``/``username*`` forms, and ``Basic`` (forbidden for SIP by RFC 3261 §22.4).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from callxml.errors import LocalProtocolError, RemoteProtocolError
from callxml.sip.message import SipResponse

__all__ = [
    "ALGORITHMS",
    "MAX_AUTH_ATTEMPTS",
    "AuthResult",
    "Credentials",
    "DigestAuthorization",
    "DigestChallenge",
    "DigestClient",
    "DigestServer",
    "challenge_to_answer",
    "compute_response",
    "parse_authorization",
    "parse_challenges",
    "select_challenge",
]

# Hash functions by RFC 7616 §3.2 / RFC 8760 §2.3 algorithm name (upper case, without -sess).
ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data).hexdigest(),
}
# Client preference when a server offers several challenges of equal rank (RFC 8760 §2.4).
_STRENGTH = {"SHA-512-256": 3, "SHA-256": 2, "MD5": 1}

MAX_HEADER_LENGTH = 8192  # an auth header longer than this is refused, not parsed
MAX_PARAMS = 32  # auth-params per challenge/credentials
# Parameters whose value is a quoted-string when we format them (RFC 7616 §3.3, §3.4).
_QUOTED_CHALLENGE = ("realm", "domain", "nonce", "opaque", "qop")
_QUOTED_CREDENTIALS = ("username", "realm", "nonce", "uri", "response", "cnonce", "opaque")


def _split_algorithm(name: str) -> tuple[str, bool]:
    """``"SHA-256-sess"`` → ``("SHA-256", True)``; raises for an unknown algorithm."""
    upper = name.upper()
    session = upper.endswith("-SESS")
    base = upper[:-5] if session else upper
    if base not in ALGORITHMS:
        raise LocalProtocolError(f"unsupported digest algorithm {name!r}")
    return base, session


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------------------------
# Header grammar: challenge = auth-scheme 1*SP auth-param *("," auth-param) (RFC 7235 §2.1)


def _parse_auth_params(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Split a header value into ``[(scheme, [(name, value), ...]), ...]``.

    Several challenges may share one header value (RFC 7235 §4.1): a token that is not followed
    by ``=`` starts a new scheme. Quoted values are unescaped. Raises RemoteProtocolError.
    """
    if len(text) > MAX_HEADER_LENGTH:
        raise RemoteProtocolError("authentication header too long")
    out: list[tuple[str, list[tuple[str, str]]]] = []
    i, n = 0, len(text)

    def skip_ws(j: int) -> int:
        while j < n and text[j] in " \t\r\n":
            j += 1
        return j

    def token(j: int) -> tuple[str, int]:
        start = j
        while j < n and text[j] not in ' \t\r\n,="':
            j += 1
        return text[start:j], j

    while True:
        i = skip_ws(i)
        while i < n and text[i] == ",":
            i = skip_ws(i + 1)
        if i >= n:
            break
        name, i = token(i)
        if not name:
            raise RemoteProtocolError(f"bad authentication header near {text[i : i + 20]!r}")
        j = skip_ws(i)
        if j < n and text[j] == "=":
            if not out:
                raise RemoteProtocolError("authentication parameter before any scheme")
            j = skip_ws(j + 1)
            if j < n and text[j] == '"':
                j += 1
                chars: list[str] = []
                while True:
                    if j >= n:
                        raise RemoteProtocolError("unterminated quoted string in auth header")
                    c = text[j]
                    if c == "\\" and j + 1 < n:
                        chars.append(text[j + 1])
                        j += 2
                    elif c == '"':
                        j += 1
                        break
                    else:
                        chars.append(c)
                        j += 1
                value = "".join(chars)
            else:
                value, j = token(j)
            params = out[-1][1]
            if len(params) >= MAX_PARAMS:
                raise RemoteProtocolError("too many authentication parameters")
            params.append((name.lower(), value))
            i = skip_ws(j)
            if i < n and text[i] != ",":
                raise RemoteProtocolError(f"expected ',' in auth header near {text[i : i + 20]!r}")
        else:
            if len(out) >= MAX_PARAMS:
                raise RemoteProtocolError("too many authentication challenges")
            out.append((name, []))
            i = j
    return out


@dataclass(frozen=True)
class DigestChallenge:
    """One ``Digest`` challenge from ``WWW-Authenticate``/``Proxy-Authenticate`` (RFC 7616 §3.3).

    ``qop`` is the tuple of offered qop values (empty: an RFC 2069 server).
    """

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None

    @property
    def supported(self) -> bool:
        """True when this client can answer it (known algorithm, usable qop)."""
        try:
            _split_algorithm(self.algorithm)
        except LocalProtocolError:
            return False
        return not self.qop or "auth" in self.qop or "auth-int" in self.qop

    def __str__(self) -> str:
        parts = [f"realm={_quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        parts.append(f"nonce={_quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=TRUE")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        return "Digest " + ", ".join(parts)


def parse_challenges(values: Iterable[str]) -> list[DigestChallenge]:
    """All Digest challenges in some ``WWW-Authenticate`` header values, in order.

    Other schemes are skipped; a Digest challenge without realm or nonce raises
    RemoteProtocolError.
    """
    out: list[DigestChallenge] = []
    for value in values:
        for scheme, params in _parse_auth_params(value):
            if scheme.lower() != "digest":
                continue
            p = dict(params)
            if "realm" not in p or "nonce" not in p:
                raise RemoteProtocolError("digest challenge without realm or nonce")
            qop = tuple(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
            out.append(
                DigestChallenge(
                    realm=p["realm"],
                    nonce=p["nonce"],
                    algorithm=p.get("algorithm", "MD5"),
                    qop=qop,
                    opaque=p.get("opaque"),
                    stale=p.get("stale", "").lower() == "true",
                    domain=p.get("domain"),
                )
            )
    return out


def select_challenge(values: Iterable[str]) -> DigestChallenge | None:
    """The challenge to answer: the strongest supported algorithm, first listed on ties.

    RFC 8760 §2.4 lets a server offer one challenge per algorithm; we prefer SHA-512-256, then
    SHA-256, then MD5. Returns None when nothing is usable (an unknown algorithm only, Basic...).
    """
    usable = [c for c in parse_challenges(values) if c.supported]
    if not usable:
        return None
    return max(usable, key=lambda c: _STRENGTH[_split_algorithm(c.algorithm)[0]])


#: Challenges answered for one request before giving up (a server that keeps challenging).
MAX_AUTH_ATTEMPTS = 3


def challenge_to_answer(
    response: SipResponse,
    credentials: Credentials | None,
    answered_realms: set[str],
    attempts: int,
) -> tuple[str, DigestChallenge] | None:
    """§22.2: for a 401/407, the header our answer goes in and the challenge to answer, or None
    to give up — without credentials, after :data:`MAX_AUTH_ATTEMPTS`, with no usable challenge
    for our realm, or for a realm already answered unless its nonce went stale (a wrong password
    must not loop). Adds the realm to ``answered_realms``. Shared by INVITE and REGISTER."""
    if credentials is None or attempts >= MAX_AUTH_ATTEMPTS:
        return None
    ask, answer = (
        ("WWW-Authenticate", "Authorization")
        if response.status == 401
        else ("Proxy-Authenticate", "Proxy-Authorization")
    )
    try:
        challenge = select_challenge(response.headers.get_all(ask))
    except RemoteProtocolError:
        return None
    if challenge is None or not credentials.matches(challenge.realm):
        return None
    if challenge.realm in answered_realms and not challenge.stale:
        return None
    answered_realms.add(challenge.realm)
    return answer, challenge


@dataclass(frozen=True)
class DigestAuthorization:
    """The credentials in an ``Authorization``/``Proxy-Authorization`` header (RFC 7616 §3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None  # 8 hex digits
    cnonce: str | None = None
    opaque: str | None = None

    def __str__(self) -> str:
        parts = [
            f"username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
            f"algorithm={self.algorithm}",
        ]
        if self.qop is not None:
            parts += [f"qop={self.qop}", f"nc={self.nc}", f"cnonce={_quote(self.cnonce or '')}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        return "Digest " + ", ".join(parts)


def parse_authorization(value: str) -> DigestAuthorization:
    """Parse an ``Authorization`` value; raises RemoteProtocolError if it is not usable Digest."""
    parsed = _parse_auth_params(value)
    if len(parsed) != 1 or parsed[0][0].lower() != "digest":
        raise RemoteProtocolError("Authorization is not a single Digest credential")
    p = dict(parsed[0][1])
    missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in p]
    if missing:
        raise RemoteProtocolError(f"Digest credentials lack {', '.join(missing)}")
    qop = p.get("qop")
    if qop is not None and ("nc" not in p or "cnonce" not in p):
        raise RemoteProtocolError("Digest credentials with qop need nc and cnonce")
    return DigestAuthorization(
        username=p["username"],
        realm=p["realm"],
        nonce=p["nonce"],
        uri=p["uri"],
        response=p["response"],
        algorithm=p.get("algorithm", "MD5"),
        qop=qop.lower() if qop is not None else None,
        nc=p.get("nc"),
        cnonce=p.get("cnonce"),
        opaque=p.get("opaque"),
    )


# --------------------------------------------------------------------------------------------
# The arithmetic (RFC 7616 §3.4.1 - §3.4.3)


def compute_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value: KD(H(A1), nonce:nc:cnonce:qop:H(A2)), or the RFC 2069 form."""
    base, session = _split_algorithm(algorithm)
    h = ALGORITHMS[base]
    ha1 = h(f"{username}:{realm}:{password}".encode())
    if session:  # RFC 7616 §3.4.2
        ha1 = h(f"{ha1}:{nonce}:{cnonce or ''}".encode())
    if qop == "auth-int":  # RFC 7616 §3.4.3
        ha2 = h(f"{method}:{uri}:{h(body)}".encode())
    else:
        ha2 = h(f"{method}:{uri}".encode())
    if qop is None:  # RFC 2069 compatibility, RFC 2617 §3.2.2.1
        return h(f"{ha1}:{nonce}:{ha2}".encode())
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


@dataclass(frozen=True)
class Credentials:
    """A username and password, as given by ``<Sip username="..." password="...">``.

    ``realm`` restricts them to one realm; None answers any realm.
    """

    username: str
    password: str = field(repr=False)
    realm: str | None = None

    def matches(self, realm: str) -> bool:
        return self.realm is None or self.realm == realm


class DigestClient:
    """Answers challenges for one user agent, keeping nonce counts per nonce (RFC 7616 §3.4).

    The table of nonce counts is bounded (``max_nonces``, oldest forgotten first); forgetting a
    nonce only means the next use starts again at 1, which a server treats as a fresh nonce.
    """

    def __init__(self, *, max_nonces: int = 64, random: Callable[[int], bytes] = os.urandom):
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._max = max_nonces
        self._random = random

    def authorize(
        self,
        challenge: DigestChallenge,
        credentials: Credentials,
        method: str,
        uri: str,
        body: bytes = b"",
        *,
        cnonce: str | None = None,
    ) -> DigestAuthorization:
        """Credentials answering ``challenge`` for a request ``method uri`` (with ``body``).

        Prefers qop=auth when offered, auth-int only when it is the sole option; without qop
        offered (RFC 2069) no cnonce/nc are sent. Raises LocalProtocolError for a challenge we
        cannot answer (see :attr:`DigestChallenge.supported`).
        """
        if not challenge.supported:
            raise LocalProtocolError(f"cannot answer digest challenge {challenge}")
        qop: str | None = None
        if challenge.qop:
            qop = "auth" if "auth" in challenge.qop else "auth-int"
        nc: str | None = None
        if qop is not None or _split_algorithm(challenge.algorithm)[1]:
            cnonce = cnonce or self._random(12).hex()
        if qop is not None:
            key = (challenge.realm, challenge.nonce)
            count = self._counts.pop(key, 0) + 1
            self._counts[key] = count
            while len(self._counts) > self._max:
                self._counts.popitem(last=False)
            nc = f"{count:08x}"
        response = compute_response(
            algorithm=challenge.algorithm,
            username=credentials.username,
            realm=challenge.realm,
            password=credentials.password,
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        return DigestAuthorization(
            username=credentials.username,
            realm=challenge.realm,
            nonce=challenge.nonce,
            uri=uri,
            response=response,
            algorithm=challenge.algorithm,
            qop=qop,
            nc=nc,
            cnonce=cnonce if qop is not None else None,
            opaque=challenge.opaque,
        )


# --------------------------------------------------------------------------------------------
# Server side


@dataclass(frozen=True)
class AuthResult:
    """The verdict on some credentials.

    ``ok``: accept the request as ``username``. Otherwise answer 401/407 with fresh challenges;
    ``stale`` says to set ``stale=true`` on them (RFC 7616 §3.3: the password was right, the
    nonce expired or was already used up), ``reason`` is for the log only.
    """

    ok: bool
    username: str | None = None
    stale: bool = False
    reason: str = ""


_NONCE_STRUCT = struct.Struct(">Q12s")  # issue time in ms, 12 random bytes
_NONCE_MAC_LEN = 16


class DigestServer:
    """Challenges and verifies digest credentials for one realm (RFC 7616 §3.3, §5).

    Nonces are ``base64url(issued_ms || random || HMAC-SHA256(secret, issued_ms || random ||
    realm)[:16])``: no state is kept per challenge, a forged or foreign nonce fails the HMAC, and
    one older than ``nonce_lifetime`` seconds earns ``stale=true``. ``qop=auth`` is required, and
    each nonce's highest nonce count is remembered so a replayed or reordered count is refused
    (RFC 7616 §5.4). That table holds at most ``max_nonces`` entries; when the oldest is dropped,
    every nonce issued no later than it and not in the table is treated as stale, so eviction
    can never reopen a replay.

    ``lookup(username)`` returns the user's password, or None for an unknown user.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        lookup: Callable[[str], str | None],
        *,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        nonce_lifetime: float = 300.0,
        max_nonces: int = 4096,
        random: Callable[[int], bytes] = os.urandom,
    ):
        if len(secret) < 16:
            raise LocalProtocolError("the nonce secret must be at least 16 bytes")
        for name in algorithms:
            _split_algorithm(name)
        self.realm = realm
        self._secret = secret
        self._lookup = lookup
        self.algorithms = algorithms
        self.nonce_lifetime = nonce_lifetime
        self._max = max_nonces
        self._random = random
        self._opaque = hmac.new(secret, b"opaque:" + realm.encode(), "sha256").hexdigest()[:16]
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()  # nonce -> (issued, nc)
        self._floor_ms = -1  # nonces issued at or before this and not in _seen are stale

    def _mac(self, head: bytes) -> bytes:
        return hmac.new(self._secret, head + self.realm.encode(), "sha256").digest()[
            :_NONCE_MAC_LEN
        ]

    def new_nonce(self, now: float) -> str:
        head = _NONCE_STRUCT.pack(int(now * 1000), self._random(12))
        return base64.urlsafe_b64encode(head + self._mac(head)).decode().rstrip("=")

    def _nonce_issued_ms(self, nonce: str) -> int | None:
        """The issue time of a nonce we signed, or None if it is not one of ours."""
        if len(nonce) > 64:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != _NONCE_STRUCT.size + _NONCE_MAC_LEN:
            return None
        head, mac = raw[: _NONCE_STRUCT.size], raw[_NONCE_STRUCT.size :]
        if not hmac.compare_digest(mac, self._mac(head)):
            return None
        issued_ms: int = _NONCE_STRUCT.unpack(head)[0]
        return issued_ms

    def challenges(self, now: float, *, stale: bool = False) -> list[DigestChallenge]:
        """Fresh challenges, one per configured algorithm, preferred first (RFC 8760 §2.4).

        Put each in its own ``WWW-Authenticate`` (or ``Proxy-Authenticate``) header.
        """
        nonce = self.new_nonce(now)
        return [
            DigestChallenge(
                realm=self.realm,
                nonce=nonce,
                algorithm=name,
                qop=("auth",),
                opaque=self._opaque,
                stale=stale,
            )
            for name in self.algorithms
        ]

    def verify(
        self,
        authorization: str | DigestAuthorization,
        method: str,
        request_uri: str,
        now: float,
        body: bytes = b"",
    ) -> AuthResult:
        """Check credentials sent with a ``method`` request for ``request_uri`` at time ``now``.

        Never raises for bad input: a malformed header is just a failed result.
        """
        try:
            auth = (
                parse_authorization(authorization)
                if isinstance(authorization, str)
                else authorization
            )
        except RemoteProtocolError as exc:
            return AuthResult(False, reason=str(exc))
        if auth.realm != self.realm:
            return AuthResult(False, reason="wrong realm")
        if auth.algorithm.upper() not in {a.upper() for a in self.algorithms}:
            return AuthResult(False, reason=f"algorithm {auth.algorithm} not offered")
        if auth.qop not in ("auth", "auth-int") or auth.nc is None or auth.cnonce is None:
            return AuthResult(False, reason="qop=auth required")
        # RFC 3261 §22.4 item 8 / RFC 7616 §3.4.6: the digest-uri must name this request.
        if auth.uri != request_uri:
            return AuthResult(False, reason="digest uri does not match the Request-URI")
        try:
            nc = int(auth.nc, 16)
        except ValueError:
            return AuthResult(False, reason="bad nonce count")
        if len(auth.nc) != 8 or nc < 1:
            return AuthResult(False, reason="bad nonce count")
        issued_ms = self._nonce_issued_ms(auth.nonce)
        if issued_ms is None:
            return AuthResult(False, reason="unknown nonce")
        password = self._lookup(auth.username)
        if password is None:
            return AuthResult(False, reason="unknown user")
        expected = compute_response(
            algorithm=auth.algorithm,
            username=auth.username,
            realm=self.realm,
            password=password,
            nonce=auth.nonce,
            method=method,
            uri=auth.uri,
            qop=auth.qop,
            nc=auth.nc,
            cnonce=auth.cnonce,
            body=body,
        )
        if not hmac.compare_digest(expected.encode(), auth.response.lower().encode()):
            return AuthResult(False, reason="wrong password or response")
        # The password is right; from here on a refusal is "stale" (retry with a fresh nonce).
        now_ms = int(now * 1000)
        if now_ms - issued_ms > self.nonce_lifetime * 1000 or issued_ms > now_ms + 60_000:
            return AuthResult(False, username=auth.username, stale=True, reason="nonce expired")
        seen = self._seen.get(auth.nonce)
        if seen is None and issued_ms <= self._floor_ms:
            return AuthResult(False, username=auth.username, stale=True, reason="nonce forgotten")
        if seen is not None and nc <= seen[1]:
            return AuthResult(
                False, username=auth.username, stale=True, reason="nonce count reused"
            )
        self._remember(auth.nonce, issued_ms, nc, now_ms)
        return AuthResult(True, username=auth.username)

    def _remember(self, nonce: str, issued_ms: int, nc: int, now_ms: int) -> None:
        self._seen[nonce] = (issued_ms, nc)
        self._seen.move_to_end(nonce)
        lifetime_ms = self.nonce_lifetime * 1000
        while self._seen:  # drop expired entries from the old end while cheap
            oldest_issued = next(iter(self._seen.values()))[0]
            if now_ms - oldest_issued <= lifetime_ms and len(self._seen) <= self._max:
                break
            self._seen.popitem(last=False)
            self._floor_ms = max(self._floor_ms, oldest_issued)
