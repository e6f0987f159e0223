"""The baresip harness on its own: two baresips call each other over TLS with SRTP (manual
answer through the control socket), each hears the other's tone; plain vs mandatory SRTP fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callxml.media.tone import goertzel_power
from support.baresip import BaresipFactory, BaresipOptions, tone_wav

pytestmark = pytest.mark.peer


async def test_two_baresips_talk_srtp_over_tls(baresip: BaresipFactory, tmp_path: Path) -> None:
    callee = await baresip(
        BaresipOptions(user="bob", answermode="manual", play=tone_wav(tmp_path / "b.wav", 440))
    )
    caller = await baresip(
        BaresipOptions(user="alice", play=tone_wav(tmp_path / "a.wav", 2000), cert=callee.cert)
    )
    assert callee.tls_port == callee.sip_port + 1
    await caller.dial(callee.uri(transport="tls"))
    await callee.wait_event("CALL_INCOMING")
    await callee.accept()
    await caller.wait_event("CALL_ESTABLISHED")
    await callee.wait_event("CALL_RTPESTAB")
    await caller.wait_event("CALL_RTPESTAB")
    await asyncio.sleep(1.2)  # real audio needs real time
    await caller.hangup()
    closed = await callee.wait_event("CALL_CLOSED")
    assert closed["direction"] == "incoming"
    assert goertzel_power(callee.received_audio()[4000:], 2000) > 0.8
    assert goertzel_power(caller.received_audio()[4000:], 440) > 0.8
    assert "SRTP is Enabled" in callee.log()


async def test_plain_caller_cannot_reach_mandatory_srtp(
    baresip: BaresipFactory,
) -> None:
    callee = await baresip(BaresipOptions(user="bob", mediaenc="srtp-mand", tls=False))
    caller = await baresip(BaresipOptions(user="alice", mediaenc=None, tls=False))
    await caller.dial(callee.uri())
    closed = await caller.wait_event("CALL_CLOSED")
    assert "488" in str(closed.get("param")) or "Not Acceptable" in str(closed.get("param"))
    stopped = await callee.stop()
    assert stopped is not None and not callee.running
