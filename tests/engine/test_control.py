"""The REST adapter and the live-call handles it steers, without SIP: a stand-in engine (the
adapter's ``CallEngine`` Protocol) holds real :class:`LiveCall` objects over a real SQLite store,
and a stand-in runner plays the flow. Each engine refusal must come out as the Twilio error a
client expects, and ending or redirecting must reach the dial or the flow it is meant for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from callxml.engine.api import ApiError, CallUpdate, OutboundCall
from callxml.engine.calls import (
    CallAlreadyAnswered,
    CallBook,
    CallNotInProgress,
    EngineStopping,
    InvalidTarget,
    LiveCall,
    new_call_record,
)
from callxml.engine.config import AccountConfig
from callxml.engine.control import EngineControl
from callxml.engine.store import CallRecord, SqliteStore
from callxml.errors import CallXmlError

ACCOUNT = AccountConfig("AC" + "a" * 32, "token-token-token-1")
CALL = OutboundCall(to="sip:bob@127.0.0.1", from_="sip:alice@example.com", url=None, twiml="<x/>")


class StandInEngine:
    """What the adapter reaches through ``CallEngine``: originate, live, the store."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.calls: dict[str, LiveCall] = {}
        self.refusal: Exception | None = None

    async def originate(self, account: AccountConfig, call: OutboundCall) -> CallRecord:
        if self.refusal is not None:
            raise self.refusal
        raise AssertionError("not used")

    def live(self, sid: str) -> LiveCall | None:
        return self.calls.get(sid)

    def store_or_fail(self) -> SqliteStore:
        return self.store

    async def add(self, status: str) -> LiveCall:
        record = new_call_record(
            account_sid=ACCOUNT.sid, direction="inbound", from_="a", to="b", status=status
        )
        live = LiveCall(CallBook(self.store, None, None, record, lambda sid: sid), ACCOUNT)
        await live.book.create()
        self.calls[live.sid] = live
        return live

    def forget(self, live: LiveCall) -> None:
        live.ended.set()
        self.calls.pop(live.sid, None)


class StandInRunner:
    """The parts of a CallRunner a LiveCall uses: run, end, redirect, session.answered."""

    def __init__(self, *, answered: bool) -> None:
        self.session = SimpleNamespace(answered=answered)
        self.ends: list[str] = []
        self.redirects: list[tuple[str | None, str, bytes | None]] = []
        self.done = asyncio.Event()

    async def run(self) -> str:
        await self.done.wait()
        return "completed"

    def end(self, status: str) -> None:
        self.ends.append(status)
        self.done.set()

    def redirect(self, url: str | None, method: str, *, twiml: bytes | None = None) -> None:
        if self.done.is_set():
            raise CallXmlError("the call is not in progress")
        self.redirects.append((url, method, twiml))


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[StandInEngine]:
    store = SqliteStore(tmp_path / "calls.db")
    try:
        yield StandInEngine(store)
    finally:
        store.close()


async def running(
    engine: StandInEngine, runner: StandInRunner
) -> tuple[LiveCall, asyncio.Task[Any]]:
    """A live in-progress call driven by ``runner``; the task ends it as the engine does."""
    live = await engine.add("in-progress")

    async def drive() -> None:
        try:
            await live.run(runner)  # type: ignore[arg-type]
            await live.book.status("completed")
        finally:
            engine.forget(live)

    task = asyncio.create_task(drive())
    await asyncio.sleep(0)
    return live, task


