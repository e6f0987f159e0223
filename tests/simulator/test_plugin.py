"""The ``callflow`` pytest fixture (registered through the package's pytest11 entry point)."""

from __future__ import annotations

from callxml.testing import CallFlow
from callxml.webhooks import WebhookRequest

VOICE = "https://app.test/voice"


def menu(request: WebhookRequest) -> str:
    digits = dict(request.params).get("Digits", "")
    return f"<Response><Say>You chose {digits}</Say></Response>"


def test_fixture_runs_routes_sync(callflow: CallFlow) -> None:
    callflow.route(VOICE, "<Response><Gather action='/menu' numDigits='1'/></Response>")
    callflow.route("https://app.test/menu", menu)
    result = callflow.run(VOICE, digits=["3"])
    assert result.said == ["You chose 3"]
    assert callflow.results == [result]


async def test_fixture_in_async_tests(callflow: CallFlow) -> None:
    callflow.route(VOICE, "<Response><Reject/></Response>")
    result = await callflow.simulate(VOICE)
    assert result.status == "no-answer"


def test_fixture_with_files(callflow: CallFlow, tmp_path) -> None:  # type: ignore[no-untyped-def]
    flow = tmp_path / "f.xml"
    flow.write_text("<Response><Play>https://x.test/hold.mp3</Play></Response>")
    assert callflow.run(str(flow)).played == ["https://x.test/hold.mp3"]
