"""The call driver against a fake leg: each interpreter action becomes the right leg operation."""

from __future__ import annotations

import asyncio
import logging
import wave
from pathlib import Path
from typing import Any

import pytest

from callxml.interpreter import CallInfo, CallSession
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.runtime.session import INTERNAL_ERROR, CallRunner, RuntimeServices, webhook_event
from callxml.simulator.memory import MemoryFetcher
from callxml.webhooks.base import WebhookRequest
from support.fakes import FakeAudio, FakeLeg, MemoryCallLog
from support.waiting import until

BASE = "http://app.test"
CALL = CallInfo(
    call_sid="CA" + "1" * 32,
    account_sid="AC" + "2" * 32,
    from_="sip:alice@example.com",
    to="sip:ivr@demo.test",
)


def doc(*verbs: str) -> str:
    return "<Response>" + "".join(verbs) + "</Response>"


def runner(
    routes: dict[str, object],
    leg: FakeLeg,
    tmp_path: Path,
    *,
    dial: object = None,
    url: str = f"{BASE}/voice",
    inline: bytes | None = None,
) -> tuple[CallRunner, MemoryCallLog, MemoryFetcher]:
    fetcher = MemoryFetcher(routes)  # type: ignore[arg-type]
    call_log = MemoryCallLog()
    services = RuntimeServices(
        fetcher=fetcher,
        audio=FakeAudio(),
        dial=dial,  # type: ignore[arg-type]
        recordings_dir=tmp_path / "recordings",
    )
    session = CallSession(url=url, call=CALL, answered=leg.answered)
    return CallRunner(session, leg, services, call_log, inline_document=inline), call_log, fetcher


async def run(r: CallRunner) -> str:
    return await asyncio.wait_for(r.run(), 10)


async def test_say_then_hangup_answers_plays_and_hangs_up(tmp_path: Path) -> None:
    leg = FakeLeg()
    r, call_log, _ = runner(
        {f"{BASE}/voice": doc("<Say>Hello there</Say><Hangup/>")}, leg, tmp_path
    )
    assert await run(r) == "completed"
    assert leg.answer_count == 1
    assert leg.played == [b"SAY:Hello there"]
    assert leg.hung_up == "<Hangup>"
    hook = call_log.kinds("webhook")[0]
    assert hook["method"] == "POST" and hook["url"] == f"{BASE}/voice"
    assert hook["parameters"]["CallSid"] == CALL.call_sid
    assert hook["status"] == 200 and "<Say>" in hook["body"] and hook["error"] is None
    assert isinstance(hook["duration_ms"], int)
    assert [d["verb"] for d in call_log.kinds("verb")] == ["Say", "Hangup"]
    assert call_log.statuses[0][0] == "in-progress"
    final, changes = call_log.statuses[-1]
    assert final == "completed" and changes["duration"] >= 0 and "end_time" in changes


async def test_reject_first_never_answers(tmp_path: Path) -> None:
    leg = FakeLeg()
    r, call_log, _ = runner({f"{BASE}/voice": doc('<Reject reason="busy"/>')}, leg, tmp_path)
    assert await run(r) == "busy"
    assert leg.rejected == (486, "busy")
    assert leg.answer_count == 0 and leg.hung_up is None
    assert call_log.statuses[-1][0] == "busy"


async def test_reject_rejected_is_603(tmp_path: Path) -> None:
    leg = FakeLeg()
    r, _, _ = runner({f"{BASE}/voice": doc("<Reject/>")}, leg, tmp_path)
    await run(r)
    assert leg.rejected == (603, "rejected")


async def test_gather_barge_in_posts_digits_and_runs_next_document(tmp_path: Path) -> None:
    async def caller(leg: FakeLeg, pcm: bytes) -> None:
        if pcm == b"SAY:Press 1":
            leg.press("1")

    leg = FakeLeg(on_play=caller, play_seconds=0.01)
    routes = {
        f"{BASE}/voice": doc(
            '<Gather numDigits="1" action="/menu"><Say>Press 1</Say><Say>or else</Say></Gather>'
        ),
        f"{BASE}/menu": lambda req: doc(f"<Say>You pressed {dict(req.params)['Digits']}</Say>"),
    }
    r, call_log, _ = runner(routes, leg, tmp_path)
    assert await run(r) == "completed"
    assert b"SAY:or else" not in leg.played  # the key stopped the prompts
    assert leg.played[-1] == b"SAY:You pressed 1"
    menu = call_log.kinds("webhook")[1]
    assert menu["url"] == f"{BASE}/menu" and menu["parameters"]["Digits"] == "1"


