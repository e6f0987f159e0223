"""Request signing with ``X-Twilio-Signature``, for callxml's webhook client and for users' apps.

This module owns the one signing algorithm both sides must agree on, computed exactly as Twilio
computes it so that existing validators (twilio-python, twilio-node...) accept callxml's requests
and apps written for Twilio keep working unchanged:

1. start from the full URL the request is sent to (for GET that includes the query string, and
   the parameters are *not* appended a second time: they are already in the URL);
2. for POST, append every form parameter as ``name + value`` with no separators, sorted by name
   and, for a repeated name, by value (code-point order, i.e. Unix case-sensitive sorting);
   identical name/value pairs count once, as in Twilio's own validators;
3. HMAC-SHA1 keyed by the account's auth token over the UTF-8 bytes, then base64.

:func:`validate` also tries the URL with its port removed and with the scheme's default port
added, because proxies and frameworks disagree on whether ``:443`` is part of "the URL".
The module knows nothing about HTTP clients or servers; it is plain functions over strings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

__all__ = ["HEADER", "Params", "sign", "url_variants", "validate"]

HEADER = "X-Twilio-Signature"

#: Parameters as name/value pairs (order irrelevant), or a mapping whose values are a string or a
#: list/tuple of strings. Multi-dicts (aiohttp's ``await request.post()``, Werkzeug's
#: ``request.form``) work as they are: their ``items()`` yield every pair.
Params = Mapping[str, object] | Iterable[tuple[str, str]] | None

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _pairs(params: Params) -> list[tuple[str, str]]:
    if params is None:
        return []
    if isinstance(params, Mapping):
        pairs: list[tuple[str, str]] = []
        for name, value in params.items():
            if isinstance(value, list | tuple):
                pairs.extend((name, str(item)) for item in value)
            else:
                pairs.append((name, str(value)))
        return pairs
    return [(str(name), str(value)) for name, value in params]


def _payload(url: str, params: Params) -> bytes:
    parts = [url]
    for name, value in sorted(set(_pairs(params))):
        parts.append(name)
        parts.append(value)
    return "".join(parts).encode("utf-8")


def sign(auth_token: str, url: str, params: Params = None) -> str:
    """Return the ``X-Twilio-Signature`` value for a request to ``url`` with form ``params``.

    For a GET request pass the full URL including its query and no params.
    """
    digest = hmac.new(auth_token.encode("utf-8"), _payload(url, params), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _split_netloc(netloc: str) -> tuple[str, str, str | None]:
    """Split ``user:pass@host:port`` into (``user:pass@``, ``host``, ``port`` or None)."""
    userinfo, at, hostport = netloc.rpartition("@")
    prefix = userinfo + at
    if hostport.startswith("["):  # IPv6 literal, RFC 3986 §3.2.2
        end = hostport.find("]")
        if end != -1:
            rest = hostport[end + 1 :]
            port = rest[1:] if rest.startswith(":") and rest[1:].isdigit() else None
            return prefix, hostport[: end + 1], port
        return prefix, hostport, None
    host, colon, port = hostport.rpartition(":")
    if colon and port.isdigit():
        return prefix, host, port
    return prefix, hostport, None


def url_variants(url: str) -> list[str]:
    """The URL as given, then without its port, then with the scheme's default port.

    Twilio validators accept a signature made over any of these; duplicates are dropped.
    """
    variants = [url]
    parts = urlsplit(url)
    prefix, host, port = _split_netloc(parts.netloc)
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if port is not None:
        variants.append(urlunsplit(parts._replace(netloc=prefix + host)))
    elif default is not None and host:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    return list(dict.fromkeys(variants))


def validate(auth_token: str, url: str, params: Params, signature: str) -> bool:
    """True if ``signature`` signs a request to ``url`` with ``params`` under ``auth_token``.

    The comparison is constant-time (:func:`hmac.compare_digest`); every URL variant is checked
    so the time taken does not reveal which one matched.
    """
    try:
        given = signature.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    ok = False
    for variant in url_variants(url):
        expected = sign(auth_token, variant, params).encode("ascii")
        ok |= hmac.compare_digest(expected, given)
    return ok
