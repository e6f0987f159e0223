"""Conferences and Participants over REST, driven by the official twilio SDK, on a live room of
real callers (callxml Phones over SIP/RTP), and a room recorded from the start.

Each change is checked where it matters, in what the callers hear: a muted participant's tone
leaves the others' audio; a held one hears the hold music instead of the room; an
announcement reaches only its participant; a participant dialled out by REST joins and is
heard; a removed one's call ends; ``Status=completed`` ends the room for everyone.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import soundfile

from callxml.engine.conference import hold_tone
from support.callers import answering_phone, best_window, call_engine, caller_phone
from support.engine import API_AUTH, engine_config, running_engine, sip_port, twilio_client, web_app
from support.waiting import until

pytestmark = pytest.mark.peer

ALICE, BOB, CAROL = 500.0, 1200.0, 2100.0
CHIME = 523.25  # the first note of the default hold music


def flow(form: dict[str, str]) -> str:
    user = form["From"].split(":", 1)[1].split("@", 1)[0]
    return (
        "<Response><Dial action='/left'><Conference beep='false' "
        f"participantLabel='{user}' statusCallback='/events' "
        "statusCallbackEvent='mute hold modify announcement speaker'>rest-room</Conference>"
        "</Dial>"
        "</Response>"
    )


async def sdk(fn: Any, *args: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kw)


async def test_rest_controls_a_live_room(tmp_path: Path) -> None:
    routes = {
        "/voice": flow,
        "/left": lambda form: "<Response><Hangup/></Response>",
        "/events": lambda form: "",
        "/announce": lambda form: "<Response><Say>Attention please.</Say></Response>",
    }
    async with web_app(routes) as app:
        config = engine_config(tmp_path, [{"name": "conf.test", "voice_url": app.url("/voice")}])
        async with (
            running_engine(config) as engine,
            caller_phone() as phone,
            answering_phone() as (carol_phone, answered),
        ):
            proxy = f"sip:127.0.0.1:{sip_port(engine, 'udp')}"
            alice = await call_engine(phone, "sip:r@conf.test", proxy=proxy, from_uri="sip:alice@x")
            alice.play_tone(ALICE)
            bob = await call_engine(phone, "sip:r@conf.test", proxy=proxy, from_uri="sip:bob@x")
            bob.play_tone(BOB)
            client = twilio_client(engine)
            await until(lambda: app.paths().count("/voice") == 2)
            (live,) = await sdk(client.conferences.list, status="in-progress")
            assert live.friendly_name == "rest-room" and live.sid.startswith("CF")
            room = client.conferences(live.sid)

            async def participants(count: int) -> bool:
                return len(await sdk(room.participants.list)) == count

            await until(lambda: participants(2))
            people = {p.label: p for p in await sdk(room.participants.list)}
            assert set(people) == {"alice", "bob"}
            assert not people["bob"].muted and not people["bob"].hold

            # mute bob: alice stops hearing him
            await asyncio.sleep(1.0)
            unmuted = await alice.hear(1.0)
            await sdk(room.participants(people["bob"].call_sid).update, muted=True)
            await asyncio.sleep(0.5)
            muted = await alice.hear(1.5)
            await sdk(room.participants(people["bob"].call_sid).update, muted=False)
            # hold alice (by label): she hears the hold music; bob no longer hears her
            marks = alice.mark(), bob.mark()
            held = await sdk(room.participants("alice").update, hold=True)
            await asyncio.sleep(3.0)
            alice_on_hold = alice.heard_since(marks[0])
            bob_alone = bob.heard_since(marks[1])[8000:]  # after the first half second
            await sdk(room.participants("alice").update, hold=False)
            # an announcement for bob only
            await sdk(room.participants("bob").update, announce_url=app.url("/announce"))
            await until(lambda: "announcement-end" in str(app.requests), timeout=15)

            # dial carol in over REST; she is heard in the room
            added = await sdk(
                room.participants.create,
                from_="sip:conference@example.com",
                to=f"sip:carol@127.0.0.1:{carol_phone.user_agent.local('udp').port}",
                label="carol",
                beep="false",
            )
            carol = await asyncio.wait_for(answered.get(), 15)
            carol.play_tone(CAROL)
            await until(lambda: participants(3), timeout=15)
            await asyncio.sleep(1.0)
            with_carol = await bob.hear(2.0)
            fetched = await sdk(room.participants("carol").fetch)
            # remove carol: her call ends (the rest of her document: none)
            await sdk(room.participants(added.call_sid).delete)
            assert await carol.leg.wait_ended(15) == "remote hangup"

            # end the room: everyone's <Dial> ends, their flows go on to /left
            ended = await sdk(room.update, status="completed")
            await until(lambda: app.paths().count("/left") == 2, timeout=15)
            final = await sdk(room.fetch)
            await alice.leg.wait_ended(15)
            await bob.leg.wait_ended(15)
    assert best_window(unmuted, BOB) > 0.5 and best_window(muted, BOB) < 0.05
    assert held.hold is True
    assert best_window(alice_on_hold, CHIME) > 0.1  # the hold music's first note
    assert best_window(alice_on_hold[8000:], BOB) < 0.05
    assert best_window(bob_alone, ALICE) < 0.05
    assert best_window(with_carol, CAROL) > 0.2 and best_window(with_carol, ALICE) > 0.2
    assert added.call_sid.startswith("CA") and added.label == "carol"
    assert fetched.call_sid == added.call_sid and fetched.label == "carol"
    assert ended.status == "completed" and final.status == "completed"
    assert final.reason_conference_ended == "conference-ended-via-api"
    events = [f["StatusCallbackEvent"] for path, f in app.requests if path == "/events"]
    for expected in ("participant-mute", "participant-unmute", "participant-hold"):
        assert expected in events
    assert "participant-unhold" in events and "participant-modify" in events
    assert "/announce" in app.paths()
    speech = [
        (f["StatusCallbackEvent"], f["ParticipantLabel"])
        for path, f in app.requests
        if path == "/events" and "speech" in f["StatusCallbackEvent"]
    ]
    assert ("participant-speech-start", "alice") in speech  # her tone counts as speech
    assert ("participant-speech-stop", "bob") in speech  # muted: no longer heard


async def test_a_room_recorded_from_the_start(tmp_path: Path) -> None:
    def recorded(form: dict[str, str]) -> str:
        return (
            "<Response><Dial><Conference beep='false' record='record-from-start' "
            "trim='do-not-trim' recordingStatusCallback='/recording' "
            "recordingStatusCallbackEvent='in-progress completed'>rec</Conference></Dial>"
            "</Response>"
        )

    async with web_app({"/voice": recorded, "/recording": lambda form: ""}) as app:
        config = engine_config(tmp_path, [{"name": "conf.test", "voice_url": app.url("/voice")}])
        async with running_engine(config) as engine, caller_phone() as phone:
            proxy = f"sip:127.0.0.1:{sip_port(engine, 'udp')}"
            alice = await call_engine(phone, "sip:r@conf.test", proxy=proxy, from_uri="sip:a@x")
            alice.play_tone(ALICE)
            bob = await call_engine(phone, "sip:r@conf.test", proxy=proxy, from_uri="sip:b@x")
            bob.play_tone(BOB)
            await asyncio.sleep(3.0)
            await alice.hangup()
            await bob.hangup()
            await until(lambda: app.paths().count("/recording") == 2, timeout=15)
            done = [f for path, f in app.requests if path == "/recording"][-1]
            async with (
                aiohttp.ClientSession() as http,
                http.get(done["RecordingUrl"], headers=API_AUTH) as response,
            ):
                assert response.status == 200
                audio = await response.read()
    statuses = [f["RecordingStatus"] for path, f in app.requests if path == "/recording"]
    assert statuses == ["in-progress", "completed"]
    assert done["RecordingSource"] == "Conference" and done["ConferenceSid"].startswith("CF")
    assert int(done["RecordingDuration"]) >= 2
    samples, rate = soundfile.read(io.BytesIO(audio), dtype="int16")
    pcm = samples.tobytes()
    assert rate == 8000
    assert best_window(pcm, ALICE) > 0.2 and best_window(pcm, BOB) > 0.2  # the room's mix


def test_the_hold_music_loops_cleanly() -> None:
    music = hold_tone()
    assert len(music) == 6 * 16000 and best_window(music, CHIME) > 0.1
