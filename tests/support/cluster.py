"""Several ``callxml serve`` engines on one PostgreSQL store, behind a Kamailio started from the
shipped ``deploy/kamailio/kamailio.cfg``: the deployment of docs/deploy.md, on loopback.

Used by tests/deploy/test_cluster.py and bench/cluster.py (so nothing here imports pytest).
Each engine is a real subprocess on its own loopback address (127.0.0.2, 127.0.0.3...: every
127/8 address is local on Linux), with SIP over UDP, TCP and TLS, HTTP and media there, its own
``[cluster] node_id`` and a short lease, so that killing one with SIGKILL is what a crashed
machine looks like to the others and to the proxy.

Kamailio runs the shipped configuration file itself, unmodified: every deployment value is a
``#!trydef`` there, given here on the command line (``-A NAME=value``) — its addresses, ports,
the dispatcher list and TLS profile files, the control socket. The TLS profile file is the
shipped ``tls.cfg`` with only its certificate paths changed to the test's. So a change to the
routing logic is tested as shipped, not a copy of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from callxml.engine.devcert import DevCertificate
from support.engine import serve_process
from support.ports import free_media_port

__all__ = [
    "ACCOUNT_SID",
    "AUTH_TOKEN",
    "KAMAILIO",
    "SHIPPED",
    "Destination",
    "EngineProcess",
    "Proxy",
    "cpu_seconds",
    "free_media_port",
    "free_port_on",
    "shipped_kamailio",
    "start_engine",
]

ROOT = Path(__file__).resolve().parents[2]
#: The shipped proxy configuration (kamailio.cfg, tls.cfg, dispatcher.list).
SHIPPED = ROOT / "deploy" / "kamailio"
KAMAILIO = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin")
KAMCMD = shutil.which("kamcmd") or shutil.which("kamcmd", path="/usr/sbin")
#: The directory the shipped tls.cfg names for its certificates (replaced by the test's).
SHIPPED_TLS_DIR = "/etc/kamailio/callxml/"

ACCOUNT_SID = "AC" + "c" * 32
AUTH_TOKEN = "cluster-auth-token-0123456789"
#: Dispatcher sets of the shipped configuration.
PLAIN_SET, TLS_SET = 1, 2


def free_port_on(host: str, transport: str = "both") -> int:
    """A port free on ``host`` for TCP (and UDP too with ``"both"``, or UDP only)."""
    for _ in range(50):
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if transport != "both":
            return port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no port free on {host}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class EngineProcess:
    """One ``callxml serve`` subprocess: node ``node`` on ``host``."""

    node: str
    host: str
    directory: Path
    config: Path
    sip_port: int
    tls_port: int
    http_port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def calls_url(self, sid: str = "") -> str:
        base = f"{self.api_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls"
        return f"{base}/{sid}.json" if sid else f"{base}.json"

    def sip_uri(self, transport: str = "udp") -> str:
        """This engine in a dispatcher list."""
        if transport == "tls":
            return f"sip:{self.host}:{self.tls_port};transport=tls"
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{self.host}:{self.sip_port}{suffix}"

    def log(self) -> str:
        path = self.directory / "engine.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cpu(self) -> float:
        assert self.process is not None
        return cpu_seconds(self.process.pid)

    async def kill(self) -> None:
        """SIGKILL: the engine stops mid-call, as in a crash, leaving its lease to run out."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (the engine's graceful stop), SIGKILL after ``grace`` seconds."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            await self.kill()


def engine_toml(
    engine: EngineProcess,
    *,
    database_url: str,
    cert: DevCertificate,
    domains: str,
    lease: float,
    media_ports: tuple[int, int],
    extra: str = "",
) -> str:
    """The engine's ``callxml.toml``: SIP/TLS/HTTP/media on its own address, the shared store,
    its node id; ``domains`` (``[[domains]]`` tables of the test account) and ``extra`` are
    TOML text. Outgoing TLS (to the proxy, for a BYE) is verified against the test CA."""
    host, data = engine.host, engine.directory / "data"
    return f"""
[sip]
listen = ["udp:{host}:{engine.sip_port}", "tcp:{host}:{engine.sip_port}",
          "tls:{host}:{engine.tls_port}"]

[http]
host = "{host}"
port = {engine.http_port}

[tls]
cert = "{cert.cert}"
key = "{cert.key}"
ca_bundle = "{cert.ca}"

[store]
url = "{database_url}"
data_dir = "{data}"

[media]
address = "{host}"
port_min = {media_ports[0]}
port_max = {media_ports[1]}

[engine]
shutdown_grace = 2

[cluster]
node_id = "{engine.node}"
lease = {lease}

{extra}

[[accounts]]
sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"

{domains}
"""


