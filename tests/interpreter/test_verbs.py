"""Gather, Record and Dial rules on a fake clock."""

from __future__ import annotations

import pytest

from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.markup.verbs import Client, Number, Sip
from support.interpreter import BASE, Harness, params

MENU = "https://app.test/menu"


# ----------------------------------------------------------------------------------- Gather


def gather(attrs: str = "", body: str = "", after: str = "<Say>fell through</Say>") -> Harness:
    return Harness(
        {BASE: f"<Gather action='/menu' {attrs}>{body}</Gather>{after}", MENU: "<Hangup/>"}
    ).start()


def test_gather_collects_until_finish_on_key_which_is_not_in_digits() -> None:
    h = gather()
    assert isinstance(h.actions[-1], act.CollectDigits)
    h.press("12#")
    assert h.requests[-1].url == MENU
    p = params(h.requests[-1])
    assert p["Digits"] == "12"
    assert p["FinishedOnKey"] == "#"
    assert p["CallStatus"] == "in-progress"
    assert "fell through" not in h.spoken()
    assert h.of(act.DigitsCollected) == [act.DigitsCollected("12", "#")]


def test_gather_timeout_is_counted_between_digits() -> None:
    h = gather("timeout='3'")
    h.send(ev.DigitReceived("7"))
    h.advance(2.5)
    h.send(ev.DigitReceived("8"))  # restarts the timer
    h.advance(2.75)
    assert len(h.requests) == 1
    h.advance(0.25)
    assert len(h.requests) == 2
    assert params(h.requests[-1])["Digits"] == "78"
    assert params(h.requests[-1])["FinishedOnKey"] == ""


def test_gather_num_digits_ends_input_at_once() -> None:
    h = gather("numDigits='2'")
    h.send(ev.DigitReceived("4"))
    h.send(ev.DigitReceived("2"))
    assert h.now == 0.0
    assert params(h.requests[-1])["Digits"] == "42"


def test_gather_empty_result_falls_through_after_timeout() -> None:
    h = gather("timeout='5'")
    h.advance(4.9)
    assert h.spoken() == []
    h.advance(0.1)
    assert h.spoken() == ["fell through"]
    assert len(h.requests) == 1
    assert h.of(act.DigitsCollected) == [act.DigitsCollected("", "")]


def test_gather_only_finish_key_is_an_empty_result() -> None:
    h = gather()
    h.send(ev.DigitReceived("#"))
    assert h.spoken() == ["fell through"]


def test_gather_action_on_empty_result_requests_action() -> None:
    h = gather("actionOnEmptyResult='true' timeout='2'")
    h.advance(2)
    assert h.requests[-1].url == MENU
    assert params(h.requests[-1])["Digits"] == ""
    assert h.spoken() == []


def test_gather_without_action_requests_current_url() -> None:
    h = Harness({BASE: "<Gather numDigits='1'/>"}).start()
    h.send(ev.DigitReceived("9"))
    assert [r.url for r in h.requests] == [BASE, BASE]
    assert params(h.requests[1])["Digits"] == "9"


def test_gather_timer_starts_after_nested_prompts() -> None:
    h = gather(
        "timeout='2'", "<Say>press one</Say><Pause length='3'/><Play>https://x.test/m.wav</Play>"
    )
    speak = h.actions[-1]
    assert isinstance(speak, act.Speak) and speak.barge_in
    h.advance(10)  # the prompt is still playing: no timeout yet
    assert len(h.requests) == 1 and h.spoken() == ["press one"]
    h.finish_playback()
    assert isinstance(h.actions[-1], act.Pause)
    h.advance(3)
    assert isinstance(h.actions[-1], act.Play)
    h.finish_playback()
    h.advance(1.9)
    assert h.spoken() == ["press one"]
    h.advance(0.1)
    assert h.spoken() == ["press one", "fell through"]


def test_gather_barge_in_stops_prompt_and_skips_the_rest() -> None:
    h = gather("numDigits='1'", "<Say>first</Say><Say>second</Say>")
    first = h.last_playback_id()
    out = h.send(ev.DigitReceived("3"))
    assert act.StopPlayback(first) in out
    assert h.spoken() == ["first"]
    assert params(h.requests[-1])["Digits"] == "3"


