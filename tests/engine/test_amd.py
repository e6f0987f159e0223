"""Answering machine detection on real calls (REST ``MachineDetection``), driven through the
official twilio SDK: the engine dials one of our phones, which answers and plays a greeting.

Synchronous: a long greeting makes the first webhook carry ``AnsweredBy=machine_start`` (and
the call record keep it); a short hello then silence is ``human``. Asynchronous: the flow's
webhook comes at once without ``AnsweredBy`` and ``AsyncAmdStatusCallback`` gets the verdict,
here ``machine_end_beep`` for a greeting that ends in a beep (``DetectMessageEnd``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from twilio.rest import Client

from callxml.media.tone import sine
from callxml.runtime import CallLeg
from support.engine import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    WebApp,
    engine_config,
    running_engine,
    wait_status,
)
from support.phones import WAIT, PhoneFactory
from support.speech import silence, speech
from support.waiting import until

pytestmark = pytest.mark.peer


def sdk(port: int) -> Client:
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = f"http://127.0.0.1:{port}"
    return client


async def _answer_and_say(phones: PhoneFactory, greeting: bytes) -> tuple[str, asyncio.Task[None]]:
    """A phone that answers its first call and plays ``greeting``; (its URI, the task)."""
    box = await phones()

    async def answer() -> None:
        leg: CallLeg = await (await box.next_call()).accept(secure_media_enabled=False)
        await leg.play(greeting)
        await leg.wait_ended(WAIT)

    return box.uri("vm"), asyncio.ensure_future(answer())


@pytest.mark.parametrize(
    ("greeting", "answered_by"),
    [
        (silence(0.3) + speech(4.0), "machine_start"),
        (silence(0.3) + speech(0.7) + silence(3.0), "human"),
    ],
    ids=["machine", "human"],
)
async def test_machine_detection_before_the_first_webhook(
    tmp_path: Path, phone_boxes: PhoneFactory, greeting: bytes, answered_by: str
) -> None:
    uri, callee = await _answer_and_say(phone_boxes, greeting)
    app = WebApp({"/voice": lambda form: "<Response><Hangup/></Response>"})
    await app.start()
    try:
        async with running_engine(engine_config(tmp_path, [])) as engine:
            call = await asyncio.to_thread(
                sdk(engine.http_port).calls.create,
                to=uri,
                from_="sip:alice@example.com",
                url=app.url("/voice"),
                machine_detection="Enable",
            )
            record = await wait_status(engine, call.sid, {"completed", "failed"})
            fetched = await asyncio.to_thread(sdk(engine.http_port).calls(call.sid).fetch)
    finally:
        await app.stop()
        callee.cancel()
    assert record.status == "completed" and record.answered_by == answered_by
    assert fetched.answered_by == answered_by
    [voice] = [form for path, form in app.requests if path == "/voice"]
    assert voice["AnsweredBy"] == answered_by
    took = int(voice["MachineDetectionDuration"])
    assert (2400 if answered_by == "machine_start" else 1200) <= took <= 6000


async def test_async_amd_posts_the_verdict_while_the_flow_runs(
    tmp_path: Path, phone_boxes: PhoneFactory
) -> None:
    greeting = speech(3.0) + silence(0.2) + sine(1000, 500, amplitude=0.4) + silence(2.0)
    uri, callee = await _answer_and_say(phone_boxes, greeting)
    app = WebApp(
        {
            "/voice": lambda form: '<Response><Pause length="8"/><Hangup/></Response>',
            "/amd": lambda form: "",
        }
    )
    await app.start()
    try:
        async with running_engine(engine_config(tmp_path, [])) as engine:
            call = await asyncio.to_thread(
                sdk(engine.http_port).calls.create,
                to=uri,
                from_="sip:alice@example.com",
                url=app.url("/voice"),
                machine_detection="DetectMessageEnd",
                async_amd="true",
                async_amd_status_callback=app.url("/amd"),
            )
            await until(
                lambda: any(path == "/amd" for path, _ in app.requests), WAIT, what="the verdict"
            )
            # the flow was already running: its webhook came before the verdict
            paths = [path for path, _ in app.requests]
            assert paths.index("/voice") < paths.index("/amd")
            assert engine.store is not None
            await until(
                lambda: engine.store.get_call(call.sid).answered_by is not None,  # type: ignore[union-attr]
                WAIT,
                what="AnsweredBy on the record",
            )
            record = engine.store.get_call(call.sid)
            await asyncio.to_thread(
                sdk(engine.http_port).calls(call.sid).update, status="completed"
            )
            await wait_status(engine, call.sid, {"completed"})
    finally:
        await app.stop()
        callee.cancel()
    [verdict] = [form for path, form in app.requests if path == "/amd"]
    assert verdict["AnsweredBy"] == "machine_end_beep" and verdict["CallSid"] == call.sid
    assert 3000 <= int(verdict["MachineDetectionDuration"]) <= 5000
    assert record is not None and record.answered_by == "machine_end_beep"
    voice = next(form for path, form in app.requests if path == "/voice")
    assert "AnsweredBy" not in voice


async def test_dial_noun_machine_detection_posts_the_verdict_while_bridged(
    tmp_path: Path, phone_boxes: PhoneFactory
) -> None:
    """``<Dial><Sip machineDetection amdStatusCallback>``: the called party is bridged at once
    (no AnsweredBy in the dial's own requests) and the detector listening to it posts its
    verdict, for the child call, to the relative callback URL; the child record keeps it."""
    vm_uri, voicemail = await _answer_and_say(phone_boxes, silence(0.3) + speech(4.0))
    caller = await phone_boxes()

    async def pick_up() -> None:
        leg: CallLeg = await (await caller.next_call()).accept(secure_media_enabled=False)
        await leg.wait_ended(WAIT)

    answering = asyncio.ensure_future(pick_up())
    app = WebApp(
        {
            "/voice": lambda form: (
                "<Response><Dial action='/after'><Sip machineDetection='Enable'"
                f" amdStatusCallback='/amd'>{vm_uri}</Sip></Dial></Response>"
            ),
            "/amd": lambda form: "",
            "/after": lambda form: "<Response><Hangup/></Response>",
        }
    )
    await app.start()
    try:
        async with running_engine(engine_config(tmp_path, [])) as engine:
            call = await asyncio.to_thread(
                sdk(engine.http_port).calls.create,
                to=caller.uri("alice"),
                from_="sip:shop@example.com",
                url=app.url("/voice"),
            )
            await until(
                lambda: any(path == "/amd" for path, _ in app.requests), WAIT, what="the verdict"
            )
            [verdict] = [form for path, form in app.requests if path == "/amd"]
            assert engine.store is not None
            child = engine.store.get_call(verdict["CallSid"])
            await asyncio.to_thread(
                sdk(engine.http_port).calls(call.sid).update, status="completed"
            )
            await wait_status(engine, call.sid, {"completed"})
    finally:
        await app.stop()
        voicemail.cancel()
        answering.cancel()
    assert verdict["AnsweredBy"] == "machine_start"
    assert verdict["ParentCallSid"] == call.sid and verdict["AccountSid"] == ACCOUNT_SID
    assert 2400 <= int(verdict["MachineDetectionDuration"]) <= 6000
    assert child is not None and child.parent_call_sid == call.sid
    assert child.answered_by == "machine_start"
    voice = next(form for path, form in app.requests if path == "/voice")
    assert "AnsweredBy" not in voice
