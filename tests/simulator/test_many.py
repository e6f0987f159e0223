"""Several simulated callers on one virtual clock: a conference of three, and a queue with an
agent, run by :func:`callxml.simulator.simulate_calls` with no SIP and no RTP."""

from __future__ import annotations

from callxml.simulator import Caller, MemoryFetcher, simulate_calls

BASE = "https://app.test"


def conference(request: object) -> str:
    params = dict(request.params)  # type: ignore[attr-defined]
    host = params["From"] == "alice"
    return (
        f"<Response><Dial action='/left'><Conference participantLabel='{params['From']}' "
        f"startConferenceOnEnter='{'true' if host else 'false'}' "
        f"endConferenceOnExit='{'true' if host else 'false'}' waitUrl='/wait' "
        "statusCallback='/events' statusCallbackEvent='start end join leave'>"
        "standup</Conference></Dial></Response>"
    )


async def test_a_simulated_conference_of_three_callers() -> None:
    fetcher = MemoryFetcher(
        {
            f"{BASE}/voice": conference,
            f"{BASE}/wait": "<Response><Say>Waiting for the host</Say></Response>",
            f"{BASE}/events": "",
            f"{BASE}/left": "<Response><Hangup/></Response>",
        }
    )
    bob, alice, carol = await simulate_calls(
        [
            Caller(f"{BASE}/voice", from_="bob", at=0, stay=60),
            Caller(f"{BASE}/voice", from_="alice", at=5, stay=20),  # the host: leaves at 25
            Caller(f"{BASE}/voice", from_="carol", at=10, stay=60),
        ],
        fetcher=fetcher,
    )
    assert bob.said == ["Waiting for the host"]  # bob came before the host
    assert not carol.said  # carol came after: the room had started
    sent = sorted(
        bob.callbacks + alice.callbacks + carol.callbacks,
        key=lambda c: int(c.params["SequenceNumber"]),
    )
    events = [(c.params["StatusCallbackEvent"], c.params.get("CallSid", "")) for c in sent]
    who = {bob.call_sid: "bob", alice.call_sid: "alice", carol.call_sid: "carol", "": ""}
    assert [(e, who[c]) for e, c in events] == [
        ("participant-join", "bob"),
        ("participant-join", "alice"),
        ("conference-start", ""),
        ("participant-join", "carol"),
        ("participant-leave", "alice"),
        ("participant-leave", "bob"),
        ("participant-leave", "carol"),
        ("conference-end", ""),
    ]
    (room,) = bob.rooms
    assert (
        room.max_size == 3 and room.reason_ended == "participant-with-end-conference-on-exit-left"
    )
    left = {
        r.params["From"]: r.params
        for r in bob.requests + alice.requests + carol.requests
        if r.request.url.endswith("/left")
    }
    assert left["alice"]["DialCallDuration"] == "20"
    # in the room from joining (waiting included) until the host's leaving ended it
    assert left["bob"]["DialCallDuration"] == "25" and left["carol"]["DialCallDuration"] == "15"
    assert all(r.status == "completed" for r in (alice, bob, carol))


async def test_a_simulated_agent_takes_the_caller_who_waited_longest() -> None:
    fetcher = MemoryFetcher(
        {
            f"{BASE}/caller": "<Response><Enqueue waitUrl='/wait' action='/queued'>support"
            "</Enqueue></Response>",
            f"{BASE}/wait": "<Response><Say>Please hold</Say><Pause length='3'/></Response>",
            f"{BASE}/queued": "<Response><Hangup/></Response>",
            f"{BASE}/agent": "<Response><Dial action='/done'><Queue url='/hello'>support"
            "</Queue></Dial></Response>",
            f"{BASE}/done": "<Response><Hangup/></Response>",
            f"{BASE}/hello": "<Response><Say>Connecting</Say></Response>",
        }
    )
    first, second, agent = await simulate_calls(
        [
            Caller(f"{BASE}/caller", from_="first", at=0, stay=120),
            Caller(f"{BASE}/caller", from_="second", at=2, stay=120),
            Caller(f"{BASE}/agent", from_="agent", at=12, stay=30),
        ],
        fetcher=fetcher,
    )
    queued = next(r.params for r in first.requests if r.request.url.endswith("/queued"))
    assert queued["QueueResult"] == "bridged" and int(queued["QueueTime"]) == 12
    done = next(r.params for r in agent.requests if r.request.url.endswith("/done"))
    assert done["DialCallStatus"] == "completed" and done["DialCallSid"] == first.call_sid
    assert done["DialCallDuration"] == "30"
    waits = [r.params for r in second.requests if r.request.url.endswith("/wait")]
    assert waits[0]["QueuePosition"] == "2" and waits[-1]["QueuePosition"] == "1"
    second_result = next(r.params for r in second.requests if r.request.url.endswith("/queued"))
    assert second_result["QueueResult"] == "hangup"  # it gave up after its 120 s
    hello = next(r.params for r in agent.requests if r.request.url.endswith("/hello"))
    assert hello["CallSid"] == first.call_sid and hello["DequeingCallSid"] == agent.call_sid
    assert hello["QueueTime"] == "12" and "Connecting" in first.said
    (queue,) = first.queues
    assert [e for _, e, _ in queue.events] == ["enqueue", "enqueue", "dequeue", "hangup"]