async def test_gather_finish_on_key(tmp_path: Path) -> None:
    async def caller(leg: FakeLeg, pcm: bytes) -> None:
        leg.press("42#")

    leg = FakeLeg(on_play=caller)
    routes = {
        f"{BASE}/voice": doc('<Gather action="/got"><Say>Your PIN</Say></Gather>'),
        f"{BASE}/got": doc("<Hangup/>"),
    }
    r, call_log, _ = runner(routes, leg, tmp_path)
    await run(r)
    params = call_log.kinds("webhook")[1]["parameters"]
    assert params["Digits"] == "42" and params["FinishedOnKey"] == "#"


async def test_play_failure_is_a_warning_and_the_call_goes_on(tmp_path: Path) -> None:
    leg = FakeLeg()
    routes = {f"{BASE}/voice": doc("<Play>http://media.test/bad.wav</Play><Say>after</Say>")}
    r, call_log, _ = runner(routes, leg, tmp_path)
    await run(r)
    assert leg.played == [b"SAY:after"]
    assert any("bad.wav" in w["message"] for w in call_log.kinds("warning"))


async def test_play_loop_and_digits(tmp_path: Path) -> None:
    leg = FakeLeg()
    routes = {
        f"{BASE}/voice": doc(
            '<Play loop="2">http://media.test/a.wav</Play><Play digits="12w3"></Play>'
        )
    }
    r, _, _ = runner(routes, leg, tmp_path)
    await run(r)
    assert leg.played == [b"PLAY:http://media.test/a.wav"] * 2
    assert leg.digits_sent == ["12", "3"]


async def test_record_until_finish_key_saves_wav_and_posts_url(tmp_path: Path) -> None:
    async def caller(leg: FakeLeg, pcm: bytes) -> None:
        if not pcm.startswith(b"SAY:"):  # the beep
            loop = asyncio.get_running_loop()  # the caller speaks after the beep
            loop.call_later(0.02, leg.speak, 100)  # two seconds of speech
            loop.call_later(0.03, leg.press, "#")

    leg = FakeLeg(on_play=caller)
    routes = {
        f"{BASE}/voice": doc("<Say>Leave a message</Say>", '<Record action="/done" timeout="5"/>'),
        f"{BASE}/done": doc("<Hangup/>"),
    }
    r, call_log, _ = runner(routes, leg, tmp_path)
    await run(r)
    params = call_log.kinds("webhook")[1]["parameters"]
    assert params["Digits"] == "#"
    assert params["RecordingDuration"] == "2"
    sid, path, _duration = call_log.recordings[0]
    assert params["RecordingSid"] == sid and params["RecordingUrl"].endswith(sid)
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == 8000 and wav.getnchannels() == 1
        assert 1.9 < wav.getnframes() / 8000 <= 2.0


async def test_record_status_callback_is_sent_with_the_saved_recording(tmp_path: Path) -> None:
    """``<Record recordingStatusCallback>`` on a real call: the callback goes out through the
    (signed) fetcher with the recording's sid and URL, is logged as a ``callback`` event, and
    its answer is not run as a document."""

    async def caller(leg: FakeLeg, pcm: bytes) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, leg.speak, 100)
        loop.call_later(0.03, leg.press, "#")

    leg = FakeLeg(on_play=caller)
    routes = {
        f"{BASE}/voice": doc(
            '<Record action="/done" recordingStatusCallback="/rec"'
            ' recordingStatusCallbackEvent="in-progress completed"/>'
        ),
        f"{BASE}/done": doc("<Hangup/>"),
        f"{BASE}/rec": doc("<Say>not run</Say>"),
    }
    r, call_log, _ = runner(routes, leg, tmp_path)
    await run(r)
    await until(lambda: len(call_log.kinds("callback")) == 2, what="two recording callbacks")
    sent = [c["parameters"] for c in call_log.kinds("callback")]
    assert [p["RecordingStatus"] for p in sent] == ["in-progress", "completed"]
    sid, _path, _duration = call_log.recordings[0]
    assert all(p["RecordingSid"] == sid for p in sent)
    assert sent[1]["RecordingUrl"].endswith(sid) and sent[1]["RecordingDuration"] == "2"
    assert all(c["url"] == f"{BASE}/rec" and c["status"] == 200 for c in call_log.kinds("callback"))
    assert b"SAY:not run" not in leg.played


