"""The simulator's driver on in-memory documents: virtual time, scripted caller, far ends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from callxml.interpreter import Limits
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.simulator import MemoryFetcher, SimulationResult, estimate_speech, simulate
from callxml.simulator.memory import Handler
from callxml.webhooks import WebhookRequest

URL = "https://app.test/voice"
TRUNK = "sip:{number}@trunk.test"


def doc(body: str) -> str:
    return f"<Response>{body}</Response>"


async def run(pages: Mapping[str, Handler], **kw: Any) -> SimulationResult:
    return await simulate(URL, fetcher=MemoryFetcher(pages), **kw)


async def test_said_played_and_virtual_time() -> None:
    result = await run(
        {URL: doc("<Say>Hello there</Say><Pause length='600'/><Play>https://x.test/a.mp3</Play>")}
    )
    assert result.ok and result.status == "completed"
    assert result.said == ["Hello there"]
    assert result.played == ["https://x.test/a.mp3"]
    # 600 s of <Pause> cost no real time but count in simulated time.
    assert result.duration == pytest.approx(estimate_speech("Hello there") + 600 + 5)
    assert any("Pause 600 s" in line for line in result.transcript)


async def test_gather_digits_script_and_action_request() -> None:
    pages: dict[str, Handler] = {
        URL: doc("<Gather action='/menu' numDigits='4'><Say>Enter your PIN</Say></Gather>"),
        "https://app.test/menu": lambda r: doc(
            f"<Say>You entered {dict(r.params)['Digits']}</Say>"
        ),
    }
    result = await run(pages, digits=["1234"])
    assert result.gathered == ["1234"]
    assert result.said == ["Enter your PIN", "You entered 1234"]
    assert result.urls == [URL, "https://app.test/menu"]
    assert result.requests[1].params["Digits"] == "1234"


async def test_gather_without_digits_times_out_and_falls_through() -> None:
    result = await run({URL: doc("<Gather timeout='3'><Say>Hi</Say></Gather><Say>Bye</Say>")})
    assert result.gathered == [""]
    assert result.said == ["Hi", "Bye"]
    assert result.duration == pytest.approx(estimate_speech("Hi") + 3 + estimate_speech("Bye"))


async def test_prompt_is_asked_when_script_runs_out() -> None:
    asked: list[str] = []

    def prompt(what: str) -> str:
        asked.append(what)
        return "7#"

    pages = {URL: doc("<Gather action='/n'/>"), "https://app.test/n": doc("<Hangup/>")}
    result = await run(pages, prompt=prompt)
    assert asked and "Gather" in asked[0]
    assert result.gathered == ["7"]


async def test_secure_sip_dial_is_resolved_to_tls_5061_srtp() -> None:
    result = await run(
        {URL: doc("<Dial><Sip>sip:alice@example.com;secure=true</Sip></Dial>")},
    )
    (dial,) = result.dials
    assert dial.target == "sip:alice@example.com;secure=true"
    assert (dial.transport, dial.port, dial.srtp_suite) == ("tls", 5061, "AES_CM_128_HMAC_SHA1_80")
    assert dial.outcome == "completed" and dial.answered
    assert any("TLS port 5061, SRTP AES_CM_128_HMAC_SHA1_80" in line for line in result.transcript)


async def test_plain_sip_dial_and_explicit_port() -> None:
    result = await run(
        {URL: doc("<Dial><Sip>sip:bob@example.com:5080;transport=tcp</Sip></Dial>")},
    )
    (dial,) = result.dials
    assert (dial.transport, dial.port, dial.srtp_suite) == ("tcp", 5080, None)


async def test_dial_outcomes_reach_the_action_url() -> None:
    pages = {
        URL: doc("<Dial action='/after'><Sip>sip:bob@example.com</Sip></Dial>"),
        "https://app.test/after": doc("<Hangup/>"),
    }
    result = await run(pages, dial_outcomes={"sip:bob@example.com": "busy"})
    p = result.requests[-1].params
    assert p["DialCallStatus"] == "busy"
    assert p["DialSipResponseCode"] == "486"
    assert p["DialSipCallId"].endswith("@simulator.callxml.invalid")
    assert result.dials[0].outcome == "busy"


@pytest.mark.parametrize(
    ("outcome", "status", "elapsed"),
    [("answered", "completed", 12.0), ("no-answer", "no-answer", 7.0), ("failed", "failed", 0.0)],
)
async def test_number_outcomes(outcome: str, status: str, elapsed: float) -> None:
    pages = {
        URL: doc("<Dial action='/after' timeout='7'>+15551234567</Dial>"),
        "https://app.test/after": doc(""),
    }
    result = await run(pages, dial_outcomes={"*": outcome}, trunk_uri_template=TRUNK)
    assert result.requests[-1].params["DialCallStatus"] == status
    assert "DialSipCallId" not in result.requests[-1].params
    assert result.duration == pytest.approx(elapsed)


async def test_a_number_without_a_trunk_fails_as_in_the_engine() -> None:
    """The engine cannot place a <Number> without sip.trunk_uri_template; neither does the
    simulator: the dial fails at once, with the engine's warning, whatever the script says."""
    pages = {
        URL: doc("<Dial action='/after'>+15551234567</Dial>"),
        "https://app.test/after": doc(""),
    }
    result = await run(pages, dial_outcomes={"*": "answered"})
    params = result.requests[-1].params
    assert params["DialCallStatus"] == "failed" and params["DialCallDuration"] == "0"
    assert "DialCallSid" not in params
    assert "warning: Dial +15551234567: no trunk is configured (sip.trunk_uri_template)" in (
        result.log
    )
    assert result.duration == 0


