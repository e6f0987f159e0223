"""Leave a message after the tone: answering machine detection on a call the engine places.

An appointment-reminder app calls out with ``MachineDetection=DetectMessageEnd``. Its webhook
reads ``AnsweredBy``: a person hears the reminder and a menu, a voicemail gets the message once
its greeting has ended in the beep (``machine_end_beep``), so nothing is cut off.

Everything runs in this process on loopback: the engine (embedded defaults, a temporary store),
the reminder app (aiohttp), and a "voicemail" — a callxml phone that answers, plays a greeting
(voice-like audio for 3 s, then a 1 kHz beep) and records what follows.

    python examples/machine_detection.py

Prints the detector's verdict and the webhook it led to; exits 0 when the voicemail was detected
as a machine at the end of its greeting and the flow left the message.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np
from aiohttp import web

from callxml.engine import Engine, parse_config
from callxml.engine.api import OutboundCall
from callxml.media.amd import AmdSettings
from callxml.media.tone import sine
from callxml.runtime import CallLeg, IncomingCall, Phone
from callxml.sip.aio.transport import ListenerConfig

ACCOUNT = "AC" + "e" * 32
TOKEN = "example-auth-token"
WAIT = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def greeting() -> bytes:
    """3 s of voice-like audio ("Hi, you've reached ..."), a pause, then the beep."""
    t = np.arange(3 * 8000) / 8000
    voice = sum(np.sin(2 * np.pi * 140 * k * t + k) / np.sqrt(k) for k in range(1, 16))
    voice *= 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)
    voice = voice / np.abs(voice).max() * 8000
    pause = bytes(2 * 1600)
    return voice.astype("<i2").tobytes() + pause + sine(1000, 500, amplitude=0.4)


def reminder_app(seen: list[dict[str, str]]) -> web.Application:
    """The app's webhook: what to say depends on who answered."""

    async def voice(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        seen.append(form)
        if form.get("AnsweredBy", "").startswith("machine_end"):
            twiml = "<Response><Say>Your appointment is tomorrow at nine.</Say><Hangup/></Response>"
        else:
            twiml = (
                "<Response><Gather numDigits='1'><Say>Your appointment is tomorrow at nine."
                " Press 1 to confirm.</Say></Gather></Response>"
            )
        return web.Response(text=twiml, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/voice", voice)
    return app


async def main() -> int:
    seen: list[dict[str, str]] = []
    runner = web.AppRunner(reminder_app(seen))
    await runner.setup()
    app_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", app_port).start()
    heard = bytearray()
    tasks: set[asyncio.Task[None]] = set()

    async def voicemail_answers(call: IncomingCall) -> None:
        leg: CallLeg = await call.accept(secure_media_enabled=False)

        async def greet_then_record() -> None:
            await leg.play(greeting())
            leg.set_consumer(heard.extend)  # "record" the message after the beep

        task = asyncio.ensure_future(greet_then_record())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    voicemail = await Phone.start(
        listeners=[ListenerConfig("udp", "127.0.0.1", 0)], on_incoming=voicemail_answers
    )
    vm_port = voicemail.user_agent.local("udp").port
    with tempfile.TemporaryDirectory() as data:
        sip = free_port()
        config = parse_config(
            {
                "sip": {"listen": [f"udp:127.0.0.1:{sip}"]},
                "http": {"host": "127.0.0.1", "port": free_port()},
                "store": {"path": str(Path(data) / "callxml.db"), "data_dir": data},
                "media": {"address": "127.0.0.1"},
                "accounts": [{"sid": ACCOUNT, "auth_token": TOKEN}],
            }
        )
        engine = Engine(config, echo=lambda line: None)
        await engine.start()
        try:
            account = config.account(ACCOUNT)
            assert account is not None
            call = OutboundCall(
                to=f"sip:voicemail@127.0.0.1:{vm_port}",
                from_="sip:reminders@example.com",
                url=f"http://127.0.0.1:{app_port}/voice",
                twiml=None,
                machine_detection=AmdSettings(detect_message_end=True),
            )
            record = await engine.originate(account, call)
            for _ in range(int(WAIT / 0.1)):
                final = engine.store.get_call(record.sid) if engine.store else None
                if final is not None and final.status in ("completed", "failed", "no-answer"):
                    break
                await asyncio.sleep(0.1)
        finally:
            await engine.stop()
            await voicemail.close()
            await runner.cleanup()
    if not seen:
        print("the webhook was never called")
        return 1
    form = seen[0]
    print(f"AnsweredBy={form.get('AnsweredBy')} after {form.get('MachineDetectionDuration')} ms")
    print(f"call ended: {final.status if final else 'unknown'}")
    print(f"voicemail recorded {len(heard) / 16000:.1f} s after its beep")
    ok = form.get("AnsweredBy") == "machine_end_beep" and len(heard) >= 8000
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
