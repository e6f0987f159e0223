"""The simulator against a real local aiohttp server (loopback, free port chosen at run time)."""

from __future__ import annotations

import pytest
from aiohttp import web

from callxml.signature import HEADER, validate
from callxml.simulator import simulate
from support.ports import free_port
from support.web import Serve

TOKEN = "test-token"


class App:
    """A small voice app: an IVR with a relative action, a 302, a broken page and a fallback."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bool]] = []
        self.base = ""

    async def _record(self, request: web.Request) -> dict[str, str]:
        form = dict(await request.post()) if request.method == "POST" else {}
        params = {k: str(v) for k, v in form.items()}
        url = self.base + request.path_qs
        signed = validate(TOKEN, url, params, request.headers.get(HEADER, ""))
        self.seen.append((request.method, request.path, params or dict(request.query), signed))
        return params or dict(request.query)

    async def voice(self, request: web.Request) -> web.Response:
        await self._record(request)
        xml = (
            "<Response><Gather action='menu' numDigits='1'><Say>Press 1</Say></Gather>"
            "<Redirect method='GET'>/moved</Redirect></Response>"
        )
        return web.Response(text=xml, content_type="text/xml")

    async def menu(self, request: web.Request) -> web.Response:
        params = await self._record(request)
        digit = params.get("Digits", "")
        if digit == "1":
            xml = (
                "<Response><Dial action='dialed'><Sip>sips:sales@example.com</Sip></Dial>"
                "</Response>"
            )
        elif digit == "9":
            return web.Response(status=500, text="boom")
        else:
            xml = "<Response><Say>not valid<Response>"  # broken markup
        return web.Response(text=xml, content_type="text/xml")

    async def dialed(self, request: web.Request) -> web.Response:
        params = await self._record(request)
        text = f"Dial was {params['DialCallStatus']}"
        return web.Response(text=f"<Response><Say>{text}</Say></Response>", content_type="text/xml")

    async def moved(self, request: web.Request) -> web.Response:
        await self._record(request)
        raise web.HTTPFound("/ivr/final")

    async def final(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(
            text="<Response><Say>Final</Say><Redirect>next</Redirect></Response>",
            content_type="text/xml",
        )

    async def ivr_next(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(text="<Response><Hangup/></Response>", content_type="text/xml")

    async def fallback(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(text="<Response><Say>Sorry</Say></Response>", content_type="text/xml")


@pytest.fixture
async def app(serve: Serve) -> App:
    state = App()
    application = web.Application()
    application.router.add_route("*", "/app/voice", state.voice)
    application.router.add_route("*", "/app/menu", state.menu)
    application.router.add_route("*", "/app/dialed", state.dialed)
    application.router.add_route("*", "/moved", state.moved)
    application.router.add_route("*", "/ivr/final", state.final)
    application.router.add_route("*", "/ivr/next", state.ivr_next)
    application.router.add_route("*", "/fallback", state.fallback)
    state.base = await serve(application)
    return state


async def test_ivr_over_http_with_signed_requests(app: App) -> None:
    result = await simulate(f"{app.base}/app/voice", digits=["1"], auth_token=TOKEN)
    assert result.ok, result.transcript
    assert result.said == ["Press 1", "Dial was completed"]
    assert [(m, p) for m, p, _, _ in app.seen] == [
        ("POST", "/app/voice"),
        ("POST", "/app/menu"),
        ("POST", "/app/dialed"),
    ]
    assert all(signed for *_, signed in app.seen)  # X-Twilio-Signature checks out
    voice_params = app.seen[0][2]
    assert voice_params["CallSid"].startswith("CA") and len(voice_params["CallSid"]) == 34
    assert voice_params["ApiVersion"] == "2010-04-01"
    assert app.seen[1][2]["Digits"] == "1"
    (dial,) = result.dials
    assert (dial.transport, dial.port, dial.srtp_suite) == ("tls", 5061, "AES_CM_128_HMAC_SHA1_80")


async def test_get_redirect_and_http_302_final_url_for_relative_resolution(app: App) -> None:
    result = await simulate(f"{app.base}/app/voice", auth_token=TOKEN)  # no digits: fall through
    assert result.ok, result.transcript
    methods_paths = [(m, p) for m, p, _, _ in app.seen]
    assert ("GET", "/moved") in methods_paths
    # "next" resolved against the final URL after the 302 (/ivr/final), not /moved.
    assert methods_paths[-1] == ("POST", "/ivr/next")
    assert result.said == ["Press 1", "Final"]
    get_params = app.seen[1][2]
    assert get_params["CallSid"] == app.seen[0][2]["CallSid"]


async def test_http_500_uses_fallback_with_error_code(app: App) -> None:
    result = await simulate(
        f"{app.base}/app/voice",
        digits=["9"],
        auth_token=TOKEN,
        fallback_url=f"{app.base}/fallback",
    )
    assert result.ok
    assert result.said == ["Press 1", "Sorry"]
    fb = app.seen[-1]
    assert fb[1] == "/fallback"
    assert fb[2]["ErrorCode"] == "11200"
    assert fb[2]["ErrorUrl"] == f"{app.base}/app/menu"
    assert fb[2]["Digits"] == "9"


async def test_invalid_markup_over_http_ends_call_with_12100(app: App) -> None:
    result = await simulate(f"{app.base}/app/voice", digits=["5"], auth_token=TOKEN)
    assert not result.ok
    assert "not valid" in (result.error or "")
    assert any("[12100]" in line for line in result.log)


async def test_connection_refused_is_a_clean_error() -> None:
    port = free_port("tcp")
    result = await simulate(f"http://127.0.0.1:{port}/voice")
    assert not result.ok and result.status == "failed"
    assert result.requests[0].response is None
