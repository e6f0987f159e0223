"""Helpers for engine tests: free loopback ports and generated configuration files."""

from __future__ import annotations

import socket
from pathlib import Path

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "test-auth-token-0123456789"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
            with socket.socket(socket.AF_INET, other) as second:
                try:
                    second.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def write_config(
    tmp_path: Path,
    *,
    domains: str = "",
    http_port: int | None = None,
    sip_port: int | None = None,
    tls_port: int | None = None,
    extra: str = "",
) -> tuple[Path, dict[str, int]]:
    ports = {
        "http": http_port or free_port(),
        "sip": sip_port or free_port(),
        "tls": tls_port or free_port(),
    }
    media = free_port(socket.SOCK_DGRAM) & ~1
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
    del media
    path = tmp_path / "callxml.toml"
    path.write_text(text)
    return path, ports


# -- an engine in this process, and the web app it calls -------------------------------------

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import shutil  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from typing import Any  # noqa: E402

from aiohttp import web  # noqa: E402

from callxml.engine.config import parse_config  # noqa: E402
from callxml.engine.server import Engine  # noqa: E402

SIPP = shutil.which("sipp")
SCENARIOS = Path(__file__).resolve().parent / "sipp"


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
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

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
) -> Any:
    sip = free_port()
    tls = free_port()
    listen = [f"{t}:127.0.0.1:{tls if t == 'tls' else sip}" for t in transports]
    data: dict[str, Any] = {
        "sip": {"listen": listen},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "store": {"path": str(tmp_path / "callxml.db"), "data_dir": str(tmp_path / "data")},
        "media": {"address": "127.0.0.1", "port_min": 30000, "port_max": 39999},
        "engine": {"shutdown_grace": 2},
        "accounts": [{"sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}],
        "domains": [{"account": ACCOUNT_SID, **d} for d in domains],
    }
    for key, value in (extra or {}).items():
        data.setdefault(key, {}).update(value)
    return parse_config(data)


@contextlib.asynccontextmanager
async def running_engine(config: Any) -> AsyncIterator[Engine]:
    engine = Engine(config, echo=lambda line: None)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def sip_port(engine: Engine, transport: str) -> int:
    return next(lis.port for lis in engine.config.listeners if lis.transport == transport)


async def sipp_uac(
    workdir: Path,
    scenario: str,
    transport: str,
    target: str,
    *,
    service: str = "ivr",
    keys: dict[str, str] | None = None,
    timeout: float = 20,
) -> tuple[int, str]:
    """Run a SIPp caller scenario from tests/engine/sipp once; (exit status, output)."""
    if SIPP is None:
        import pytest

        pytest.fail("sipp (Debian package sip-tester) is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        SIPP,
        "-sf", str(SCENARIOS / f"{scenario}.xml"),
        "-i", "127.0.0.1",
        "-p", str(free_port(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)),
        "-t", "u1" if transport == "udp" else "t1",
        "-m", "1",
        "-s", service,
        "-nostdin",
        "-timeout", f"{int(timeout)}s",
        "-timeout_error",
        "-trace_err", "-error_file", str(workdir / "errors.log"),
        target,
    ]  # fmt: skip
    for name, value in (keys or {}).items():
        args += ["-key", name, value]
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout + 5)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
    errors = (workdir / "errors.log").read_text() if (workdir / "errors.log").exists() else ""
    return process.returncode or 0, out.decode(errors="replace")[-3000:] + errors


def _bound(port: int, transport: str) -> bool:
    table = Path("/proc/net/udp" if transport == "udp" else "/proc/net/tcp")
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return True
    for line in lines:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and (transport == "udp" or fields[3] == "0A"):
            return True
    return False


async def sipp_uas(
    workdir: Path, scenario: str, transport: str = "udp", *, timeout: float = 20
) -> tuple[asyncio.subprocess.Process, int]:
    """Start a SIPp callee scenario from tests/engine/sipp; returns (process, port) once bound."""
    if SIPP is None:
        import pytest

        pytest.fail("sipp (Debian package sip-tester) is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
    process = await asyncio.create_subprocess_exec(
        SIPP,
        "-sf", str(SCENARIOS / f"{scenario}.xml"),
        "-i", "127.0.0.1",
        "-p", str(port),
        "-mp", str(free_port(socket.SOCK_DGRAM)),
        "-t", "u1" if transport == "udp" else "t1",
        "-m", "1",
        "-nostdin",
        "-timeout", f"{int(timeout)}s",
        "-timeout_error",
        "-trace_err", "-error_file", str(workdir / "errors.log"),
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    for _ in range(250):
        if _bound(port, transport) or process.returncode is not None:
            break
        await asyncio.sleep(0.02)
    return process, port


async def finish(process: asyncio.subprocess.Process, timeout: float = 25) -> tuple[int, str]:
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace")[-3000:]
