"""The REST API driven by the official ``twilio`` Python SDK, as a migrating app would use it.

The SDK's own client (its HTTP client, its paging, its error type) is pointed at ``callxml
serve``'s REST API with nothing changed but the base URL. Real calls to SIPp callees go through
create, fetch, list with filters and paging, update (redirect and hang up), delete (refused while
live, 204 once over); then the call's events and notifications, the account, and recordings at
call and account level (list, fetch, delete). Parameters callxml does not honour are refused with
Twilio's error JSON, which the SDK raises as ``TwilioRestException``.

The SDK is synchronous (requests), so each call runs in a thread while the engine runs on the
test's event loop.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from callxml.engine.server import Engine
from callxml.engine.store import RecordingRecord
from support.engine import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    WebApp,
    engine_config,
    running_engine,
    wait_status,
)
from support.sipp import Sipp
from support.waiting import until

pytestmark = pytest.mark.peer

T = TypeVar("T")
HOLD = "<Response><Pause length='30'/></Response>"


def sdk(engine: Engine) -> Client:
    """The official client, talking to the engine instead of api.twilio.com."""
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = f"http://127.0.0.1:{engine.http_port}"
    return client


async def off_loop(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kw)


def wav(path: Path, seconds: float = 0.5) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x10" * int(8000 * seconds))
    return path


async def test_the_twilio_sdk_drives_calls(tmp_path: Path, sipp: Sipp) -> None:
    first = await sipp.uas("uas_answer", media_port=True)
    second = await sipp.uas("uas_answer", media_port=True)
    app = WebApp(
        {
            "/voice": lambda form: "<Response><Say>Hi</Say><Hangup/></Response>",
            "/status": lambda form: "",
        }
    )
    await app.start()
    async with running_engine(engine_config(tmp_path, [])) as engine:
        client = sdk(engine)

        # create: a call that hangs up by itself, and one that holds until we end it
        done = await off_loop(
            client.calls.create,
            to=f"sip:bob@127.0.0.1:{first.port}?X-Ticket=7",
            from_="sip:alice@example.com",
            url=app.url("/voice"),
            status_callback=app.url("/status"),
            status_callback_event=["initiated", "completed"],
            timeout=10,
            time_limit=60,
            caller_id="sip:ivr@example.com",
        )
        assert done.sid.startswith("CA") and done.status == "queued"
        held = await off_loop(
            client.calls.create,
            to=f"sip:carol@127.0.0.1:{second.port}?X-Ticket=7",
            from_="+15550100",
            twiml=HOLD,
            send_digits="1w2",
            timeout=10,
        )
        await wait_status(engine, done.sid, {"completed", "failed"})
        await wait_status(engine, held.sid, {"in-progress"})
        store = engine.store
        assert store is not None
        await until(  # the digits are sent and the flow runs (<Pause>)
            lambda: store.list_events(held.sid, kind="verb"), what="the held call's flow"
        )

        # fetch
        fetched = await off_loop(client.calls(done.sid).fetch)
        assert fetched.status == "completed" and fetched.direction == "outbound-api"
        assert set(fetched.subresource_uris) == {"events", "notifications", "recordings"}

        # list, filter, page
        everything = await off_loop(client.calls.list)
        assert {c.sid for c in everything} == {done.sid, held.sid}
        live = await off_loop(client.calls.list, status="in-progress")
        assert [c.sid for c in live] == [held.sid]
        now = datetime.datetime.now(datetime.UTC)
        recent = await off_loop(
            client.calls.list, start_time_after=now - datetime.timedelta(hours=1)
        )
        assert {c.sid for c in recent} == {done.sid, held.sid}
        old = await off_loop(client.calls.list, start_time_before=now - datetime.timedelta(days=2))
        assert old == []
        ended_today = await off_loop(client.calls.list, end_time=now.date())
        assert [c.sid for c in ended_today] == [done.sid]
        pages = await off_loop(lambda: list(client.calls.stream(page_size=1)))
        assert sorted(c.sid for c in pages) == sorted([done.sid, held.sid])
        first_page = await off_loop(client.calls.page, page_size=1)
        assert len(list(first_page)) == 1 and first_page.next_page_url is not None

        # delete: refused while live, 204 once over
        with pytest.raises(TwilioRestException) as refused:
            await off_loop(client.calls(held.sid).delete)
        assert refused.value.status == 400 and refused.value.code == 20009

        # update: redirect the live call, then end it
        redirected = await off_loop(
            client.calls(held.sid).update, twiml="<Response><Pause length='20'/></Response>"
        )
        assert redirected.sid == held.sid
        ended = await off_loop(client.calls(held.sid).update, status="completed")
        assert ended.status == "completed"
        assert await off_loop(client.calls(held.sid).delete) is True
        assert store.get_call(held.sid) is None

        # events and notifications of a call
        events = await off_loop(client.calls(done.sid).events.list)
        assert events and events[0].request["parameters"]["CallSid"] == done.sid
        notes = await off_loop(client.calls(done.sid).notifications.list)
        assert isinstance(notes, list)

        # the account
        account = await off_loop(client.api.accounts(ACCOUNT_SID).fetch)
        assert account.sid == ACCOUNT_SID and account.status == "active"

        # recordings: call level and account level, list, fetch, delete
        rec_sid = "RE" + "1" * 32
        path = wav(tmp_path / "rec.wav")
        store.add_recording(
            RecordingRecord(rec_sid, done.sid, ACCOUNT_SID, str(path), 1, time.time())
        )
        by_call = await off_loop(client.calls(done.sid).recordings.list)
        assert [r.sid for r in by_call] == [rec_sid]
        fetched_rec = await off_loop(client.calls(done.sid).recordings(rec_sid).fetch)
        assert fetched_rec.call_sid == done.sid and fetched_rec.duration == "1"
        listed = await off_loop(client.recordings.list, call_sid=done.sid)
        assert [r.sid for r in listed] == [rec_sid]
        assert (await off_loop(client.recordings(rec_sid).fetch)).sid == rec_sid
        assert await off_loop(client.recordings(rec_sid).delete) is True
        assert await off_loop(client.recordings.list) == [] and not path.exists()
        with pytest.raises(TwilioRestException) as gone:
            await off_loop(client.recordings(rec_sid).fetch)
        assert gone.value.status == 404

    await app.stop()
    assert (await first.result()).returncode == 0
    assert (await second.result()).returncode == 0
    statuses = [form["CallStatus"] for path, form in app.requests if path == "/status"]
    assert statuses == ["initiated", "completed"]
    voice = next(form for path, form in app.requests if path == "/voice")
    assert voice["From"] == "sip:alice@example.com"


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"machine_detection": "Enable"}, "MachineDetection"),
        ({"async_amd": "true"}, "AsyncAmd"),
        ({"trim": "trim-silence"}, "Trim"),
        ({"recording_channels": "dual"}, "RecordingChannels"),
        ({"byoc": "BY123"}, "Byoc"),
    ],
)
async def test_options_callxml_does_not_honour_are_refused(
    tmp_path: Path, options: dict[str, Any], parameter: str
) -> None:
    async with running_engine(engine_config(tmp_path, [])) as engine:
        with pytest.raises(TwilioRestException) as refused:
            await off_loop(
                sdk(engine).calls.create,
                to="sip:bob@127.0.0.1:9",
                from_="sip:alice@example.com",
                url="https://app.example.com/voice",
                **options,
            )
        assert engine.store is not None and engine.store.count_calls(ACCOUNT_SID) == 0
    assert refused.value.status == 400 and refused.value.code == 20001
    assert parameter in refused.value.msg


async def test_application_sid_is_refused(tmp_path: Path) -> None:
    async with running_engine(engine_config(tmp_path, [])) as engine:
        with pytest.raises(TwilioRestException) as refused:
            await off_loop(
                sdk(engine).calls.create,
                to="sip:bob@127.0.0.1:9",
                from_="sip:alice@example.com",
                application_sid="AP" + "0" * 32,
            )
    assert refused.value.status == 400 and "ApplicationSid" in refused.value.msg


async def test_time_limit_ends_the_call(tmp_path: Path, sipp: Sipp) -> None:
    """``TimeLimit`` is honoured: a call whose flow would hold for 30 s is hung up after 1."""
    callee = await sipp.uas("uas_answer", media_port=True)
    async with running_engine(engine_config(tmp_path, [])) as engine:
        call = await off_loop(
            sdk(engine).calls.create,
            to=f"sip:bob@127.0.0.1:{callee.port}?X-Ticket=7",
            from_="sip:alice@example.com",
            twiml=HOLD,
            time_limit=1,
        )
        started = time.monotonic()
        record = await wait_status(engine, call.sid, {"completed", "failed"})
        took = time.monotonic() - started
    assert (await callee.result()).returncode == 0  # SIPp got our BYE
    assert record.status == "completed" and took < 15
    assert record.duration is not None and record.duration <= 3


async def test_the_sdk_example_runs(tmp_path: Path, sipp: Sipp) -> None:
    """examples/twilio_sdk_client.py against a running engine and a SIPp callee."""
    callee = await sipp.uas("uas_answer", media_port=True)
    example = Path(__file__).resolve().parents[2] / "examples" / "twilio_sdk_client.py"
    async with running_engine(engine_config(tmp_path, [])) as engine:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(example),
            "--to",
            f"sip:bob@127.0.0.1:{callee.port}?X-Ticket=7",
            "--api",
            f"http://127.0.0.1:{engine.http_port}",
            "--account",
            ACCOUNT_SID,
            "--token",
            AUTH_TOKEN,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    text = output.decode()
    assert process.returncode == 0, text
    assert "ended: completed" in text and "refused as expected: 400 20001" in text
    assert (await callee.result()).returncode == 0


async def test_record_true_records_the_whole_call(tmp_path: Path, sipp: Sipp) -> None:
    """``Record=true`` with ``RecordingChannels=dual``: the call (what the callee says on the
    left, what callxml plays on the right) is recorded from the answer, listed among the call's
    recordings, and ``RecordingStatusCallback`` hears ``in-progress`` then ``completed``."""
    callee = await sipp.uas("uas_answer", media_port=True)
    app = WebApp({"/rec": lambda form: ""})
    await app.start()
    async with running_engine(engine_config(tmp_path, [])) as engine:
        client = sdk(engine)
        call = await off_loop(
            client.calls.create,
            to=f"sip:bob@127.0.0.1:{callee.port}?X-Ticket=7",
            from_="sip:alice@example.com",
            twiml="<Response><Say>This call is recorded</Say><Hangup/></Response>",
            record=True,
            recording_channels="dual",
            recording_status_callback=app.url("/rec"),
            recording_status_callback_event=["in-progress", "completed"],
        )
        await wait_status(engine, call.sid, {"completed", "failed"})
        await until(
            lambda: len([p for p, _ in app.requests if p == "/rec"]) == 2,
            what="two recording callbacks",
        )
        (recording,) = await off_loop(client.calls(call.sid).recordings.list)
        assert engine.store is not None
        stored = engine.store.get_recording(recording.sid)
    await app.stop()
    assert (await callee.result()).returncode == 0
    assert recording.channels == 2 and int(recording.duration) >= 1
    assert recording.source == "OutboundAPI"
    assert stored is not None
    with wave.open(stored.path) as audio:
        assert audio.getnchannels() == 2
        frames = audio.readframes(audio.getnframes())
    assert any(frames[i + 2 : i + 4] != b"\x00\x00" for i in range(0, len(frames), 4))  # speech
    statuses = [form["RecordingStatus"] for path, form in app.requests if path == "/rec"]
    assert statuses == ["in-progress", "completed"]
    done = [form for path, form in app.requests if path == "/rec"][-1]
    assert done["RecordingSid"] == recording.sid and done["RecordingSource"] == "OutboundAPI"
    assert done["RecordingUrl"].endswith(recording.sid)
