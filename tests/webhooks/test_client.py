"""WebhookClient against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
import trustme
from aiohttp import web
from yarl import URL

from callxml.errors import LocalProtocolError, WebhookError
from callxml.signature import HEADER, validate
from callxml.webhooks import (
    BODY_TOO_LARGE,
    CONNECTION_FAILURE,
    INVALID_URL,
    RETRIEVAL_FAILURE,
    TLS_FAILURE,
    TOO_MANY_REDIRECTS,
    WebhookClient,
    WebhookRequest,
)
from support.web import Serve, serve_app

TOKEN = "test-auth-token"
DOC = b'<?xml version="1.0"?><Response><Say>Hello</Say></Response>'
PARAMS = (
    ("CallSid", "CA" + "0" * 32),
    ("From", "+15005550006"),
    ("To", "+15005550001"),
    ("Digits", "1#"),
    ("Caller", "+15005550006"),
)


class Recorder:
    """Handlers that record what arrived and check the signature server-side."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, list[tuple[str, str]], bool, dict[str, str]]] = []

    async def record(self, request: web.Request) -> list[tuple[str, str]]:
        form: list[tuple[str, str]] = []
        if request.method == "POST":
            form = [(name, str(value)) for name, value in (await request.post()).items()]
        ok = validate(TOKEN, str(request.url), form, request.headers.get(HEADER, ""))
        self.seen.append((request.method, str(request.url), form, ok, dict(request.headers)))
        return form


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    async with WebhookClient(auth_token=TOKEN, timeout=5.0) as c:
        yield c


async def test_post_form_signed(serve: Serve, client: WebhookClient) -> None:
    rec = Recorder()

    async def handler(request: web.Request) -> web.Response:
        await rec.record(request)
        return web.Response(body=DOC, content_type="text/xml", charset="utf-8")

    app = web.Application()
    app.router.add_route("*", "/voice", handler)
    base = await serve(app)
    resp = await client.fetch(WebhookRequest(f"{base}/voice?x=1", "POST", PARAMS))

    assert resp.status == 200
    assert resp.body == DOC
    assert resp.content_type == "text/xml"
    assert resp.url == f"{base}/voice?x=1"
    assert resp.elapsed >= 0
    [(method, url, form, signed_ok, headers)] = rec.seen
    assert method == "POST"
    assert url == f"{base}/voice?x=1"
    assert form == list(PARAMS)  # names, values and order kept
    assert signed_ok
    assert headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert headers["User-Agent"] == "callxml/0.1"


async def test_get_params_in_query_and_signature_over_full_url(
    serve: Serve, client: WebhookClient
) -> None:
    rec = Recorder()

    async def handler(request: web.Request) -> web.Response:
        await rec.record(request)
        return web.Response(body=DOC, content_type="application/xml")

    app = web.Application()
    app.router.add_get("/voice", handler)
    base = await serve(app)
    resp = await client.fetch(WebhookRequest(f"{base}/voice?keep=me#frag", "GET", PARAMS))

    assert resp.content_type == "application/xml"
    [(method, url, form, signed_ok, _)] = rec.seen
    assert method == "GET"
    assert form == []
    assert signed_ok  # validated over the full URL with no params
    query = list(URL(url).query.items())
    assert query == [("keep", "me"), *PARAMS]
    assert resp.url == f"{base}/voice?keep=me"  # the document URL, without the call parameters


