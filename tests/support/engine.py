"""An engine for tests: generated configuration (file or parsed), the engine running in this
process, and the real local webhook app it calls.

Engine tests start real engines on free loopback ports and drive them over real SIP and HTTP;
the configuration every one of them needs (ports free for both UDP and TCP, the store in the
test's directory, one account, domains pointing at a local app) is written here once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from callxml.engine.api import OutboundCall
from callxml.engine.config import parse_config
from callxml.engine.server import Engine
from support.ports import free_port
from support.waiting import until
from support.web import serve_app

#: This checkout's package directory, put first on a ``callxml serve`` subprocess's path.
SRC = Path(__file__).resolve().parents[2] / "src"

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "test-auth-token-0123456789"
#: HTTP Basic credentials of the test account, for the REST API.
API_AUTH = {
    "Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
}


def write_config(
    tmp_path: Path,
    *,
    domains: str = "",
    http_port: int | None = None,
    sip_port: int | None = None,
    tls_port: int | None = None,
    extra: str = "",
) -> tuple[Path, dict[str, int]]:
    """Write ``callxml.toml`` (for ``callxml serve`` in a subprocess) into ``tmp_path``: SIP on
    UDP/TCP and TLS, HTTP, the store and one account; ``domains`` and ``extra`` are TOML text.
    Returns the file and its ports (``http``, ``sip``, ``tls``)."""
    ports = {
        "http": http_port or free_port("both"),
        "sip": sip_port or free_port("both"),
        "tls": tls_port or free_port("both"),
    }
    text = f"""
[sip]
listen = ["udp:127.0.0.1:{ports["sip"]}", "tcp:127.0.0.1:{ports["sip"]}",
          "tls:127.0.0.1:{ports["tls"]}"]

[http]
host = "127.0.0.1"
port = {ports["http"]}

[store]
path = "{tmp_path / "callxml.db"}"
data_dir = "{tmp_path / "data"}"

[media]
address = "127.0.0.1"
port_min = 30000
port_max = 39999

[engine]
shutdown_grace = 2

