"""SDES ``a=crypto`` attributes (RFC 4568 §9.1).

Owns the wire form of one ``a=crypto`` value -- ``tag SP suite SP key-params [SP session-params]``
-- and how SDES spells suite names (case-insensitively, RFC 4568 §9.1). What each suite name means
in key, salt and tag lengths is not SDP's: it is the one table in :mod:`callxml.media.suites`,
re-exported here (:data:`SUITES`, :class:`SrtpSuite`, the name constants) because the parser checks
every ``inline:`` key against it. It holds every suite a carrier's offer has been seen to list, in
both spellings where two exist (RFC 6188 ``AES_256_CM_...`` and the ``AES_CM_256_...`` form some
stacks print).

It must not know the secure-media policy (which suites we accept: :mod:`callxml.sdp.policy`) nor
SRTP sessions (:mod:`callxml.media.srtp`).

Key material is secret: ``repr()`` of every object here hides it, and :func:`redact` scrubs it from
any text (an SDP body, a SIP message) before that text reaches a log.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from callxml.errors import MediaError
from callxml.media.suites import (
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    SUITE_ALIASES,
    SUITES,
    SrtpSuite,
    lookup,
)

__all__ = [
    "AES_CM_128_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_80",
    "MAX_CRYPTO_LENGTH",
    "SUITES",
    "SUITE_ALIASES",
    "CryptoAttribute",
    "InvalidCrypto",
    "KeyParam",
    "SrtpSuite",
    "find_suite",
    "new_crypto",
    "parse_crypto",
    "redact",
]

#: Longest ``a=crypto`` value we parse; a bound, not an RFC limit.
MAX_CRYPTO_LENGTH = 1024
#: Most key-params / session-params on one line we parse; a bound, not an RFC limit.
MAX_KEY_PARAMS = 16
MAX_SESSION_PARAMS = 16


class InvalidCrypto(MediaError):
    """An ``a=crypto`` value that does not follow RFC 4568 §9.1 (or exceeds our bounds).

    The message never contains key material.
    """


def find_suite(name: str) -> SrtpSuite | None:
    """The suite called ``name`` in any spelling the table knows, or None.

    RFC 4568 §9.1 writes suite names as ABNF literals, which are case-insensitive, so
    ``aes_cm_128_hmac_sha1_80`` is the same suite.
    """
    return lookup(name.upper())


_TAG = re.compile(r"[0-9]{1,9}")  # RFC 4568 §9.1: tag = 1*9DIGIT
_SUITE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_LIFETIME = re.compile(r"(?:2\^[0-9]{1,2}|[0-9]{1,15})")  # RFC 4568 §9.2
_MKI = re.compile(r"([0-9]{1,39}):([0-9]{1,3})")  # RFC 4568 §9.2: mki-value ":" mki-length
_SESSION_PARAM = re.compile(r"[\x21-\x7e]{1,256}")  # VCHAR, RFC 4568 §9.1
_INLINE = re.compile(r"(inline:)[A-Za-z0-9+/]+={0,2}")


def _decode_base64(text: str) -> bytes:
    """Decode base64 key material, accepting it with or without ``=`` padding."""
    if not _BASE64.fullmatch(text):
        raise InvalidCrypto("key is not base64")
    stripped = text.rstrip("=")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCrypto("key is not base64") from None


@dataclass(frozen=True, slots=True)
class KeyParam:
    """One ``inline:`` key-param: master key, master salt, optional lifetime and MKI.

    ``lifetime`` is kept as written (``2^20`` or decimal). ``mki``/``mki_length`` are both set or
    both None. For a suite we do not know, the whole key material is in ``key`` and ``salt`` is
    empty.
    """

    key: bytes
    salt: bytes
    lifetime: str | None = None
    mki: int | None = None
    mki_length: int | None = None

    def __repr__(self) -> str:
        return (
            f"KeyParam(key=<{len(self.key)} bytes>, salt=<{len(self.salt)} bytes>, "
            f"lifetime={self.lifetime!r}, mki={self.mki!r}, mki_length={self.mki_length!r})"
        )

    def keying_material(self) -> bytes:
        """``key‖salt``, as libsrtp takes it (30 bytes for AES_CM_128)."""
        return self.key + self.salt

    @property
    def lifetime_packets(self) -> int | None:
        """The lifetime as a number of packets, or None when absent."""
        if self.lifetime is None:
            return None
        if self.lifetime.startswith("2^"):
            return 1 << int(self.lifetime[2:])
        return int(self.lifetime)

    def __str__(self) -> str:
        text = "inline:" + base64.b64encode(self.keying_material()).decode("ascii")
        if self.lifetime is not None:
            text += "|" + self.lifetime
        if self.mki is not None:
            text += f"|{self.mki}:{self.mki_length}"
        return text


def _parse_key_param(text: str, suite: SrtpSuite | None) -> KeyParam:
    """Parse ``inline:<key||salt>[|lifetime][|MKI:length]`` (RFC 4568 §9.2)."""
    method, sep, info = text.partition(":")
    if not sep or method.lower() != "inline":
        raise InvalidCrypto("key-param method is not inline")
    parts = info.split("|")
    if len(parts) > 3:
        raise InvalidCrypto("too many '|' fields in key-param")
    material = _decode_base64(parts[0])
    lifetime: str | None = None
    mki: int | None = None
    mki_length: int | None = None
    for part in parts[1:]:
        match = _MKI.fullmatch(part)
        if match and mki is None:
            mki, mki_length = int(match[1]), int(match[2])
            if not 1 <= mki_length <= 128 or mki >= 256**mki_length:
                raise InvalidCrypto("MKI length must be 1..128 bytes and hold the MKI value")
        elif _LIFETIME.fullmatch(part) and lifetime is None and mki is None:
            lifetime = part
            if lifetime.startswith("2^") and int(lifetime[2:]) > 64:
                raise InvalidCrypto("lifetime too large")
        else:
            raise InvalidCrypto("bad lifetime or MKI in key-param")
    if suite is None:
        return KeyParam(material, b"", lifetime, mki, mki_length)
    if len(material) != suite.key_salt_octets:
        raise InvalidCrypto(
            f"{suite.name} needs {suite.key_salt_octets} bytes of key and salt, got {len(material)}"
        )
    key_octets = suite.key_octets
    return KeyParam(material[:key_octets], material[key_octets:], lifetime, mki, mki_length)


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """The value of one ``a=crypto`` line (RFC 4568 §9.1).

    ``suite`` is kept as written; :attr:`suite_info` looks it up in :data:`SUITES`.
    ``str()`` gives the attribute value back (without ``a=crypto:``).
    """

    tag: int
    suite: str
    key_params: tuple[KeyParam, ...]
    session_params: tuple[str, ...] = ()

    @property
    def suite_info(self) -> SrtpSuite | None:
        return find_suite(self.suite)

    @property
    def has_mki(self) -> bool:
        return any(kp.mki is not None for kp in self.key_params)

    def keying_material(self) -> bytes:
        """``key‖salt`` of the first key-param."""
        return self.key_params[0].keying_material()

    def __str__(self) -> str:
        parts = [str(self.tag), self.suite, ";".join(str(kp) for kp in self.key_params)]
        return " ".join([*parts, *self.session_params])


def parse_crypto(value: str) -> CryptoAttribute:
    """Parse an ``a=crypto`` value; raise :class:`InvalidCrypto` (never a key in the message)."""
    if len(value) > MAX_CRYPTO_LENGTH:
        raise InvalidCrypto("a=crypto value too long")
    fields = value.split()
    if len(fields) < 3:
        raise InvalidCrypto("a=crypto needs a tag, a suite and key-params")
    tag_text, suite_name, key_text, *session_params = fields
    if not _TAG.fullmatch(tag_text):
        raise InvalidCrypto("a=crypto tag must be 1 to 9 digits")
    if not _SUITE_NAME.fullmatch(suite_name):
        raise InvalidCrypto("bad crypto-suite name")
    key_texts = key_text.split(";")
    if len(key_texts) > MAX_KEY_PARAMS or len(session_params) > MAX_SESSION_PARAMS:
        raise InvalidCrypto("too many key-params or session-params")
    for param in session_params:
        if not _SESSION_PARAM.fullmatch(param):
            raise InvalidCrypto("bad session-param")
    suite = find_suite(suite_name)
    key_params = tuple(_parse_key_param(text, suite) for text in key_texts)
    return CryptoAttribute(int(tag_text), suite_name, key_params, tuple(session_params))


def new_crypto(
    tag: int = 1,
    suite: str = AES_CM_128_HMAC_SHA1_80,
    *,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> CryptoAttribute:
    """A crypto attribute with a fresh random master key and salt, no lifetime, no MKI."""
    info = find_suite(suite)
    if info is None:
        raise ValueError(f"unknown crypto-suite {suite!r}")
    material = random_bytes(info.key_salt_octets)
    if len(material) != info.key_salt_octets:
        raise ValueError("random_bytes returned the wrong length")
    key_param = KeyParam(material[: info.key_octets], material[info.key_octets :])
    return CryptoAttribute(tag, info.name, (key_param,))


def redact(text: str) -> str:
    """``text`` with every ``inline:`` key replaced by ``inline:<redacted>``, for logging."""
    return _INLINE.sub(r"\1<redacted>", text)
