"""Early media: audio before the answer (RFC 3960), between our own phones, through a ``<Dial>``
(the far end's early audio, or ``ringTone``'s ringback, reaching a caller that is not answered
yet), and from a SIPp gateway sending a reliable 183 (PRACKed) while the test plays its RTP.

What is proved: a 183 with SDP starts the media at once on both sides (``Phone.dial(...,
on_early_media=...)``, ``IncomingCall.early_media``), the leg heard early is the leg answered
later (one stream, no gap), with SRTP too; a ringing ``<Dial answerOnBridge>`` sends the caller a
183 and relays the callee's early audio, or plays the ringback of ``ringTone``'s country, until
the callee answers and the real bridge takes over.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.markup.verbs import Sip
from callxml.media.g711 import G711Codec
from callxml.media.rtp import RtpPacket
from callxml.media.tone import goertzel_power, sine
from callxml.runtime import CallLeg, bridge
from callxml.runtime.dial import Dialer, RecordingSink
from support.phones import WAIT, PhoneBox, PhoneFactory
from support.rtp import RtpPeer
from support.sipp import Sipp
from support.waiting import until


class Ear:
    def __init__(self, leg: CallLeg) -> None:
        self.pcm = bytearray()
        leg.set_consumer(self.pcm.extend)

    async def hears(self, seconds: float) -> bytes:
        size = int(seconds * 16000)
        await until(lambda: len(self.pcm) >= size, WAIT, what=f"{seconds} s of audio")
        return bytes(self.pcm[-size:])


@pytest.mark.parametrize("secure", [False, True], ids=["rtp", "srtp"])
async def test_a_183_brings_media_before_the_answer(
    phone_boxes: PhoneFactory, secure: bool
) -> None:
    a, b = await phone_boxes(), await phone_boxes()
    early: list[CallLeg] = []
    uri = f"sip:bob@127.0.0.1:{b.port('tls')};secure=true" if secure else b.uri()
    dial = asyncio.ensure_future(a.phone.dial(uri, timeout=WAIT, on_early_media=early.append))
    incoming = await b.next_call()
    b_leg = await incoming.early_media(secure_media_enabled=secure)
    assert b_leg.early and not b_leg.answered
    await until(lambda: early, WAIT, what="the caller's early leg")
    [a_leg] = early
    assert a_leg.early and not a_leg.answered and a_leg.secure == secure
    ear = Ear(a_leg)
    await b_leg.play(sine(440, 700))
    assert goertzel_power(await ear.hears(0.4), 440) > 0.8  # heard before any answer
    assert not dial.done() and not a_leg.answered
    sent_early = a_leg.stats.packets_sent
    assert sent_early == 0  # the caller listens; it sends from the answer on

    await b_leg.answer()
    result = await asyncio.wait_for(dial, WAIT)
    assert result.status == "answered" and result.leg is a_leg and a_leg.answered
    b_ear = Ear(b_leg)
    ear.pcm.clear()
    await asyncio.gather(a_leg.play(sine(1000, 600)), b_leg.play(sine(440, 600)))
    assert goertzel_power(await b_ear.hears(0.4), 1000) > 0.8
    assert goertzel_power(await ear.hears(0.4), 440) > 0.8
    assert a_leg.stats.dropped_auth == 0  # the same keys, early and answered
    await a_leg.hangup()
    assert await b_leg.wait_ended(WAIT) == "remote hangup"


async def _dial_through(
    phone_boxes: PhoneFactory,
    *,
    ring_tone: str | None,
    record: str = "do-not-record",
    recordings: RecordingSink | None = None,
) -> tuple[PhoneBox, PhoneBox, CallLeg, asyncio.Task[ev.DialFinished], list[CallLeg]]:
    """A caller (C) calls P, which runs ``<Dial answerOnBridge ringTone record>`` to D. Returns
    D's box, P's caller leg, the dial task and the early legs C saw."""
    c, p, d = await phone_boxes(), await phone_boxes(), await phone_boxes()
    early: list[CallLeg] = []
    calling = asyncio.ensure_future(
        c.phone.dial(p.uri(), timeout=WAIT, on_early_media=early.append)
    )
    caller = await (await p.next_call()).accept(secure_media_enabled=False, answer=False)
    dialer = Dialer(p.phone, bridge, recordings=recordings)
    action = act.StartDial(
        targets=(Sip(uri=d.uri("dora")),),
        timeout=WAIT,
        answer_on_bridge=True,
        ring_tone=ring_tone,
        record=record,
        recording_sid="RE" + "0" * 32 if recordings is not None else None,
    )

    async def answer_caller() -> None:
        await caller.answer()

    run = asyncio.ensure_future(
        dialer(action, caller, answer_caller=answer_caller, stop=asyncio.Event())
    )
    run.add_done_callback(lambda _: calling.cancel())  # C's dial, if it is still ringing
    return c, d, caller, run, early


async def test_dial_relays_the_callees_early_media_to_an_unanswered_caller(
    phone_boxes: PhoneFactory,
) -> None:
    _, d, caller, run, early = await _dial_through(phone_boxes, ring_tone="de")
    callee = await (await d.next_call()).early_media(secure_media_enabled=False)
    await until(lambda: early, WAIT, what="the caller's early media")
    [c_leg] = early
    assert caller.early and not caller.answered  # P sent the caller a 183
    ear = Ear(c_leg)
    await callee.play(sine(700, 1000))
    heard = await ear.hears(0.5)
    assert goertzel_power(heard, 700) > 0.8  # the callee's own early audio, not the ringback
    assert goertzel_power(heard, 425) < 0.05
    await callee.answer()
    await until(lambda: c_leg.answered and caller.answered, WAIT, what="answer on bridge")
    ear.pcm.clear()
    await callee.play(sine(900, 800))
    assert goertzel_power(await ear.hears(0.4), 900) > 0.8  # the real bridge now
    await c_leg.hangup()
    finished = await asyncio.wait_for(run, WAIT)
    assert finished.status == "completed"


async def test_dial_plays_the_ringtone_country_ringback_while_the_callee_rings(
    phone_boxes: PhoneFactory,
) -> None:
    _, d, caller, run, early = await _dial_through(phone_boxes, ring_tone="de")
    ringing = await d.next_call()
    await ringing.ring()  # 180, no early media of its own
    await until(lambda: early, WAIT, what="the caller's early media")
    [c_leg] = early
    ear = Ear(c_leg)
    heard = await ear.hears(4.5)
    assert caller.early and not caller.answered
    # Germany: 425 Hz, 1 s on and 4 s off (ITU-T E.180).
    frames = np.frombuffer(heard, "<i2").reshape(-1, 800)  # 100 ms windows
    loud = [bool(np.abs(f).max() > 1000) for f in frames]
    assert 8 <= sum(loud) <= 12 and not all(loud)  # about one second of tone in 4.5 s
    burst = b"".join(f.tobytes() for f, on in zip(frames, loud, strict=True) if on)
    assert goertzel_power(burst, 425) > 0.8
    callee = await ringing.accept(secure_media_enabled=False)
    await until(lambda: c_leg.answered, WAIT, what="answer on bridge")
    ear.pcm.clear()
    await callee.play(sine(900, 800))
    heard = await ear.hears(0.4)
    assert goertzel_power(heard, 900) > 0.8 and goertzel_power(heard, 425) < 0.05
    await c_leg.hangup()
    await asyncio.wait_for(run, WAIT)


async def test_record_from_ringing_keeps_the_ringback_and_the_call(
    phone_boxes: PhoneFactory,
) -> None:
    """``record="record-from-ringing-dual"``: the recording starts with the dial, so its called
    party channel holds the ringback the caller heard while D rang, then D's voice after the
    answer; the caller's channel is aligned on the same clock."""
    kept: list[tuple[str, bytes, int, int]] = []

    async def keep(sid: str, pcm: bytes, channels: int, seconds: int) -> str:
        kept.append((sid, pcm, channels, seconds))
        return f"https://example.test/Recordings/{sid}"

    _, d, _caller, run, early = await _dial_through(
        phone_boxes, ring_tone="de", record="record-from-ringing-dual", recordings=keep
    )
    ringing = await d.next_call()
    await ringing.ring()
    await until(lambda: early, WAIT, what="the caller's early media")
    [c_leg] = early
    await Ear(c_leg).hears(1.5)  # the first second of German ringback, then its pause
    callee = await ringing.accept(secure_media_enabled=False)
    await until(lambda: c_leg.answered, WAIT, what="answer on bridge")
    await callee.play(sine(900, 800))
    await c_leg.hangup()
    finished = await asyncio.wait_for(run, WAIT)
    assert finished.status == "completed" and finished.recording_url.endswith("0" * 32)
    [(_sid, pcm, channels, seconds)] = kept
    assert channels == 2 and seconds >= 2  # the ringing (1.5 s at least) and the call
    right = np.frombuffer(pcm, "<i2").reshape(-1, 2)[:, 1].astype(np.int16).tobytes()
    first = right[:16000]  # the first second: ringback only
    assert goertzel_power(first, 425) > 0.8
    assert goertzel_power(right[-16000 * 2 :], 900) > 0.3  # the callee's voice, near the end
    assert finished.recording_duration == seconds


