"""A simulated caller in a queue: the wait document loops with the queue's parameters, a
lone caller gives up after a while, ``<Leave>`` leaves, an agent finds no queue."""

from __future__ import annotations

from callxml.simulator import MemoryFetcher, simulate

BASE = "https://app.test/voice"


async def test_a_lone_caller_hears_the_wait_rounds_and_gives_up() -> None:
    fetcher = MemoryFetcher(
        {
            BASE: "<Response><Enqueue waitUrl='/wait' action='/queued'>support</Enqueue>"
            "</Response>",
            "https://app.test/wait": "<Response><Say>Please hold</Say><Pause length='2'/>"
            "</Response>",
            "https://app.test/queued": "<Response><Hangup/></Response>",
        }
    )
    result = await simulate(BASE, fetcher=fetcher)
    waits = [r.params for r in result.requests if r.request.url.endswith("/wait")]
    assert len(waits) >= 2 and result.said.count("Please hold") == len(waits)
    assert waits[0]["QueuePosition"] == "1" and waits[0]["QueueSid"].startswith("QU")
    assert int(waits[1]["QueueTime"]) > int(waits[0]["QueueTime"])
    queued = next(r.params for r in result.requests if r.request.url.endswith("/queued"))
    assert queued["QueueResult"] == "hangup"
    assert result.status == "completed"


async def test_leave_in_the_wait_document() -> None:
    fetcher = MemoryFetcher(
        {
            BASE: "<Response><Enqueue waitUrl='/wait' action='/queued'>support</Enqueue>"
            "</Response>",
            "https://app.test/wait": "<Response><Leave/></Response>",
            "https://app.test/queued": "<Response><Say>bye</Say></Response>",
        }
    )
    result = await simulate(BASE, fetcher=fetcher)
    queued = next(r.params for r in result.requests if r.request.url.endswith("/queued"))
    assert queued["QueueResult"] == "leave" and result.said == ["bye"]


async def test_an_agent_dialling_a_queue_nobody_made() -> None:
    fetcher = MemoryFetcher(
        {
            BASE: "<Response><Dial action='/done'><Queue>support</Queue></Dial></Response>",
            "https://app.test/done": "<Response/>",
        }
    )
    result = await simulate(BASE, fetcher=fetcher)
    done = next(r.params for r in result.requests if r.request.url.endswith("/done"))
    assert done["DialCallStatus"] == "failed"
    assert "warning: Dial: there is no queue named support" in result.log