[[accounts]]
sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
{extra}
{domains}
"""
    path = tmp_path / "callxml.toml"
    path.write_text(text)
    return path, ports


class WebApp:
    """A real local aiohttp app: ``routes`` maps a path to a function of the form parameters
    returning the XML document; every request is kept in ``requests``."""

    def __init__(self, routes: dict[str, Callable[[dict[str, str]], str]]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.arrived = asyncio.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append((request.path, form))
        self.arrived.set()
        route = self.routes.get(request.path)
        if route is None:
            return web.Response(status=404)
        return web.Response(text=route(form), content_type="text/xml")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await serve_app(app, access_log=None)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


def engine_config(
    tmp_path: Path,
    domains: list[dict[str, Any]],
    *,
    transports: tuple[str, ...] = ("udp", "tcp"),
    extra: dict[str, Any] | None = None,
    registrations: list[dict[str, Any]] | None = None,
) -> Any:
    """A parsed configuration for an engine in this process (see :func:`running_engine`):
    SIP on ``transports``, HTTP, the store in ``tmp_path``, one account owning ``domains``;
    ``extra`` sections are merged in; ``registrations`` are ``[[registrations]]`` entries."""
    sip = free_port("both")
    tls = free_port("both")
    listen = [f"{t}:127.0.0.1:{tls if t == 'tls' else sip}" for t in transports]
    data: dict[str, Any] = {
        "sip": {"listen": listen},
        "http": {"host": "127.0.0.1", "port": free_port("both")},
        "store": {"path": str(tmp_path / "callxml.db"), "data_dir": str(tmp_path / "data")},
        "media": {"address": "127.0.0.1", "port_min": 30000, "port_max": 39999},
        "engine": {"shutdown_grace": 2},
        "accounts": [{"sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}],
        "domains": [{"account": ACCOUNT_SID, **d} for d in domains],
    }
    if registrations is not None:
        data["registrations"] = registrations
    for key, value in (extra or {}).items():
        data.setdefault(key, {}).update(value)
    return parse_config(data)


@contextlib.asynccontextmanager
async def running_engine(config: Any) -> AsyncIterator[Engine]:
    """The engine started on ``config`` (quiet), stopped on exit."""
    engine = Engine(config, echo=lambda line: None)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def sip_port(engine: Engine, transport: str) -> int:
    """The port the engine listens on for SIP over ``transport``."""
    return next(lis.port for lis in engine.config.listeners if lis.transport == transport)


async def serve_process(config: Path, **options: Any) -> asyncio.subprocess.Process:
    """``callxml serve --config <config>`` in a subprocess running this Python (and so this
    checkout, by an absolute ``PYTHONPATH``: a relative one would not resolve from another
    ``cwd``, and the venv's own install, perhaps another checkout's, would run); ``options`` go
    to :func:`asyncio.create_subprocess_exec` (cwd, stdout...)."""
    options["env"] = {**options.get("env", os.environ), "PYTHONPATH": str(SRC)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callxml.cli", "serve", "--config", str(config), **options
    )


async def wait_status(engine: Engine, sid: str, statuses: set[str]) -> Any:
    """The call record once its status is one of ``statuses`` (bounded wait)."""
    store = engine.store
    assert store is not None

    def reached() -> Any:
        record = store.get_call(sid)
        return record if record is not None and record.status in statuses else None

    return await until(reached, what=f"call {sid} reaching {statuses}")


@contextlib.asynccontextmanager
async def web_app(routes: dict[str, Callable[[dict[str, str]], str]]) -> AsyncIterator[WebApp]:
    """A started :class:`WebApp` serving ``routes``, stopped on exit."""
    app = WebApp(routes)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def twilio_client(engine: Engine) -> Any:
    """The official ``twilio`` SDK's client, talking to ``engine`` instead of api.twilio.com
    (nothing changed but the base URL). The SDK is synchronous: call it in a thread."""
    from twilio.rest import Client

    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = f"http://127.0.0.1:{engine.http_port}"
    return client


async def originate_twiml(
    engine: Engine, to: str, twiml: str, *, from_: str = "sip:alice@example.com"
) -> str:
    """Place a REST call to ``to`` running ``twiml`` and wait (bounded) until it is over;
    returns its sid."""
    record = await engine.originate(
        engine.config.accounts[0],
        OutboundCall(to=to, from_=from_, url=None, twiml=twiml, timeout=10),
    )
    live = engine.live(record.sid)
    assert live is not None
    await asyncio.wait_for(live.ended.wait(), 30)
    return record.sid


class FlowApp:
    """A real local web app for call flows that play audio: ``routes`` maps a path to its
    document (every other path hangs up); ``/tone.wav`` serves ``tone`` (a WAV for ``<Play>``);
    every request is kept in ``requests``. Start it with :func:`flow_app`."""

    def __init__(self, tone: Path) -> None:
        self.tone = tone
        self.routes: dict[str, str] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.base = ""

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def form(self, path: str) -> dict[str, str]:
        """The form of the first request to ``path``."""
        return next(form for p, form in self.requests if p == path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/tone.wav":
            return web.FileResponse(self.tone)
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append((request.path, form))
        document = self.routes.get(request.path, "<Response><Hangup/></Response>")
        return web.Response(text=document, content_type="text/xml")


@contextlib.asynccontextmanager
async def flow_app(tone: Path) -> AsyncIterator[FlowApp]:
    """A started :class:`FlowApp` playing ``tone``, stopped on exit."""
    app = FlowApp(tone)
    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", app._handle)
    runner, port = await serve_app(application, access_log=None)
    app.base = f"http://127.0.0.1:{port}"
    try:
        yield app
    finally:
        await runner.cleanup()