async def test_answer_on_bridge_answers_when_far_end_does() -> None:
    result = await run(
        {URL: doc("<Dial answerOnBridge='true'>+1555</Dial>")}, trunk_uri_template=TRUNK
    )
    kinds = [type(a) for _, a in result.actions]
    assert act.Answer not in kinds[: kinds.index(act.StartDial)]
    assert any(isinstance(e, ev.Answered) for _, e in result.events)
    assert result.answered


async def test_record_with_finish_key_and_silence() -> None:
    pages = {
        URL: doc("<Record action='/r' playBeep='false'/>"),
        "https://app.test/r": doc("<Record action='/r2'/><Say>after empty</Say>"),
    }
    result = await run(pages, digits=["#", ""])
    (recording,) = result.recordings
    assert recording.digits == "#" and recording.duration == 5
    p = result.requests[1].params
    assert p["RecordingUrl"] == recording.url and p["Digits"] == "#"
    assert p["RecordingSid"].startswith("RE")
    # The second <Record> heard silence: no request, the next verb runs.
    assert result.urls == [URL, "https://app.test/r"]
    assert result.said == ["after empty"]


async def test_hangup_after_during_dial_posts_final_request() -> None:
    pages = {
        URL: doc("<Dial action='/after'>+1555</Dial>"),
        "https://app.test/after": doc("<Say>not run</Say>"),
    }
    result = await run(pages, hangup_after=5, trunk_uri_template=TRUNK)
    assert result.duration == pytest.approx(5)
    p = result.requests[-1].params
    assert p["DialCallStatus"] == "completed"
    assert p["DialCallDuration"] == "3"
    assert p["CallStatus"] == "completed"
    assert result.said == []
    assert result.status == "completed" and result.ok


async def test_hangup_after_during_record() -> None:
    pages = {URL: doc("<Record action='/r' playBeep='false'/>"), "https://app.test/r": doc("")}
    result = await run(pages, hangup_after=3)
    assert result.requests[-1].params["Digits"] == "hangup"
    assert result.requests[-1].params["RecordingDuration"] == "3"


async def test_redirect_loop_is_an_error() -> None:
    result = await run({URL: doc("<Redirect/>".replace("/>", ">voice</Redirect>"))})
    assert not result.ok
    assert "more than 10 documents" in (result.error or "")
    assert len(result.requests) == 10


async def test_fetch_failure_and_fallback() -> None:
    fallback = "https://backup.test/fb"
    pages: dict[str, Handler] = {URL: (500, "oops"), fallback: doc("<Say>Sorry</Say>")}
    result = await run(pages, fallback_url=fallback)
    assert result.ok
    assert result.requests[0].error and "500" in result.requests[0].error
    assert result.requests[1].params["ErrorCode"] == "11200"
    assert result.said == ["Sorry"]
    bad = await run({URL: (404, "")})
    assert not bad.ok and bad.status == "failed"


async def test_reject_is_not_answered() -> None:
    result = await run({URL: doc("<Reject reason='busy'/>")})
    assert result.status == "busy" and not result.answered and result.ok


async def test_async_handler_and_get_method() -> None:
    seen: list[WebhookRequest] = []

    async def handler(request: WebhookRequest) -> str:
        seen.append(request)
        return doc("<Hangup/>")

    await run({URL: handler}, method="GET")
    assert seen[0].method == "GET"


async def test_limits_are_passed_through() -> None:
    result = await run({URL: doc("<Pause/>" * 3)}, limits=Limits(verbs_per_call=2))
    assert not result.ok


def test_bad_dial_outcome_is_rejected() -> None:
    from callxml.interpreter import CallInfo, CallSession
    from callxml.simulator.driver import SimulatedCall

    session = CallSession(url=URL, call=CallInfo.new(from_="+1", to="+2"))
    with pytest.raises(ValueError, match="dial outcome"):
        SimulatedCall(session, MemoryFetcher(), dial_outcomes={"x": "maybe"})


async def test_echo_streams_transcript_and_call_sid_is_used() -> None:
    lines: list[str] = []
    sid = "CA" + "ab" * 16
    result = await run({URL: doc("<Say>hi</Say>")}, echo=lines.append, call_sid=sid)
    assert lines == result.transcript
    assert result.call_sid == sid
    assert result.requests[0].params["CallSid"] == sid
    assert lines[-1].endswith("call ended: completed")