async def test_a_sipp_gateway_plays_early_media_in_a_reliable_183(
    sipp: Sipp, phone_boxes: PhoneFactory
) -> None:
    """SIPp sends a reliable 183 with SDP pointing at the test's RTP socket, and answers only
    after the PRACK and a pause: the tone the test sends meanwhile is heard by the caller."""
    far = RtpPeer()
    a = await phone_boxes()
    try:
        peer = await sipp.uas("uas_early_media", "udp", keys={"media": str(far.address[1])})
        early: list[CallLeg] = []
        uri = f"sip:gw@127.0.0.1:{peer.port}"
        dial = asyncio.ensure_future(a.phone.dial(uri, timeout=WAIT, on_early_media=early.append))
        await until(lambda: early, WAIT, what="early media from the 183")
        [leg] = early
        ear = Ear(leg)
        pcm = sine(440, 600, amplitude=0.4)
        encode = G711Codec("PCMU").encode
        for i in range(30):
            payload = encode(pcm[320 * i : 320 * (i + 1)])
            packet = RtpPacket(
                payload_type=0, sequence_number=i, timestamp=160 * i, ssrc=7, payload=payload
            )
            far.send(bytes(packet), leg.endpoint.local_address)
            await asyncio.sleep(0.02)
        assert goertzel_power(await ear.hears(0.4), 440) > 0.8
        assert not dial.done()  # SIPp has not answered yet
        result = await asyncio.wait_for(dial, WAIT)
        assert result.status == "answered" and result.leg is leg
        await leg.hangup()
        outcome = await peer.result()
        assert outcome.returncode == 0, outcome.explain()
    finally:
        far.close()
