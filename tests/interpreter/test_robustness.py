"""Any sequence of driver events, in any order, never crashes a session or leaves it stuck."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from callxml.errors import WebhookError
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from support.interpreter import BASE, Harness

FLOW = (
    "<Gather action='/g' numDigits='2' timeout='2'><Say>a</Say><Pause/><Play>u</Play></Gather>"
    "<Record action='/r'/><Dial action='/d' answerOnBridge='true'>+1555</Dial>"
    "<Play digits='1w2'/><Redirect>/x</Redirect>"
)
PAGES: dict[str, str | WebhookError] = {
    BASE: FLOW,
    "https://app.test/g": FLOW,
    "https://app.test/r": "<Reject/><Say>b</Say>",
    "https://app.test/d": FLOW,
    "https://app.test/x": WebhookError("down", error_code=11205),
}

events = st.one_of(
    st.builds(ev.PlaybackFinished, st.integers(0, 12)),
    st.builds(ev.DigitReceived, st.sampled_from([*"0123456789*#AD", "", "x", "11"])),
    st.builds(ev.RecordingFinished, st.just("https://r.test/1"), st.integers(-1, 9)),
    st.builds(
        ev.DialFinished,
        st.sampled_from(["completed", "busy", "no-answer", "failed", "weird"]),
        st.just("CA" + "9" * 32),
        st.integers(-5, 100),
    ),
    st.just(ev.Answered()),
    st.just(ev.CallerHungUp()),
    st.floats(0, 20),  # advance the clock
)


@settings(max_examples=150, deadline=None)
@given(st.lists(events, max_size=40))
def test_random_event_sequences(sequence: list[ev.Event | float]) -> None:
    h = Harness(dict(PAGES)).start()
    for item in sequence:
        if isinstance(item, float):
            h.advance(item)
        else:
            h.send(item)
        assert all(not isinstance(a, act.Fetch) or a.request.url for a in h.actions)
    h.send(ev.CallerHungUp())
    h.advance(10)  # the hang-up grace runs out
    assert h.session.finished
    assert h.session.next_timer() is None
