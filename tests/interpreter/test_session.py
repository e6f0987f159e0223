"""CallSession rules, one fake-clock test per Twilio rule (documents, answer, fetch loops,
fallback, relative URLs, parameters)."""

from __future__ import annotations

import re

import pytest

from callxml.errors import InterpreterError, LocalProtocolError, WebhookError
from callxml.interpreter import CallInfo, CallSession, Limits, State, new_sid
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from support.interpreter import BASE, CALL, Harness, params


def test_call_sid_format() -> None:
    sid = CallInfo.new(from_="+1", to="+2").call_sid
    assert re.fullmatch(r"CA[0-9a-f]{32}", sid)
    assert re.fullmatch(r"AC[0-9a-f]{32}", CallInfo.new(from_="+1", to="+2").account_sid)
    assert new_sid("RE") != new_sid("RE")
    with pytest.raises(ValueError):
        new_sid("re")


def test_first_request_carries_twilio_parameters() -> None:
    h = Harness({BASE: "<Say>hi</Say>"}).start()
    first = h.requests[0]
    assert first.method == "POST"
    assert first.url == BASE
    assert [name for name, _ in first.params] == [
        "CallSid",
        "AccountSid",
        "From",
        "To",
        "Caller",
        "Called",
        "CallStatus",
        "Direction",
        "ApiVersion",
    ]
    p = params(first)
    assert p["CallSid"] == CALL.call_sid
    assert p["From"] == p["Caller"] == "+15005550006"
    assert p["To"] == p["Called"] == "+15005550001"
    assert p["CallStatus"] == "ringing"
    assert p["Direction"] == "inbound"
    assert p["ApiVersion"] == "2010-04-01"


def test_document_runs_top_to_bottom_then_hangs_up() -> None:
    h = Harness({BASE: "<Say>one</Say><Play>https://cdn.test/a.mp3</Play><Say>two</Say>"})
    h.start()
    assert h.spoken() == ["one"]
    h.finish_playback()
    assert isinstance(h.actions[-1], act.Play)
    assert h.actions[-1].url == "https://cdn.test/a.mp3"
    h.finish_playback()
    h.finish_playback()
    assert h.spoken() == ["one", "two"]
    assert isinstance(h.actions[-1], act.Hangup)
    assert h.session.finished
    assert h.session.status == "completed"
    assert h.session.error is None


def test_answers_before_first_media_verb_and_waits_for_answered() -> None:
    h = Harness({BASE: "<Say>hello</Say>"}, auto_answer=False).start()
    assert isinstance(h.actions[-1], act.Answer)
    assert h.spoken() == []  # nothing plays before the call is answered
    h.send(ev.Answered())
    assert h.spoken() == ["hello"]
    assert h.session.status == "in-progress"


def test_reject_first_does_not_answer() -> None:
    h = Harness({BASE: "<Reject reason='busy'/><Say>never</Say>"}).start()
    assert h.of(act.Answer) == []
    assert h.actions[-1] == act.Reject(486, "busy")
    assert h.session.status == "busy"
    assert h.spoken() == []
    h2 = Harness({BASE: "<Reject/>"}).start()
    assert h2.actions[-1] == act.Reject(603, "rejected")
    assert h2.session.status == "no-answer"


def test_reject_after_answer_hangs_up_with_warning() -> None:
    h = Harness({BASE: "<Say>hi</Say><Reject/>"}).start()
    h.finish_playback()
    assert h.of(act.Reject) == []
    assert isinstance(h.actions[-1], act.Hangup)
    assert any(isinstance(a, act.Log) and "already answered" in a.message for a in h.actions)


def test_pause_first_delays_answer_on_the_clock() -> None:
    h = Harness({BASE: "<Pause length='3'/><Say>late</Say>"}).start()
    assert h.of(act.Answer) == []
    assert h.session.next_timer() == 3.0
    h.advance(2.9)
    assert h.spoken() == []
    h.advance(0.1)
    assert len(h.of(act.Answer)) == 1
    assert h.spoken() == ["late"]


