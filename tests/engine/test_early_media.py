"""``<Dial answerOnBridge="true" ringTone="us">`` through the engine, with SIPp as the caller
and one of our phones as the callee that rings for two seconds: the caller gets 180, then a 183
with an SDP answer, hears the US ringback (440 + 480 Hz) on its media port while the callee
rings, and gets its 200 only when the callee answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from callxml.media.g711 import G711Codec
from callxml.media.rtp import RtpPacket
from callxml.media.tone import goertzel_power
from support.engine import WebApp, engine_config, running_engine, sip_port
from support.phones import WAIT, PhoneFactory
from support.rtp import RtpPeer
from support.sipp import Sipp
from support.waiting import until

pytestmark = pytest.mark.peer

RING_SECONDS = 2.0


async def test_answer_on_bridge_caller_hears_the_ringtone_as_early_media(
    tmp_path: Path, sipp: Sipp, phone_boxes: PhoneFactory
) -> None:
    callee = await phone_boxes()
    dial = (
        '<Response><Dial answerOnBridge="true" ringTone="us" timeout="10">'
        f"<Sip>sip:dora@127.0.0.1:{callee.port()}</Sip></Dial></Response>"
    )
    app = WebApp({"/voice": lambda form: dial})
    await app.start()
    ear = RtpPeer()
    try:
        domains = [{"name": "ring.test", "voice_url": app.url("/voice")}]
        async with running_engine(engine_config(tmp_path, domains)) as engine:
            target = f"127.0.0.1:{sip_port(engine, 'udp')}"
            caller = await sipp.uac(
                "uac_early_media",
                "udp",
                target,
                "ivr",
                keys={"domain": "ring.test", "media": str(ear.address[1])},
            )
            incoming = await callee.next_call()
            await incoming.ring()
            await asyncio.sleep(RING_SECONDS)
            early = ear.received()  # what the caller heard while the callee rang
            leg = await incoming.accept(secure_media_enabled=False)
            outcome = await caller.result()
            assert outcome.returncode == 0, outcome.explain()  # 180, 183 with SDP, then 200
            await until(lambda: leg.ended.is_set(), WAIT, what="the callee hung up with the call")
    finally:
        ear.close()
        await app.stop()
    packets = [RtpPacket.parse(p) for p in early]
    assert len(packets) >= 40  # about 20 ms apart from the 183 on
    pcm = b"".join(G711Codec("PCMU").decode(p.payload) for p in packets if p.payload_type == 0)
    first = pcm[:16000]  # the first second: inside the cadence's first 2 s burst
    assert np.abs(np.frombuffer(first, "<i2")).max() > 1000
    assert goertzel_power(first, 440) + goertzel_power(first, 480) > 0.8  # the US ringback
