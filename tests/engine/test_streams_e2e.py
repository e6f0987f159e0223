"""Media streams on real calls: a callxml Phone calls the engine over SIP/RTP; the flow streams
the call to a real aiohttp WebSocket app speaking Twilio's Media Streams protocol.

* ``<Connect><Stream>`` over ``wss://`` (the engine verifies the app's certificate against
  ``tls.ca_bundle``): the app gets ``connected`` and ``start`` (sids, tracks, custom parameters,
  the μ-law format), the caller's tone as μ-law ``media``, the caller's key as ``dtmf``; the
  caller hears the app's own tone; the app's ``mark`` comes back only once its audio has
  played; when the app closes the socket the flow goes on with the ``<Connect>`` action.
* ``<Start><Stream track=both_tracks>``: a fork that goes on at once; the app gets what the
  caller hears (the ``<Say>``) on the outbound track; ``<Stop>`` sends ``stop``; the status
  callbacks say stream-started then stream-stopped.
* a dead app (accepts, never reads), an unreachable one and a server that does not upgrade do
  not stall the call: the caller's RTP never stops, errors are logged with Twilio's codes;
  an app whose certificate the engine does not trust is never reached (31910).
* REST ``Streams.json`` through the official twilio SDK: a fork created on a live call, then
  stopped by name.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import struct
from pathlib import Path

import pytest

from callxml.media.tone import sine
from callxml.signature import sign
from support.callers import ToneCaller, best_window, call_engine, caller_phone
from support.certs import Pki
from support.engine import (
    AUTH_TOKEN,
    WebApp,
    engine_config,
    running_engine,
    sip_port,
    twilio_client,
    web_app,
)
from support.ports import free_port
from support.streams import StreamSession, media_stream_app
from support.waiting import until

pytestmark = pytest.mark.peer

CALLER_TONE = 700.0
APP_TONE = 1300.0
HANGUP = "<Response><Hangup/></Response>"


def server_tls(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert pki.server.cert_file and pki.server.key_file
    context.load_cert_chain(pki.server.cert_file, pki.server.key_file)
    return context


def trusting(tmp_path: Path, pki: Pki, app: WebApp) -> object:
    """An engine whose domain ``stream.test`` runs ``app``'s /voice, trusting the test CA."""
    ca = tmp_path / "ca.pem"
    ca.write_text(pki.ca_pem)
    return engine_config(
        tmp_path,
        [{"name": "stream.test", "voice_url": app.url("/voice")}],
        extra={"tls": {"ca_bundle": str(ca)}},
    )


async def dial(engine: object, phone: object) -> ToneCaller:
    proxy = f"sip:127.0.0.1:{sip_port(engine, 'udp')}"  # type: ignore[arg-type]
    return await call_engine(phone, "sip:agent@stream.test", proxy=proxy)  # type: ignore[arg-type]