def test_hangup_answers_first_then_ends() -> None:
    h = Harness({BASE: "<Hangup/><Say>never</Say>"}).start()
    kinds = [type(a) for a in h.actions]
    assert kinds == [act.Fetch, act.VerbStarted, act.Answer, act.Hangup]
    assert h.session.status == "completed"


def test_redirect_relative_url_and_verbs_after_it_never_run() -> None:
    h = Harness(
        {
            BASE: "<Redirect method='GET'>flows/next.xml</Redirect><Say>never</Say>",
            "https://app.test/flows/next.xml": "<Redirect>../end</Redirect>",
            "https://app.test/end": "<Say>done</Say>",
        }
    ).start()
    assert [r.url for r in h.requests] == [
        BASE,
        "https://app.test/flows/next.xml",
        "https://app.test/end",
    ]
    assert h.requests[1].method == "GET"
    started = h.of(act.VerbStarted)
    assert [type(a.verb).__name__ for a in started] == ["Redirect", "Redirect", "Say"]
    assert started[1].url == "https://app.test/flows/next.xml"
    assert h.requests[2].method == "POST"
    assert h.spoken() == ["done"]


def test_redirect_loop_stops_after_ten_fetches() -> None:
    h = Harness({BASE: "<Redirect>voice</Redirect>"}).start()
    assert len(h.requests) == 10
    assert h.session.finished
    assert isinstance(h.session.error, InterpreterError)
    assert "more than 10 documents" in str(h.session.error)
    assert isinstance(h.actions[-1], act.Hangup)


def test_fetch_counter_resets_on_a_verb_that_waits() -> None:
    # Say + Redirect back: the caller hears something each time, so this is not a runaway loop.
    h = Harness(
        {BASE: "<Say>again</Say><Redirect>voice</Redirect>"},
        auto_playback=True,
        limits=Limits(documents_per_call=30),
    ).start()
    assert len(h.requests) == 30
    assert isinstance(h.session.error, InterpreterError)
    assert "30 documents" in str(h.session.error)


def test_fetch_failure_without_fallback_ends_call_with_error() -> None:
    h = Harness({BASE: WebhookError("connection refused", error_code=11205, url=BASE)}).start()
    assert h.session.finished
    assert isinstance(h.session.error, WebhookError)
    assert h.session.error.error_code == 11205
    assert h.session.status == "failed"
    assert [type(a) for a in h.actions] == [act.Fetch, act.Log, act.Hangup]


def test_fetch_failure_requests_fallback_with_error_code_and_url() -> None:
    fallback = "https://backup.test/fallback"
    h = Harness(
        {BASE: WebhookError("HTTP 500", error_code=11200, url=BASE), fallback: "<Say>sorry</Say>"},
        fallback_url=fallback,
    ).start()
    assert [r.url for r in h.requests] == [BASE, fallback]
    p = params(h.requests[1])
    assert p["ErrorCode"] == "11200"
    assert p["ErrorUrl"] == BASE
    assert p["CallSid"] == CALL.call_sid
    assert h.spoken() == ["sorry"]
    assert h.session.error is None


def test_invalid_markup_is_error_12100_and_uses_fallback() -> None:
    fallback = "https://backup.test/fallback"
    h = Harness(
        {BASE: "<Response><Bogus/></Response>", fallback: "<Hangup/>"}, fallback_url=fallback
    ).start()
    p = params(h.requests[1])
    assert p["ErrorCode"] == "12100"
    assert h.session.status == "completed"


def test_invalid_markup_without_fallback() -> None:
    h = Harness({BASE: "not xml at all"}).start()
    assert isinstance(h.session.error, WebhookError)
    assert h.session.error.error_code == 12100


def test_failing_fallback_is_not_retried() -> None:
    fallback = "https://backup.test/fallback"
    h = Harness({}, fallback_url=fallback).start()
    assert [r.url for r in h.requests] == [BASE, fallback]
    assert h.session.finished
    assert h.session.error is not None


