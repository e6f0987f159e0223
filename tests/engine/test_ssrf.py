"""The engine's fetches go through the SSRF guard (issue 16 §3): a refused webhook fails like
any webhook error, so the call follows the fallback rules and the record says why."""

from __future__ import annotations

from pathlib import Path

from support.engine import ACCOUNT_SID, WebApp, engine_config, running_engine, sip_port
from support.rawsip import SDP, RawPeer, request
from support.waiting import until

HANGUP = "<Response><Hangup/></Response>"


async def test_a_refused_voice_url_falls_back_with_an_error_code(tmp_path: Path) -> None:
    app = WebApp({"/fallback": lambda form: HANGUP, "/voice": lambda form: HANGUP})
    await app.start()
    try:
        domain = {
            "name": "plain.test",
            "voice_url": f"http://127.0.0.2:{app.port}/voice",  # denied below
            "fallback_url": app.url("/fallback"),
        }
        extra = {"webhooks": {"deny_networks": ["127.0.0.2/32"]}}
        async with running_engine(engine_config(tmp_path, [domain], extra=extra)) as engine:
            async with RawPeer("udp", "127.0.0.1", sip_port(engine, "udp")) as peer:
                peer.send(request("INVITE", "sip:ivr@plain.test", port=peer.port, body=SDP))
                await peer.response()
            form = await until(lambda: dict(app.requests).get("/fallback"))
            assert engine.store is not None
            calls = await until(
                lambda: [c for c in engine.store.list_calls(ACCOUNT_SID) if c.end_time]  # type: ignore[union-attr]
            )
            events = engine.store.list_events(calls[0].sid)
        assert app.paths() == ["/fallback"]  # the denied address was never connected to
        assert form["ErrorCode"] == "11205"
        webhook = next(e for e in events if e.kind == "webhook")
        assert "network policy" in str(webhook.data.get("error"))
    finally:
        await app.stop()
