"""The HTTP webhook client: fetch a call-flow document from the developer's web app.

This module owns the HTTP side of a webhook: the form-encoded POST (or GET with the parameters
in the query), the ``X-Twilio-Signature`` header on every request (:mod:`callxml.signature`),
and the bounds that keep a slow or hostile server from stalling a call: one *total* timeout for
the whole fetch including redirects, a cap on redirects, a cap on the body size, http/https only.
Every failure becomes a :class:`callxml.errors.WebhookError` with Twilio's error code; the
interpreter, not this module, parses the body and decides on fallback URLs.
"""

from __future__ import annotations

import asyncio
import ssl
from types import TracebackType
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import aiohttp

from callxml.errors import WebhookError
from callxml.signature import HEADER as SIGNATURE_HEADER
from callxml.signature import sign
from callxml.webhooks.base import (
    BAD_HOST,
    BODY_TOO_LARGE,
    CONNECTION_FAILURE,
    INVALID_URL,
    MAX_URL_LENGTH,
    RETRIEVAL_FAILURE,
    TLS_FAILURE,
    TOO_MANY_REDIRECTS,
    WebhookRequest,
    WebhookResponse,
)
from callxml.webhooks.guard import NetworkRefused

__all__ = ["WebhookClient", "check_url", "request_url"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 16 * 1024


def check_url(url: str) -> str:
    """Return ``url`` without its fragment if it is an absolute http(s) URL, else raise 11100.

    The fragment is never sent (RFC 9110 §7.1), so it is not part of the signed URL either.
    """
    if len(url) > MAX_URL_LENGTH:
        raise WebhookError(
            f"URL longer than {MAX_URL_LENGTH} characters", error_code=INVALID_URL, url=url[:200]
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise WebhookError(f"invalid URL: {exc}", error_code=INVALID_URL, url=url) from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise WebhookError(
            f"only http and https webhook URLs are allowed, not {parts.scheme or 'a relative URL'}",
            error_code=INVALID_URL,
            url=url,
        )
    if not parts.hostname:
        raise WebhookError("webhook URL has no host", error_code=INVALID_URL, url=url)
    return urlunsplit(parts._replace(fragment=""))


def request_url(request: WebhookRequest) -> str:
    """The URL actually requested: for GET, the parameters appended to the query string."""
    url = check_url(request.url)
    if request.method == "GET" and request.params:
        parts = urlsplit(url)
        extra = urlencode(request.params)
        query = f"{parts.query}&{extra}" if parts.query else extra
        url = urlunsplit(parts._replace(query=query))
        if len(url) > MAX_URL_LENGTH:
            raise WebhookError(
                f"GET URL with parameters is longer than {MAX_URL_LENGTH} characters",
                error_code=INVALID_URL,
                url=request.url,
            )
    return url


class WebhookClient:
    """Fetches documents over HTTP with aiohttp; implements :class:`callxml.webhooks.Fetcher`.

    ``timeout`` bounds the whole fetch (connect, redirects, body). A session passed in is
    borrowed, not closed; otherwise the client creates one on first use and :meth:`close`
    closes it. Cookies are not kept between fetches.
    """

    def __init__(
        self,
        *,
        auth_token: str,
        timeout: float = 15.0,
        max_body: int = 64 * 1024,
        max_redirects: int = 5,
        session: aiohttp.ClientSession | None = None,
        user_agent: str = "callxml/0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_body <= 0 or max_redirects < 0:
            raise ValueError("max_body must be positive and max_redirects not negative")
        self._auth_token = auth_token
        self._timeout = timeout
        self._max_body = max_body
        self._max_redirects = max_redirects
        self._session = session
        self._owns_session = session is None
        self._user_agent = user_agent
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True

    async def __aenter__(self) -> WebhookClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client created it."""
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._owns_session = True
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def fetch(self, request: WebhookRequest) -> WebhookResponse:
        """Fetch ``request``; return the 2xx response or raise :class:`WebhookError`."""
        url = request_url(request)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self._timeout):
                status, body, content_type, final_url = await self._follow(request, url)
        except TimeoutError as exc:
            raise WebhookError(
                f"no complete response within {self._timeout:g} s",
                error_code=CONNECTION_FAILURE,
                url=url,
            ) from exc
        return WebhookResponse(
            request=request,
            status=status,
            body=body,
            content_type=content_type,
            url=final_url,
            elapsed=loop.time() - started,
        )

    async def _follow(self, request: WebhookRequest, url: str) -> tuple[int, bytes, str, str]:
        method = request.method
        params = request.params if method == "POST" else ()
        for hop in range(self._max_redirects + 1):
            status, location, body, content_type = await self._send(method, url, params)
            if location is None:
                # Without a redirect the document's URL is the one asked for, *without* the GET
                # parameters we appended: relative URLs and a missing ``action`` resolve against
                # it, and re-sending the parameters must not duplicate them.
                return status, body, content_type, url if hop else check_url(request.url)
            # RFC 9110 §15.4: 303 always re-fetches with GET; for 301/302 user agents change
            # POST to GET (as browsers and Twilio do); 307/308 repeat the method and body.
            if status in (301, 302, 303):
                method, params = "GET", ()
            url = check_url(urljoin(url, location))
        raise WebhookError(
            f"more than {self._max_redirects} redirects",
            error_code=TOO_MANY_REDIRECTS,
            url=request.url,
        )

    async def _send(
        self, method: str, url: str, params: tuple[tuple[str, str], ...]
    ) -> tuple[int, str | None, bytes, str]:
        """One HTTP exchange; returns (status, redirect location or None, body, content type)."""
        headers = {
            "User-Agent": self._user_agent,
            "Accept": "*/*",
            SIGNATURE_HEADER: sign(self._auth_token, url, params),
        }
        data: bytes | None = None
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
            data = urlencode(params).encode("ascii")
        try:
            async with self._get_session().request(
                method,
                url,
                data=data,
                headers=headers,
                allow_redirects=False,
                ssl=self._ssl,
            ) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    return resp.status, location, b"", ""
                if not 200 <= resp.status < 300:
                    raise WebhookError(
                        f"HTTP {resp.status} {resp.reason or ''}".rstrip(),
                        error_code=RETRIEVAL_FAILURE,
                        url=url,
                    )
                body = await self._read_body(resp, url)
                return resp.status, None, body, resp.content_type.lower()
        except WebhookError:
            raise
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise WebhookError(f"TLS failure: {exc}", error_code=TLS_FAILURE, url=url) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, NetworkRefused):  # the SSRF guard (webhooks/guard.py)
                raise WebhookError(
                    str(exc.os_error), error_code=CONNECTION_FAILURE, url=url
                ) from exc
            raise WebhookError(f"bad host name: {exc}", error_code=BAD_HOST, url=url) from exc
        except aiohttp.InvalidURL as exc:
            raise WebhookError(f"invalid URL: {exc}", error_code=INVALID_URL, url=url) from exc
        except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError) as exc:
            raise WebhookError(
                f"malformed HTTP response: {exc}", error_code=RETRIEVAL_FAILURE, url=url
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise WebhookError(
                f"connection failed: {exc}", error_code=CONNECTION_FAILURE, url=url
            ) from exc

    async def _read_body(self, resp: aiohttp.ClientResponse, url: str) -> bytes:
        too_large = WebhookError(
            f"response body larger than {self._max_body} bytes",
            error_code=BODY_TOO_LARGE,
            url=url,
        )
        if resp.content_length is not None and resp.content_length > self._max_body:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > self._max_body:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)