async def test_a_driver_failure_ends_the_simulated_call_failed() -> None:
    """Issue 9: a bug under the simulator (here the parser) ends the call ``failed`` with the
    error in the result; it does not escape as an exception."""
    from callxml.interpreter import CallInfo, CallSession
    from callxml.simulator.driver import SimulatedCall

    def broken_parser(body: bytes) -> Any:
        raise TypeError("a bug in the markup layer")

    session = CallSession(url=URL, call=CallInfo.new(from_="+1", to="+2"), parse=broken_parser)
    result = await SimulatedCall(session, MemoryFetcher({URL: doc("<Say>x</Say>")})).run()
    assert result.status == "failed" and not result.ok
    assert result.error == "internal error: TypeError: a bug in the markup layer"


async def test_status_callbacks_are_sent_like_the_engine() -> None:
    """A noun's ``statusCallback`` and ``<Record recordingStatusCallback>`` are sent by the
    simulator too (to the same fetcher), and shown; their answers are not run."""
    pages = {
        URL: doc(
            "<Dial><Number statusCallback='/child' sendDigits='12'"
            " statusCallbackEvent='initiated answered completed'>+15551234567</Number></Dial>"
            "<Record action='/after' recordingStatusCallback='/rec' playBeep='false'/>"
        ),
        "https://app.test/after": doc("<Hangup/>"),
        "https://app.test/child": doc("<Say>not run</Say>"),
        "https://app.test/rec": doc("<Say>not run</Say>"),
    }
    result = await run(pages, trunk_uri_template=TRUNK, digits=["#"])
    child = [dict(c.request.params) for c in result.callbacks if c.request.url.endswith("/child")]
    assert [c["CallStatus"] for c in child] == ["initiated", "in-progress", "completed"]
    assert all(c["ParentCallSid"] == result.call_sid for c in child)
    rec = [dict(c.request.params) for c in result.callbacks if c.request.url.endswith("/rec")]
    assert [r["RecordingStatus"] for r in rec] == ["completed"]
    assert rec[0]["RecordingSid"] == result.recordings[0].url.rsplit("/", 1)[1]
    assert "not run" not in result.said
    assert any("sends digits 12" in line for line in result.transcript)


@pytest.mark.parametrize(
    ("whisper", "status"), [("<Say>You have a call</Say>", "completed"), ("<Hangup/>", "no-answer")]
)
async def test_noun_url_whisper(whisper: str, status: str) -> None:
    """A noun's ``url`` runs on the answering far end before the bridge (with ParentCallSid);
    when it hangs up the dial is ``no-answer``, as in the engine."""
    pages = {
        URL: doc("<Dial action='/after'><Sip url='/whisper'>sip:bob@example.com</Sip></Dial>"),
        "https://app.test/whisper": doc(whisper),
        "https://app.test/after": doc("<Hangup/>"),
    }
    result = await run(pages)
    whispered = next(r for r in result.requests if r.request.url.endswith("/whisper"))
    assert whispered.params["ParentCallSid"] == result.call_sid
    assert whispered.params["Direction"] == "outbound-dial"
    assert result.requests[-1].params["DialCallStatus"] == status
    assert any(line.split("] ", 1)[-1].startswith("  whisper:") for line in result.transcript)


@pytest.mark.parametrize(
    ("mode", "outcome", "answered_by"),
    [
        ("Enable", "answered", "human"),
        ("Enable", "machine", "machine_start"),
        ("DetectMessageEnd", "machine", "machine_end_beep"),
    ],
)
async def test_noun_machine_detection_posts_the_scripted_verdict(
    mode: str, outcome: str, answered_by: str
) -> None:
    """``<Sip machineDetection>``: the ``machine`` dial outcome is an answering machine, any
    other answer a person; the verdict goes to ``amdStatusCallback`` (relative to the document)
    for the child call the dial reports, as in the engine."""
    pages = {
        URL: doc(
            f"<Dial action='/after'><Sip machineDetection='{mode}' amdStatusCallback='/amd'>"
            "sip:bob@example.com</Sip></Dial>"
        ),
        "https://app.test/after": doc("<Hangup/>"),
        "https://app.test/amd": doc(""),
    }
    result = await run(pages, dial_outcomes={"sip:bob@example.com": outcome})
    [verdict] = [dict(c.request.params) for c in result.callbacks if c.request.url.endswith("/amd")]
    after = result.requests[-1].params
    assert after["DialCallStatus"] == "completed"
    assert verdict["AnsweredBy"] == answered_by
    assert verdict["CallSid"] == after["DialCallSid"]
    assert verdict["ParentCallSid"] == result.call_sid
    assert int(verdict["MachineDetectionDuration"]) > 0
    assert any(
        f"machine detection on sip:bob@example.com: {answered_by}" in line
        for line in result.transcript
    )
