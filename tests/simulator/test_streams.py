"""The simulator reaches a real WebSocket app: ``callxml simulate`` speaks Twilio's Media Streams
protocol to it, so a voice-agent app can be tried before any phone rings.

A ``<Connect><Stream>`` holds the simulated call until the app closes the socket (the caller's
scripted keys go to it as ``dtmf``, its marks are echoed, its audio counted); a ``<Start>``
fork gets ``start`` and, at ``<Stop>`` or the end of the call, ``stop``; an app that cannot be
reached fails the stream, not the call.
"""

from __future__ import annotations

from callxml.media.tone import sine
from callxml.simulator import MemoryFetcher, simulate
from support.ports import free_port
from support.streams import StreamSession, media_stream_app

BASE = "https://app.test/voice"


async def test_a_simulated_connect_talks_to_a_real_app() -> None:
    async def agent(session: StreamSession) -> None:
        await session.wait("start")
        await session.send_audio(sine(440, 1000))
        await session.send_mark("spoken")
        await session.wait("dtmf", 2)
        await session.wait("mark")
        await session.close()

    async with media_stream_app(agent) as sockets:
        fetcher = MemoryFetcher(
            {
                BASE: "<Response><Connect action='/after'>"
                f"<Stream url='{sockets.url('/agent')}'><Parameter name='lang' value='en'/>"
                "</Stream></Connect><Say>never</Say></Response>",
                "https://app.test/after": "<Response><Say>done</Say></Response>",
            }
        )
        result = await simulate(BASE, fetcher=fetcher, digits=["42"])
        session = sockets.sessions[0]
    assert result.ok and result.said == ["done"], result.transcript
    (stream,) = result.streams
    assert stream.bidirectional and stream.closed_by_app and not stream.error
    assert stream.sent == ["connected", "start", "dtmf", "dtmf", "mark"]
    assert stream.heard == 1.0 and stream.marks == ["spoken"]
    assert session.start["start"]["customParameters"] == {"lang": "en"}
    assert session.start["start"]["callSid"] == result.call_sid
    assert [m["dtmf"]["digit"] for m in session.of("dtmf")] == ["4", "2"]
    assert "https://app.test/after" in result.urls


async def test_a_simulated_fork_starts_and_stops_with_callbacks() -> None:
    async with media_stream_app() as sockets:
        fetcher = MemoryFetcher(
            {
                BASE: "<Response><Start><Stream name='tap' statusCallback='/events' "
                f"url='{sockets.url('/tap')}'/></Start><Say>hello</Say>"
                "<Stop><Stream name='tap'/></Stop><Say>bye</Say></Response>",
                "https://app.test/events": "",
            }
        )
        result = await simulate(BASE, fetcher=fetcher)
        session = await sockets.session()
        await session.wait("stop")
    assert result.ok and result.said == ["hello", "bye"], result.transcript
    assert session.events() == ["connected", "start", "stop"]
    events = [c.params["StreamEvent"] for c in result.callbacks]
    assert events == ["stream-started", "stream-stopped"]
    assert result.streams[0].sent == ["connected", "start", "stop"]


async def test_an_unreachable_app_fails_the_stream_not_the_call() -> None:
    url = f"ws://127.0.0.1:{free_port('tcp')}/gone"
    fetcher = MemoryFetcher(
        {BASE: f"<Response><Connect><Stream url='{url}'/></Connect><Say>after</Say></Response>"}
    )
    result = await simulate(BASE, fetcher=fetcher)
    assert result.ok and result.said == ["after"], result.transcript
    assert result.streams[0].error and any("31901" in line for line in result.log)
