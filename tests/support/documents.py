"""Documents and drivers for tests that run one document through every reader at once.

The parity tests (tests/test_any_document.py, tests/test_capabilities.py) hand the same document
to the validator, the simulator and the engine's driver and compare what each did. The engine's
driver here is the real :class:`~callxml.runtime.session.CallRunner` with the real
:class:`~callxml.runtime.dial.Dialer`, on a fake leg and a fake phone (the seams below SIP), with
its timers run 10 000 times faster than the wall clock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callxml.engine.store import TERMINAL_STATUSES
from callxml.interpreter import CallInfo, CallSession
from callxml.runtime.dial import Dialer
from callxml.runtime.fork import Branch, Callee
from callxml.runtime.phone import DialResult
from callxml.runtime.session import CallRunner, RuntimeServices
from callxml.simulator import MemoryFetcher, SimulationResult, simulate
from callxml.sip.target import Target
from support.fakes import FakeAudio, FakeLeg, MemoryCallLog

BASE = "https://app.test/voice"
HANGUP_DOC = "<Response><Hangup/></Response>"
TRUNK = "sip:{number}@trunk.test"

#: A smallest document around each element of the attribute tables; ``{a}`` takes attributes.
ELEMENTS = {
    "Response": "<Response{a}><Say>hi</Say></Response>",
    "Say": "<Response><Say{a}>Hello</Say></Response>",
    "Play": "<Response><Play{a}>https://example.com/a.wav</Play></Response>",
    "Pause": "<Response><Pause{a}/></Response>",
    "Gather": "<Response><Gather{a}><Say>Press</Say></Gather></Response>",
    "Dial": "<Response><Dial{a}><Sip>sip:bob@example.com</Sip></Dial></Response>",
    "Number": "<Response><Dial><Number{a}>+15551234567</Number></Dial></Response>",
    "Sip": "<Response><Dial><Sip{a}>sip:bob@example.com</Sip></Dial></Response>",
    "Client": "<Response><Dial><Client{a}>alice</Client></Dial></Response>",
    "Conference": "<Response><Dial><Conference{a}>room</Conference></Dial></Response>",
    "Queue": "<Response><Dial><Queue{a}>support</Queue></Dial></Response>",
    "Sim": "<Response><Dial><Sim{a}>DE1</Sim></Dial></Response>",
    "Application": "<Response><Dial><Application{a}>AP1</Application></Dial></Response>",
    "Record": "<Response><Record{a}/></Response>",
    "Redirect": "<Response><Redirect{a}>/next</Redirect></Response>",
    "Reject": "<Response><Reject{a}/></Response>",
    "Hangup": "<Response><Hangup{a}/></Response>",
    "Leave": "<Response><Leave{a}/></Response>",
    "Enqueue": "<Response><Enqueue{a}>support</Enqueue></Response>",
    "Refer": "<Response><Refer{a}><Sip>sip:bob@example.com</Sip></Refer></Response>",
    "Refer/Sip": "<Response><Refer><Sip{a}>sip:bob@example.com</Sip></Refer></Response>",
    "Identity": "<Response><Dial><Client><Identity{a}>a</Identity></Client></Dial></Response>",
    "ApplicationSid": "<Response><Dial><Application><ApplicationSid{a}>AP1</ApplicationSid>"
    "</Application></Dial></Response>",
    "Parameter": "<Response><Dial><Client>a<Parameter{a}/></Client></Dial></Response>",
    "Task": "<Response><Enqueue><Task{a}>{{}}</Task></Enqueue></Response>",
    "WhatsApp": "<Response><Dial><WhatsApp{a}>+15551234567</WhatsApp></Dial></Response>",
    "Uri": "<Response><Dial><Sip><Uri{a}>sip:bob@example.com</Uri></Sip></Dial></Response>",
    "Headers": "<Response><Dial><Sip>sip:bob@example.com<Headers{a}/></Sip></Dial></Response>",
    "Header": "<Response><Dial><Sip><Uri>sip:bob@example.com</Uri>"
    "<Headers><Header{a}/></Headers></Sip></Dial></Response>",
    # children with rows of their own in the capability table
    "Hangup/Parameter": "<Response><Hangup{a}><Parameter name='a' value='b'/></Hangup></Response>",
    "Reject/Parameter": "<Response><Reject{a}><Parameter name='a' value='b'/></Reject></Response>",
    "Sip/Uri": "<Response><Dial{a}><Sip><Uri priority='2'>sip:bob@example.com</Uri>"
    "<Uri priority='1'>sip:carol@example.com</Uri></Sip></Dial></Response>",
    "Sip/Headers": "<Response><Dial{a}><Sip><Uri>sip:bob@example.com</Uri>"
    "<Headers><Header name='X-Ticket' value='7'/></Headers></Sip></Dial></Response>",
}


class CatchAll(MemoryFetcher):
    """The document at BASE; every other URL (actions, redirects) answers a hang-up. Every
    request is kept in ``requests``."""

    def __init__(self, document: str) -> None:
        super().__init__({BASE: document})
        self.requests: list[Any] = []

    async def fetch(self, request: Any) -> Any:
        self.requests.append(request)
        if request.url.split("?")[0] != BASE:
            self.route(request.url, HANGUP_DOC)
        return await super().fetch(request)


def catch_all(document: str) -> CatchAll:
    return CatchAll(document)


class FakePhone:
    """Places no call: every dial ends with the chosen outcome (an answer would need a real
    leg and bridge; those are covered by the engine's SIPp and baresip tests)."""

    def __init__(self, outcome: str) -> None:
        self.outcome = "busy" if outcome == "answered" else outcome
        self.dialled: list[Target] = []

    async def dial(self, target: Target | str, **kw: Any) -> DialResult:
        assert isinstance(target, Target)
        self.dialled.append(target)
        code = {"busy": 486, "no-answer": 480, "failed": 503}[self.outcome]
        return DialResult(self.outcome, code, "fake@call", self.outcome)


class OneDevice:
    """A registrar where every ``<Client>`` has one device (the engine's :class:`Directory`),
    so a ``<Client>`` is placed like any other noun; ``<Sip>`` URIs are dialled as written."""

    def client(self, identity: str) -> Callee:
        target = Target.parse(f"sip:{identity}@127.0.0.1:5099")
        return Callee(f"client:{identity}", (Branch(target),))

    def sip(self, target: Target) -> Callee | None:
        return None


def no_bridge(*args: Any, **kw: Any) -> Any:
    raise AssertionError("nothing answers, so nothing is bridged")


@dataclass
class Driven:
    """What the engine's driver did with a document."""

    status: str
    leg: FakeLeg
    call_log: MemoryCallLog
    phone: FakePhone
    requests: list[Any] = field(default_factory=list)

    def warnings(self) -> list[str]:
        return [e["message"] for e in self.call_log.kinds("warning")]


async def drive(document: str, outcome: str, tmp: Path, *, trunk: str | None = TRUNK) -> Driven:
    """Run ``document`` on the engine's driver: far ends end with ``outcome`` (an answer is
    reported as busy: bridging needs real legs), the caller presses ``1#``, speaks a little and
    hangs up after 0.3 s of wall time if the flow has not ended the call by then."""
    loop = asyncio.get_running_loop()
    leg = FakeLeg()
    call_log = MemoryCallLog()
    phone = FakePhone(outcome)
    fetcher = catch_all(document)
    dialer = Dialer(
        phone, no_bridge, trunk_uri_template=trunk, event=call_log.event, directory=OneDevice()
    )
    services = RuntimeServices(
        fetcher=fetcher,
        audio=FakeAudio(),
        dial=dialer,
        recordings_dir=tmp,
        clock=lambda: loop.time() * 10_000,  # the call's timers run 10 000 times faster
    )
    call = CallInfo.new(from_="sip:alice@example.com", to="sip:ivr@app.test")
    runner = CallRunner(CallSession(url=BASE, call=call), leg, services, call_log)

    async def caller() -> None:
        await asyncio.sleep(0.01)
        if leg.on_digit is not None:
            leg.press("1#")
        if leg.on_audio is not None:
            leg.speak(5)
        await asyncio.sleep(0.3)
        leg.caller_hangs_up()

    hangup = asyncio.ensure_future(caller())
    try:
        status = await asyncio.wait_for(runner.run(), 10)
    finally:
        hangup.cancel()
    return Driven(status, leg, call_log, phone, fetcher.requests)


def run_simulation(document: str, outcome: str, *, trunk: str | None = TRUNK) -> SimulationResult:
    """Simulate ``document`` (every other URL answers a hang-up) with far ends ``outcome``."""
    return asyncio.run(
        simulate(
            BASE,
            fetcher=catch_all(document),
            digits=["1", "12#", ""],
            dial_outcomes={"*": outcome},
            trunk_uri_template=trunk,
        )
    )


def simulate_cleanly(document: str, outcome: str) -> None:
    """The simulator ends the call with a final status and no internal error."""
    result = run_simulation(document, outcome)
    assert result.status in TERMINAL_STATUSES, result.transcript
    assert not (result.error or "").startswith("internal error"), result.transcript


def drive_cleanly(document: str, outcome: str, tmp: Path) -> None:
    """The engine's driver ends the call with a final status, the leg ended, no internal
    error."""
    driven = asyncio.run(drive(document, outcome, tmp))
    errors = [e["message"] for e in driven.call_log.kinds("error")]
    assert driven.status in TERMINAL_STATUSES, driven.call_log.events
    assert not any(m.startswith("internal error") for m in errors), errors
    assert driven.leg.ended.is_set()
    assert driven.call_log.statuses[-1][0] in TERMINAL_STATUSES
