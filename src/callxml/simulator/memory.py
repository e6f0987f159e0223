"""An in-memory :class:`~callxml.webhooks.Fetcher`: documents from a dict or from functions.

Owns the offline seam for app developers' tests: route a URL to a fixed document, or to a
function of the :class:`~callxml.webhooks.WebhookRequest` (sync or async) that returns the body,
or ``(status, body)``. Unknown URLs and non-2xx statuses raise
:class:`~callxml.errors.WebhookError` (11200), as the HTTP client does.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

from callxml.errors import WebhookError
from callxml.webhooks.base import RETRIEVAL_FAILURE, WebhookRequest, WebhookResponse

__all__ = ["Handler", "MemoryFetcher", "Reply"]

Reply: TypeAlias = str | bytes | tuple[int, str | bytes]
Handler: TypeAlias = Reply | Callable[[WebhookRequest], Reply | Awaitable[Reply]]


def _key(url: str) -> str:
    """URLs compare without query and fragment (GET parameters go in the query)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment=""))


class MemoryFetcher:
    """Serves documents from memory; implements :class:`callxml.webhooks.Fetcher`."""

    def __init__(self, routes: Mapping[str, Handler] | None = None) -> None:
        self._routes: dict[str, Handler] = {}
        for url, handler in (routes or {}).items():
            self.route(url, handler)

    def route(self, url: str, handler: Handler) -> None:
        """Serve ``handler`` (a document, or a function of the request) at ``url``."""
        self._routes[_key(url)] = handler

    async def fetch(self, request: WebhookRequest) -> WebhookResponse:
        handler = self._routes.get(_key(request.url))
        if handler is None:
            raise WebhookError(
                f"{request.url}: no such route (404)", error_code=RETRIEVAL_FAILURE, url=request.url
            )
        reply = handler(request) if callable(handler) else handler
        if inspect.isawaitable(reply):
            reply = await reply
        status, body = reply if isinstance(reply, tuple) else (200, reply)
        if not 200 <= status < 300:
            raise WebhookError(
                f"{request.url} answered HTTP {status}",
                error_code=RETRIEVAL_FAILURE,
                url=request.url,
            )
        data = body.encode() if isinstance(body, str) else body
        return WebhookResponse(
            request=request,
            status=status,
            body=data,
            content_type="text/xml",
            url=request.url,
            elapsed=0.0,
        )