async def api_error(call: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        await call
    return info.value


# -- create -------------------------------------------------------------------------------------


async def test_create_maps_the_engine_refusals(engine: StandInEngine) -> None:
    control = EngineControl(engine)
    engine.refusal = EngineStopping("stopping")
    stopping = await api_error(control.create_call(ACCOUNT, CALL))
    engine.refusal = InvalidTarget("+15550100", "no sip.trunk_uri_template configured")
    invalid = await api_error(control.create_call(ACCOUNT, CALL))
    assert (stopping.status, stopping.code) == (503, 20503)
    assert (invalid.status, invalid.code) == (400, 21211)
    assert invalid.message == "Invalid 'To': +15550100 (no sip.trunk_uri_template configured)"


# -- update: calls that are not live -------------------------------------------------------------


async def test_a_call_that_is_over_can_be_ended_again_but_not_redirected(
    engine: StandInEngine,
) -> None:
    control = EngineControl(engine)
    over = await engine.add("completed")
    engine.forget(over)
    record = await control.update_call(ACCOUNT, over.sid, CallUpdate(status="completed"))
    redirect = await api_error(control.update_call(ACCOUNT, over.sid, CallUpdate(url="http://x/")))
    unknown = await api_error(
        control.update_call(ACCOUNT, "CA" + "0" * 32, CallUpdate(status="completed"))
    )
    assert record.sid == over.sid and record.status == "completed"
    assert (redirect.status, redirect.code) == (400, 21220)
    assert (unknown.status, unknown.code) == (400, 21220)


# -- update: live calls --------------------------------------------------------------------------


async def test_completed_hangs_up_and_answers_the_final_record(engine: StandInEngine) -> None:
    runner = StandInRunner(answered=True)
    live, task = await running(engine, runner)
    assert engine.live(live.sid) is live
    record = await EngineControl(engine).update_call(
        ACCOUNT, live.sid, CallUpdate(status="completed")
    )
    await task
    assert runner.ends == ["completed"]
    assert record.status == "completed" and live.ended.is_set()
    assert engine.live(live.sid) is None


async def test_canceled_on_an_answered_call_is_refused_and_changes_nothing(
    engine: StandInEngine,
) -> None:
    runner = StandInRunner(answered=True)
    live, task = await running(engine, runner)
    error = await api_error(
        EngineControl(engine).update_call(ACCOUNT, live.sid, CallUpdate(status="canceled"))
    )
    assert (error.status, error.code) == (400, 21220)
    assert error.message == "Call is in progress; use Status=completed"
    assert runner.ends == [] and not live.ended.is_set()
    with pytest.raises(CallAlreadyAnswered):
        live.request_end("canceled")
    runner.end("completed")
    await task


async def test_redirect_reaches_the_flow_with_the_document(engine: StandInEngine) -> None:
    runner = StandInRunner(answered=True)
    live, task = await running(engine, runner)
    control = EngineControl(engine)
    await control.update_call(ACCOUNT, live.sid, CallUpdate(url="http://app/next", method="GET"))
    await control.update_call(ACCOUNT, live.sid, CallUpdate(twiml="<Response/>"))
    assert runner.redirects == [("http://app/next", "GET", None), (None, "POST", b"<Response/>")]
    runner.end("completed")  # the flow ended on its own; a redirect now comes too late
    await task
    with pytest.raises(CallNotInProgress):
        live.redirect("http://app/late", "POST", None)


async def test_a_ringing_call_cannot_be_redirected_but_can_be_canceled(
    engine: StandInEngine,
) -> None:
    live = await engine.add("ringing")
    ringing: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    outcome: list[str] = []

    async def drive() -> None:  # as Engine._ring tells "stop ringing" from "stop this task"
        try:
            await live.dial(ringing)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0
            outcome.append("dial canceled")
            await live.book.status("canceled")
        finally:
            engine.forget(live)

    task = asyncio.create_task(drive())
    await asyncio.sleep(0)
    control = EngineControl(engine)
    redirect = await api_error(control.update_call(ACCOUNT, live.sid, CallUpdate(url="http://x/")))
    record = await control.update_call(ACCOUNT, live.sid, CallUpdate(status="canceled"))
    await task
    assert (redirect.status, redirect.code) == (400, 21220)
    assert ringing.cancelled() and outcome == ["dial canceled"]
    assert record.status == "canceled"


async def test_cancel_stops_the_task_driving_the_call(engine: StandInEngine) -> None:
    live = await engine.add("queued")
    started = asyncio.Event()

    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()

    task = live.start(stuck())
    await started.wait()
    live.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
