"""A real baresip softphone on loopback, for end-to-end tests of SIP, TLS, RTP and SRTP.

Owns writing a throw-away baresip configuration directory (config, accounts, TLS certificate),
choosing free loopback ports, starting ``baresip -f <dir>``, waiting until it listens, driving it
through its ``ctrl_tcp`` control socket (netstring-framed JSON: commands such as ``dial``,
``accept``, ``hangup``; events such as ``CALL_ESTABLISHED``), and stopping it. Every wait is
bounded.

Tested with baresip 1.0.0 (Debian bookworm). Facts about that version this module relies on:

* the SIP listener named by ``sip_listen host:P`` serves UDP and TCP on ``P`` and TLS on ``P+1``;
  TLS needs ``sip_certificate`` (one PEM file holding the certificate chain and the key);
* ``net_interface 127.0.0.1`` keeps Contact and SDP ``c=`` on loopback;
* the ``aufile`` module is a *source* only (8 kHz mono WAV when ``ausrc_srate 8000``); what baresip
  receives is captured by the ``sndfile`` audio filter, which writes ``dump-*-dec.wav`` (received)
  and ``dump-*-enc.wav`` (sent) into ``snd_path``; the player itself is a sink that goes nowhere
  (``aubridge``);
* account parameters ``mediaenc=srtp-mand`` (SDES SRTP required, RTP/SAVP) and
  ``answermode=auto``.

Usage (from a test; the ``baresip`` fixture of :mod:`support.fixtures`, registered for every
test, does start/stop for you)::

    async def test_something(baresip: BaresipFactory, dev_cert: DevCertificate) -> None:
        peer = await baresip(BaresipOptions(mediaenc="srtp-mand", play=wav_path, cert=dev_cert))
        uri = peer.uri(secure=True)         # sip:peer@127.0.0.1:<tls port>;secure=true
        ... place the call ...
        event = await peer.wait_event("CALL_ESTABLISHED")
        pcm = peer.received_audio()         # 8 kHz PCM16 baresip decoded from the call

Import the types from here (``from support.baresip import BaresipFactory, BaresipOptions``);
outside a fixture, ``async with baresip_peers(directory) as make`` starts and stops peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from callxml.engine.devcert import DevCertificate, ensure_dev_certificate
from callxml.media.tone import goertzel_power, sine
from callxml.media.wav import read_audio, write_wav
from support.ports import free_port, is_free
from support.process import stop_process

BARESIP = shutil.which("baresip")
MODULE_PATH = Path("/usr/lib/baresip/modules")
#: No single wait (start, command, event, stop) may take longer than this.
DEFAULT_TIMEOUT = 10.0
MAX_EVENTS = 1000
MAX_NETSTRING = 1 << 20
SILENCE_SECONDS = 60

#: In CI a missing baresip is a failure, never a skip: the install step must have worked.
_MISSING = BARESIP is None or not MODULE_PATH.is_dir()
_IN_CI = bool(os.environ.get("CI"))

needs_baresip = pytest.mark.skipif(
    _MISSING and not _IN_CI,
    reason="baresip is not installed (Debian packages baresip, baresip-core; `make test`)",
)


@dataclass(frozen=True)
class BaresipOptions:
    """How to configure one baresip instance.

    ``mediaenc``: ``"srtp-mand"`` (SDES SRTP required), ``"srtp"`` (SRTP offered, best effort),
    ``"srtp-mandf"``, or ``None`` for plain RTP/AVP. ``answermode``: ``"auto"`` answers every
    call, ``"manual"`` waits for :meth:`BaresipPeer.accept`. ``play`` is an 8 kHz mono 16-bit WAV
    sent to the far end once (``None``: a minute of silence, so RTP still flows). ``transport``
    is put on the account's URI (outgoing registrations/calls default to it). ``tls`` makes
    baresip listen on TLS too, with ``cert`` (a :class:`DevCertificate`; made in the config
    directory when None).
    ``extra_config`` lines are appended to the ``config`` file verbatim.

    Registration: the account's address of record is ``sip:<user>@<domain>``; ``regint`` > 0
    makes baresip register (every ``regint`` seconds) through the ``registrar`` URI (its
    outbound proxy, e.g. ``sip:127.0.0.1:5061;transport=tls``) with ``password``.
    """

    user: str = "peer"
    mediaenc: str | None = "srtp-mand"
    answermode: str = "auto"
    play: Path | None = None
    record: bool = True
    transport: str | None = None
    tls: bool = True
    cert: DevCertificate | None = None
    ptime: int = 20
    extra_config: tuple[str, ...] = ()
    extra_account_params: tuple[str, ...] = ()
    domain: str = "127.0.0.1"
    regint: int = 0
    registrar: str | None = None
    password: str | None = None


def _free_port_pair() -> int:
    """A port P with P and P+1 free for both UDP and TCP on 127.0.0.1 (best effort)."""
    for _ in range(200):
        port = free_port("tcp")
        if port >= 65534:
            continue
        if all(is_free(p, kind) for p in (port, port + 1) for kind in ("tcp", "udp")):
            return port
    raise RuntimeError("no free port pair on 127.0.0.1")


def _free_rtp_range(size: int = 40) -> tuple[int, int]:
    """A run of ``size`` UDP ports that are free right now."""
    for _ in range(100):
        start = free_port("tcp")
        start -= start % 2
        if start + size >= 65535 or start < 1024:
            continue
        if all(is_free(p, "udp") for p in range(start, start + size)):
            return start, start + size - 1
    raise RuntimeError("no free RTP port range on 127.0.0.1")


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


@dataclass
class BaresipPeer:
    """One running (or not yet started) baresip. Create with :meth:`start`."""

    directory: Path
    options: BaresipOptions
    sip_port: int = 0
    ctrl_port: int = 0
    rtp_ports: tuple[int, int] = (0, 0)
    cert: DevCertificate | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    _process: asyncio.subprocess.Process | None = None
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _pump: asyncio.Task[None] | None = None
    _responses: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _event_added: asyncio.Event = field(default_factory=asyncio.Event)
    _tokens: int = 0

    # -- addresses -----------------------------------------------------------------------------

    @property
    def tls_port(self) -> int:
        """baresip serves TLS on the port above its UDP/TCP port."""
        return self.sip_port + 1

    @property
    def ca_file(self) -> Path:
        """The CA a client must trust to verify baresip's TLS certificate."""
        if self.cert is None:
            raise RuntimeError("this baresip has no TLS certificate")
        return self.cert.ca

    def uri(self, *, secure: bool = False, transport: str | None = None, user: str = "") -> str:
        """A SIP URI that reaches this baresip: ``;secure=true`` → its TLS port."""
        who = user or self.options.user
        if secure:
            return f"sip:{who}@127.0.0.1:{self.tls_port};secure=true"
        if transport == "tls":
            return f"sip:{who}@127.0.0.1:{self.tls_port};transport=tls"
        suffix = f";transport={transport}" if transport else ""
        return f"sip:{who}@127.0.0.1:{self.sip_port}{suffix}"

    @property
    def log_path(self) -> Path:
        return self.directory / "baresip.log"

    def log(self) -> str:
        """Everything baresip printed so far (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def record_dir(self) -> Path:
        return self.directory / "recordings"

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    async def start(
        cls, directory: Path, options: BaresipOptions | None = None, *, timeout: float = 10.0
    ) -> BaresipPeer:
        """Write the configuration into ``directory``, start baresip, wait until it listens."""
        if BARESIP is None:
            raise RuntimeError("baresip is not installed")
        options = options or BaresipOptions()
        directory.mkdir(parents=True, exist_ok=True)
        peer = cls(directory, options)
        peer._write_config()
        log = peer.log_path.open("wb")
        try:
            peer._process = await asyncio.create_subprocess_exec(
                BARESIP,
                "-f",
                str(directory),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(directory),
            )
        finally:
            log.close()
        try:
            await asyncio.wait_for(peer._connect(), timeout)
        except BaseException:
            await peer.stop()
            raise
        return peer

    def _write_config(self) -> None:
        o = self.options
        self.sip_port = _free_port_pair()
        self.ctrl_port = free_port("tcp")
        self.rtp_ports = _free_rtp_range()
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "net_interface 127.0.0.1",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtp_timeout 0",
            "call_local_timeout 30",
            "call_max_calls 4",
            "ausrc_srate 8000",
            "auplay_srate 8000",
            "ausrc_channels 1",
            "auplay_channels 1",
            "audio_player aubridge,sink",
            "audio_alert aubridge,alert",
            f"module_path {MODULE_PATH}",
            "module g711.so",
            "module aufile.so",
            "module aubridge.so",
            "module srtp.so",
            "module ctrl_tcp.so",
            "module_tmp account.so",
            "module_app menu.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
        ]
        play = o.play
        if play is None:  # an aubridge source with no player sends no RTP at all: send silence
            play = self.directory / "silence.wav"
            write_wav(play, bytes(2 * 8000 * SILENCE_SECONDS))
        lines.append(f"audio_source aufile,{play}")
        if o.record:
            self.record_dir.mkdir(exist_ok=True)
            lines += ["module sndfile.so", f"snd_path {self.record_dir}"]
        if o.tls:
            self.cert = o.cert or ensure_dev_certificate(self.directory / "pki")
            bundle = self.directory / "tls.pem"
            bundle.write_bytes(self.cert.cert.read_bytes() + self.cert.key.read_bytes())
            bundle.chmod(0o600)
            lines += [f"sip_certificate {bundle}", f"sip_cafile {self.cert.ca}"]
        lines += list(o.extra_config)
        (self.directory / "config").write_text("\n".join(lines) + "\n")
        params = [f";regint={o.regint}", f";answermode={o.answermode}", f";ptime={o.ptime}"]
        if o.registrar is not None:
            params.append(f';outbound="{o.registrar}"')
        if o.password is not None:
            params.append(f";auth_pass={o.password}")
        params.append(";audio_codecs=pcmu,pcma")
        if o.mediaenc:
            params.append(f";mediaenc={o.mediaenc}")
        params += [f";{p}" for p in o.extra_account_params]
        transport = f";transport={o.transport}" if o.transport else ""
        account = f"<sip:{o.user}@{o.domain}{transport}>" + "".join(params)
        (self.directory / "accounts").write_text(account + "\n")
        (self.directory / "contacts").write_text("")

    async def _connect(self) -> None:
        """Retry the control socket until baresip accepts (it opens it after SIP is up)."""
        while True:
            process = self._process
            if process is None or process.returncode is not None:
                raise RuntimeError(f"baresip exited during start-up:\n{self.log()}")
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    "127.0.0.1", self.ctrl_port
                )
                break
            except OSError:
                await asyncio.sleep(0.05)
        self._pump = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        reader = self._reader
        assert reader is not None
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, ValueError):
            while True:
                length = int((await reader.readuntil(b":"))[:-1])
                if not 0 <= length <= MAX_NETSTRING:
                    raise ValueError("netstring too long")
                payload = await reader.readexactly(length + 1)
                message = json.loads(payload[:-1])
                if message.get("response"):
                    future = self._responses.pop(str(message.get("token")), None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("event") and len(self.events) < MAX_EVENTS:
                    self.events.append(message)
                    self._event_added.set()
        for future in self._responses.values():
            if not future.done():
                future.set_exception(ConnectionError("baresip control connection closed"))

    async def stop(self, timeout: float = 5.0) -> int | None:
        """Quit baresip (terminate, then kill); returns its exit status. Idempotent."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
            self._writer = None
        process = self._process
        if process is None:
            return None
        await stop_process(process, grace=timeout)
        return process.returncode

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    # -- control -------------------------------------------------------------------------------

    async def command(
        self, name: str, params: str = "", *, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """Run a menu command (``dial``, ``accept``, ``hangup``...) and return its response."""
        writer = self._writer
        if writer is None:
            raise RuntimeError("baresip is not running")
        self._tokens += 1
        token = str(self._tokens)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._responses[token] = future
        body = json.dumps({"command": name, "params": params, "token": token}).encode()
        writer.write(_netstring(body))
        await writer.drain()
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._responses.pop(token, None)

    async def dial(self, uri: str) -> dict[str, Any]:
        """Place a call (UAC) to ``uri``."""
        return await self.command("dial", uri)

    async def accept(self) -> dict[str, Any]:
        """Answer the incoming call (``answermode=manual``)."""
        return await self.command("accept")

    async def hangup(self) -> dict[str, Any]:
        return await self.command("hangup")

    async def wait_event(
        self,
        kind: str | tuple[str, ...],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        start: int = 0,
    ) -> dict[str, Any]:
        """The first event of type ``kind`` (e.g. ``CALL_ESTABLISHED``, ``CALL_CLOSED``) from
        index ``start`` in :attr:`events`; waits for it at most ``timeout`` seconds."""
        kinds = (kind,) if isinstance(kind, str) else kind

        async def find() -> dict[str, Any]:
            while True:
                for event in self.events[start:]:
                    if event.get("type") in kinds:
                        return event
                if not self.running and self._pump is None:
                    raise RuntimeError("baresip is not running")
                self._event_added.clear()
                await self._event_added.wait()

        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            seen = [e.get("type") for e in self.events]
            raise AssertionError(
                f"baresip sent no {kinds} within {timeout} s; events {seen}\n{self.log()[-4000:]}"
            ) from None

    # -- what baresip heard -------------------------------------------------------------------

    def recordings(self, kind: str = "dec") -> list[Path]:
        """The ``sndfile`` dumps: ``dec`` = audio baresip received, ``enc`` = audio it sent."""
        return sorted(self.record_dir.glob(f"dump-*-{kind}.wav"))

    def received_audio(self) -> bytes:
        """8 kHz mono PCM16 that baresip decoded from the network in its latest call."""
        files = self.recordings("dec")
        if not files:
            raise AssertionError(f"baresip recorded nothing\n{self.log()[-4000:]}")
        return read_audio(files[-1])


BaresipFactory = Callable[..., Awaitable[BaresipPeer]]


@contextlib.asynccontextmanager
async def baresip_peers(directory: Path) -> AsyncIterator[BaresipFactory]:
    """Start baresip instances under ``directory``: ``peer = await make(BaresipOptions(...))``;
    all are stopped (killed if need be) on exit. A missing baresip fails the test in CI (the
    install step must have worked) and skips it elsewhere."""
    if _MISSING:
        message = "baresip is not installed (Debian packages baresip, baresip-core)"
        if _IN_CI:
            pytest.fail(message)
        pytest.skip(reason=message)
    peers: list[BaresipPeer] = []

    async def make(options: BaresipOptions | None = None, *, name: str = "") -> BaresipPeer:
        peer = await BaresipPeer.start(directory / f"baresip-{name or len(peers)}", options)
        peers.append(peer)
        return peer

    try:
        yield make
    finally:
        for peer in peers:
            await peer.stop()


#: The tone a test's baresip plays (``play=`` the :func:`tone_wav` of it), to find in our audio.
THEIR_TONE = 440


def tone_wav(
    path: Path, frequency: float, duration_ms: int = 10_000, *, amplitude: float = 0.4
) -> Path:
    """Write a sine tone as an 8 kHz mono WAV for baresip to play (``play=``); returns ``path``."""
    write_wav(path, sine(frequency, duration_ms, amplitude=amplitude))
    return path


def best_window(pcm: bytes, frequency: float, seconds: float = 0.5) -> float:
    """The strongest presence of ``frequency`` in any ``seconds``-long window of ``pcm`` (8 kHz
    PCM16): a tone test that does not care when, in a call, the tone got through."""
    step = int(8000 * seconds) * 2
    windows = [pcm[i : i + step] for i in range(0, max(0, len(pcm) - step) + 1, step // 2)]
    return max((goertzel_power(w, frequency) for w in windows if len(w) == step), default=0.0)
