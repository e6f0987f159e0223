"""The Dialer against a fake phone and bridge: outcomes, races, answerOnBridge, limits, stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from callxml.interpreter import actions as act
from callxml.markup.verbs import Client, Conference, Number, Sip
from callxml.runtime.dial import ChildCallback, Dialer, resolve_targets
from callxml.runtime.fork import Branch, Callee
from callxml.sip.auth import Credentials
from callxml.sip.events import Address
from callxml.sip.target import Target
from support.fakes import FakeLeg
from support.waiting import until


@dataclass(frozen=True)
class Result:
    status: str
    sip_response_code: int | None
    sip_call_id: str | None
    reason: str
    leg: Any = None
    headers: tuple[tuple[str, str], ...] = ()


class FakePhone:
    """``script`` maps a URI to (delay, status, code); answered ones get a FakeLeg."""

    def __init__(self, script: dict[str, tuple[float, str, int]]) -> None:
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.legs: dict[str, FakeLeg] = {}

    async def dial(
        self,
        target: Target | str,
        *,
        from_uri: str | None = None,
        timeout: float = 30,
        credentials: Credentials | None = None,
        headers: Sequence[tuple[str, str]] = (),
        on_ringing: Callable[[], None] | None = None,
        sid: str | None = None,
        destinations: Sequence[Address] = (),
    ) -> Result:
        uri = str(target)
        self.calls.append(
            {
                "uri": uri,
                "from": from_uri,
                "timeout": timeout,
                "creds": credentials,
                "headers": tuple(target.headers) if isinstance(target, Target) else (),
                "sent_headers": tuple(headers),
                "destinations": tuple(destinations),
            }
        )
        delay, status, code = self.script[uri]
        if on_ringing:
            on_ringing()
        try:
            await asyncio.sleep(min(delay, timeout))
        except asyncio.CancelledError:
            self.cancelled.append(uri)
            raise
        if delay > timeout:
            return Result("no-answer", 487, f"id-{uri}", "ring timeout")
        leg = None
        if status == "completed":
            leg = self.legs[uri] = FakeLeg(sid=sid or "CAchild", answered=True)
        return Result(status, code, f"id-{uri}", "", leg, (("X-Far-End", uri),))


class Bridges:
    def __init__(self) -> None:
        self.started: list[tuple[Any, Any]] = []
        self.stopped = 0
        self.on_star: Callable[[], None] | None = None

    def __call__(
        self,
        a: Any,
        b: Any,
        on_a_digit: Callable[[str], None] | None = None,
        *,
        on_star: Callable[[], None] | None = None,
    ) -> Bridges:
        self.started.append((a, b))
        self.on_star = on_star
        return self

    def stop(self) -> None:
        self.stopped += 1


def dial_action(*targets: Any, **kw: Any) -> act.StartDial:
    return act.StartDial(targets=tuple(targets), caller_id="sip:alice@example.com", **kw)


async def no_answer() -> None:
    raise AssertionError("the caller must not be answered")


def test_resolve_targets() -> None:
    targets = resolve_targets(
        [
            Sip(
                uri="sip:jack@example.com;secure=true?X-Account=42&Subject=hi",
                username="u",
                password="p",
            ),
            Number(number="+1 (555) 0100"),
            Client(identity="bob"),
            Sip(uri="http://nope"),
        ],
        trunk_uri_template="sip:{number}@trunk.test",
    )
    sip, number, client, bad = targets  # no directory: a <Client> cannot be found
    assert sip.label == "sip:jack@example.com;secure=true"
    assert sip.target is not None and sip.target.secure
    assert sip.target.headers == (("X-Account", "42"),)
    assert sip.credentials == Credentials("u", "p")
    assert number.label == "sip:+15550100@trunk.test" and not number.error
    assert client.error and bad.error
    assert resolve_targets([Number(number="1")], trunk_uri_template=None)[0].error


async def test_answered_target_is_bridged_until_child_hangs_up() -> None:
    phone = FakePhone({"sip:jack@x.test": (0.0, "completed", 200)})
    bridges = Bridges()
    caller = FakeLeg(answered=True)
    dialer = Dialer(phone, bridges)

    async def child_hangs_up() -> None:
        await until(lambda: "sip:jack@x.test" in phone.legs, step=0.005)
        phone.legs["sip:jack@x.test"].caller_hangs_up()

    hanger = asyncio.create_task(child_hangs_up())
    result = await dialer(
        dial_action(Sip(uri="sip:jack@x.test"), timeout=5),
        caller,
        answer_caller=no_answer,
        stop=asyncio.Event(),
    )
    await hanger
    assert result.status == "completed" and result.sip_response_code == 200
    assert result.sip_call_id == "id-sip:jack@x.test" and result.call_sid.startswith("CA")
    assert result.sip_headers == (("X-Far-End", "sip:jack@x.test"),)
    assert bridges.started == [(caller, phone.legs["sip:jack@x.test"])] and bridges.stopped == 1
    assert phone.calls[0]["timeout"] == 5 and phone.calls[0]["from"] == "sip:alice@example.com"


async def test_busy_and_failed() -> None:
    phone = FakePhone({"sip:a@x.test": (0, "busy", 486), "sip:b@x.test": (0, "failed", 503)})
    dialer = Dialer(phone, Bridges())
    stop = asyncio.Event()
    busy = await dialer(
        dial_action(Sip(uri="sip:a@x.test")), FakeLeg(), answer_caller=no_answer, stop=stop
    )
    assert (busy.status, busy.sip_response_code) == ("busy", 486)
    failed = await dialer(
        dial_action(Sip(uri="sip:b@x.test")), FakeLeg(), answer_caller=no_answer, stop=stop
    )
    assert (failed.status, failed.sip_response_code) == ("failed", 503)
    both = await dialer(
        dial_action(Sip(uri="sip:b@x.test"), Sip(uri="sip:a@x.test")),
        FakeLeg(),
        answer_caller=no_answer,
        stop=stop,
    )
    assert both.status == "busy"


async def test_no_answer_after_ring_timeout() -> None:
    phone = FakePhone({"sip:slow@x.test": (60, "completed", 200)})
    result = await Dialer(phone, Bridges())(
        dial_action(Sip(uri="sip:slow@x.test"), timeout=0.05),
        FakeLeg(),
        answer_caller=no_answer,
        stop=asyncio.Event(),
    )
    assert result.status == "no-answer" and result.sip_response_code == 487


async def test_first_to_answer_wins_and_others_are_cancelled() -> None:
    phone = FakePhone(
        {"sip:fast@x.test": (0.01, "completed", 200), "sip:slow@x.test": (30, "completed", 200)}
    )
    caller = FakeLeg(answered=True)
    stop = asyncio.Event()
    task = asyncio.create_task(
        Dialer(phone, Bridges())(
            dial_action(Sip(uri="sip:slow@x.test"), Sip(uri="sip:fast@x.test"), time_limit=0.05),
            caller,
            answer_caller=no_answer,
            stop=stop,
        )
    )
    result = await asyncio.wait_for(task, 5)
    assert phone.cancelled == ["sip:slow@x.test"]
    assert result.status == "completed" and result.sip_call_id == "id-sip:fast@x.test"
    assert phone.legs["sip:fast@x.test"].hung_up == "dial ended"  # timeLimit


async def test_answer_on_bridge_and_hangup_on_star() -> None:
    phone = FakePhone({"sip:jack@x.test": (0, "completed", 200)})
    bridges = Bridges()
    caller = FakeLeg()
    answered: list[bool] = []

    async def answer_caller() -> None:
        answered.append(True)
        caller.answered = True

    async def press_star() -> None:
        await until(lambda: bridges.on_star is not None, step=0.005)
        await asyncio.sleep(0.01)
        bridges.on_star()

    presser = asyncio.create_task(press_star())
    result = await asyncio.wait_for(
        Dialer(phone, bridges)(
            dial_action(Sip(uri="sip:jack@x.test"), answer_on_bridge=True, hangup_on_star=True),
            caller,
            answer_caller=answer_caller,
            stop=asyncio.Event(),
        ),
        5,
    )
    await presser
    assert answered == [True]
    assert result.status == "completed"
    assert phone.legs["sip:jack@x.test"].hung_up == "dial ended"
    assert not caller.ended.is_set()


async def test_stop_while_ringing_cancels() -> None:
    phone = FakePhone({"sip:slow@x.test": (30, "completed", 200)})
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, stop.set)
    result = await asyncio.wait_for(
        Dialer(phone, Bridges())(
            dial_action(Sip(uri="sip:slow@x.test")), FakeLeg(), answer_caller=no_answer, stop=stop
        ),
        5,
    )
    assert result.status == "canceled" and result.sip_response_code == 487
    assert phone.cancelled == ["sip:slow@x.test"]


async def test_sequential_tries_in_order() -> None:
    phone = FakePhone({"sip:a@x.test": (0, "busy", 486), "sip:b@x.test": (0, "completed", 200)})
    caller = FakeLeg(answered=True)
    caller.ended.set()  # ends the bridge at once
    result = await Dialer(phone, Bridges())(
        dial_action(Sip(uri="sip:a@x.test"), Sip(uri="sip:b@x.test"), sequential=True),
        caller,
        answer_caller=no_answer,
        stop=asyncio.Event(),
    )
    assert [c["uri"] for c in phone.calls] == ["sip:a@x.test", "sip:b@x.test"]
    assert result.status == "completed" and result.sip_call_id == "id-sip:b@x.test"


async def test_nothing_callable_fails() -> None:
    notes: list[tuple[str, dict[str, Any]]] = []

    async def note(kind: str, data: dict[str, Any]) -> None:
        notes.append((kind, data))

    result = await Dialer(FakePhone({}), Bridges(), event=note)(
        dial_action(Conference(name="room")),
        FakeLeg(),
        answer_caller=no_answer,
        stop=asyncio.Event(),
    )
    assert result.status == "failed"
    assert "not supported" in notes[0][1]["message"]


async def test_a_client_without_a_registrar_is_not_dialled() -> None:
    notes: list[tuple[str, dict[str, Any]]] = []

    async def note(kind: str, data: dict[str, Any]) -> None:
        notes.append((kind, data))

    phone = FakePhone({})
    result = await Dialer(phone, Bridges(), event=note)(
        dial_action(Client(identity="bob")),
        FakeLeg(),
        answer_caller=no_answer,
        stop=asyncio.Event(),
    )
    assert result.status == "failed" and not phone.calls
    assert notes[0][1]["message"] == (
        "Dial client:bob: no registrar: clients register to a SIP domain with credentials"
    )


# --- registered users: every device at once ------------------------------------------------


def device(name: str, port: int) -> Branch:
    flow = Address("tls", "192.0.2.7", port, flow=True)
    return Branch(Target.parse(f"sip:{name}@192.0.2.7:{port};transport=tls"), (flow,))


class Devices:
    """A Directory: ``users`` maps an identity to its devices; ``ours`` is our domain."""

    def __init__(self, users: dict[str, tuple[Branch, ...]], ours: str = "reg.test") -> None:
        self.users = users
        self.ours = ours

    def client(self, identity: str) -> Callee:
        return Callee(f"client:{identity}", self.users.get(identity, ()))

    def sip(self, target: Target) -> Callee | None:
        if target.uri.host != self.ours or target.uri.user is None:
            return None
        return self.client(target.uri.user)


async def test_every_device_rings_and_the_first_answer_wins() -> None:
    desk, soft = device("alice", 40001), device("alice", 40002)
    phone = FakePhone(
        {
            str(desk.target): (0.05, "completed", 200),
            str(soft.target): (0.05, "completed", 200),
        }
    )
    phone.script[str(soft.target)] = (5.0, "completed", 200)  # still ringing when desk answers
    children = Children()
    bridges = Bridges()
    caller = FakeLeg(answered=True)
    dialer = Dialer(phone, bridges, children=children, directory=Devices({"alice": (desk, soft)}))

    async def caller_leaves() -> None:
        await until(lambda: bridges.started, step=0.005)
        caller.caller_hangs_up()

    leaving = asyncio.ensure_future(caller_leaves())
    noun = Client(
        identity="alice",
        parameters=(("ticket", "42"), ("bad name", "x")),
        status_callback="https://app.test/child",
        status_callback_event=("ringing", "completed"),
    )
    result = await dialer(
        dial_action(noun, timeout=10), caller, answer_caller=no_answer, stop=asyncio.Event()
    )
    await leaving
    assert result.status == "completed"
    assert [c["destinations"] for c in phone.calls] == [desk.destinations, soft.destinations]
    assert phone.cancelled == [str(soft.target)]  # the other device got CANCEL
    sent = phone.calls[0]["sent_headers"]
    assert sent == (("X-Identity", "alice"), ("X-ticket", "42"))
    # One child call for the noun, whatever the number of devices, shown as client:alice, with
    # the <Client>'s own statusCallback.
    [(sid, to, callback)] = children.started
    assert to == "client:alice"
    assert callback == ChildCallback("https://app.test/child", "POST", ("ringing", "completed"))
    assert next(status for child, status in children.statuses if child == sid) == "ringing"


async def test_a_user_without_devices_is_no_answer_480() -> None:
    phone = FakePhone({})
    dialer = Dialer(phone, Bridges(), directory=Devices({}))
    result = await dialer(
        dial_action(Client(identity="nobody")),
        FakeLeg(),
        answer_caller=no_answer,
        stop=asyncio.Event(),
    )
    assert result.status == "no-answer" and result.sip_response_code == 480 and not phone.calls


async def test_a_sip_uri_on_our_domain_rings_the_users_devices() -> None:
    one = device("bob", 40003)
    phone = FakePhone({str(one.target): (0.0, "busy", 486)})
    dialer = Dialer(phone, Bridges(), directory=Devices({"bob": (one,)}))
    result = await dialer(
        dial_action(Sip(uri="sip:bob@reg.test?X-Ticket=7")),
        FakeLeg(),
        answer_caller=no_answer,
        stop=asyncio.Event(),
    )
    assert result.status == "busy"
    [call] = phone.calls
    assert call["uri"] == str(one.target) and call["sent_headers"] == (("X-Ticket", "7"),)


@pytest.mark.parametrize(
    ("outcomes", "status", "code"),
    [
        ([("busy", 486), ("no-answer", 480)], "busy", 486),
        ([("failed", 503), ("no-answer", 480)], "no-answer", 480),
        ([("busy", 603), ("completed", 200)], "busy", 603),  # 6xx ends the fork (§16.7)
    ],
)
async def test_a_fork_that_nobody_answers_reports_the_most_telling_outcome(
    outcomes: list[tuple[str, int]], status: str, code: int
) -> None:
    branches = tuple(device("carol", 40010 + i) for i in range(len(outcomes)))
    phone = FakePhone({})
    for i, (branch, (outcome, sip_code)) in enumerate(zip(branches, outcomes, strict=True)):
        phone.script[str(branch.target)] = (
            0.01 * (i + 1) if outcome != "completed" else 1.0,
            outcome,
            sip_code,
        )
    dialer = Dialer(phone, Bridges(), directory=Devices({"carol": branches}))
    result = await dialer(
        dial_action(Client(identity="carol"), timeout=10),
        FakeLeg(),
        answer_caller=no_answer,
        stop=asyncio.Event(),
    )
    assert (result.status, result.sip_response_code) == (status, code)


class Children:
    """A ChildLog that keeps what the dialler told it."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, Any]] = []
        self.statuses: list[tuple[str, str]] = []

    async def child_started(self, sid: str, to: str, from_: str, *, callback: Any = None) -> None:
        self.started.append((sid, to, callback))

    async def child_status(self, sid: str, status: str, **changes: Any) -> None:
        self.statuses.append((sid, status))