def test_fallback_also_covers_action_requests() -> None:
    fallback = "https://backup.test/fallback"
    h = Harness(
        {BASE: "<Gather action='/missing' numDigits='1'/>", fallback: "<Say>oops</Say>"},
        fallback_url=fallback,
    ).start()
    h.press("4")
    assert [r.url for r in h.requests] == [BASE, "https://app.test/missing", fallback]
    p = params(h.requests[2])
    assert p["Digits"] == "4"
    assert p["ErrorUrl"] == "https://app.test/missing"


def test_relative_urls_resolve_against_final_document_url() -> None:
    h = Harness(
        {
            BASE: "<Redirect>/ivr/start.xml</Redirect>",
            "https://app.test/ivr/start.xml": "<Redirect>menu.xml</Redirect>",
            "https://app.test/ivr/menu.xml": "<Hangup/>",
        }
    ).start()
    assert h.requests[-1].url == "https://app.test/ivr/menu.xml"
    assert h.session.current_url == "https://app.test/ivr/menu.xml"


def test_unsupported_verbs_are_skipped_with_a_warning() -> None:
    h = Harness({BASE: "<Pay/><Say>after</Say>"}).start()
    warnings = [a for a in h.of(act.Log) if a.level == "warning"]
    assert any("Pay" in a.message for a in warnings)
    assert h.spoken() == ["after"]


def test_markup_warnings_reach_the_call_log() -> None:
    h = Harness({BASE: "<Dial><Sip>sip:bob@example.com;secure=maybe</Sip></Dial>"}).start()
    assert any("secure=maybe" in a.message for a in h.of(act.Log))


def test_verbs_per_call_bound() -> None:
    h = Harness(
        {BASE: "<Say>a</Say>" * 5}, auto_playback=True, limits=Limits(verbs_per_call=3)
    ).start()
    assert h.spoken() == ["a", "a", "a"]
    assert isinstance(h.session.error, InterpreterError)


def test_verbs_per_document_bound() -> None:
    h = Harness({BASE: "<Pause/>" * 5}, limits=Limits(verbs_per_document=4)).start()
    assert h.session.error is not None
    assert "more than 4" in str(h.session.error)


def test_caller_hangs_up_during_playback() -> None:
    h = Harness({BASE: "<Say>hi</Say><Say>never</Say>"}).start()
    assert h.send(ev.CallerHungUp()) == []
    assert h.session.finished
    assert h.session.status == "completed"
    h.finish_playback()
    assert h.spoken() == ["hi"]


def test_caller_hangs_up_before_answer_is_canceled() -> None:
    h = Harness({BASE: "<Pause length='5'/><Say>x</Say>"}).start()
    h.send(ev.CallerHungUp())
    assert h.session.status == "canceled"
    assert h.session.next_timer() is None


def test_stale_and_unexpected_events_are_ignored() -> None:
    h = Harness({BASE: "<Say>hi</Say>"}).start()
    assert h.send(ev.PlaybackFinished(999)) == []
    assert h.send(ev.DigitReceived("5")) == []
    assert h.send(ev.RecordingFinished("u", 3)) == []
    assert not h.session.finished


def test_start_twice_is_a_local_error() -> None:
    session = CallSession(url=BASE, call=CALL)
    session.start(0.0)
    with pytest.raises(LocalProtocolError):
        session.start(0.0)


def test_status_not_2xx_in_a_response_is_a_failure() -> None:
    from callxml.webhooks import WebhookResponse

    session = CallSession(url=BASE, call=CALL)
    (fetch,) = session.start(0.0)
    assert isinstance(fetch, act.Fetch)
    out = session.receive(
        ev.DocumentFetched(
            WebhookResponse(
                request=fetch.request, status=503, body=b"", content_type="", url=BASE, elapsed=0
            )
        ),
        0.0,
    )
    assert isinstance(out[-1], act.Hangup)
    assert session.state is State.ENDED
    assert isinstance(session.error, WebhookError)
    assert "503" in str(session.error)