async def start_engine(
    directory: Path,
    node: str,
    host: str,
    *,
    database_url: str,
    cert: DevCertificate,
    domains: str,
    lease: float = 3.0,
    media_ports: tuple[int, int] = (30000, 39999),
    extra: str = "",
    startup: float = 30.0,
) -> EngineProcess:
    """``callxml serve`` as node ``node`` on ``host``, returned once its ``/healthz`` answers."""
    directory.mkdir(parents=True, exist_ok=True)
    engine = EngineProcess(
        node=node,
        host=host,
        directory=directory,
        config=directory / "callxml.toml",
        sip_port=free_port_on(host),
        tls_port=free_port_on(host, "tcp"),
        http_port=free_port_on(host, "tcp"),
    )
    engine.config.write_text(
        engine_toml(
            engine,
            database_url=database_url,
            cert=cert,
            domains=domains,
            lease=lease,
            media_ports=media_ports,
            extra=extra,
        )
    )
    with (directory / "engine.log").open("wb") as log:
        engine.process = await serve_process(
            engine.config,
            cwd=directory,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        await _wait_healthy(engine, startup)
    except BaseException:
        await engine.kill()
        raise
    return engine


async def _wait_healthy(engine: EngineProcess, seconds: float) -> None:
    assert engine.process is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            if engine.process.returncode is not None:
                raise RuntimeError(
                    f"engine {engine.node} exited with {engine.process.returncode}:\n"
                    f"{engine.log()[-3000:]}"
                )
            try:
                async with http.get(f"{engine.api_url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"engine {engine.node} did not start:\n{engine.log()[-3000:]}")


@dataclass(frozen=True)
class Destination:
    """One engine as the proxy's dispatcher sees it (``kamcmd dispatcher.list``)."""

    set_id: int
    uri: str
    flags: str  # first letter: A active, I inactive, T trying, D disabled; P: probed

    @property
    def active(self) -> bool:
        return self.flags.startswith("A")


@dataclass
class Proxy:
    """Kamailio running the shipped configuration."""

    directory: Path
    address: str
    port: int  # UDP and TCP
    tls_port: int
    process: asyncio.subprocess.Process
    ctl: str = field(default="")

    def uri(self, transport: str = "udp") -> str:
        """The proxy as an outbound proxy URI."""
        if transport == "tls":
            return f"sip:{self.address}:{self.tls_port};transport=tls"
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{self.address}:{self.port}{suffix}"

    def log(self) -> str:
        return (self.directory / "kamailio.log").read_text(errors="replace")

    async def rpc(self, *command: str) -> str:
        """``kamcmd`` over the proxy's control socket; its output."""
        if KAMCMD is None:
            raise RuntimeError("kamcmd (Debian package kamailio) is not installed")
        run = await asyncio.create_subprocess_exec(
            KAMCMD, "-s", self.ctl, *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(run.communicate(), 10)
        if run.returncode != 0:
            raise RuntimeError(f"kamcmd {' '.join(command)}: {out.decode(errors='replace')}")
        return out.decode(errors="replace")

    async def dispatcher(self) -> list[Destination]:
        """Every engine of every set, with its state."""
        text = await self.rpc("dispatcher.list")
        found: list[Destination] = []
        set_id = 0
        uri = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("ID:") and uri == "":
                set_id = int(line.split(":", 1)[1])
            elif line.startswith("URI:"):
                uri = line.split(":", 1)[1].strip()
            elif line.startswith("FLAGS:") and uri:
                found.append(Destination(set_id, uri, line.split(":", 1)[1].strip()))
                uri = ""
        return found


def dispatcher_list(engines: Sequence[EngineProcess]) -> str:
    """The dispatcher list for ``engines``: set 1 over UDP, set 2 over TLS (the shipped
    dispatcher.list's layout)."""
    lines = [f"{PLAIN_SET} {e.sip_uri('udp')}" for e in engines]
    lines += [f"{TLS_SET} {e.sip_uri('tls')}" for e in engines]
    return "\n".join(lines) + "\n"


def tls_profiles(cert: DevCertificate, directory: Path) -> str:
    """The shipped tls.cfg with its certificate paths pointing at ``directory``, where the
    test's certificate (proxy and engines share it, issued for every loopback address used)
    and CA are copied under the shipped names."""
    shutil.copyfile(cert.cert, directory / "proxy-chain.pem")
    shutil.copyfile(cert.key, directory / "proxy-key.pem")
    shutil.copyfile(cert.ca, directory / "engines-ca.pem")
    text = (SHIPPED / "tls.cfg").read_text()
    if SHIPPED_TLS_DIR not in text:
        raise RuntimeError(f"the shipped tls.cfg no longer names {SHIPPED_TLS_DIR}")
    return text.replace(SHIPPED_TLS_DIR, f"{directory}/")


@contextlib.asynccontextmanager
async def shipped_kamailio(
    directory: Path,
    engines: Sequence[EngineProcess],
    cert: DevCertificate,
    *,
    address: str = "127.0.0.1",
    defines: Sequence[str] = (),
) -> AsyncIterator[Proxy]:
    """Kamailio on ``address`` (free ports) running deploy/kamailio/kamailio.cfg as shipped,
    with ``engines`` in its dispatcher list; ``defines`` are further ``-A`` values. Stopped on
    exit."""
    if KAMAILIO is None:
        raise RuntimeError("kamailio (Debian packages kamailio, kamailio-tls-modules) is missing")
    directory.mkdir(parents=True, exist_ok=True)
    port, tls_port = free_port_on(address), free_port_on(address, "tcp")
    (directory / "dispatcher.list").write_text(dispatcher_list(engines))
    (directory / "tls.cfg").write_text(tls_profiles(cert, directory))
    ctl = f"unix:{directory / 'kamailio_ctl'}"
    values = [
        f"PROXY_ADDR={address}",
        f"SIP_PORT={port}",
        f"TLS_PORT={tls_port}",
        f'DISPATCHER_LIST="{directory / "dispatcher.list"}"',
        f'TLS_CONFIG="{directory / "tls.cfg"}"',
        f'CTL_SOCKET="{ctl}"',
        "WORKERS=2",
        *defines,
    ]
    command = [KAMAILIO, "-f", str(SHIPPED / "kamailio.cfg")]
    for value in values:
        command += ["-A", value]
    command += [
        "-DD",  # stay in the foreground, as the process we wait on
        "-E",  # log to stderr (our log file)
        "-Y", str(directory),  # runtime directory (pid, FIFO) inside the test's folder
        "-P", str(directory / "kamailio.pid"),
        "-m", "64",
        "-M", "8",
    ]  # fmt: skip
    with (directory / "kamailio.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    proxy = Proxy(directory, address, port, tls_port, process, ctl)
    try:
        await _wait_listening(proxy)
        yield proxy
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


async def _wait_listening(proxy: Proxy, seconds: float = 15.0) -> None:
    """Both stream listeners accept and the control socket answers (read from /proc and kamcmd:
    no SIP sent)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if proxy.process.returncode is not None:
            raise RuntimeError(
                f"kamailio exited with {proxy.process.returncode}:\n{proxy.log()[-3000:]}"
            )
        if {proxy.port, proxy.tls_port} <= _tcp_listening():
            with contextlib.suppress(RuntimeError, TimeoutError):
                await proxy.rpc("core.version")
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"kamailio did not start:\n{proxy.log()[-3000:]}")


def _tcp_listening() -> set[int]:
    table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return {int(f.split()[1].split(":")[1], 16) for f in table if f.split()[3] == "0A"}


#: ``<host>:<port>`` of a destination URI, for matching an engine in the dispatcher list.
_HOSTPORT = re.compile(r"^sips?:([^:;]+):(\d+)")


def engine_of(destination: Destination, engines: Sequence[EngineProcess]) -> EngineProcess:
    """The engine a dispatcher destination is."""
    match = _HOSTPORT.match(destination.uri)
    if match is None:
        raise ValueError(f"not an engine address: {destination.uri}")
    host, port = match.group(1), int(match.group(2))
    for engine in engines:
        if engine.host == host and port in (engine.sip_port, engine.tls_port):
            return engine
    raise LookupError(f"no engine at {destination.uri}")
