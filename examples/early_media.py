"""Early media, a ringback and a re-INVITE between two callxml phones on loopback.

Alice calls Bob. Bob's phone answers the INVITE's offer in a ``183 Session Progress`` (early
media) and plays Germany's ringback (``callxml.media.ringback``) while "ringing"; Alice hears it
before any answer. Then Bob answers, and Alice moves the call from PCMU to PCMA with a re-INVITE
(``CallLeg.reoffer``): the same leg, the same RTP stream, a new codec, and the audio keeps going.
Both phones keep the dialog alive with RFC 4028 session timers (here 10 s sessions, refreshed
every 5 s with an UPDATE), as they would through a carrier.

    python examples/early_media.py

Prints what each side saw and exits 0 when every step happened as described.
"""

from __future__ import annotations

import asyncio
import sys

from callxml.media.ringback import ringback_frames
from callxml.media.tone import goertzel_power, sine
from callxml.runtime import CallLeg, IncomingCall, Phone
from callxml.sip.aio.transport import ListenerConfig
from callxml.sip.session_timer import SessionTimerConfig

WAIT = 10.0
#: Short sessions so the refreshes show up in a demo (never below 90 s with a carrier).
TIMERS = SessionTimerConfig(expires=10, min_se=5)


async def heard(pcm: bytearray, seconds: float) -> bytes:
    """Wait until ``pcm`` holds ``seconds`` of audio and return the last ``seconds``."""
    size = int(seconds * 16000)
    for _ in range(int(WAIT / 0.02)):
        if len(pcm) >= size:
            return bytes(pcm[-size:])
        await asyncio.sleep(0.02)
    raise TimeoutError("no audio")


async def main() -> int:
    calls: asyncio.Queue[IncomingCall] = asyncio.Queue()
    listen = [ListenerConfig("udp", "127.0.0.1", 0)]
    bob = await Phone.start(listeners=listen, on_incoming=calls.put, session_timer=TIMERS)
    alice = await Phone.start(listeners=listen, session_timer=TIMERS)
    ok = True
    try:
        early: list[CallLeg] = []
        port = bob.user_agent.local("udp").port
        dial = asyncio.ensure_future(
            alice.dial(f"sip:bob@127.0.0.1:{port}", timeout=WAIT, on_early_media=early.append)
        )
        incoming = await asyncio.wait_for(calls.get(), WAIT)
        bob_leg = await incoming.early_media(secure_media_enabled=False)  # 183 with SDP
        ringback = asyncio.ensure_future(bob_leg.play_frames(ringback_frames("de")))
        while not early:
            await asyncio.sleep(0.02)
        alice_leg = early[0]
        ear = bytearray()
        alice_leg.set_consumer(ear.extend)
        tone = goertzel_power(await heard(ear, 0.6), 425)
        print(f"alice: early media before the answer, 425 Hz ringback power {tone:.2f}")
        ok &= tone > 0.8 and not dial.done()

        ringback.cancel()
        await bob_leg.answer()
        result = await asyncio.wait_for(dial, WAIT)
        print(
            f"alice: {result.status} ({result.sip_response_code}), same leg: "
            f"{result.leg is alice_leg}, codec {alice_leg.codec}"
        )
        ok &= result.leg is alice_leg and alice_leg.codec == "PCMU"

        alice_leg.reoffer(codecs=["PCMA"])  # a re-INVITE offering only PCMA
        for _ in range(int(WAIT / 0.02)):
            if alice_leg.codec == bob_leg.codec == "PCMA":
                break
            await asyncio.sleep(0.02)
        print(f"after the re-INVITE: alice {alice_leg.codec}, bob {bob_leg.codec}")
        ok &= alice_leg.codec == bob_leg.codec == "PCMA"

        ear.clear()
        await bob_leg.play(sine(700, 800))
        tone = goertzel_power(await heard(ear, 0.5), 700)
        print(f"alice: bob's 700 Hz tone in PCMA, power {tone:.2f}")
        ok &= tone > 0.8

        await asyncio.sleep(6)  # one session refresh (every 5 s) goes by; the call stays up
        print(f"after a session refresh: still up: {not alice_leg.ended.is_set()}")
        ok &= not alice_leg.ended.is_set()
        await alice_leg.hangup()
        print(f"bob: {await bob_leg.wait_ended(WAIT)}")
    finally:
        await alice.close()
        await bob.close()
    print("early media demo OK" if ok else "early media demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
