"""A ``<Dial>`` noun's ``url`` (a whisper) on real calls: the engine calls a SIPp callee from a
REST-originated call, runs the whisper document on the answered callee (its webhook request is
the child call's, with ``ParentCallSid``), then bridges — or, when the whisper hangs up, ends
the child and reports ``DialCallStatus=no-answer``."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.engine import WebApp, engine_config, originate_twiml, running_engine
from support.sipp import Sipp

pytestmark = pytest.mark.peer


@pytest.mark.parametrize(
    ("whisper", "status"),
    [
        ("<Response><Say>You have a call</Say></Response>", "completed"),
        ("<Response><Hangup/></Response>", "no-answer"),
    ],
)
async def test_whisper_then_bridge_or_no_answer(
    tmp_path: Path, sipp: Sipp, whisper: str, status: str
) -> None:
    first = await sipp.uas("uas_answer", media_port=True)
    second = await sipp.uas("uas_answer", media_port=True)
    app = WebApp(
        {"/whisper": lambda form: whisper, "/after": lambda form: "<Response><Hangup/></Response>"}
    )
    await app.start()
    try:
        async with running_engine(engine_config(tmp_path, [])) as engine:
            twiml = (
                f"<Response><Dial action='{app.url('/after')}' timeLimit='1'>"
                f"<Sip url='{app.url('/whisper')}'>"
                f"sip:carol@127.0.0.1:{second.port}?X-Ticket=7</Sip></Dial></Response>"
            )
            sid = await originate_twiml(engine, f"sip:bob@127.0.0.1:{first.port}?X-Ticket=7", twiml)
            assert engine.store is not None
            children = engine.store.list_calls(engine.config.accounts[0].sid, parent_call_sid=sid)
    finally:
        await app.stop()
    assert (await first.result()).returncode == 0
    assert (await second.result()).returncode == 0
    whispered = next(form for path, form in app.requests if path == "/whisper")
    assert whispered["ParentCallSid"] == sid
    assert whispered["Direction"] == "outbound-dial"
    assert [c.sid for c in children] == [whispered["CallSid"]]
    after = next(form for path, form in app.requests if path == "/after")
    assert after["DialCallStatus"] == status
    assert after["DialBridged"] == ("true" if status == "completed" else "false")
