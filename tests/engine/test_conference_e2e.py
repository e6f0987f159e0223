"""Conferences on real calls: callxml Phones call the engine over SIP/RTP (and TLS + SRTP),
each playing its own tone, and the flow puts them in one ``<Dial><Conference>``.

What each caller hears is measured with Goertzel: the other participants' tones, never its own
(the minus-one mix). The conference's status callbacks arrive in order (start, joins, leaves,
end); ``endConferenceOnExit`` ends the room for everyone, whose ``<Dial>`` action then runs; a
TLS + SRTP caller and plain RTP callers mix together; a participant that may not start the
conference hears the wait document until one who may joins. Three real baresip softphones
(one over TLS + SRTP) mix the same way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from callxml.engine.devcert import ensure_dev_certificate
from support.baresip import BaresipFactory, BaresipOptions, tone_wav
from support.callers import ToneCaller, best_window, call_engine, caller_phone, dev_ca_tls
from support.engine import engine_config, running_engine, sip_port, web_app
from support.waiting import until

pytestmark = pytest.mark.peer

TONES = {"alice": 500.0, "bob": 1200.0, "carol": 2100.0}
HANGUP = "<Response><Hangup/></Response>"


def conference_flow(form: dict[str, str]) -> str:
    """alice ends the room when she leaves; everyone reports to /events."""
    user = form["From"].split(":", 1)[1].split("@", 1)[0]
    end = "true" if user == "alice" else "false"
    return (
        f"<Response><Dial action='/left'><Conference participantLabel='{user}' "
        f"endConferenceOnExit='{end}' beep='false' statusCallback='/events' "
        "statusCallbackEvent='start end join leave'>room</Conference></Dial></Response>"
    )


async def join(engine: Any, phone: Any, user: str, domain: str = "conf.test") -> ToneCaller:
    caller = await call_engine(
        phone,
        f"sip:room@{domain}",
        proxy=f"sip:127.0.0.1:{sip_port(engine, 'udp')}",
        from_uri=f"sip:{user}@example.com",
    )
    caller.play_tone(TONES[user])
    return caller


def assert_hears_others(name: str, heard: bytes, others: list[str]) -> None:
    own = best_window(heard, TONES[name])
    assert own < 0.05, f"{name} hears its own tone ({own:.2f})"
    for other in others:
        power = best_window(heard, TONES[other])
        assert power > 0.2, f"{name} does not hear {other} ({power:.2f})"


async def test_three_callers_hear_each_other_and_never_themselves(tmp_path: Path) -> None:
    async with web_app({"/voice": conference_flow, "/left": lambda form: HANGUP}) as app:
        app.routes["/events"] = lambda form: ""
        config = engine_config(tmp_path, [{"name": "conf.test", "voice_url": app.url("/voice")}])
        async with running_engine(config) as engine, caller_phone() as phone:
            callers = {}
            for count, user in enumerate(TONES, start=2):  # alice's join also starts the room
                callers[user] = await join(engine, phone, user)
                await until(lambda n=count: app.paths().count("/events") >= n)
            await asyncio.sleep(1.0)  # everyone's audio is flowing through the room
            marks = {user: caller.mark() for user, caller in callers.items()}
            await asyncio.sleep(2.0)
            heard = {user: callers[user].heard_since(marks[user]) for user in callers}
            await callers["carol"].hangup()
            await until(lambda: app.paths().count("/events") >= 5)
            await callers["alice"].hangup()  # endConferenceOnExit: bob is taken out too
            await until(lambda: "/left" in app.paths(), timeout=15)
            assert await callers["bob"].leg.wait_ended(15) == "remote hangup"
            await until(lambda: app.paths().count("/events") >= 8)
            assert engine.store is not None
            rooms = engine.store.list_conferences(config.accounts[0].sid)
    for user in TONES:
        assert_hears_others(user, heard[user], [u for u in TONES if u != user])
    events = [form for path, form in app.requests if path == "/events"]
    sequence = [(e["StatusCallbackEvent"], e.get("ParticipantLabel", "")) for e in events]
    assert sequence == [
        ("participant-join", "alice"),
        ("conference-start", ""),
        ("participant-join", "bob"),
        ("participant-join", "carol"),
        ("participant-leave", "carol"),
        ("participant-leave", "alice"),
        ("participant-leave", "bob"),
        ("conference-end", ""),
    ]
    assert [int(e["SequenceNumber"]) for e in events] == list(range(1, 9))
    assert len({e["ConferenceSid"] for e in events}) == 1
    end = events[-1]
    assert end["ReasonConferenceEnded"] == "participant-with-end-conference-on-exit-left"
    left = next(form for path, form in app.requests if path == "/left")
    assert left["DialCallStatus"] == "completed" and int(left["DialCallDuration"]) >= 2
    (room,) = rooms
    assert room.friendly_name == "room" and room.status == "completed"
    assert room.sid == end["ConferenceSid"]
    assert room.reason_conference_ended == "participant-with-end-conference-on-exit-left"


async def test_secure_and_plain_callers_share_a_room(tmp_path: Path) -> None:
    """alice over TLS + SRTP, bob and carol over UDP with plain RTP: one mix."""
    dev = ensure_dev_certificate(tmp_path / "data" / "tls")
    async with web_app({"/voice": conference_flow, "/left": lambda form: HANGUP}) as app:
        app.routes["/events"] = lambda form: ""
        config = engine_config(
            tmp_path,
            [
                {"name": "127.0.0.1", "voice_url": app.url("/voice"), "secure_media": True},
                {"name": "conf.test", "voice_url": app.url("/voice")},
            ],
            transports=("udp", "tcp", "tls"),
            extra={"tls": {"ca_bundle": str(dev.ca)}},
        )
        async with (
            running_engine(config) as engine,
            caller_phone(tls=dev_ca_tls(dev)) as secure_phone,
            caller_phone() as phone,
        ):
            tls = sip_port(engine, "tls")
            alice = await call_engine(
                secure_phone,
                f"sip:room@127.0.0.1:{tls};secure=true",
                from_uri="sip:alice@example.com",
            )
            assert alice.leg.secure and alice.leg.transport == "tls"
            alice.play_tone(TONES["alice"])
            bob = await join(engine, phone, "bob")
            carol = await join(engine, phone, "carol")
            assert not bob.leg.secure and not carol.leg.secure
            await asyncio.sleep(1.0)
            marks = [c.mark() for c in (alice, bob, carol)]
            await asyncio.sleep(2.0)
            heard = [c.heard_since(m) for c, m in zip((alice, bob, carol), marks, strict=True)]
            for caller in (bob, carol, alice):
                await caller.hangup()
    assert_hears_others("alice", heard[0], ["bob", "carol"])
    assert_hears_others("bob", heard[1], ["alice", "carol"])
    assert_hears_others("carol", heard[2], ["alice", "bob"])


async def test_waiting_participants_hear_the_wait_document_until_the_room_starts(
    tmp_path: Path,
) -> None:
    """bob may not start the room: he hears the wait document (a <Say>), and not alice's tone,
    until alice (who may) joins; then they hear each other."""

    def flow(form: dict[str, str]) -> str:
        starts = "true" if form["From"].startswith("sip:alice") else "false"
        return (
            "<Response><Dial><Conference waitUrl='/wait' beep='false' "
            f"startConferenceOnEnter='{starts}'>room</Conference></Dial></Response>"
        )

    async with web_app({"/voice": flow}) as app:
        app.routes["/wait"] = lambda form: (
            "<Response><Say>Please wait for the host.</Say><Pause length='1'/></Response>"
        )
        config = engine_config(tmp_path, [{"name": "conf.test", "voice_url": app.url("/voice")}])
        async with running_engine(config) as engine, caller_phone() as phone:
            bob = await join(engine, phone, "bob")
            await until(lambda: "/wait" in app.paths(), timeout=10)
            waiting = await bob.hear(3.0)
            alice = await join(engine, phone, "alice")
            await asyncio.sleep(1.0)
            mark = bob.mark()
            await asyncio.sleep(2.0)
            talking = bob.heard_since(mark)
            await alice.hangup()
            await bob.hangup()
    wait_request = next(form for path, form in app.requests if path == "/wait")
    assert wait_request["FriendlyName"] == "room" and wait_request["ConferenceSid"].startswith("CF")
    assert (
        max(
            abs(int.from_bytes(waiting[i : i + 2], "little", signed=True))
            for i in range(0, len(waiting), 2)
        )
        > 1000
    )  # the <Say>, not silence
    assert best_window(waiting, TONES["alice"]) < 0.05
    assert best_window(talking, TONES["alice"]) > 0.2


async def test_three_baresip_phones_in_one_room(tmp_path: Path, baresip: BaresipFactory) -> None:
    """Three real softphones (baresip, not callxml's own SIP stack) in one conference: alice
    over TLS + SRTP, bob and carol over UDP with plain RTP (through the engine as an outbound
    proxy, to the plain domain). Each plays its own tone from a WAV; what each decoded from the
    network holds the other two's tones and never its own."""
    dev = ensure_dev_certificate(tmp_path / "data" / "tls")
    async with web_app({"/voice": conference_flow, "/left": lambda form: HANGUP}) as app:
        app.routes["/events"] = lambda form: ""
        config = engine_config(
            tmp_path,
            [
                {"name": "127.0.0.1", "voice_url": app.url("/voice"), "secure_media": True},
                {"name": "conf.test", "voice_url": app.url("/voice")},
            ],
            transports=("udp", "tcp", "tls"),
            extra={"tls": {"ca_bundle": str(dev.ca)}},
        )
        async with running_engine(config) as engine:
            udp = sip_port(engine, "udp")
            peers = {}
            for user in TONES:
                secure = user == "alice"
                peers[user] = await baresip(
                    BaresipOptions(
                        user=user,
                        play=tone_wav(tmp_path / f"{user}.wav", TONES[user], 30_000, amplitude=0.3),
                        cert=dev,
                        transport="tls" if secure else None,
                        mediaenc="srtp-mand" if secure else None,
                        extra_account_params=() if secure else (f'outbound="sip:127.0.0.1:{udp}"',),
                    ),
                    name=user,
                )
            await peers["alice"].dial(f"sip:room@127.0.0.1:{sip_port(engine, 'tls')};transport=tls")
            await peers["alice"].wait_event("CALL_ESTABLISHED")
            for user in ("bob", "carol"):
                await peers[user].dial("sip:room@conf.test")
                await peers[user].wait_event("CALL_ESTABLISHED")
            await until(lambda: app.paths().count("/events") >= 4)  # three joins and the start
            await asyncio.sleep(3.0)  # everyone's tone flows through the room
            for user in ("bob", "carol", "alice"):
                await peers[user].hangup()
            await until(lambda: app.paths().count("/events") >= 8)
            for peer in peers.values():
                await peer.stop()
    for user, peer in peers.items():
        heard = peer.received_audio()
        assert_hears_others(user, heard, [u for u in TONES if u != user])
    events = [form["StatusCallbackEvent"] for path, form in app.requests if path == "/events"]
    assert events[0] == "participant-join" and events[-1] == "conference-end"
