"""``<Start>``, ``<Stop>`` and ``<Connect>`` in the interpreter: the flow rules, on a fake clock.

``<Connect><Stream>`` holds the call: the verbs after it do not run until the stream ends (the
meaning a skipped ``<Connect>`` used to change), then ``action`` is requested or the next verb
runs. ``<Start>`` forks and goes on at once; ``<Stop>`` names what it stops.
"""

from __future__ import annotations

from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from support.interpreter import BASE, Harness, fixed_sid


def test_connect_holds_the_flow_until_the_stream_ends() -> None:
    h = Harness(
        {
            BASE: "<Connect><Stream url='wss://app.test/agent'>"
            "<Parameter name='caller' value='vip'/></Stream></Connect><Say>after</Say>"
        }
    ).start()
    (start,) = h.of(act.StartStream)
    assert start.bidirectional and start.tracks == ("inbound",)
    assert start.url == "wss://app.test/agent" and start.parameters == (("caller", "vip"),)
    assert start.sid == fixed_sid("MZ") and start.name == start.sid
    assert h.spoken() == []  # held: the verb after <Connect> does not run yet
    h.advance(600)
    assert h.spoken() == []
    h.send(ev.StreamEnded("MZ" + "0" * 32))  # another stream's end changes nothing
    assert h.spoken() == []
    h.send(ev.StreamEnded(start.sid))
    assert h.spoken() == ["after"]


def test_connect_action_is_requested_when_the_stream_ends() -> None:
    h = Harness(
        {
            BASE: "<Connect action='/after' method='GET'><Stream url='wss://app.test/a'/>"
            "</Connect><Say>never</Say>",
            "https://app.test/after": "<Say>after</Say>",
        }
    ).start()
    (start,) = h.of(act.StartStream)
    h.send(ev.StreamEnded(start.sid, "the app closed"))
    assert [(r.url, r.method) for r in h.requests][-1] == ("https://app.test/after", "GET")
    assert h.spoken() == ["after"]


def test_connect_answers_the_call_first_and_stops_its_stream_when_the_caller_hangs_up() -> None:
    h = Harness({BASE: "<Connect><Stream url='wss://app.test/a'/></Connect>"}).start()
    assert h.of(act.Answer) and h.of(act.StartStream)
    sid = h.of(act.StartStream)[0].sid
    h.send(ev.CallerHungUp())
    assert h.of(act.StopStream) == [act.StopStream(sid)]
    assert h.session.finished


def test_connect_with_nothing_it_can_connect_ends_at_once() -> None:
    h = Harness({BASE: "<Connect action='/after'><Room>standup</Room></Connect>"}).start()
    warnings = [a.message for a in h.of(act.Log) if a.level == "warning"]
    assert any("<Connect><Room>" in w for w in warnings)
    assert h.requests[-1].url == "https://app.test/after"
    assert not h.of(act.StartStream)


def test_start_forks_and_goes_on_at_once_and_stop_names_the_stream() -> None:
    h = Harness(
        {
            BASE: "<Start><Stream name='rec' url='wss://app.test/s' track='both_tracks' "
            "statusCallback='/stream-events' statusCallbackMethod='GET'/><Siprec/></Start>"
            "<Say>hello</Say><Stop><Stream name='rec'/></Stop><Say>bye</Say>"
        },
        auto_playback=True,
    ).start()
    (start,) = h.of(act.StartStream)
    assert not start.bidirectional and start.name == "rec"
    assert start.tracks == ("inbound", "outbound")
    assert start.status_callback == "https://app.test/stream-events"
    assert start.status_callback_method == "GET"
    assert h.spoken() == ["hello", "bye"]
    assert h.of(act.StopStream) == [act.StopStream("rec")]
    warnings = [a.message for a in h.of(act.Log) if a.level == "warning"]
    assert any("<Start><Siprec>" in w for w in warnings)


def test_stop_without_a_name_stops_every_fork() -> None:
    h = Harness({BASE: "<Stop><Stream/></Stop><Hangup/>"}).start()
    assert h.of(act.StopStream) == [act.StopStream(None)]