async def test_record_caller_hangs_up(tmp_path: Path) -> None:
    async def caller(leg: FakeLeg, pcm: bytes) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, leg.speak, 60)
        loop.call_later(0.03, leg.caller_hangs_up)

    leg = FakeLeg(on_play=caller)
    routes = {
        f"{BASE}/voice": doc('<Record action="/done" playBeep="true"/>'),
        f"{BASE}/done": doc("<Say>never run</Say>"),
    }
    r, call_log, _ = runner(routes, leg, tmp_path)
    assert await run(r) == "completed"
    params = call_log.kinds("webhook")[1]["parameters"]
    assert params["Digits"] == "hangup" and params["RecordingDuration"] == "1"
    assert b"SAY:never run" not in leg.played
    assert leg.hung_up is None  # the caller ended it


async def test_caller_hangs_up_during_prompt(tmp_path: Path) -> None:
    async def caller(leg: FakeLeg, pcm: bytes) -> None:
        leg.caller_hangs_up()

    leg = FakeLeg(on_play=caller, play_seconds=5)
    r, _, _ = runner({f"{BASE}/voice": doc("<Say>long</Say>")}, leg, tmp_path)
    assert await run(r) == "completed"
    assert leg.hung_up is None


async def test_fetch_failure_without_fallback_fails_the_call(tmp_path: Path) -> None:
    leg = FakeLeg()
    r, call_log, _ = runner({}, leg, tmp_path)
    assert await run(r) == "failed"
    hook = call_log.kinds("webhook")[0]
    assert hook["status"] is None and "no such route" in hook["error"]
    assert hook["error_code"] == 11200
    assert leg.answer_count == 0 and leg.hung_up is not None  # a final error response
    assert call_log.statuses[-1][1]["error"]


async def test_fallback_url_is_used(tmp_path: Path) -> None:
    leg = FakeLeg()
    fetcher = MemoryFetcher({f"{BASE}/fallback": doc("<Say>fallback</Say>")})
    call_log = MemoryCallLog()
    session = CallSession(url=f"{BASE}/voice", call=CALL, fallback_url=f"{BASE}/fallback")
    services = RuntimeServices(fetcher=fetcher, audio=FakeAudio())
    r = CallRunner(session, leg, services, call_log)
    await run(r)
    assert leg.played == [b"SAY:fallback"]
    assert call_log.kinds("webhook")[1]["parameters"]["ErrorCode"] == "11200"


async def test_inline_twiml_runs_without_a_request(tmp_path: Path) -> None:
    leg = FakeLeg(answered=True)
    r, call_log, _ = runner({}, leg, tmp_path, inline=doc("<Say>inline</Say>").encode())
    assert await run(r) == "completed"
    assert leg.played == [b"SAY:inline"] and leg.answer_count == 0
    assert call_log.kinds("webhook") == []


async def test_redirect_from_outside_replaces_the_document(tmp_path: Path) -> None:
    leg = FakeLeg(play_seconds=30)
    routes = {
        f"{BASE}/voice": doc("<Say>a very long prompt</Say>"),
        f"{BASE}/other": doc("<Say>other</Say>"),
    }
    r, call_log, _ = runner(routes, leg, tmp_path)
    task = asyncio.create_task(run(r))
    await until(lambda: leg.played, step=0.01)
    leg.play_seconds = 0
    r.redirect(f"{BASE}/other")
    assert await task == "completed"
    assert leg.played == [b"SAY:a very long prompt", b"SAY:other"]
    assert leg.stops >= 1
    assert call_log.kinds("webhook")[1]["url"] == f"{BASE}/other"


async def test_end_from_outside_hangs_up(tmp_path: Path) -> None:
    leg = FakeLeg(play_seconds=30)
    r, _, _ = runner({f"{BASE}/voice": doc("<Say>long</Say>")}, leg, tmp_path)
    task = asyncio.create_task(run(r))
    await until(lambda: leg.played, step=0.01)
    r.end("completed")
    assert await task == "completed"
    assert leg.hung_up == "ended by the REST API"


async def test_dial_with_answer_on_bridge(tmp_path: Path) -> None:
    seen: list[act.StartDial] = []

    async def dial(action, caller, *, answer_caller, stop):  # type: ignore[no-untyped-def]
        seen.append(action)
        assert not caller.answered
        await answer_caller()
        return ev.DialFinished(
            "completed", "CA" + "3" * 32, 7, sip_call_id="abc@x", sip_response_code=200
        )

    leg = FakeLeg()
    routes = {
        f"{BASE}/voice": doc(
            '<Dial answerOnBridge="true" action="/dialed" timeout="12">'
            "<Sip>sip:jack@example.com;secure=true</Sip></Dial>"
        ),
        f"{BASE}/dialed": doc("<Hangup/>"),
    }
    r, call_log, _ = runner(routes, leg, tmp_path, dial=dial)
    await run(r)
    assert seen[0].timeout == 12 and seen[0].answer_on_bridge
    assert leg.answer_count == 1
    params = call_log.kinds("webhook")[1]["parameters"]
    assert params["DialCallStatus"] == "completed"
    assert params["DialCallDuration"] == "7"
    assert params["DialSipCallId"] == "abc@x" and params["DialSipResponseCode"] == "200"


