"""Webhook fetching: how callxml gets call-flow documents from the developer's app.

The interpreter builds a :class:`WebhookRequest` (URL, method, Twilio-named parameters) and hands
it to a :class:`Fetcher`: :class:`WebhookClient` for http(s) (signed, bounded) or
:class:`FileFetcher` for local files. Fetchers raise :class:`callxml.errors.WebhookError` with
Twilio's error codes; parsing the body and choosing a fallback URL are the interpreter's job.
"""

from callxml.webhooks.base import (
    BAD_HOST,
    BODY_TOO_LARGE,
    CONNECTION_FAILURE,
    INVALID_URL,
    RETRIEVAL_FAILURE,
    TLS_FAILURE,
    TOO_MANY_REDIRECTS,
    Fetcher,
    WebhookRequest,
    WebhookResponse,
    resolve_url,
)
from callxml.webhooks.client import WebhookClient
from callxml.webhooks.files import FileFetcher

__all__ = [
    "BAD_HOST",
    "BODY_TOO_LARGE",
    "CONNECTION_FAILURE",
    "INVALID_URL",
    "RETRIEVAL_FAILURE",
    "TLS_FAILURE",
    "TOO_MANY_REDIRECTS",
    "Fetcher",
    "FileFetcher",
    "WebhookClient",
    "WebhookRequest",
    "WebhookResponse",
    "resolve_url",
]