def test_gather_barge_in_then_timeout() -> None:
    h = gather("timeout='4'", "<Say>first</Say><Say>second</Say>")
    h.send(ev.DigitReceived("5"))
    h.send(ev.PlaybackFinished(h.last_playback_id()))  # late report of the stopped prompt
    assert h.spoken() == ["first"]
    h.advance(4)
    assert params(h.requests[-1])["Digits"] == "5"


def test_gather_empty_finish_on_key_disables_it() -> None:
    h = gather("finishOnKey='' timeout='1'")
    h.send(ev.DigitReceived("#"))
    h.advance(1)
    assert params(h.requests[-1])["Digits"] == "#"


def test_gather_digits_are_bounded() -> None:
    h = gather("finishOnKey='' timeout='1'")
    for _ in range(200):
        h.send(ev.DigitReceived("1"))
    assert len(params(h.requests[-1])["Digits"]) == 64


def test_caller_hangs_up_during_gather_requests_nothing() -> None:
    h = gather()
    h.send(ev.DigitReceived("1"))
    h.send(ev.CallerHungUp())
    assert len(h.requests) == 1
    assert h.session.finished


# ----------------------------------------------------------------------------------- Record


def test_record_posts_recording_to_action() -> None:
    h = Harness(
        {
            BASE: "<Record action='done' maxLength='20' playBeep='false'/><Say>x</Say>",
            "https://app.test/done": "<Hangup/>",
        }
    ).start()
    start = h.actions[-1]
    assert start == act.StartRecording(
        timeout=5, finish_on_key="1234567890*#", max_length=20, play_beep=False, sid="RE" + "f" * 32
    )
    h.send(ev.RecordingFinished("https://rec.test/RE1", 7, "#"))
    p = params(h.requests[-1])
    assert h.requests[-1].url == "https://app.test/done"
    assert p["RecordingUrl"] == "https://rec.test/RE1"
    assert p["RecordingDuration"] == "7"
    assert p["RecordingSid"] == "RE" + "f" * 32
    assert p["Digits"] == "#"
    assert h.spoken() == []


def test_record_without_action_requests_current_url() -> None:
    h = Harness({BASE: "<Record/>"}).start()
    h.send(ev.RecordingFinished("https://rec.test/1", 3, "", sid="RE" + "a" * 32))
    assert h.requests[-1].url == BASE
    assert params(h.requests[-1])["RecordingSid"] == "RE" + "a" * 32
    assert "Digits" not in params(h.requests[-1])


def test_empty_recording_continues_without_request() -> None:
    h = Harness({BASE: "<Record action='done'/><Say>nothing heard</Say>"}).start()
    h.send(ev.RecordingFinished("https://rec.test/1", 0))
    assert len(h.requests) == 1
    assert h.spoken() == ["nothing heard"]


def test_hangup_during_record_still_posts_with_digits_hangup() -> None:
    h = Harness({BASE: "<Record action='done'/>", "https://app.test/done": "<Say>x</Say>"})
    h.start()
    out = h.send(ev.CallerHungUp())
    assert out == [act.StopRecording()]
    assert not h.session.finished
    h.send(ev.RecordingFinished("https://rec.test/1", 4, ""))
    fetch = h.of(act.Fetch)[-1]
    assert isinstance(fetch, act.Fetch) and fetch.final
    p = params(h.requests[-1])
    assert p["Digits"] == "hangup"
    assert p["CallStatus"] == "completed"
    assert h.session.finished
    assert h.spoken() == []  # the returned document is not run


def test_hangup_during_record_gives_up_after_grace() -> None:
    h = Harness({BASE: "<Record action='done'/>"}).start()
    h.send(ev.CallerHungUp())
    h.advance(5)
    assert h.session.finished
    assert len(h.requests) == 1


# ------------------------------------------------------------------------------------- Dial


