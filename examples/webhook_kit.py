"""What every example webhook app needs, in one place: answering with a document, reading the
call parameters, and refusing requests that callxml did not sign.

The apps beside this file import it (``sys.path`` is set to this folder first, so each app still
runs as ``python examples/<app>.py``). Copy it along with an app you start from.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from xml.sax.saxutils import escape

from aiohttp import web

from callxml.signature import HEADER, validate

__all__ = ["Handler", "params_of", "say", "signature_required", "twiml"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def twiml(*verbs: str) -> web.Response:
    body = '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n'
    body += "".join(f"  {verb}\n" for verb in verbs) + "</Response>\n"
    return web.Response(text=body, content_type="text/xml", charset="utf-8")


def say(text: str) -> str:
    return f"<Say>{escape(text)}</Say>"


async def params_of(request: web.Request) -> dict[str, str]:
    """The call parameters: the form body for POST, the query string for GET."""
    if request.method == "POST":
        return {name: str(value) for name, value in (await request.post()).items()}
    return dict(request.query)


def signature_required(
    auth_token: str, signed_url: Callable[[web.Request], str] = lambda r: str(r.url)
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """A middleware answering 403 unless ``X-Twilio-Signature`` signs the request: the URL callxml
    used (``signed_url``: behind a proxy, the public one) and, for a POST, the form (a GET, and
    a WebSocket handshake, sign the URL alone)."""

    @web.middleware
    async def require_signature(request: web.Request, handler: Handler) -> web.StreamResponse:
        signature = request.headers.get(HEADER, "")
        form = list((await request.post()).items()) if request.method == "POST" else []
        pairs = [(name, str(value)) for name, value in form]
        if not signature or not validate(auth_token, signed_url(request), pairs, signature):
            raise web.HTTPForbidden(text="invalid or missing X-Twilio-Signature\n")
        return await handler(request)

    return require_signature
