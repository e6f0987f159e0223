"""``<Dial><Conference>`` in the interpreter: one JoinConference with its URLs resolved, the
warnings for what a room does not use, and the ``<Dial>`` action when the caller leaves."""

from __future__ import annotations

from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from support.interpreter import BASE, Harness, params


def test_a_conference_is_joined_with_its_urls_resolved() -> None:
    h = Harness(
        {
            BASE: "<Dial action='/left' timeLimit='600' hangupOnStar='true' record='true'>"
            "<Conference waitUrl='/wait' statusCallback='events' "
            "recordingStatusCallback='/rec'>room</Conference><Number>+15551234567</Number>"
            "</Dial>",
            "https://app.test/left": "<Hangup/>",
        }
    ).start()
    (join,) = h.of(act.JoinConference)
    assert not h.of(act.StartDial)
    assert join.time_limit == 600 and join.hangup_on_star
    room = join.conference
    assert room.name == "room" and room.wait_url == "https://app.test/wait"
    assert room.status_callback == "https://app.test/events"
    assert room.recording_status_callback == "https://app.test/rec"
    warnings = [a.message for a in h.of(act.Log) if a.level == "warning"]
    assert any("dialled alone" in w for w in warnings)
    assert any("use <Conference record>" in w for w in warnings)
    h.send(ev.DialFinished("completed", duration=42))
    left = params(h.requests[-1])
    assert left["DialCallStatus"] == "completed" and left["DialCallDuration"] == "42"


def test_an_empty_wait_url_stays_empty_and_a_hang_up_leaves_the_room() -> None:
    h = Harness({BASE: "<Dial><Conference waitUrl=''>room</Conference></Dial>"}).start()
    (join,) = h.of(act.JoinConference)
    assert join.conference.wait_url == ""
    h.send(ev.CallerHungUp())
    assert h.of(act.StopDial)
