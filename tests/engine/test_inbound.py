"""Inbound calls through the engine with SIPp as the caller (UDP and TCP): routing, the
secure-media policy's 488s, a plain call that runs its webhook flow, and the call records."""

from __future__ import annotations

from pathlib import Path

import pytest

from callxml.engine.server import Engine
from support.engine import ACCOUNT_SID, WebApp, engine_config, running_engine, sip_port
from support.sipp import Sipp
from support.waiting import until

pytestmark = pytest.mark.peer

CRYPTO = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:TCkr9L8rtn4+aJXoeA1eiQcTAniJOvkYXUnZ5KTw"
PLAIN = {"proto": "RTP/AVP", "attr": "a=sendrecv"}
SRTP = {"proto": "RTP/SAVP", "attr": CRYPTO}
HANGUP = "<Response><Say>Hi</Say><Hangup/></Response>"


@pytest.fixture
async def app() -> WebApp:
    web_app = WebApp({"/voice": lambda form: HANGUP, "/status": lambda form: "<Response/>"})
    await web_app.start()
    yield web_app  # type: ignore[misc]
    await web_app.stop()


def domains(app: WebApp) -> list[dict[str, object]]:
    return [
        {"name": "secure.test", "voice_url": app.url("/voice"), "secure_media": True},
        {
            "name": "plain.test",
            "voice_url": app.url("/voice"),
            "status_callback": app.url("/status"),
        },
    ]


def _first_is(calls: list[object], status: str) -> list[object]:
    """``calls`` if the first has ``status`` yet, else nothing (for :func:`until`)."""
    return calls if calls and calls[0].status == status else []  # type: ignore[attr-defined]


def records(engine: Engine) -> list[object]:
    assert engine.store is not None
    return list(engine.store.list_calls(ACCOUNT_SID))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("domain", "offer"),
    [("secure.test", PLAIN), ("secure.test", SRTP), ("plain.test", SRTP)],
    ids=["secure-domain-plain-offer", "secure-domain-srtp-without-tls", "plain-domain-srtp"],
)
async def test_refused_with_488(
    tmp_path: Path, sipp: Sipp, app: WebApp, transport: str, domain: str, offer: dict[str, str]
) -> None:
    async with running_engine(engine_config(tmp_path, domains(app))) as engine:
        target = f"127.0.0.1:{sip_port(engine, transport)}"
        caller = await sipp.uac(
            "uac_refused", transport, target, "ivr", keys={"domain": domain, **offer}
        )
        outcome = await caller.result()
        assert outcome.returncode == 0, outcome.explain()  # SIPp saw the 488 with its Warning
        # the record is written just after the 488 goes out
        calls = await until(lambda: _first_is(records(engine), "failed"), timeout=5)
    assert "/voice" not in app.paths()  # the flow never starts
    assert len(calls) == 1
    call = calls[0]
    assert call.status == "failed" and call.sip_response_code == 488  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_plain_domain_accepts_plain_rtp_and_runs_the_flow(
    tmp_path: Path, sipp: Sipp, app: WebApp, transport: str
) -> None:
    async with running_engine(engine_config(tmp_path, domains(app))) as engine:
        target = f"127.0.0.1:{sip_port(engine, transport)}"
        caller = await sipp.uac(
            "uac_answered", transport, target, "ivr", keys={"domain": "plain.test"}
        )
        outcome = await caller.result()
        assert outcome.returncode == 0, outcome.explain()
        # the final status is written just after the BYE
        calls = await until(lambda: _first_is(records(engine), "completed"), timeout=5)
        assert engine.store is not None
        events = engine.store.list_events(calls[0].sid)  # type: ignore[attr-defined]
    form = next(form for path, form in app.requests if path == "/voice")
    assert form["Direction"] == "inbound" and form["SipDomain"] == "plain.test"
    assert form["To"].startswith("sip:ivr@plain.test") and form["SipHeader_X-Customer"] == "42"
    assert form["SipTransport"] == transport
    assert form["CallerName"] == "sipp" and form["ForwardedFrom"] == "+15551230000"
    assert form["SipSourceIp"] == "127.0.0.1" and "SipUsername" not in form
    assert form["SipDomainSid"].startswith("SD") and len(form["SipDomainSid"]) == 34
    call = calls[0]
    assert call.status == "completed"  # type: ignore[attr-defined]
    assert call.caller_name == "sipp"  # type: ignore[attr-defined]
    assert call.forwarded_from == "+15551230000"  # type: ignore[attr-defined]
    kinds = [e.kind for e in events]
    assert "webhook" in kinds and "verb" in kinds
    webhook = next(e for e in events if e.kind == "webhook")
    assert webhook.data["status"] == 200 and webhook.data["parameters"]["CallSid"] == call.sid  # type: ignore[attr-defined]
    # status callbacks: ringing, answered, completed were posted for the plain domain
    statuses = [form["CallStatus"] for p, form in app.requests if p == "/status"]
    assert statuses[-1] == "completed" and "in-progress" in statuses


async def test_unknown_domain_is_404(tmp_path: Path, sipp: Sipp, app: WebApp) -> None:
    async with running_engine(engine_config(tmp_path, domains(app))) as engine:
        target = f"127.0.0.1:{sip_port(engine, 'udp')}"
        caller = await sipp.uac(
            "uac_refused", "udp", target, "ivr", keys={"domain": "nobody.test", **PLAIN}
        )
        outcome = await caller.result()
        output = outcome.explain()
        assert outcome.returncode != 0 and "404" in output  # SIPp expected 488, got 404
        assert records(engine) == []
