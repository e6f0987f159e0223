"""A real linphonec softphone on loopback, for end-to-end tests of SDES suites and ZRTP.

Owns writing a throw-away linphonec home (its ``rc`` configuration, the database folder that
holds its ZRTP cache), choosing free loopback ports, starting ``linphonec --pipe``, driving it
through its standard input one command at a time, reading what it prints (call states, the ZRTP
SAS), and stopping it. Every wait is bounded.

Tested with linphonec 5.1.65 (Debian bookworm ``linphone-cli``: liblinphone 5.1.65, bzrtp
5.1.64, libsrtp2 2.5.0). Facts about that version this module relies on:

* without ``--pipe`` linphonec reads standard input through readline and, when that is not a
  terminal, never runs its core between commands; with ``--pipe`` a thread reads standard input
  and the main loop iterates the core every 20 ms;
* that thread keeps only the *latest* line until the main loop takes it, so a command is written
  only after the prompt that follows the previous one;
* the core creates its SIP listeners only once it thinks the network is up, and it opens its
  database (and the ZRTP cache, ``zrtp-secrets.db``) under ``$HOME/.local/share/linphone``, which
  must exist; ``ipv6_migration_done=1`` stops it from turning ``use_ipv6`` back on;
* ``[sip] bind_address`` and ``[rtp] bind_address`` keep SIP and media (and what SDP advertises) on
  127.0.0.1; ``soundcard use files`` with ``play``/``record`` replaces the sound card (there is
  none here) by WAV files; what it records is 48 kHz mono;
* it prints ``Call N is fully encrypted and auth token is XXXX.`` when ZRTP completes, and its
  log (``-d 6 -l``) names the negotiated algorithms (``ZRTP algo used during negotiation: ...``)
  and the cache state (``SAS is XXXX previously verified yes|no``).

Usage (the ``linphone`` fixture of :mod:`support.fixtures` starts and stops peers)::

    async def test_something(linphone: LinphoneFactory) -> None:
        peer = await linphone(LinphoneOptions(media_encryption="zrtp", play=wav))
        await peer.call("sip:ivr@127.0.0.1:5060")
        sas = await peer.wait_sas()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from callxml.engine.devcert import DevCertificate
from callxml.media.wav import read_audio, write_wav
from support.ports import free_port, is_free

LINPHONEC = shutil.which("linphonec")
#: No single wait (start, command, call state) may take longer than this.
DEFAULT_TIMEOUT = 15.0
MAX_LINES = 20_000
SILENCE_SECONDS = 60
PROMPT = "linphonec> "

_MISSING = LINPHONEC is None
_IN_CI = bool(os.environ.get("CI"))

needs_linphone = pytest.mark.skipif(
    _MISSING and not _IN_CI,
    reason="linphonec is not installed (Debian package linphone-cli; `make test`)",
)

_SAS = re.compile(r"Call (\d+) is fully encrypted and auth token is (\S+)\.")
_ALGOS = re.compile(r"ZRTP algo used during negotiation: (.*)$", re.M)
_CACHE = re.compile(r"ZRTP secrets on: SAS is (\S+) previously verified (\w+)")


@dataclass(frozen=True)
class LinphoneOptions:
    """How to configure one linphonec.

    ``media_encryption``: ``"zrtp"``, ``"srtp"`` (SDES) or ``"none"``; ``mandatory`` refuses a
    call without it. ``srtp_suites`` (SDES only) is linphone's ``srtp_crypto_suites`` list, in its
    spelling (``AEAD_AES_256_GCM``...). ``play`` is an 8 kHz mono WAV sent to the far end
    (``None``: silence); what linphonec receives is recorded. ``auto_answer`` answers every call.
    ``cert`` is trusted for TLS (linphonec verifies nothing of ours otherwise).
    """

    user: str = "peer"
    media_encryption: str = "zrtp"
    mandatory: bool = True
    srtp_suites: tuple[str, ...] = ()
    play: Path | None = None
    auto_answer: bool = True
    cert: DevCertificate | None = None
    extra_sip: tuple[str, ...] = ()


@dataclass
class LinphonePeer:
    """One running (or not yet started) linphonec. Create with :meth:`start`."""

    directory: Path
    options: LinphoneOptions
    sip_port: int = 0
    tls_port: int = 0
    rtp_port: int = 0
    lines: list[str] = field(default_factory=list)
    _process: asyncio.subprocess.Process | None = None
    _pump: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _prompts: int = 0

    # -- addresses -----------------------------------------------------------------------------

    def uri(self, *, transport: str | None = None, user: str = "") -> str:
        """A SIP URI that reaches this linphonec (``transport="tls"`` → its TLS port)."""
        who = user or self.options.user
        if transport == "tls":
            return f"sip:{who}@127.0.0.1:{self.tls_port};transport=tls"
        suffix = f";transport={transport}" if transport else ""
        return f"sip:{who}@127.0.0.1:{self.sip_port}{suffix}"

    @property
    def log_path(self) -> Path:
        return self.directory / "linphonec.log"

    def log(self) -> str:
        """linphonec's debug log so far (for assertion messages and algorithm names)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def record_path(self) -> Path:
        return self.directory / "received.wav"

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    async def start(
        cls, directory: Path, options: LinphoneOptions | None = None, *, timeout: float = 15.0
    ) -> LinphonePeer:
        """Write the configuration into ``directory``, start linphonec, wait for its prompt and
        switch it to WAV files."""
        if LINPHONEC is None:
            raise RuntimeError("linphonec is not installed")
        options = options or LinphoneOptions()
        directory.mkdir(parents=True, exist_ok=True)
        peer = cls(directory, options)
        peer._write_config()
        args = ["--pipe", "-c", str(directory / "rc"), "-d", "6", "-l", str(peer.log_path)]
        if options.auto_answer:
            args.append("-a")
        env = {**os.environ, "HOME": str(directory)}
        peer._process = await asyncio.create_subprocess_exec(
            LINPHONEC,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=str(directory),
            env=env,
        )
        peer._pump = asyncio.get_running_loop().create_task(peer._read_loop())
        try:
            await peer._wait_prompts(1, timeout)
            play = options.play
            if play is None:
                play = directory / "silence.wav"
                write_wav(play, bytes(2 * 8000 * SILENCE_SECONDS))
            await peer.command("soundcard use files")
            await peer.command(f"play {play}")
            await peer.command(f"record {peer.record_path}")
            # The core opens its SIP listeners once it has seen the network up.
            await peer.wait_log("SIP network reachability state is now [UP]", timeout=timeout)
        except BaseException:
            await peer.stop()
            raise
        return peer

    def _write_config(self) -> None:
        o = self.options
        self.sip_port = free_port("both")
        self.tls_port = free_port("tcp")
        self.rtp_port = _free_rtp_pair()
        (self.directory / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        sip = [
            f"sip_port={self.sip_port}",
            f"sip_tcp_port={self.sip_port}",
            f"sip_tls_port={self.tls_port}",
            "bind_address=127.0.0.1",
            f'contact="{o.user}" <sip:{o.user}@127.0.0.1>',
            "ipv6_migration_done=1",
            "use_ipv6=0",
            "verify_server_certs=0",
            "verify_server_cn=0",
            f"media_encryption={o.media_encryption}",
            f"media_encryption_mandatory={1 if o.mandatory else 0}",
            "inc_timeout=60",
        ]
        if o.srtp_suites:
            sip.append(f"srtp_crypto_suites={','.join(o.srtp_suites)}")
        if o.cert is not None:
            sip.append(f"root_ca={o.cert.ca}")
        sip += list(o.extra_sip)
        text = "[sip]\n" + "\n".join(sip) + "\n"
        text += f"[rtp]\naudio_rtp_port={self.rtp_port}\nbind_address=127.0.0.1\n"
        text += "[sound]\nechocancellation=0\n"
        text += "[video]\nenabled=0\nautomatically_initiate=0\nautomatically_accept=0\n"
        # G.711 only: the codecs callxml runs (linphone lists opus and speex first otherwise).
        for n, (mime, rate) in enumerate(
            [("PCMU", 8000), ("PCMA", 8000), ("opus", 48000), ("speex", 16000), ("speex", 8000)]
        ):
            enabled = 1 if mime in ("PCMU", "PCMA") else 0
            text += f"[audio_codec_{n}]\nmime={mime}\nrate={rate}\nchannels=1\nenabled={enabled}\n"
        (self.directory / "rc").write_text(text)

    async def _read_loop(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        buffer = ""
        with contextlib.suppress(ConnectionError, ValueError):
            while True:
                chunk = await process.stdout.read(4096)
                if not chunk:
                    break
                buffer += chunk.decode(errors="replace")
                self._prompts += buffer.count(PROMPT)
                buffer = buffer.replace(PROMPT, "\n")
                *complete, buffer = buffer.split("\n")
                if len(self.lines) < MAX_LINES:
                    new = [line for line in complete if line.strip()]
                    self.lines.extend(new)
                    with (self.directory / "stdout.txt").open("a") as out:  # for post-mortems
                        out.writelines(line + "\n" for line in new)
                self._changed.set()
        self._changed.set()

    async def _until(self, check: Callable[[], object], timeout: float, what: str) -> object:
        async def wait() -> object:
            while True:
                found = check()
                if found:
                    return found
                if not self.running:
                    raise AssertionError(f"linphonec exited while waiting for {what}")
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), 0.2)  # the log file changes too
                except TimeoutError:
                    pass

        try:
            return await asyncio.wait_for(wait(), timeout)
        except (TimeoutError, AssertionError) as exc:
            raise AssertionError(
                f"linphonec: no {what} within {timeout} s ({exc})\n{self.output()[-3000:]}\n"
                f"{self.log()[-3000:]}"
            ) from None

    async def _wait_prompts(self, count: int, timeout: float) -> None:
        await self._until(lambda: self._prompts >= count, timeout, "prompt")

    async def command(self, text: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Write one command and wait for the prompt after it (see the module docstring)."""
        process = self._process
        if process is None or process.stdin is None or not self.running:
            raise RuntimeError("linphonec is not running")
        before = self._prompts
        process.stdin.write(text.encode() + b"\n")
        await process.stdin.drain()
        await self._wait_prompts(before + 1, timeout)

    async def stop(self, timeout: float = 5.0) -> int | None:
        """Quit linphonec (``quit``, then terminate, then kill); its exit status. Idempotent."""
        process = self._process
        if process is None:
            return None
        if process.returncode is None and process.stdin is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                process.stdin.write(b"quit\n")
                await process.stdin.drain()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), timeout)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        if self._pump is not None:  # reads stdout to its end
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._pump, timeout)
            self._pump = None
        if process.stdin is not None:  # every pipe closed: the transport goes with the loop
            process.stdin.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await process.stdin.wait_closed()
        return process.returncode

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    # -- calls ---------------------------------------------------------------------------------

    async def call(self, uri: str) -> None:
        await self.command(f"call {uri}")

    async def answer(self) -> None:
        await self.command("answer")

    async def terminate(self) -> None:
        await self.command("terminate")

    async def wait_output(
        self, pattern: str, *, timeout: float = DEFAULT_TIMEOUT, nth: int = 1
    ) -> re.Match[str]:
        """The ``nth`` match of ``pattern`` in what linphonec printed (one per line)."""
        regex = re.compile(pattern)

        def find() -> re.Match[str] | None:
            seen = 0
            for line in self.lines:
                match = regex.search(line)
                if match:
                    seen += 1
                    if seen == nth:
                        return match
            return None

        found = await self._until(find, timeout, repr(pattern))
        assert isinstance(found, re.Match)
        return found

    async def wait_log(self, text: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        await self._until(lambda: text in self.log(), timeout, repr(text))

    async def wait_sas(self, *, timeout: float = DEFAULT_TIMEOUT, nth: int = 1) -> str:
        """The ZRTP SAS linphonec printed for its ``nth`` encrypted call."""
        match = await self.wait_output(_SAS.pattern, timeout=timeout, nth=nth)
        return match.group(2)

    def zrtp_algorithms(self) -> str:
        """``Cipher: AES-128 - KeyAgreement: DHM-3072 - ...`` from the log, or ``""``."""
        found = _ALGOS.findall(self.log())
        return found[-1].strip() if found else ""

    def zrtp_cache(self) -> list[tuple[str, str]]:
        """(SAS, previously verified yes/no) for each ZRTP exchange in the log, in order."""
        return _CACHE.findall(self.log())

    def received_audio(self) -> bytes:
        """8 kHz mono PCM16 of what linphonec received in its latest call (read it after the
        call ended: linphonec writes the WAV header when it closes the file)."""
        if not self.record_path.exists():
            raise AssertionError(f"linphonec recorded nothing\n{self.output()[-3000:]}")
        return read_audio(self.record_path)


def _free_rtp_pair() -> int:
    """An even UDP port P with P and P+1 free (RTP and RTCP)."""
    for _ in range(200):
        port = free_port("udp")
        port -= port % 2
        if 1024 <= port < 65534 and is_free(port, "udp") and is_free(port + 1, "udp"):
            return port
    raise RuntimeError("no free RTP port pair on 127.0.0.1")


LinphoneFactory = Callable[..., Awaitable[LinphonePeer]]


@contextlib.asynccontextmanager
async def linphone_peers(directory: Path) -> AsyncIterator[LinphoneFactory]:
    """Start linphonec instances under ``directory``; all are stopped on exit. A missing
    linphonec fails the test in CI (the install step must have worked) and skips it elsewhere."""
    if _MISSING:
        message = "linphonec is not installed (Debian package linphone-cli)"
        if _IN_CI:
            pytest.fail(message)
        pytest.skip(reason=message)
    peers: list[LinphonePeer] = []

    async def make(options: LinphoneOptions | None = None, *, name: str = "") -> LinphonePeer:
        peer = await LinphonePeer.start(directory / f"linphone-{name or len(peers)}", options)
        peers.append(peer)
        return peer

    try:
        yield make
    finally:
        for peer in peers:
            await peer.stop()
