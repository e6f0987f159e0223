"""The webhook seam: request/response values, the ``Fetcher`` protocol, and Twilio error codes.

This module owns the shapes that cross between the interpreter (which decides *what* to fetch
and what a failure means for the call) and the fetchers (which only move bytes: HTTP in
:mod:`callxml.webhooks.client`, local files in :mod:`callxml.webhooks.files`). It knows no HTTP
library and no markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urljoin

from callxml.errors import CallXmlError, LocalProtocolError, WebhookError

__all__ = [
    "BAD_HOST",
    "BODY_TOO_LARGE",
    "CONNECTION_FAILURE",
    "INVALID_URL",
    "METHODS",
    "RETRIEVAL_FAILURE",
    "TLS_FAILURE",
    "TOO_MANY_REDIRECTS",
    "Fetcher",
    "WebhookRequest",
    "WebhookResponse",
    "fetch_outcome",
    "resolve_url",
]

# Twilio's error numbering, so logs and ErrorCode fallback parameters mean the same thing to apps
# written for Twilio (https://www.twilio.com/docs/api/errors).
INVALID_URL = 11100  # not an absolute http(s) URL, or longer than MAX_URL_LENGTH
RETRIEVAL_FAILURE = 11200  # non-2xx status, malformed HTTP response, missing file
CONNECTION_FAILURE = 11205  # refused, reset, or the total timeout expired
BAD_HOST = 11210  # the host name does not resolve
TOO_MANY_REDIRECTS = 11215
TLS_FAILURE = 11220  # handshake or certificate verification failed
BODY_TOO_LARGE = 11750  # response body above the markup size cap

METHODS = ("POST", "GET")
MAX_URL_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One document fetch: ``params`` use Twilio's names (``CallSid``, ``Digits``...), in order."""

    url: str
    method: str  # "POST" | "GET"
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise LocalProtocolError(f"webhook method must be POST or GET, not {self.method!r}")


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """A successful (2xx) fetch. ``content_type`` is the media type only, lower-cased."""

    request: WebhookRequest
    status: int
    body: bytes
    content_type: str
    url: str  # the document's URL: after redirects the final one, else request.url (sans fragment)
    elapsed: float  # seconds, for the transcript only


class Fetcher(Protocol):
    """Fetches a document; raises :class:`callxml.errors.WebhookError` on any failure."""

    async def fetch(self, request: WebhookRequest) -> WebhookResponse: ...


async def fetch_outcome(
    fetcher: Fetcher, request: WebhookRequest
) -> WebhookResponse | WebhookError:
    """Fetch, turning every failure into the :class:`WebhookError` the interpreter's fallback
    rules act on — including a fetcher that broke its contract by raising another
    :class:`CallXmlError`, so a buggy fetcher still ends in the documented fallback, not a crash.
    """
    try:
        return await fetcher.fetch(request)
    except WebhookError as exc:
        return exc
    except CallXmlError as exc:
        return WebhookError(str(exc), url=request.url)


def resolve_url(base: str, ref: str) -> str:
    """Resolve ``ref`` (an ``action`` or ``<Redirect>`` URL) against the current document URL.

    RFC 3986 §5.2 reference resolution; works for ``http(s):``, ``file:`` and plain paths alike
    (``resolve_url("flows/ivr.xml", "menu.xml") == "flows/menu.xml"``).
    """
    return urljoin(base, ref)
