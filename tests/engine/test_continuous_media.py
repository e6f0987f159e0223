"""The engine keeps a packet going out every 20 ms on an answered call while it has nothing to
say: through a 3 s ``<Pause>``, the caller receives one unbroken RTP stream (sequence numbers one
apart, timestamps 160 apart, no gap on the wire), so carriers' RTP inactivity timers and NAT
bindings never see a dead line."""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callxml.runtime import Phone
from callxml.sip.aio.transport import ListenerConfig
from support.engine import WebApp, engine_config, running_engine, sip_port, web_app

pytestmark = pytest.mark.peer

# A <Pause> first would hold the answer (Twilio's rule); the prompt answers the call.
FLOW = "<Response><Say>Hi.</Say><Pause length='3'/><Hangup/></Response>"


@pytest.fixture
async def app() -> AsyncIterator[WebApp]:
    async with web_app({"/voice": lambda form: FLOW}) as web:
        yield web


async def test_a_pause_is_filled_with_packets_every_20_ms(tmp_path: Path, app: WebApp) -> None:
    domain = {"name": "pause.test", "voice_url": app.url("/voice")}
    async with running_engine(engine_config(tmp_path, [domain])) as engine:
        phone = await Phone.start(listeners=[ListenerConfig("udp", "127.0.0.1", 0)])
        try:
            proxy = f"sip:127.0.0.1:{sip_port(engine, 'udp')}"
            result = await phone.dial("sip:ivr@pause.test", proxy=proxy, timeout=10)
            assert result.status == "answered" and result.leg is not None, result.reason
            leg = result.leg
            loop = asyncio.get_running_loop()
            wire: list[tuple[float, int, int, int]] = []  # arrival, sequence, timestamp, SSRC

            def capture(packet: bytes) -> None:
                seq, ts, ssrc = struct.unpack_from("!HII", packet, 2)
                wire.append((loop.time(), seq, ts, ssrc))

            leg.endpoint.set_forward(capture)  # every RTP packet as it arrives
            reason = await leg.wait_ended(15)
        finally:
            await phone.close()
    assert reason == "remote hangup"  # the flow's <Hangup/> after the pause
    assert len(wire) >= 150  # the prompt, then 3 s of pause at 50 packets/s
    assert len({ssrc for *_, ssrc in wire}) == 1
    for (_, seq_a, ts_a, _), (_, seq_b, ts_b, _) in itertools.pairwise(wire):
        assert (seq_b - seq_a) & 0xFFFF == 1, "a packet is missing"
        assert (ts_b - ts_a) & 0xFFFFFFFF == 160, "the media clock jumped"
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(wire)]
    assert max(gaps) < 0.25  # generous for a loaded machine; silence would be ~3 s