async def test_number_send_digits_and_noun_status_callback() -> None:
    """``<Number sendDigits>`` reaches the callee (w = 0.5 s) before the bridge; the noun's
    ``statusCallback`` travels with its child call to the ChildLog."""
    uri = "sip:+15550100@trunk.test"
    phone = FakePhone({uri: (0.0, "completed", 200)})
    bridges = Bridges()
    children = Children()
    dialer = Dialer(phone, bridges, trunk_uri_template="sip:{number}@trunk.test", children=children)
    noun = Number(
        number="+15550100",
        send_digits="1w2#",
        status_callback="https://app.test/child",
        status_callback_event=("initiated", "completed"),
    )

    async def child_hangs_up() -> None:
        await until(lambda: bridges.started, step=0.005)
        phone.legs[uri].caller_hangs_up()

    hanger = asyncio.create_task(child_hangs_up())
    result = await dialer(
        dial_action(noun), FakeLeg(answered=True), answer_caller=no_answer, stop=asyncio.Event()
    )
    await hanger
    assert result.status == "completed"
    assert phone.legs[uri].digits_sent == ["1", "2#"]
    ((sid, to, callback),) = children.started
    assert to == uri and callback.url == "https://app.test/child"
    assert callback.events == ("initiated", "completed") and callback.method == "POST"
    assert (sid, "completed") in children.statuses