async def test_dial_stopped_when_caller_hangs_up(tmp_path: Path) -> None:
    async def dial(action, caller, *, answer_caller, stop):  # type: ignore[no-untyped-def]
        caller.caller_hangs_up()
        await stop.wait()
        return ev.DialFinished("canceled", "", 0, sip_response_code=487, sip_call_id="x")

    leg = FakeLeg()
    routes = {
        f"{BASE}/voice": doc('<Dial action="/dialed"><Sip>sip:jack@example.com</Sip></Dial>'),
        f"{BASE}/dialed": doc("<Say>not run</Say>"),
    }
    r, call_log, _ = runner(routes, leg, tmp_path, dial=dial)
    assert await run(r) == "completed"
    assert call_log.kinds("webhook")[1]["parameters"]["DialCallStatus"] == "canceled"
    assert b"SAY:not run" not in leg.played


async def test_dial_without_dialer_fails_the_verb(tmp_path: Path) -> None:
    leg = FakeLeg()
    routes = {
        f"{BASE}/voice": doc('<Dial action="/d"><Sip>sip:x@example.com</Sip></Dial>'),
        f"{BASE}/d": doc("<Hangup/>"),
    }
    r, call_log, _ = runner(routes, leg, tmp_path)
    await run(r)
    assert call_log.kinds("webhook")[1]["parameters"]["DialCallStatus"] == "failed"


def test_webhook_event_shape() -> None:
    request = WebhookRequest("http://a.test/x", "GET", (("A", "1"),))
    data = webhook_event(request, None, None, 0.25)
    assert data == {
        "method": "GET",
        "url": "http://a.test/x",
        "parameters": {"A": "1"},
        "duration_ms": 250,
        "status": None,
        "body": None,
        "content_type": None,
        "error": None,
    }


async def test_a_driver_failure_ends_the_call_failed_with_a_notification(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 9: any exception inside a call's driver ends the call cleanly — hung up (BYE), the
    record ``failed`` with the error, a notification (an ``error`` event with a code) and the
    traceback in the log — instead of leaving the call ``in-progress`` for ever."""

    def broken_parser(body: bytes) -> Any:
        raise TypeError("a bug in the markup layer")

    leg = FakeLeg(answered=True)
    fetcher = MemoryFetcher({f"{BASE}/voice": doc("<Say>hi</Say>")})
    call_log = MemoryCallLog()
    services = RuntimeServices(fetcher=fetcher, audio=FakeAudio(), recordings_dir=tmp_path)
    session = CallSession(url=f"{BASE}/voice", call=CALL, answered=True, parse=broken_parser)
    with caplog.at_level(logging.ERROR, logger="callxml.runtime.session"):
        status = await run(CallRunner(session, leg, services, call_log))
    assert status == "failed"
    assert leg.hung_up is not None and leg.ended.is_set()
    final, changes = call_log.statuses[-1]
    assert final == "failed" and "TypeError: a bug in the markup layer" in changes["error"]
    (notification,) = [e for e in call_log.kinds("error") if e.get("code") == INTERNAL_ERROR]
    assert "a bug in the markup layer" in notification["message"]
    assert any(r.exc_info and r.exc_info[0] is TypeError for r in caplog.records)


async def test_a_failing_task_ends_the_call_failed(tmp_path: Path) -> None:
    """A bug in one of the call's tasks (here: the audio source) fails the call the same way."""

    class BrokenAudio(FakeAudio):
        async def speech(self, text: str, *, language: str | None, voice: str | None) -> bytes:
            raise KeyError("tts bug")

    leg = FakeLeg()
    fetcher = MemoryFetcher({f"{BASE}/voice": doc("<Say>hi</Say><Pause length='30'/>")})
    call_log = MemoryCallLog()
    services = RuntimeServices(fetcher=fetcher, audio=BrokenAudio(), recordings_dir=tmp_path)
    session = CallSession(url=f"{BASE}/voice", call=CALL)
    status = await run(CallRunner(session, leg, services, call_log))
    assert status == "failed" and leg.hung_up is not None
    assert call_log.statuses[-1][0] == "failed"
    assert any(e.get("code") == INTERNAL_ERROR for e in call_log.kinds("error"))
