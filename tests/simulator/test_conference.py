"""A simulated caller in a conference: the room's rules without audio, its callbacks sent."""

from __future__ import annotations

from callxml.simulator import MemoryFetcher, simulate

BASE = "https://app.test/voice"


async def test_a_lone_caller_starts_stays_and_ends_the_room() -> None:
    fetcher = MemoryFetcher(
        {
            BASE: "<Response><Dial action='/left'><Conference statusCallback='/events' "
            "statusCallbackEvent='start end join leave'>room</Conference></Dial></Response>",
            "https://app.test/events": "",
            "https://app.test/left": "<Response><Say>bye</Say></Response>",
        }
    )
    result = await simulate(BASE, fetcher=fetcher)
    assert result.ok and result.said == ["bye"], result.transcript
    events = [c.params["StatusCallbackEvent"] for c in result.callbacks]
    assert events == ["participant-join", "conference-start", "participant-leave", "conference-end"]
    left = next(r.params for r in result.requests if r.request.url.endswith("/left"))
    assert left["DialCallStatus"] == "completed" and left["DialCallDuration"] == "10"
    (room,) = result.rooms
    assert room.name == "room" and room.reason_ended == "last-participant-left"


async def test_a_waiting_caller_hears_the_wait_document() -> None:
    fetcher = MemoryFetcher(
        {
            BASE: "<Response><Dial><Conference startConferenceOnEnter='false' waitUrl='/wait'>"
            "room</Conference></Dial></Response>",
            "https://app.test/wait": "<Response><Say>Please hold</Say></Response>",
        }
    )
    result = await simulate(BASE, fetcher=fetcher, hangup_after=5)
    assert result.said == ["Please hold"], result.transcript
    wait = next(r.params for r in result.requests if r.request.url.endswith("/wait"))
    assert wait["FriendlyName"] == "room" and wait["ConferenceSid"].startswith("CF")
    assert result.status == "completed"