@pytest.mark.parametrize("accept", [True, False])
async def test_whisper_runs_before_the_bridge_and_can_decline(accept: bool) -> None:
    """A noun's ``url``: the whisper runner gets the answered child leg first; True bridges,
    False ends the child and the dial ``no-answer``."""
    uri = "sip:bob@x.test"
    phone = FakePhone({uri: (0.0, "completed", 200)})
    bridges = Bridges()
    seen: list[tuple[str, str, Any, str]] = []

    async def whisper(
        url: str, method: str, leg: Any, *, child_sid: str, to: str, from_: str
    ) -> bool:
        seen.append((url, method, leg, child_sid))
        return accept

    async def child_hangs_up() -> None:
        await until(lambda: bridges.started, step=0.005)
        phone.legs[uri].caller_hangs_up()

    hanger = asyncio.create_task(child_hangs_up())
    result = await Dialer(phone, bridges, whisper=whisper)(
        dial_action(Sip(uri=uri, url="https://app.test/whisper", method="GET")),
        FakeLeg(answered=True),
        answer_caller=no_answer,
        stop=asyncio.Event(),
    )
    hanger.cancel()
    ((url, method, leg, child_sid),) = seen
    assert url == "https://app.test/whisper" and method == "GET"
    assert leg is phone.legs[uri] and child_sid == result.call_sid
    if accept:
        assert result.status == "completed" and bridges.started
    else:
        assert result.status == "no-answer" and not bridges.started
        assert phone.legs[uri].hung_up == "whisper ended the call"