def test_dial_without_action_continues() -> None:
    h = Harness({BASE: "<Dial timeout='10' callerId='+15550000'>+15551234</Dial><Say>after</Say>"})
    h.start()
    start = h.actions[-1]
    assert isinstance(start, act.StartDial)
    (number,) = start.targets
    assert isinstance(number, Number) and number.number == "+15551234"
    assert start.timeout == 10 and start.caller_id == "+15550000"
    assert h.spoken() == []
    h.send(ev.DialFinished("completed", "CA" + "3" * 32, 42))
    assert h.spoken() == ["after"]
    assert len(h.requests) == 1


def test_dial_noun_urls_are_resolved_against_the_document() -> None:
    h = Harness(
        {
            BASE: "<Dial><Number url='whisper' statusCallback='/child' amdStatusCallback='amd'"
            " machineDetection='Enable'>+15551234</Number>"
            "<Client url='/screen' statusCallback='https://cb.test/c'>alice</Client></Dial>"
        }
    ).start()
    start = h.actions[-1]
    assert isinstance(start, act.StartDial)
    number, client = start.targets
    assert isinstance(number, Number) and isinstance(client, Client)
    assert (number.url, number.status_callback, number.amd_status_callback) == (
        "https://app.test/whisper",
        "https://app.test/child",
        "https://app.test/amd",
    )
    assert (client.url, client.status_callback) == ("https://app.test/screen", "https://cb.test/c")


def test_dial_with_action_posts_dial_parameters() -> None:
    h = Harness(
        {
            BASE: "<Dial action='/after-dial'><Sip>sip:bob@example.com;secure=true</Sip></Dial>"
            "<Say>never</Say>",
            "https://app.test/after-dial": "<Hangup/>",
        }
    ).start()
    start = h.actions[-1]
    assert isinstance(start, act.StartDial)
    assert start.caller_id == "+15005550006"  # the caller's number by default
    sip = start.targets[0]
    assert isinstance(sip, Sip) and sip.target is not None and sip.target.secure
    h.send(
        ev.DialFinished("busy", "CA" + "4" * 32, 0, sip_call_id="abc@host", sip_response_code=486)
    )
    p = params(h.requests[-1])
    assert p["DialCallStatus"] == "busy"
    assert p["DialCallSid"] == "CA" + "4" * 32
    assert p["DialCallDuration"] == "0"
    assert p["DialSipCallId"] == "abc@host"
    assert p["DialSipResponseCode"] == "486"
    assert p["DialBridged"] == "false"
    assert h.spoken() == []


def test_dial_action_carries_bridged_and_the_far_ends_x_headers() -> None:
    h = Harness(
        {
            BASE: "<Dial action='/after'><Sip>sip:bob@example.com</Sip></Dial>",
            "https://app.test/after": "<Hangup/>",
        }
    ).start()
    h.send(
        ev.DialFinished(
            "completed",
            "CA" + "4" * 32,
            12,
            sip_response_code=200,
            sip_headers=(("X-Agent", "42"), ("X-Queue", "sales")),
        )
    )
    p = params(h.requests[-1])
    assert p["DialBridged"] == "true" and p["DialCallDuration"] == "12"
    assert p["DialSipHeader_X-Agent"] == "42" and p["DialSipHeader_X-Queue"] == "sales"


def test_dial_answer_on_bridge_does_not_answer_first() -> None:
    h = Harness(
        {BASE: "<Dial answerOnBridge='true'>+1555</Dial><Say>after</Say>"}, auto_answer=False
    ).start()
    assert h.of(act.Answer) == []
    start = h.actions[-1]
    assert isinstance(start, act.StartDial) and start.answer_on_bridge
    h.send(ev.Answered())  # the driver answers when the far end does
    h.send(ev.DialFinished("completed", "CA" + "5" * 32, 12))
    assert h.spoken() == ["after"]
    assert h.of(act.Answer) == []


def test_dial_unknown_status_is_failed() -> None:
    h = Harness({BASE: "<Dial action='/d'>+1555</Dial>", "https://app.test/d": "<Hangup/>"}).start()
    h.send(ev.DialFinished("exploded"))
    assert params(h.requests[-1])["DialCallStatus"] == "failed"


