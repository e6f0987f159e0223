"""A mutation fuzzer against a running engine (issue 16 §1): valid INVITE, ACK, BYE, CANCEL,
OPTIONS and REGISTER requests and the RFC 4475 messages, mutated (header lines dropped,
duplicated, rewritten, re-cased; lengths changed; encodings and line endings broken; bytes
inserted; messages cut short), sent over UDP and TCP to an engine with a real flow.

Invariants, checked after every message and at the end: every request gets a response or a
counted drop (ACKs get neither, RFC 3261 §17.2.3: they are absorbed and counted as stray); no
exception is logged and no fault is contained; an OPTIONS sent after each message is answered;
no call record stays non-final; memory returns to within 5 MB of the start.

Bounded for the suite (``FUZZ_EXAMPLES``, about a minute); ``CALLXML_LONG=1`` runs 5,000.
The engine runs in its own thread and event loop, so hypothesis drives plain blocking sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callxml.engine.server import Engine
from callxml.engine.store import TERMINAL_STATUSES
from support.engine import ACCOUNT_SID, WebApp, engine_config, running_engine, sip_port
from support.rawsip import SDP, request

LONG = os.environ.get("CALLXML_LONG") == "1"
FUZZ_EXAMPLES = 5000 if LONG else 100
#: A generous bound for "answered at once": the suite shares two cores with other work.
PROBE_WAIT = 2.0
#: After the probe's answer, how long an answer to the fuzzed request may still come.
LATE_ANSWER_WAIT = 0.5
FIXTURES = Path(__file__).resolve().parents[1] / "sip" / "fixtures" / "rfc4475"
RFC4475 = sorted(p.stem for p in FIXTURES.glob("*.dat"))
#: Counters that say a message was refused or lost on purpose.
DROPS = (
    "sip.transport.dropped",
    "sip.transport.bad_message",
    "sip.transport.unframed",
    "sip.transport.timed_out",
    "sip.core.dropped",
    "sip.core.bad_request",
    "sip.core.stray",
    "sip.core.refused",
)


class EngineThread:
    """The engine on its own loop in a thread, with a ``<Reject/>`` flow (calls end at once)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.engine: Engine | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        app = WebApp({"/voice": lambda form: "<Response><Reject/></Response>"})
        await app.start()
        config = engine_config(
            self.tmp_path,
            [{"name": "fuzz.test", "voice_url": app.url("/voice")}],
            extra={
                "sip": {"connection_read_timeout": 0.5, "connection_idle_timeout": 5},
                "limits": {"invites_per_second": 10000, "invites_per_second_per_source": 10000},
            },
        )
        try:
            async with running_engine(config) as engine:
                self.engine, self.loop = engine, asyncio.get_running_loop()
                self._stop = asyncio.Event()
                self._ready.set()
                await self._stop.wait()
        finally:
            await app.stop()

    def __enter__(self) -> EngineThread:
        self._thread.start()
        assert self._ready.wait(30), "the engine did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.loop is not None and self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def call(self, work: Any) -> Any:
        """Run ``work()`` on the engine's loop and return its result."""
        assert self.loop is not None

        async def run() -> Any:
            return work()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def counters(self) -> dict[str, int]:
        assert self.engine is not None
        engine = self.engine
        return dict(self.call(lambda: engine.counters))

    def port(self, transport: str) -> int:
        assert self.engine is not None
        return sip_port(self.engine, transport)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineThread]:
    with EngineThread(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


# -- what is sent -----------------------------------------------------------------------------

BASES = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER")


#: Stands for the sending socket's port in the top Via until the message is sent.
PEER = b"127.0.0.1:4;rport"


def base_message(kind: str, transport: str) -> bytes:
    if kind in BASES:
        body = SDP if kind == "INVITE" else b""
        data = request(kind, "sip:ivr@fuzz.test", port=4, transport=transport, body=body)
        return data.replace(b"127.0.0.1:4;branch=", PEER + b";branch=", 1).replace(
            b";rport\r\n", b"\r\n", 1
        )
    data = (FIXTURES / f"{kind}.dat").read_bytes()  # an RFC 4475 message, routed back to us
    return re.sub(
        rb"Via: SIP/2.0/UDP [^;\r]+", f"Via: SIP/2.0/{transport.upper()} ".encode() + PEER, data
    )


def mutate(data: bytes, draw: Any) -> bytes:
    """One to three mutations of ``data``."""
    for _ in range(draw(st.integers(1, 3))):
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        kind = draw(
            st.sampled_from(
                [
                    "drop",
                    "dup",
                    "value",
                    "case",
                    "length",
                    "lf",
                    "insert",
                    "truncate",
                    "latin1",
                    "start",
                ]
            )
        )
        index = draw(st.integers(0, max(0, len(lines) - 1)))
        if kind == "drop" and len(lines) > 1:
            del lines[max(1, index)]
        elif kind == "dup":
            lines.insert(index, lines[index])
        elif kind == "value" and index > 0:
            name = lines[index].split(b":", 1)[0]
            junk = draw(st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b))
            lines[index] = name + b": " + junk
        elif kind == "case":
            lines[index] = lines[index].swapcase()
        elif kind == "length":
            number = draw(st.sampled_from([b"0", b"-1", b"99999999", b"5", b"abc", b""]))
            lines = [ln for ln in lines if not ln.lower().startswith(b"content-length")]
            lines.append(b"Content-Length: " + number)
        elif kind == "lf":
            return b"\n".join(lines) + b"\n\n" + body
        elif kind == "insert":
            blob = draw(st.binary(min_size=1, max_size=20))
            position = draw(st.integers(0, len(data)))
            return data[:position] + blob + data[position:]
        elif kind == "truncate":
            return data[: draw(st.integers(0, len(data)))]
        elif kind == "latin1":
            lines[index] = lines[index] + b"\xe9\xff"
        elif kind == "start":
            lines[0] = draw(
                st.sampled_from(
                    [b"INVITE <sip:x@y> SIP/2.0", b"INVITE  sip:x@y SIP/2.0", b"FOO sip:x SIP/3.0",
                     b"SIP/2.0 200 OK", b"", b"INVITE sip:x@y SIP/2.0 extra"]
                )
            )  # fmt: skip
        data = b"\r\n".join(lines) + sep + body
    return data