async def test_dial_record_taps_the_bridge_and_keeps_the_recording() -> None:
    """``<Dial record>``: the bridge gets an audio tap; what both sides said is saved through
    the recording sink under the interpreter's sid, and the result carries its URL."""
    uri = "sip:bob@x.test"
    phone = FakePhone({uri: (0.0, "completed", 200)})
    taps: list[Any] = []
    kept: list[tuple[str, int, int]] = []

    class TappedBridges(Bridges):
        def __call__(self, a: Any, b: Any, on_a_digit: Any = None, **kw: Any) -> Bridges:
            taps.append(kw.get("on_audio"))
            return super().__call__(a, b, on_a_digit, on_star=kw.get("on_star"))

    async def keep(sid: str, pcm: bytes, channels: int, duration: int) -> str:
        kept.append((sid, channels, duration))
        return f"https://engine.test/Recordings/{sid}"

    bridges = TappedBridges()

    async def talk_then_hang_up() -> None:
        await until(lambda: taps, step=0.005)
        for _ in range(5):
            taps[0]("a", b"\x10\x00" * 160)
            taps[0]("b", b"\x20\x00" * 160)
        await asyncio.sleep(1.05)
        phone.legs[uri].caller_hangs_up()

    talker = asyncio.create_task(talk_then_hang_up())
    result = await Dialer(phone, bridges, recordings=keep)(
        dial_action(Sip(uri=uri), record="record-from-answer-dual", recording_sid="RE" + "1" * 32),
        FakeLeg(answered=True),
        answer_caller=no_answer,
        stop=asyncio.Event(),
    )
    await talker
    assert kept == [("RE" + "1" * 32, 2, 1)]
    assert result.recording_url == "https://engine.test/Recordings/RE" + "1" * 32
    assert result.recording_duration == 1 and result.recording_channels == 2