async def test_unsigned_by_other_token_is_detected(serve: Serve) -> None:
    rec = Recorder()

    async def handler(request: web.Request) -> web.Response:
        await rec.record(request)
        return web.Response(body=DOC, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/voice", handler)
    base = await serve(app)
    async with WebhookClient(auth_token="another-token") as other:
        await other.fetch(WebhookRequest(f"{base}/voice", "POST", PARAMS))
    assert rec.seen[0][3] is False


async def test_timeout(serve: Serve) -> None:
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(body=DOC)

    app = web.Application()
    app.router.add_post("/slow", handler)
    base = await serve(app)
    async with WebhookClient(auth_token=TOKEN, timeout=0.2) as c:
        with pytest.raises(WebhookError) as info:
            await c.fetch(WebhookRequest(f"{base}/slow", "POST", PARAMS))
    assert info.value.error_code == CONNECTION_FAILURE == 11205
    assert info.value.url == f"{base}/slow"
    assert "0.2 s" in str(info.value)


async def test_timeout_while_streaming_body(serve: Serve) -> None:
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/xml"})
        await resp.prepare(request)
        await resp.write(b"<Response>")
        await never.wait()
        return resp

    app = web.Application()
    app.router.add_post("/trickle", handler)
    base = await serve(app)
    async with WebhookClient(auth_token=TOKEN, timeout=0.2) as c:
        with pytest.raises(WebhookError) as info:
            await c.fetch(WebhookRequest(f"{base}/trickle", "POST", PARAMS))
    assert info.value.error_code == CONNECTION_FAILURE


async def test_connection_refused(client: WebhookClient) -> None:
    # A bound but non-listening socket: connecting is refused, and the port stays ours.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(WebhookError) as info:
            await client.fetch(WebhookRequest(f"http://127.0.0.1:{port}/voice", "POST", PARAMS))
    assert info.value.error_code == CONNECTION_FAILURE
    assert "connection failed" in str(info.value)


async def test_server_error_status(serve: Serve, client: WebhookClient) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    app = web.Application()
    app.router.add_post("/voice", handler)
    base = await serve(app)
    with pytest.raises(WebhookError) as info:
        await client.fetch(WebhookRequest(f"{base}/voice", "POST", PARAMS))
    assert info.value.error_code == RETRIEVAL_FAILURE == 11200
    assert "500" in str(info.value)


async def test_404_and_3xx_without_location(serve: Serve, client: WebhookClient) -> None:
    async def no_location(request: web.Request) -> web.Response:
        return web.Response(status=302)

    app = web.Application()
    app.router.add_post("/bare", no_location)
    base = await serve(app)
    for path, status in (("/missing", "404"), ("/bare", "302")):
        with pytest.raises(WebhookError) as info:
            await client.fetch(WebhookRequest(f"{base}{path}", "POST", PARAMS))
        assert info.value.error_code == RETRIEVAL_FAILURE
        assert status in str(info.value)


async def test_redirect_loop(serve: Serve, client: WebhookClient) -> None:
    hits = 0

    async def loop(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        raise web.HTTPFound("/loop")

    app = web.Application()
    app.router.add_route("*", "/loop", loop)
    base = await serve(app)
    with pytest.raises(WebhookError) as info:
        await client.fetch(WebhookRequest(f"{base}/loop", "POST", PARAMS))
    assert info.value.error_code == TOO_MANY_REDIRECTS == 11215
    assert hits == 6  # the request plus five followed redirects


async def test_five_redirects_allowed(serve: Serve, client: WebhookClient) -> None:
    async def hop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n < 5:
            raise web.HTTPFound(f"/hop/{n + 1}")
        return web.Response(body=DOC, content_type="text/xml")

    app = web.Application()
    app.router.add_route("*", "/hop/{n}", hop)
    base = await serve(app)
    resp = await client.fetch(WebhookRequest(f"{base}/hop/0", "POST", PARAMS))
    assert resp.url == f"{base}/hop/5"
    assert resp.body == DOC


async def test_303_refetches_with_get_and_307_keeps_post(
    serve: Serve, client: WebhookClient
) -> None:
    rec = Recorder()

    async def start(request: web.Request) -> web.Response:
        await rec.record(request)
        kind = request.match_info["kind"]
        raise (web.HTTPSeeOther if kind == "303" else web.HTTPTemporaryRedirect)("../doc")

    async def doc(request: web.Request) -> web.Response:
        await rec.record(request)
        return web.Response(body=DOC, content_type="text/xml")

    app = web.Application()
    app.router.add_route("*", "/start/{kind}", start)
    app.router.add_route("*", "/doc", doc)
    base = await serve(app)

    resp = await client.fetch(WebhookRequest(f"{base}/start/303", "POST", PARAMS))
    assert resp.url == f"{base}/doc"  # relative Location resolved (RFC 9110 §10.2.2)
    assert [(m, f, ok) for m, _, f, ok, _ in rec.seen] == [
        ("POST", list(PARAMS), True),
        ("GET", [], True),  # re-signed for the new URL
    ]

    rec.seen.clear()
    await client.fetch(WebhookRequest(f"{base}/start/307", "POST", PARAMS))
    assert [(m, f, ok) for m, _, f, ok, _ in rec.seen] == [
        ("POST", list(PARAMS), True),
        ("POST", list(PARAMS), True),
    ]


async def test_redirect_to_non_http_refused(serve: Serve, client: WebhookClient) -> None:
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound("file:///etc/passwd")

    app = web.Application()
    app.router.add_post("/voice", handler)
    base = await serve(app)
    with pytest.raises(WebhookError) as info:
        await client.fetch(WebhookRequest(f"{base}/voice", "POST", PARAMS))
    assert info.value.error_code == INVALID_URL


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversize_body(serve: Serve, client: WebhookClient, chunked: bool) -> None:
    big = b"<Response>" + b" " * (64 * 1024)

    async def handler(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=big, content_type="text/xml")
        resp = web.StreamResponse(headers={"Content-Type": "text/xml"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(big), 4096):
            await resp.write(big[i : i + 4096])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/big", handler)
    base = await serve(app)
    with pytest.raises(WebhookError) as info:
        await client.fetch(WebhookRequest(f"{base}/big", "POST", PARAMS))
    assert info.value.error_code == BODY_TOO_LARGE
    assert "65536" in str(info.value)


async def test_body_at_cap_accepted(serve: Serve, client: WebhookClient) -> None:
    body = b"x" * (64 * 1024)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/cap", handler)
    base = await serve(app)
    resp = await client.fetch(WebhookRequest(f"{base}/cap", "POST", PARAMS))
    assert resp.body == body


async def test_malformed_http_response(client: WebhookClient) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(WebhookError) as info:
            await client.fetch(WebhookRequest(f"http://127.0.0.1:{port}/", "GET", ()))
        assert info.value.error_code == RETRIEVAL_FAILURE
        assert "malformed" in str(info.value)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x.xml",
        "/relative/path.xml",
        "http:///no-host",
        "http://example.com/" + "a" * 9000,
    ],
)
async def test_only_absolute_http_urls(client: WebhookClient, url: str) -> None:
    with pytest.raises(WebhookError) as info:
        await client.fetch(WebhookRequest(url, "POST", PARAMS))
    assert info.value.error_code == INVALID_URL


def test_request_method_checked() -> None:
    with pytest.raises(LocalProtocolError):
        WebhookRequest("http://example.com/", "PUT", ())


async def test_borrowed_session_not_closed(serve: Serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=DOC, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/voice", handler)
    base = await serve(app)
    async with aiohttp.ClientSession() as session:
        async with WebhookClient(auth_token=TOKEN, session=session) as c:
            await c.fetch(WebhookRequest(f"{base}/voice", "POST", PARAMS))
        assert not session.closed


async def test_https_with_trusted_ca_and_untrusted_failure() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def handler(request: web.Request) -> web.Response:
        ok = validate(TOKEN, str(request.url), await request.post(), request.headers[HEADER])
        return web.Response(body=DOC if ok else b"bad", content_type="text/xml")

    app = web.Application()
    app.router.add_post("/voice", handler)
    runner, port = await serve_app(app, ssl_context=server_ctx, shutdown_timeout=0.1)
    try:
        url = f"https://127.0.0.1:{port}/voice"
        async with WebhookClient(auth_token=TOKEN, ssl_context=client_ctx) as c:
            resp = await c.fetch(WebhookRequest(url, "POST", PARAMS))
        assert resp.body == DOC
        async with WebhookClient(auth_token=TOKEN) as untrusting:
            with pytest.raises(WebhookError) as info:
                await untrusting.fetch(WebhookRequest(url, "POST", PARAMS))
        assert info.value.error_code == TLS_FAILURE
    finally:
        await runner.cleanup()
