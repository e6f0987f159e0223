"""The REST API over a real loopback HTTP server: auth, shapes, paging, errors, live-call updates.

The runtime behind the API is replaced at its seam (``CallControl``) by a small recorder that
writes to a real SQLite store; end-to-end calls through the runtime are tested elsewhere.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from callxml.engine.api import ApiError, CallUpdate, OutboundCall, build_app
from callxml.engine.config import AccountConfig, parse_config
from callxml.engine.store import CallEvent, CallRecord, RecordingRecord, SqliteStore

SID = "AC" + "1" * 32
TOKEN = "token-token-token-1"
OTHER = "AC" + "2" * 32


@dataclass
class RecordingControl:
    store: SqliteStore
    created: list[OutboundCall] = field(default_factory=list)
    updates: list[CallUpdate] = field(default_factory=list)

    async def create_call(self, account: AccountConfig, call: OutboundCall) -> CallRecord:
        self.created.append(call)
        sid = f"CA{len(self.created):032x}"
        now = time.time()
        record = CallRecord(
            sid,
            account.sid,
            "outbound-api",
            call.from_,
            call.to,
            "queued",
            date_created=now,
            date_updated=now,
        )
        self.store.create_call(record)
        return record

    async def update_call(self, account: AccountConfig, sid: str, update: CallUpdate) -> CallRecord:
        record = self.store.get_call(sid)
        assert record is not None
        if record.status != "in-progress":
            raise ApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
        self.updates.append(update)
        return record


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, RecordingControl, SqliteStore]]:
    config = parse_config(
        {
            "accounts": [
                {"sid": SID, "auth_token": TOKEN},
                {"sid": OTHER, "auth_token": TOKEN + "x"},
            ],
            "domains": [],
        }
    )
    store = SqliteStore(tmp_path / "api.db")
    control = RecordingControl(store)
    server = TestServer(build_app(config, store, control), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")), control, store
    finally:
        await server.close()


def _auth(sid: str = SID, token: str = TOKEN) -> dict[str, str]:
    encoded = base64.b64encode(f"{sid}:{token}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


async def test_create_call_returns_twilio_shape(
    api: tuple[str, RecordingControl, SqliteStore],
) -> None:
    base, control, _ = api
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{base}/2010-04-01/Accounts/{SID}/Calls.json",
            data={
                "To": "sip:jack@example.com;secure=true?X-Team=blue",
                "From": "+15550001111",
                "Url": "http://127.0.0.1:9/voice",
                "StatusCallback": "http://127.0.0.1:9/s",
                "StatusCallbackEvent": "initiated ringing answered completed",
                "Timeout": "20",
            },
            headers=_auth(),
        )
        assert resp.status == 201
        body = await resp.json()
    assert body["sid"].startswith("CA") and len(body["sid"]) == 34
    assert body["status"] == "queued" and body["direction"] == "outbound-api"
    assert body["to"] == "sip:jack@example.com;secure=true?X-Team=blue"
    assert body["uri"] == f"/2010-04-01/Accounts/{SID}/Calls/{body['sid']}.json"
    assert body["api_version"] == "2010-04-01"
    assert body["date_created"].endswith("+0000")
    assert {"events", "recordings"} <= set(body["subresource_uris"])
    call = control.created[0]
    assert call.timeout == 20
    assert call.status_callback_event == ("initiated", "ringing", "answered", "completed")


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": "x", "Url": "http://a/"}, 21201),
        ({"To": "sip:a@b", "Url": "http://a/"}, 21603),
        ({"To": "sip:a@b", "From": "x"}, 21205),
        ({"To": "sip:a@b", "From": "x", "Url": "ftp://a/"}, 21205),
        ({"To": "sip:a@b", "From": "x", "Url": "http://a/", "Method": "PUT"}, 21207),
        ({"To": "sip:a@b", "From": "x", "Url": "http://a/", "Timeout": "abc"}, 20001),
        ({"To": "sip:a@b", "From": "x", "Url": "http://a/", "StatusCallbackEvent": "x"}, 21626),
    ],
)
async def test_create_call_validation(
    api: tuple[str, RecordingControl, SqliteStore], form: dict[str, str], code: int
) -> None:
    base, control, _ = api
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{base}/2010-04-01/Accounts/{SID}/Calls.json", data=form, headers=_auth()
        )
        body = await resp.json()
    assert resp.status == 400
    assert body["code"] == code and body["status"] == 400 and body["message"]
    assert body["more_info"].endswith(str(code))
    assert control.created == []


async def test_auth_is_required_and_scoped(api: tuple[str, RecordingControl, SqliteStore]) -> None:
    base, _, store = api
    store.create_call(CallRecord("CA" + "a" * 32, SID, "inbound", "a", "b", "completed"))
    url = f"{base}/2010-04-01/Accounts/{SID}/Calls/{'CA' + 'a' * 32}.json"
    async with aiohttp.ClientSession() as http:
        for auth in (None, _auth(token="wrong-token-000000"), _auth(sid="AC" + "9" * 32)):
            resp = await http.get(url, headers=auth)
            assert resp.status == 401 and (await resp.json())["code"] == 20003
        # Another account's valid credentials cannot read this account's calls.
        resp = await http.get(url, headers=_auth(OTHER, TOKEN + "x"))
        assert resp.status == 404
        other_url = f"{base}/2010-04-01/Accounts/{OTHER}/Calls/{'CA' + 'a' * 32}.json"
        resp = await http.get(other_url, headers=_auth(OTHER, TOKEN + "x"))
        assert resp.status == 404 and (await resp.json())["code"] == 20404
        resp = await http.get(url, headers=_auth())
        assert resp.status == 200 and (await resp.json())["status"] == "completed"


async def test_list_paging_and_filters(api: tuple[str, RecordingControl, SqliteStore]) -> None:
    base, _, store = api
    for i in range(5):
        store.create_call(
            CallRecord(
                f"CA{i:032x}",
                SID,
                "inbound",
                "+1555",
                f"sip:{i}@x",
                "completed" if i < 3 else "busy",
                date_created=float(i),
            )
        )
    url = f"{base}/2010-04-01/Accounts/{SID}/Calls.json"
    async with aiohttp.ClientSession() as http:
        page0 = await (await http.get(url, params={"PageSize": "2"}, headers=_auth())).json()
        assert [c["to"] for c in page0["calls"]] == ["sip:4@x", "sip:3@x"]
        assert page0["previous_page_uri"] is None and "Page=1" in page0["next_page_uri"]
        page2 = await (
            await http.get(
                base + page0["next_page_uri"].replace("Page=1", "Page=2"), headers=_auth()
            )
        ).json()
        assert [c["to"] for c in page2["calls"]] == ["sip:0@x"]
        assert page2["next_page_uri"] is None and page2["start"] == 4
        busy = await (await http.get(url, params={"Status": "busy"}, headers=_auth())).json()
        assert {c["status"] for c in busy["calls"]} == {"busy"} and len(busy["calls"]) == 2
        to = await (await http.get(url, params={"To": "sip:1@x"}, headers=_auth())).json()
        assert [c["to"] for c in to["calls"]] == ["sip:1@x"]
        bad = await http.get(url, params={"PageSize": "5000"}, headers=_auth())
        assert bad.status == 400


async def test_update_live_call(api: tuple[str, RecordingControl, SqliteStore]) -> None:
    base, control, store = api
    live, done = "CA" + "b" * 32, "CA" + "c" * 32
    store.create_call(CallRecord(live, SID, "inbound", "a", "b", "in-progress"))
    store.create_call(CallRecord(done, SID, "inbound", "a", "b", "completed"))
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{base}/2010-04-01/Accounts/{SID}/Calls/{live}.json",
            data={"Twiml": "<Response><Hangup/></Response>"},
            headers=_auth(),
        )
        assert resp.status == 200
        resp = await http.post(
            f"{base}/2010-04-01/Accounts/{SID}/Calls/{done}.json",
            data={"Url": "http://a/next"},
            headers=_auth(),
        )
        assert resp.status == 400 and (await resp.json())["code"] == 21220
        resp = await http.post(
            f"{base}/2010-04-01/Accounts/{SID}/Calls/{live}.json",
            data={"Status": "ringing"},
            headers=_auth(),
        )
        assert resp.status == 400
    assert control.updates == [
        CallUpdate(url=None, method="POST", twiml="<Response><Hangup/></Response>", status=None)
    ]


async def test_events_and_recordings(
    api: tuple[str, RecordingControl, SqliteStore], tmp_path: Path
) -> None:
    base, _, store = api
    sid = "CA" + "d" * 32
    store.create_call(CallRecord(sid, SID, "inbound", "a", "b", "completed"))
    store.add_event(
        CallEvent(
            sid,
            "webhook",
            1.0,
            {
                "method": "POST",
                "url": "http://app/voice",
                "parameters": {"CallSid": sid},
                "status": 200,
                "body": "<Response/>",
                "duration_ms": 12,
            },
        )
    )
    store.add_event(CallEvent(sid, "verb", 2.0, {"verb": "Say"}))
    wav = tmp_path / "r.wav"
    wav.write_bytes(b"RIFF0000WAVE")
    rec_sid = "RE" + "e" * 32
    store.add_recording(RecordingRecord(rec_sid, sid, SID, str(wav), 3, 1.0))
    async with aiohttp.ClientSession() as http:
        events = await (
            await http.get(
                f"{base}/2010-04-01/Accounts/{SID}/Calls/{sid}/Events.json", headers=_auth()
            )
        ).json()
        assert len(events["events"]) == 1
        assert events["events"][0]["request"]["parameters"] == {"CallSid": sid}
        assert events["events"][0]["response"]["response_code"] == 200
        recs = await (
            await http.get(
                f"{base}/2010-04-01/Accounts/{SID}/Calls/{sid}/Recordings.json", headers=_auth()
            )
        ).json()
        assert recs["recordings"][0]["sid"] == rec_sid
        media = await http.get(
            f"{base}/2010-04-01/Accounts/{SID}/Recordings/{rec_sid}.wav", headers=_auth()
        )
        assert media.status == 200 and await media.read() == b"RIFF0000WAVE"
        unauth = await http.get(f"{base}/2010-04-01/Accounts/{SID}/Recordings/{rec_sid}.wav")
        assert unauth.status == 401
        spec = await http.get(f"{base}/openapi.yaml")
        assert spec.status == 200 and "createCall" in await spec.text()
        missing = await http.get(f"{base}/nope")
        assert missing.status == 404 and (await missing.json())["code"] == 20404


@pytest.mark.parametrize("media_auth", [True, False])
async def test_recording_media_as_wav_and_mp3(tmp_path: Path, media_auth: bool) -> None:
    """``RecordingUrl`` (WAV), ``.wav`` and ``.mp3`` all serve the audio; the MP3 is real MP3
    (libsndfile through soundfile) that decodes to the same length. Whether media needs HTTP
    auth is the account's ``media_auth`` (default: required); metadata always needs it."""
    import numpy
    import soundfile

    config = parse_config(
        {
            "accounts": [{"sid": SID, "auth_token": TOKEN, "media_auth": media_auth}],
            "domains": [],
        }
    )
    store = SqliteStore(tmp_path / "api.db")
    server = TestServer(build_app(config, store, RecordingControl(store)), host="127.0.0.1")
    await server.start_server()
    wav = tmp_path / "r.wav"
    tone = (numpy.sin(numpy.arange(8000) * 2 * numpy.pi * 440 / 8000) * 8000).astype("int16")
    soundfile.write(str(wav), tone, 8000, subtype="PCM_16")
    rec_sid = "RE" + "f" * 32
    store.add_recording(RecordingRecord(rec_sid, "CA" + "d" * 32, SID, str(wav), 1, 1.0))
    base = str(server.make_url(f"/2010-04-01/Accounts/{SID}/Recordings/{rec_sid}"))
    try:
        async with aiohttp.ClientSession() as http:
            for ext, kind in (("", "audio/x-wav"), (".wav", "audio/x-wav"), (".mp3", "audio/mpeg")):
                answer = await http.get(base + ext, headers=_auth())
                assert answer.status == 200 and answer.content_type == kind
                body = await answer.read()
                if ext == ".mp3":
                    (tmp_path / "got.mp3").write_bytes(body)
                    decoded, rate = soundfile.read(str(tmp_path / "got.mp3"))
                    assert rate == 8000 and abs(len(decoded) - 8000) < 2000
                else:
                    assert body == wav.read_bytes()
                anonymous = await http.get(base + ext)
                assert anonymous.status == (401 if media_auth else 200)
            metadata = await http.get(base + ".json")
            assert metadata.status == 401  # metadata always needs credentials
    finally:
        await server.close()
        store.close()
