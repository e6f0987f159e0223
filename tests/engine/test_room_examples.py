"""The conference, support-queue and media-stream examples (examples/*.py), served for real.

The WebSocket agent runs against the engine on a real call: a callxml Phone plays a tone, the
app greets it, echoes the caller's tone back half a second late, and on ``#`` closes the socket,
after which the ``<Connect>`` action says goodbye. The conference line and the support line are
driven by simulated callers over real, signed HTTP (``simulate_calls``): the host starts and
ends the room while a guest waits for it; a caller waits in the queue until an agent takes it,
another presses 0 and leaves a message.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callxml.simulator import Caller, simulate_calls
from support.callers import best_window, call_engine, caller_phone
from support.engine import AUTH_TOKEN, engine_config, running_engine, sip_port
from support.examples import load_example
from support.web import Serve

conference_app = load_example("conference_app.py", "callxml_example_conference_app")
queue_app = load_example("queue_app.py", "callxml_example_queue_app")
stream_app = load_example("stream_echo_app.py", "callxml_example_stream_echo_app")

TOKEN = "example-test-token"
TONE = 700.0


@pytest.mark.peer
async def test_the_websocket_agent_greets_echoes_and_hands_back(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(stream_app.make_app(AUTH_TOKEN))  # signed with the engine's account
    config = engine_config(tmp_path, [{"name": "agent.test", "voice_url": f"{base}/voice"}])
    async with running_engine(config) as engine, caller_phone() as phone:
        caller = await call_engine(
            phone, "sip:agent@agent.test", proxy=f"sip:127.0.0.1:{sip_port(engine, 'udp')}"
        )
        greeting = await caller.hear(2.0)  # the chime comes first
        caller.play_tone(TONE)
        await asyncio.sleep(1.5)
        mark = caller.mark()
        await asyncio.sleep(1.5)
        echoed = caller.heard_since(mark)
        caller.stop_tone()
        await caller.press("#")
        reason = await caller.leg.wait_ended(20)
    assert best_window(greeting, 660.0) > 0.2 and best_window(greeting, 880.0) > 0.2
    assert best_window(echoed, TONE) > 0.5  # its own voice, back through the agent
    assert reason == "remote hangup"  # the <Connect> action said goodbye and hung up


async def test_the_conference_line(serve: Serve) -> None:
    app = conference_app.make_app(TOKEN, host_pin="4242")
    base = await serve(app)
    guest, host = await simulate_calls(
        [
            Caller(f"{base}/voice", from_="+15550000001", at=0, digits=["#"], stay=60),
            Caller(f"{base}/voice", from_="+15550000002", at=8, digits=["4242"], stay=20),
        ],
        auth_token=TOKEN,
    )
    assert "Please wait for the host to join." in guest.said
    assert "Welcome, host." in host.said
    events = [
        e["StatusCallbackEvent"] for e in app[conference_app.LOG] if "StatusCallbackEvent" in e
    ]
    assert events[0] == "participant-join" and "conference-start" in events
    assert events[-1] == "conference-end"
    assert guest.ok and host.ok


async def test_the_support_line(serve: Serve) -> None:
    base = await serve(queue_app.make_app(TOKEN))
    waiting, leaving, agent = await simulate_calls(
        [
            Caller(f"{base}/voice", from_="+15550000001", at=0, stay=300),
            Caller(f"{base}/voice", from_="+15550000002", at=1, digits=["0"], stay=300),
            Caller(f"{base}/agent", from_="agent", at=20, stay=30, hangup_after=45),
        ],
        auth_token=TOKEN,
    )
    assert any("You are caller number 1" in text for text in waiting.said)
    assert "Connecting you to an agent." in waiting.said
    assert "Thank you for calling. Goodbye." in waiting.said
    assert "Please leave a message after the beep." in leaving.said  # pressed 0: <Leave>
    assert leaving.recordings
    done = next(r.params for r in agent.requests if r.request.url.endswith("/agent-done"))
    assert done["DialCallStatus"] == "completed" and done["DialCallSid"] == waiting.call_sid
