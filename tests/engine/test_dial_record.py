"""``<Dial record>`` on real calls: a REST-originated call dials a second SIPp callee with
``record="record-from-answer-dual"``; the bridged call is saved as a two-channel WAV on the
caller's call, the ``action`` gets ``RecordingUrl``/``RecordingSid``/``RecordingDuration``, the
``recordingStatusCallback`` says ``completed``, and the REST API serves the recording."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import aiohttp
import pytest

from support.engine import API_AUTH, WebApp, engine_config, originate_twiml, running_engine
from support.sipp import Sipp

pytestmark = pytest.mark.peer


async def test_dial_record_dual(tmp_path: Path, sipp: Sipp) -> None:
    first = await sipp.uas("uas_answer", media_port=True)
    second = await sipp.uas("uas_answer", media_port=True)
    app = WebApp({"/after": lambda form: "<Response><Hangup/></Response>", "/rec": lambda f: ""})
    await app.start()
    try:
        async with running_engine(engine_config(tmp_path, [])) as engine:
            twiml = (
                f"<Response><Dial action='{app.url('/after')}' timeLimit='2'"
                f" record='record-from-answer-dual' recordingStatusCallback='{app.url('/rec')}'>"
                f"<Sip>sip:carol@127.0.0.1:{second.port}?X-Ticket=7</Sip></Dial></Response>"
            )
            sid = await originate_twiml(engine, f"sip:bob@127.0.0.1:{first.port}?X-Ticket=7", twiml)
            after = next(form for path, form in app.requests if path == "/after")
            async with aiohttp.ClientSession(headers=API_AUTH) as http:
                async with http.get(after["RecordingUrl"] + ".wav") as resp:
                    assert resp.status == 200
                    audio = await resp.read()
                async with http.get(after["RecordingUrl"] + ".json") as resp:
                    meta = await resp.json()
    finally:
        await app.stop()
    assert (await first.result()).returncode == 0
    assert (await second.result()).returncode == 0
    assert after["DialCallStatus"] == "completed" and after["RecordingSid"].startswith("RE")
    assert int(after["RecordingDuration"]) >= 1
    with wave.open(io.BytesIO(audio)) as wav:
        assert wav.getnchannels() == 2 and wav.getframerate() == 8000
        assert 1.0 <= wav.getnframes() / 8000 <= 3.0
    assert meta["call_sid"] == sid and meta["channels"] == 2 and meta["source"] == "DialVerb"
    (callback,) = [form for path, form in app.requests if path == "/rec"]
    assert callback["RecordingStatus"] == "completed" and callback["RecordingChannels"] == "2"
    assert callback["RecordingSid"] == after["RecordingSid"]
