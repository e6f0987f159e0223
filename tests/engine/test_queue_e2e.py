"""Call queues on real calls: callxml Phones call the engine over SIP/RTP; callers wait in a
queue hearing its wait document, an agent's ``<Dial><Queue>`` takes the one who waited longest
and bridges them; REST's Queues and Members (through the official twilio SDK) see and move
them.

Proved here: the wait document is requested again and again with Twilio's queue parameters
(QueuePosition, QueueSid, QueueTime, AvgQueueTime, CurrentQueueSize, MaxQueueSize) and heard by
the caller; the agent bridges the oldest caller (the queue's ``url`` runs on that caller first,
with QueueSid, QueueTime, DequeingCallSid) and each hears the other's tone; when the agent
hangs up, the caller's ``<Enqueue>`` action gets ``QueueResult=bridged``; a caller who hangs up
while queued leaves the queue (``hangup``); ``<Leave>`` in a wait document gives ``leave``; REST
dequeues the front member to a URL; REST creates, resizes, renames and deletes queues (not
one with callers in it), and a full queue answers ``queue-full``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from twilio.base.exceptions import TwilioRestException

from support.callers import ToneCaller, best_window, call_engine, caller_phone
from support.engine import engine_config, running_engine, sip_port, twilio_client, web_app
from support.waiting import until

pytestmark = pytest.mark.peer

TONES = {"alice": 500.0, "bob": 1200.0, "carol": 2100.0, "dave": 900.0}


def user(form: dict[str, str]) -> str:
    return form["From"].split(":", 1)[1].split("@", 1)[0]


def voice(form: dict[str, str]) -> str:
    if user(form) == "carol":  # the agent
        return (
            "<Response><Dial action='/agent-done' timeout='20'>"
            "<Queue url='/about-to-connect'>support</Queue></Dial></Response>"
        )
    wait = "/leave" if user(form) == "eve" else "/wait"
    return f"<Response><Enqueue waitUrl='{wait}' action='/queued'>support</Enqueue></Response>"


async def dial(engine: Any, phone: Any, name: str) -> ToneCaller:
    caller = await call_engine(
        phone,
        "sip:help@queue.test",
        proxy=f"sip:127.0.0.1:{sip_port(engine, 'udp')}",
        from_uri=f"sip:{name}@example.com",
    )
    if name in TONES:
        caller.play_tone(TONES[name])
    return caller


def requests_of(app: Any, path: str, name: str) -> list[dict[str, str]]:
    return [form for p, form in app.requests if p == path and user(form) == name]


async def test_callers_wait_an_agent_dequeues_the_oldest(tmp_path: Path) -> None:
    routes = {
        "/voice": voice,
        "/wait": lambda form: (
            f"<Response><Say>You are caller {form['QueuePosition']}.</Say>"
            "<Pause length='1'/></Response>"
        ),
        "/leave": lambda form: "<Response><Leave/></Response>",
        "/about-to-connect": lambda form: "<Response><Say>Connecting you.</Say></Response>",
        "/queued": lambda form: "<Response><Hangup/></Response>",
        "/agent-done": lambda form: "<Response><Hangup/></Response>",
        "/moved": lambda form: "<Response><Say>Moved.</Say><Hangup/></Response>",
    }
    async with web_app(routes) as app:
        config = engine_config(tmp_path, [{"name": "queue.test", "voice_url": app.url("/voice")}])
        async with running_engine(config) as engine, caller_phone() as phone:
            alice = await dial(engine, phone, "alice")
            await until(lambda: len(requests_of(app, "/wait", "alice")) >= 2, timeout=20)
            waiting = await alice.hear(1.0)
            bob = await dial(engine, phone, "bob")
            await until(lambda: requests_of(app, "/wait", "bob"))
            dave = await dial(engine, phone, "dave")
            await until(lambda: requests_of(app, "/wait", "dave"))

            client = twilio_client(engine)
            (queue,) = await asyncio.to_thread(client.queues.list)
            members = await asyncio.to_thread(client.queues(queue.sid).members.list)
            front = await asyncio.to_thread(client.queues(queue.sid).members("Front").fetch)

            # bob hangs up while queued: he leaves the queue
            await bob.hangup()
            await until(lambda: requests_of(app, "/queued", "bob"))

            # the agent takes the oldest caller, alice
            carol = await dial(engine, phone, "carol")
            await until(lambda: requests_of(app, "/about-to-connect", "alice"), timeout=15)
            await asyncio.sleep(1.5)
            marks = alice.mark(), carol.mark()
            await asyncio.sleep(2.0)
            alice_heard, carol_heard = alice.heard_since(marks[0]), carol.heard_since(marks[1])
            await carol.hangup()
            await until(lambda: requests_of(app, "/queued", "alice"), timeout=15)
            await until(lambda: "/agent-done" in app.paths())

            # REST dequeues the front member (dave) to another document
            moved = await asyncio.to_thread(
                client.queues(queue.sid).members("Front").update, url=app.url("/moved")
            )
            await until(lambda: requests_of(app, "/moved", "dave"), timeout=15)
            assert await dave.leg.wait_ended(15) == "remote hangup"

            # a wait document's <Leave> ends the wait
            eve = await dial(engine, phone, "eve")
            await until(lambda: requests_of(app, "/queued", "eve"), timeout=15)
            await eve.leg.wait_ended(15)
            emptied = await asyncio.to_thread(client.queues(queue.sid).fetch)
            await alice.leg.wait_ended(15)

    first, second = requests_of(app, "/wait", "alice")[:2]
    assert first["QueuePosition"] == "1" and first["CurrentQueueSize"] == "1"
    assert first["QueueSid"].startswith("QU") and first["MaxQueueSize"] == "100"
    assert int(second["QueueTime"]) >= int(first["QueueTime"]) and "AvgQueueTime" in second
    assert (
        max(
            abs(int.from_bytes(waiting[i : i + 2], "little", signed=True))
            for i in range(0, len(waiting), 2)
        )
        > 1000
    )  # the <Say>, not silence
    bob_wait = requests_of(app, "/wait", "bob")[0]
    assert bob_wait["QueuePosition"] == "2" and bob_wait["CurrentQueueSize"] == "2"
    assert queue.friendly_name == "support" and queue.current_size == 3
    assert [m.position for m in members] == [1, 2, 3]
    assert front.call_sid == first["CallSid"]

    assert requests_of(app, "/queued", "bob")[0]["QueueResult"] == "hangup"
    connect = requests_of(app, "/about-to-connect", "alice")[0]
    carol_sid = next(f["CallSid"] for p, f in app.requests if p == "/voice" and user(f) == "carol")
    assert connect["CallSid"] == first["CallSid"] and connect["DequeingCallSid"] == carol_sid
    assert connect["QueueSid"] == first["QueueSid"] and int(connect["QueueTime"]) >= 2
    assert best_window(alice_heard, TONES["carol"]) > 0.5  # bridged: each hears the other
    assert best_window(carol_heard, TONES["alice"]) > 0.5
    queued = requests_of(app, "/queued", "alice")[0]
    assert queued["QueueResult"] == "bridged" and queued["QueueSid"] == first["QueueSid"]
    done = next(f for p, f in app.requests if p == "/agent-done")
    assert done["DialCallStatus"] == "completed" and done["DialCallSid"] == first["CallSid"]
    assert moved.call_sid == requests_of(app, "/wait", "dave")[0]["CallSid"]
    assert requests_of(app, "/queued", "eve")[0]["QueueResult"] == "leave"
    assert not requests_of(app, "/queued", "dave")  # redirected: its own document runs instead
    assert emptied.current_size == 0


async def test_an_agent_on_an_empty_queue_waits_then_gives_up(tmp_path: Path) -> None:
    async with web_app({"/voice": voice, "/agent-done": lambda form: "<Response/>"}) as app:
        app.routes["/voice"] = lambda form: (
            "<Response><Dial action='/agent-done' timeout='2'><Queue>nobody</Queue></Dial>"
            "<Hangup/></Response>"
        )
        config = engine_config(tmp_path, [{"name": "queue.test", "voice_url": app.url("/voice")}])
        async with running_engine(config) as engine, caller_phone() as phone:
            assert engine.store is not None
            await engine.queues.create(config.accounts[0].sid, "nobody", 10)
            carol = await dial(engine, phone, "carol")
            await until(lambda: "/agent-done" in app.paths(), timeout=15)
            await carol.leg.wait_ended(15)
    done = next(f for p, f in app.requests if p == "/agent-done")
    assert done["DialCallStatus"] == "no-answer"


async def test_rest_manages_queues_around_real_callers(tmp_path: Path) -> None:
    """The Queues resource through the official SDK: create with a MaxSize, a caller fills it,
    the next one gets ``queue-full``; rename and resize; a queue with a caller in it is not
    deleted; once empty it is, and a fetch is then a 404."""
    routes = {
        "/voice": lambda form: (
            "<Response><Enqueue waitUrl='/wait' action='/queued'>line</Enqueue></Response>"
        ),
        "/wait": lambda form: "<Response><Pause length='1'/></Response>",
        "/queued": lambda form: "<Response><Hangup/></Response>",
    }
    async with web_app(routes) as app:
        config = engine_config(tmp_path, [{"name": "queue.test", "voice_url": app.url("/voice")}])
        async with running_engine(config) as engine, caller_phone() as phone:
            client = twilio_client(engine)
            created = await asyncio.to_thread(
                client.queues.create, friendly_name="line", max_size=1
            )
            with pytest.raises(TwilioRestException) as twice:
                await asyncio.to_thread(client.queues.create, friendly_name="line")
            alice = await dial(engine, phone, "alice")
            await until(lambda: requests_of(app, "/wait", "alice"))
            bob = await dial(engine, phone, "bob")
            await until(lambda: requests_of(app, "/queued", "bob"))
            await bob.leg.wait_ended(15)
            queue = client.queues(created.sid)
            with pytest.raises(TwilioRestException) as busy:
                await asyncio.to_thread(queue.delete)
            resized = await asyncio.to_thread(queue.update, friendly_name="front-desk", max_size=5)
            listed = await asyncio.to_thread(client.queues.list)
            await alice.hangup()
            await until(lambda: requests_of(app, "/queued", "alice"))
            deleted = await asyncio.to_thread(queue.delete)
            with pytest.raises(TwilioRestException) as gone:
                await asyncio.to_thread(queue.fetch)
    assert created.sid.startswith("QU") and created.max_size == 1 and created.current_size == 0
    assert twice.value.status == 400
    assert requests_of(app, "/queued", "bob")[0]["QueueResult"] == "queue-full"
    assert busy.value.status == 400
    assert resized.friendly_name == "front-desk" and resized.max_size == 5
    assert [(q.sid, q.current_size) for q in listed] == [(created.sid, 1)]
    alice_result = requests_of(app, "/queued", "alice")[0]
    assert alice_result["QueueResult"] == "hangup" and alice_result["QueueSid"] == created.sid
    assert deleted is True and gone.value.status == 404


async def test_a_failing_wait_document_and_a_stopping_engine_end_the_wait(
    tmp_path: Path,
) -> None:
    """alice's wait document fails (HTTP 404): she leaves with ``QueueResult=error``. bob is
    waiting when the engine stops: his action runs with ``system-shutdown`` during the grace."""
    routes = {
        "/voice": lambda form: (
            f"<Response><Enqueue waitUrl='/wait-{user(form)}' action='/queued'>line</Enqueue>"
            "</Response>"
        ),
        "/wait-bob": lambda form: "<Response><Pause length='10'/></Response>",
        "/queued": lambda form: "<Response><Hangup/></Response>",
    }
    async with web_app(routes) as app:
        config = engine_config(tmp_path, [{"name": "queue.test", "voice_url": app.url("/voice")}])
        async with running_engine(config) as engine, caller_phone() as phone:
            alice = await dial(engine, phone, "alice")
            await until(lambda: requests_of(app, "/queued", "alice"), timeout=15)
            await alice.leg.wait_ended(15)
            bob = await dial(engine, phone, "bob")
            await until(lambda: requests_of(app, "/wait-bob", "bob"))
            await engine.stop()
            await bob.leg.wait_ended(15)
    assert requests_of(app, "/queued", "alice")[0]["QueueResult"] == "error"
    assert requests_of(app, "/queued", "bob")[0]["QueueResult"] == "system-shutdown"