async def test_connect_stream_both_ways_with_dtmf_and_marks(tmp_path: Path, pki: Pki) -> None:
    caller: ToneCaller | None = None
    at_echo: dict[str, bytes] = {}

    async def agent(session: StreamSession) -> None:
        await session.wait("start")
        await session.wait_audio(1.0)  # the caller's tone reaches the app
        assert caller is not None
        before = caller.mark()
        await session.send_audio(sine(APP_TONE, 2000, amplitude=0.3))
        await session.send_mark("greeting-done")
        await session.wait("dtmf")
        await session.wait("mark", timeout=15)
        at_echo["heard"] = caller.heard_since(before)  # what had played when the echo came
        await session.close()

    async with (
        media_stream_app(agent, ssl_context=server_tls(pki)) as sockets,
        web_app({}) as app,
    ):
        app.routes["/voice"] = lambda form: (
            f"<Response><Connect action='/after'><Stream url='{sockets.url('/agent')}'>"
            "<Parameter name='who' value='test'/></Stream></Connect><Say>never</Say></Response>"
        )
        app.routes["/after"] = lambda form: HANGUP
        async with running_engine(trusting(tmp_path, pki, app)) as engine, caller_phone() as phone:
            caller = await dial(engine, phone)
            caller.play_tone(CALLER_TONE)
            session = await sockets.session()
            await session.wait("start")
            await asyncio.sleep(1.5)
            await caller.press("5")
            await until(lambda: "/after" in app.paths(), timeout=20)
            await caller.leg.wait_ended(15)
    voice = next(form for path, form in app.requests if path == "/voice")

    # the handshake: signed like every webhook, to the URL as written
    url = sockets.url("/agent")
    assert session.headers["X-Twilio-Signature"] == sign(AUTH_TOKEN, url, ())
    # the protocol, message by message
    events = session.events()
    assert events[:2] == ["connected", "start"] and "stop" not in events  # the app closed it
    assert session.messages[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = session.start["start"]
    assert start["callSid"] == voice["CallSid"] and start["accountSid"] == voice["AccountSid"]
    assert start["streamSid"].startswith("MZ") and session.start["streamSid"] == start["streamSid"]
    assert start["tracks"] == ["inbound"] and start["customParameters"] == {"who": "test"}
    assert start["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    numbers = [int(m["sequenceNumber"]) for m in session.messages[1:]]
    assert numbers == list(range(1, len(numbers) + 1))
    media = session.of("media")
    assert [int(m["media"]["chunk"]) for m in media] == list(range(1, len(media) + 1))
    stamps = [int(m["media"]["timestamp"]) for m in media]
    assert stamps == sorted(stamps) and all(m["media"]["track"] == "inbound" for m in media)
    assert best_window(session.audio("inbound"), CALLER_TONE) > 0.5  # the caller's tone
    (dtmf,) = session.of("dtmf")
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "5"}
    (mark,) = session.of("mark")
    assert mark["mark"] == {"name": "greeting-done"}
    # the mark came back once the app's 2 s had played to the caller, who heard the app's tone
    assert len(at_echo["heard"]) >= 1.5 * 16000
    assert best_window(at_echo["heard"], APP_TONE) > 0.5
    assert "/after" in app.paths() and "never" not in str(app.requests)


async def test_start_forks_both_tracks_and_stop_ends_it(tmp_path: Path, pki: Pki) -> None:
    async with media_stream_app(ssl_context=server_tls(pki)) as sockets, web_app({}) as app:
        app.routes["/voice"] = lambda form: (
            "<Response><Start><Stream name='tap' track='both_tracks' "
            f"url='{sockets.url('/tap')}' statusCallback='/stream-events'/></Start>"
            "<Say>This is what the caller hears on the outbound track.</Say>"
            "<Stop><Stream name='tap'/></Stop><Pause length='1'/><Hangup/></Response>"
        )
        app.routes["/stream-events"] = lambda form: ""
        async with running_engine(trusting(tmp_path, pki, app)) as engine, caller_phone() as phone:
            caller = await dial(engine, phone)
            caller.play_tone(CALLER_TONE)
            session = await sockets.session()
            await asyncio.wait_for(session.closed.wait(), 20)
            await caller.leg.wait_ended(15)
            await until(lambda: app.paths().count("/stream-events") == 2)
    assert session.start["start"]["tracks"] == ["inbound", "outbound"]
    assert session.events()[-1] == "stop"
    stop = session.of("stop")[0]
    assert stop["stop"]["callSid"] == session.start["start"]["callSid"]
    outbound = session.audio("outbound")
    assert len(outbound) > 16000  # the <Say>, paced out 20 ms a frame
    assert max(abs(s) for (s,) in struct.iter_unpack("<h", outbound)) > 2000  # speech, not silence
    assert best_window(session.audio("inbound"), CALLER_TONE) > 0.5
    callbacks = [form for path, form in app.requests if path == "/stream-events"]
    assert [c["StreamEvent"] for c in callbacks] == ["stream-started", "stream-stopped"]
    assert {c["StreamSid"] for c in callbacks} == {session.stream_sid}
    assert all(c["StreamName"] == "tap" and c["CallSid"] for c in callbacks)


async def test_dead_slow_or_missing_apps_never_stall_the_call(tmp_path: Path, pki: Pki) -> None:
    closed = free_port("tcp")
    async with (
        media_stream_app(read=False) as dead,  # accepts the socket, never reads
        media_stream_app() as plain,
        web_app({}) as app,
    ):
        app.routes["/voice"] = lambda form: (
            f"<Response><Start><Stream url='{dead.url('/dead')}' track='both_tracks'/>"
            f"<Stream url='ws://127.0.0.1:{closed}/gone' statusCallback='/stream-events'/>"
            "</Start>"
            f"<Connect action='/after'><Stream url='{plain.url('/not-a-socket')}'/></Connect>"
            "</Response>"
        )
        app.routes["/after"] = lambda form: (
            "<Response><Say>Still here.</Say><Pause length='3'/><Hangup/></Response>"
        )
        app.routes["/stream-events"] = lambda form: ""
        async with running_engine(trusting(tmp_path, pki, app)) as engine, caller_phone() as phone:
            caller = await dial(engine, phone)
            loop = asyncio.get_running_loop()
            wire: list[float] = []
            caller.leg.endpoint.set_forward(lambda packet: wire.append(loop.time()))
            caller.play_tone(CALLER_TONE)
            reason = await caller.leg.wait_ended(30)
            sid = next(form for path, form in app.requests if path == "/voice")["CallSid"]
            assert engine.store is not None
            errors = [e.data for e in engine.store.list_events(sid, kind="error")]
    assert reason == "remote hangup"  # the flow ran to its <Hangup/>
    assert "/after" in app.paths()
    gaps = [b - a for a, b in itertools.pairwise(wire)]
    assert len(wire) > 150 and max(gaps) < 0.25  # media every 20 ms throughout
    codes = {e.get("code") for e in errors}
    assert 31901 in codes  # nothing listens at the closed port
    assert 31920 in codes  # the server answered without upgrading
    (callback,) = [form for path, form in app.requests if path == "/stream-events"]
    assert callback["StreamEvent"] == "stream-error" and callback["StreamError"]


async def test_rest_streams_fork_a_live_call_and_stop_it(tmp_path: Path, pki: Pki) -> None:
    async with media_stream_app(ssl_context=server_tls(pki)) as sockets, web_app({}) as app:
        app.routes["/voice"] = lambda form: "<Response><Say>Hi</Say><Pause length='30'/></Response>"
        async with running_engine(trusting(tmp_path, pki, app)) as engine, caller_phone() as phone:
            caller = await dial(engine, phone)
            caller.play_tone(CALLER_TONE)
            await until(lambda: "/voice" in app.paths())
            sid = app.requests[0][1]["CallSid"]
            client = twilio_client(engine)
            stream = await asyncio.to_thread(
                client.calls(sid).streams.create,
                url=sockets.url("/rest"),
                name="rest-tap",
                track="inbound_track",
                parameter1_name="source",
                parameter1_value="rest",
            )
            session = await sockets.session()
            await session.wait_audio(0.5)
            stopped = await asyncio.to_thread(
                client.calls(sid).streams("rest-tap").update, status="stopped"
            )
            await asyncio.wait_for(session.closed.wait(), 10)
            await caller.hangup()
    assert stream.sid.startswith("MZ") and stream.name == "rest-tap"
    assert stream.status == "in-progress" and stream.call_sid == sid
    assert stopped.sid == stream.sid and stopped.status == "stopped"
    assert session.start["start"]["customParameters"] == {"source": "rest"}
    assert session.events()[-1] == "stop"
    assert best_window(session.audio("inbound"), CALLER_TONE) > 0.5


async def test_an_untrusted_wss_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    """The app's certificate is from a CA the engine does not trust (no ``tls.ca_bundle``):
    the socket is never opened (31910, ``stream-error``), the app gets nothing, and the flow
    goes on after the ``<Connect>`` with its action."""
    async with media_stream_app(ssl_context=server_tls(pki)) as sockets, web_app({}) as app:
        app.routes["/voice"] = lambda form: (
            f"<Response><Connect action='/after'><Stream url='{sockets.url('/agent')}' "
            "statusCallback='/stream-events'/></Connect></Response>"
        )
        app.routes["/after"] = lambda form: "<Response><Say>Still here.</Say><Hangup/></Response>"
        app.routes["/stream-events"] = lambda form: ""
        config = engine_config(
            tmp_path, [{"name": "stream.test", "voice_url": app.url("/voice")}]
        )  # the system's CAs only
        async with running_engine(config) as engine, caller_phone() as phone:
            caller = await dial(engine, phone)
            reason = await caller.leg.wait_ended(20)
            sid = next(form for path, form in app.requests if path == "/voice")["CallSid"]
            assert engine.store is not None
            errors = [e.data for e in engine.store.list_events(sid, kind="error")]
    assert sockets.url().startswith("wss://") and not sockets.sessions
    assert reason == "remote hangup" and "/after" in app.paths()
    assert 31910 in {e.get("code") for e in errors}
    (callback,) = [form for path, form in app.requests if path == "/stream-events"]
    assert callback["StreamEvent"] == "stream-error" and callback["StreamError"]