def test_hangup_during_dial_stops_it_and_posts_final_request() -> None:
    h = Harness({BASE: "<Dial action='/d'>+1555</Dial>", "https://app.test/d": "<Say>x</Say>"})
    h.start()
    assert h.send(ev.CallerHungUp()) == [act.StopDial()]
    h.send(ev.DialFinished("completed", "CA" + "6" * 32, 30))
    assert params(h.requests[-1])["DialCallStatus"] == "completed"
    assert h.session.finished and h.spoken() == []


def test_play_digits_sends_dtmf() -> None:
    h = Harness({BASE: "<Play digits='ww12#'/>"}).start()
    assert isinstance(h.actions[-1], act.SendDigits)
    assert h.actions[-1].digits == "ww12#"


@pytest.mark.parametrize(
    ("events", "duration", "expected"),
    [
        ("", 7, ["completed"]),
        ("in-progress completed absent", 7, ["in-progress", "completed"]),
        ("in-progress completed absent", 0, ["in-progress", "absent"]),
        ("in-progress", 7, ["in-progress"]),
    ],
)
def test_record_recording_status_callback(events: str, duration: int, expected: list[str]) -> None:
    """``recordingStatusCallback``: Twilio's parameters, for exactly the events asked for,
    resolved against the document's URL; a callback, not a document."""
    event_attr = f" recordingStatusCallbackEvent='{events}'" if events else ""
    h = Harness(
        {
            BASE: f"<Record action='done' recordingStatusCallback='/rec-status'{event_attr}/>",
            "https://app.test/done": "<Hangup/>",
        }
    ).start()
    h.send(ev.RecordingFinished("https://rec.test/RE1" if duration else "", duration, "#"))
    callbacks = [a.request for a in h.of(act.Callback)]
    assert [dict(r.params)["RecordingStatus"] for r in callbacks] == expected
    for request in callbacks:
        p = params(request)
        assert request.url == "https://app.test/rec-status" and request.method == "POST"
        assert p["RecordingSid"] == "RE" + "f" * 32 and p["CallSid"].startswith("CA")
        assert p["RecordingSource"] == "RecordVerb" and p["AccountSid"].startswith("AC")
    completed = [params(r) for r in callbacks if params(r)["RecordingStatus"] == "completed"]
    for p in completed:
        assert p["RecordingUrl"] == "https://rec.test/RE1" and p["RecordingDuration"] == "7"


@pytest.mark.parametrize("bridged", [True, False])
def test_dial_record_reports_the_recording(bridged: bool) -> None:
    """``<Dial record>``: the dial is asked to record under a fresh sid; the action gets
    ``RecordingUrl``/``RecordingSid``/``RecordingDuration`` and ``recordingStatusCallback``
    ``completed`` (or ``absent`` when nothing was bridged)."""
    h = Harness(
        {
            BASE: "<Dial action='/after' record='record-from-answer-dual' "
            "recordingStatusCallback='/rec' recordingStatusCallbackEvent='completed absent'>"
            "<Sip>sip:bob@example.com</Sip></Dial>",
            "https://app.test/after": "<Hangup/>",
        }
    ).start()
    start = h.actions[-1]
    assert isinstance(start, act.StartDial) and start.record == "record-from-answer-dual"
    assert start.recording_sid == "RE" + "f" * 32
    if bridged:
        h.send(
            ev.DialFinished(
                "completed",
                "CA" + "4" * 32,
                9,
                recording_url="https://engine.test/RE1",
                recording_duration=9,
                recording_channels=2,
            )
        )
    else:
        h.send(ev.DialFinished("busy", "CA" + "4" * 32, 0))
    (callback,) = [a.request for a in h.of(act.Callback)]
    sent = params(callback)
    assert callback.url == "https://app.test/rec" and sent["RecordingSource"] == "DialVerb"
    p = params(h.requests[-1])
    if bridged:
        assert sent["RecordingStatus"] == "completed" and sent["RecordingChannels"] == "2"
        assert p["RecordingUrl"] == "https://engine.test/RE1" and p["RecordingDuration"] == "9"
        assert p["RecordingSid"] == "RE" + "f" * 32
    else:
        assert sent["RecordingStatus"] == "absent" and "RecordingUrl" not in p