async def test_machine_detection_reports_unknown_when_the_callee_hangs_up_first() -> None:
    """``machineDetection`` listens beside the bridge (an audio tap); a called party that hangs
    up before any verdict is ``unknown``, reported for the child call with the noun's
    ``amdStatusCallback``; the dial still ends ``completed``."""
    uri = "sip:bob@x.test"
    phone = FakePhone({uri: (0.0, "completed", 200)})
    taps: list[Any] = []
    verdicts: list[tuple[str, str, int, ChildCallback | None]] = []

    class TappedBridges(Bridges):
        def __call__(self, a: Any, b: Any, on_a_digit: Any = None, **kw: Any) -> Bridges:
            taps.append(kw.get("on_audio"))
            return super().__call__(a, b, on_a_digit, on_star=kw.get("on_star"))

    async def report(sid: str, answered_by: str, took: int, callback: Any) -> None:
        verdicts.append((sid, answered_by, took, callback))

    async def hang_up() -> None:
        await until(lambda: taps, step=0.005)
        assert taps[0] is not None  # the detector needs the bridge's audio
        taps[0]("b", b"\x00\x00" * 160)
        phone.legs[uri].caller_hangs_up()

    hanger = asyncio.create_task(hang_up())
    noun = Sip(
        uri=uri,
        machine_detection="Enable",
        amd_status_callback="https://app.test/amd",
        amd_status_callback_method="GET",
    )
    result = await Dialer(phone, TappedBridges(), amd=report)(
        dial_action(noun), FakeLeg(answered=True), answer_caller=no_answer, stop=asyncio.Event()
    )
    await hanger
    assert result.status == "completed"
    [(sid, answered_by, took, callback)] = verdicts
    assert (sid, answered_by) == (result.call_sid, "unknown") and took >= 0
    assert callback == ChildCallback("https://app.test/amd", "GET")