# -- sending and probing ----------------------------------------------------------------------


def options(port: int, transport: str) -> bytes:
    return request("OPTIONS", "sip:probe@fuzz.test", port=port, transport=transport)


def exchange(engine: EngineThread, transport: str, data: bytes) -> tuple[list[bytes], bool]:
    """Send ``data`` then an OPTIONS probe; return what came back before the probe's answer
    and whether the probe was answered (over TCP the connection may close first)."""
    if transport == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        target = ("127.0.0.1", engine.port("udp"))
        sock.sendto(data.replace(PEER, f"127.0.0.1:{port};rport".encode()), target)
        sock.sendto(options(port, "udp"), target)
        got: list[bytes] = []
        sock.settimeout(PROBE_WAIT)
        with contextlib.closing(sock):
            try:
                while True:
                    message = sock.recv(70000)
                    if b"probe@fuzz.test" in message:
                        break
                    got.append(message)
            except TimeoutError:
                return got, False
            # A request answered off the receive path (a REGISTER waits on the registrar's
            # store) may be answered just after the probe: give it a moment.
            if not got:
                sock.settimeout(LATE_ANSWER_WAIT)
                with contextlib.suppress(TimeoutError):
                    got.append(sock.recv(70000))
            return got, True
    sock = socket.create_connection(("127.0.0.1", engine.port("tcp")), timeout=PROBE_WAIT)
    port = sock.getsockname()[1]
    with contextlib.closing(sock):
        sock.sendall(data.replace(PEER, f"127.0.0.1:{port};rport".encode()))
        with contextlib.suppress(OSError):
            sock.sendall(options(port, "tcp"))
        buffer = b""
        deadline = time.monotonic() + PROBE_WAIT * 2
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(70000)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            if b"probe@fuzz.test" in buffer:
                return [buffer.split(b"probe@fuzz.test")[0]], True
        return [buffer] if buffer else [], False


def drops(counters: dict[str, int]) -> int:
    return sum(counters.get(name, 0) for name in DROPS)


def rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


@st.composite
def fuzz_case(draw: Any) -> tuple[str, str, bytes]:
    transport = draw(st.sampled_from(["udp", "tcp"]))
    kind = draw(st.sampled_from([*BASES, *RFC4475]))
    return transport, kind, mutate(base_message(kind, transport), draw)


@pytest.mark.peer
def test_mutated_messages_never_break_the_engine(
    engine: EngineThread, caplog: pytest.LogCaptureFixture
) -> None:
    gc.collect()
    start_rss = rss_bytes()
    sent = answered_or_dropped = 0

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzz_case())
    def one(case: tuple[str, str, bytes]) -> None:
        nonlocal sent, answered_or_dropped
        transport, kind, data = case
        before = drops(engine.counters())
        got, probed = exchange(engine, transport, data)
        sent += 1
        after = drops(engine.counters())
        is_ack = data.lstrip(b"\r\n").upper().startswith(b"ACK ")
        # A mutated top Via routes the answer elsewhere (RFC 3261 §18.2.2): not ours to see.
        rerouted = PEER not in data
        if got or after > before or is_ack or rerouted or not data.strip(b"\r\n"):
            answered_or_dropped += 1
        else:
            pytest.fail(f"{kind} over {transport}: neither answered nor counted: {data[:300]!r}")
        if transport == "udp":  # over TCP a broken stream may take the probe with it
            assert probed, f"the OPTIONS after {kind} over {transport} was not answered"

    with caplog.at_level(logging.WARNING):
        one()
        # finally the engine still answers at once, over both transports
        for transport in ("udp", "tcp"):
            _, probed = exchange(engine, transport, b"")
            assert probed
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert engine.counters().get("sip.faults", 0) == 0
    assert sent == answered_or_dropped

    def unfinished() -> list[Any]:
        assert engine.engine is not None and engine.engine.store is not None
        calls = engine.engine.store.list_calls(ACCOUNT_SID, limit=1000)
        return [c for c in calls if c.status not in TERMINAL_STATUSES]

    deadline = time.monotonic() + 40
    while engine.call(unfinished) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engine.call(unfinished) == []
    gc.collect()
    assert rss_bytes() - start_rss < 5 * 1024 * 1024
