"""The example apps: the IVR (examples/ivr_app.py) and its static twin (examples/flows/*.xml); the
conference line, support line and WebSocket agent (examples/*_app.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from callxml.errors import WebhookError
from callxml.markup.parser import parse_document
from callxml.signature import HEADER, sign
from callxml.simulator import simulate
from callxml.webhooks import (
    RETRIEVAL_FAILURE,
    FileFetcher,
    WebhookClient,
    WebhookRequest,
    resolve_url,
)
from support.examples import EXAMPLES, load_example
from support.web import Serve

FLOWS = EXAMPLES / "flows"
TOKEN = "example-test-token"
JACK = "sip:jack@example.com;secure=true"
CALL = (
    ("CallSid", "CA" + "ab" * 16),
    ("AccountSid", "AC" + "cd" * 16),
    ("From", "+15005550006"),
    ("To", "+15005550001"),
    ("CallStatus", "in-progress"),
    ("Direction", "inbound"),
)


ivr_app = load_example("ivr_app.py", "callxml_example_ivr_app")


@pytest.fixture
async def app_url(serve: Serve) -> str:
    return await serve(ivr_app.make_app(TOKEN))


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    async with WebhookClient(auth_token=TOKEN, timeout=5.0) as c:
        yield c


async def fetch_doc(
    client: WebhookClient, url: str, method: str = "POST", **extra: str
) -> etree._Element:
    resp = await client.fetch(WebhookRequest(url, method, CALL + tuple(extra.items())))
    assert resp.content_type == "text/xml"
    assert not parse_document(resp.body).warnings  # valid callxml markup, not just XML
    root = etree.fromstring(resp.body)
    assert root.tag == "Response"
    return root


def verbs(root: etree._Element) -> list[str]:
    return [str(child.tag) for child in root]


async def test_menu(app_url: str, client: WebhookClient) -> None:
    root = await fetch_doc(client, f"{app_url}/ivr")
    assert verbs(root) == ["Gather", "Say", "Hangup"]
    gather = root[0]
    assert gather.get("numDigits") == "1"
    assert gather.get("action") == "/ivr/menu"
    assert "press 1" in (gather.findtext("Say") or "")


async def test_press_1_dials_jack_securely(app_url: str, client: WebhookClient) -> None:
    root = await fetch_doc(client, f"{app_url}/ivr/menu", Digits="1")
    assert verbs(root) == ["Say", "Dial"]
    dial = root[1]
    assert dial.get("action") == "/ivr/dial-status"
    assert dial.get("ringTone") == "us"  # the caller hears a US ringback while Jack rings
    assert [(str(n.tag), n.text) for n in dial] == [("Sip", JACK)]


async def test_press_2_records(app_url: str, client: WebhookClient) -> None:
    root = await fetch_doc(client, f"{app_url}/ivr/menu", Digits="2")
    assert verbs(root) == ["Say", "Record", "Say"]
    assert root[1].get("action") == "/ivr/recorded"
    done = await fetch_doc(client, f"{app_url}/ivr/recorded", RecordingDuration="7")
    assert verbs(done) == ["Say", "Hangup"]
    assert "7 seconds" in (done[0].text or "")


@pytest.mark.parametrize("digits", ["3", "*", ""])
async def test_other_keys_repeat_menu(app_url: str, client: WebhookClient, digits: str) -> None:
    root = await fetch_doc(client, f"{app_url}/ivr/menu", Digits=digits)
    assert verbs(root) == ["Say", "Redirect"]
    assert root[1].text == "/ivr"


async def test_dial_status(app_url: str, client: WebhookClient) -> None:
    ok = await fetch_doc(client, f"{app_url}/ivr/dial-status", DialCallStatus="completed")
    busy = await fetch_doc(client, f"{app_url}/ivr/dial-status", DialCallStatus="busy")
    assert "Goodbye" in (ok[0].text or "")
    assert "(busy)" in (busy[0].text or "")


async def test_get_requests_are_validated_too(app_url: str, client: WebhookClient) -> None:
    root = await fetch_doc(client, f"{app_url}/ivr/menu", "GET", Digits="1")
    assert root[1][0].text == JACK


async def test_unsigned_request_rejected(app_url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{app_url}/ivr/menu", data={"Digits": "1"}) as resp,
    ):
        assert resp.status == 403
        assert "Signature" in await resp.text()


async def test_wrong_token_rejected(app_url: str) -> None:
    async with WebhookClient(auth_token="not-the-token") as other:
        with pytest.raises(WebhookError) as info:
            await other.fetch(WebhookRequest(f"{app_url}/ivr", "POST", CALL))
    assert info.value.error_code == RETRIEVAL_FAILURE
    assert "403" in str(info.value)


async def test_tampered_form_rejected(app_url: str) -> None:
    url = f"{app_url}/ivr/menu"
    signature = sign(TOKEN, url, {"Digits": "2"})
    async with aiohttp.ClientSession() as session:
        headers = {HEADER: signature}
        async with session.post(url, data={"Digits": "2"}, headers=headers) as resp:
            assert resp.status == 200  # control: the genuine form passes
        async with session.post(url, data={"Digits": "1"}, headers=headers) as resp:
            assert resp.status == 403


async def test_public_url_behind_proxy(serve: Serve) -> None:
    base = await serve(ivr_app.make_app(TOKEN, public_url="https://ivr.example.com"))
    signature = sign(TOKEN, "https://ivr.example.com/ivr/menu", {"Digits": "1"})
    async with aiohttp.ClientSession() as session:
        for sig, expected in ((signature, 200), (sign(TOKEN, f"{base}/ivr/menu", {}), 403)):
            async with session.post(
                f"{base}/ivr/menu", data={"Digits": "1"}, headers={HEADER: sig}
            ) as resp:
                assert resp.status == expected


# ---------------------------------------------------------------------- static flows (files)


def flow_files() -> list[Path]:
    return sorted(FLOWS.glob("*.xml"))


def test_flows_are_well_formed() -> None:
    names = {p.name for p in flow_files()}
    assert {"ivr.xml", "menu-1.xml", "menu-2.xml", "menu-default.xml"} <= names
    for path in flow_files():
        assert etree.parse(str(path)).getroot().tag == "Response", path
        assert not parse_document(path.read_bytes()).warnings, path


def test_every_relative_url_in_flows_resolves() -> None:
    for path in flow_files():
        root = etree.parse(str(path)).getroot()
        targets = [el.get("action") for el in root.iter() if el.get("action")]
        targets += [el.text for el in root.iter("Redirect")]
        for target in targets:
            assert target is not None
            resolved = FLOWS / target.replace("{{Digits}}", "default").replace(
                "{{DialCallStatus}}", "default"
            )
            assert resolved.is_file(), f"{path.name}: {target}"


@pytest.mark.parametrize(
    ("digits", "first_verbs"),
    [("1", ["Say", "Dial"]), ("2", ["Say", "Record", "Say"]), ("5", ["Say", "Redirect"])],
)
async def test_flow_branches_like_the_app(
    app_url: str, client: WebhookClient, digits: str, first_verbs: list[str]
) -> None:
    files = FileFetcher(FLOWS)
    menu = await files.fetch(WebhookRequest("ivr.xml", "POST", CALL))
    action = etree.fromstring(menu.body).find("Gather").get("action")  # type: ignore[union-attr]
    assert action is not None
    url = resolve_url(menu.url, action)
    chosen = await files.fetch(WebhookRequest(url, "POST", (*CALL, ("Digits", digits))))
    static_root = etree.fromstring(chosen.body)
    live_root = await fetch_doc(client, f"{app_url}/ivr/menu", Digits=digits)
    assert verbs(static_root) == verbs(live_root) == first_verbs
    if digits == "1":
        assert static_root.findtext("Dial/Sip") == live_root.findtext("Dial/Sip") == JACK


# -- the conference line, support line and WebSocket agent (run for real in
# tests/engine/test_room_examples.py): every route they serve is valid markup, and nothing
# unsigned gets through, the WebSocket handshake included.

conference_app = load_example("conference_app.py", "callxml_example_conference_app_docs")
queue_app = load_example("queue_app.py", "callxml_example_queue_app_docs")
stream_app = load_example("stream_echo_app.py", "callxml_example_stream_echo_app_docs")

ROOM_ROUTES = [
    (conference_app, "/voice", {}),
    (conference_app, "/pin", {"Digits": "4242"}),
    (conference_app, "/pin", {}),
    (conference_app, "/wait", {}),
    (conference_app, "/left", {}),
    (queue_app, "/voice", {}),
    (queue_app, "/wait", {"QueuePosition": "2", "AvgQueueTime": "30"}),
    (queue_app, "/wait-key", {"Digits": "0"}),
    (queue_app, "/after", {"QueueResult": "leave"}),
    (queue_app, "/after", {"QueueResult": "bridged"}),
    (queue_app, "/agent", {}),
    (queue_app, "/whisper", {}),
    (queue_app, "/agent-done", {"DialCallStatus": "completed"}),
    (stream_app, "/goodbye", {}),
]


@pytest.mark.parametrize(
    ("module", "path", "form"),
    ROOM_ROUTES,
    ids=[f"{m.__name__[17:]}{p}" for m, p, _ in ROOM_ROUTES],
)
async def test_room_examples_answer_valid_markup_when_signed(
    serve: Serve, client: WebhookClient, module: object, path: str, form: dict[str, str]
) -> None:
    base = await serve(module.make_app(TOKEN))  # type: ignore[attr-defined]
    root = await fetch_doc(client, base + path, **form)
    assert verbs(root)


@pytest.mark.parametrize("module", [conference_app, queue_app, stream_app])
async def test_room_examples_refuse_unsigned_requests(serve: Serve, module: object) -> None:
    base = await serve(module.make_app(TOKEN))  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/voice", data=dict(CALL)) as resp:
            assert resp.status == 403
        forged = {HEADER: sign("another-token", base + "/voice", CALL)}
        async with session.post(base + "/voice", data=dict(CALL), headers=forged) as resp:
            assert resp.status == 403


async def test_the_agent_socket_needs_a_signed_handshake(serve: Serve) -> None:
    base = await serve(stream_app.make_app(TOKEN))
    ws_url = "ws" + base.removeprefix("http") + "/media"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url)
        assert refused.value.status == 403
        signed = {HEADER: sign(TOKEN, ws_url, ())}
        async with session.ws_connect(ws_url, headers=signed) as ws:
            await ws.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            await ws.send_json(
                {"event": "start", "streamSid": "MZ1", "start": {"streamSid": "MZ1"}}
            )
            greeting = [await ws.receive_json(timeout=5) for _ in range(81)]
            await ws.send_json({"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": "#"}})
            closed = await ws.receive(timeout=5)
    # 1.6 s of chime in 20 ms messages, then the mark that says when it has played
    assert [m["event"] for m in greeting] == ["media"] * 80 + ["mark"]
    assert all(m["streamSid"] == "MZ1" for m in greeting)
    assert greeting[-1]["mark"] == {"name": "greeting"}
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)  # '#' ends it


async def test_the_agent_names_its_socket_under_the_public_wss_origin(
    serve: Serve, client: WebhookClient
) -> None:
    """On its own it names itself over ws:// (callxml's insecure-stream warning); behind a TLS
    proxy, under the public wss:// origin, with no warning."""
    local = await serve(stream_app.make_app(TOKEN))
    resp = await client.fetch(WebhookRequest(local + "/voice", "POST", CALL))
    assert [w.code for w in parse_document(resp.body).warnings] == ["insecure-stream"]
    public = await serve(stream_app.make_app(TOKEN, stream_base="wss://agent.example.com"))
    root = await fetch_doc(client, public + "/voice")
    assert verbs(root) == ["Connect", "Say"]
    assert root.find("Connect/Stream").get("url") == "wss://agent.example.com/media"


@pytest.mark.parametrize(
    ("outcome", "answered_by"), [("answered", "human"), ("machine", "machine_start")]
)
async def test_the_machine_detection_flow_in_the_simulator(outcome: str, answered_by: str) -> None:
    """examples/flows/dial-machine-detection.xml, as examples/README.md runs it: the dial
    outcome ``machine`` is a voicemail, and the transcript says what the detector found."""
    result = await simulate(
        "dial-machine-detection.xml",
        fetcher=FileFetcher(FLOWS),
        dial_outcomes={"*": outcome},
    )
    assert result.ok and result.status == "completed"
    assert any(
        f"machine detection on {JACK}: {answered_by}" in line for line in result.transcript
    ), result.transcript
