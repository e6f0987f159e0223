"""``<Dial>`` on a real call: child calls, ringing, busy, no-answer, failures, and the bridge.

Owns the media side of :class:`~callxml.interpreter.actions.StartDial`: which SIP URI each noun
means (``<Sip>`` as written, with its ``username``/``password`` for digest auth and its
``?X-…`` headers; ``<Number>`` through the configured trunk template; ``<Client>`` and a
``<Sip>`` to a user of one of our domains: that user's registered devices, rung together
through :mod:`callxml.runtime.fork`, with ``<Parameter>`` children as ``X-`` headers), calling
the targets at once (the first to answer wins, the others are cancelled) or in order, what the
caller hears while they ring (the far end's early media, or ``ringTone``'s ringback:
:mod:`callxml.runtime.early`), answering the caller on bridge for ``answerOnBridge``, bridging
the two legs' audio and keys, ending the bridge on ``timeLimit``, on ``*`` with
``hangupOnStar``, when either side hangs up or when told to stop; and reducing it all to one
:class:`~callxml.interpreter.events.DialFinished` (DialCallStatus, DialCallSid,
DialCallDuration, DialSipCallId, DialSipResponseCode).

SIP and media live behind two seams, :class:`CallPlacer` (:class:`~callxml.runtime.phone.Phone`)
and :class:`Bridger` (:func:`callxml.runtime.bridge.bridge`); child call records go to a
:class:`ChildLog`; who is registered where, behind a third, :class:`Directory` (the engine's
registrar).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from callxml.errors import CallXmlError
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.interpreter.call import new_sid
from callxml.interpreter.dial import NO_TRUNK, trunk_uri
from callxml.markup.capabilities import capability, message
from callxml.markup.verbs import Client, DialNoun, MachineDetection, Number, Sip
from callxml.media.amd import AmdSettings
from callxml.runtime.amd import AmdListener
from callxml.runtime.early import DialRingback
from callxml.runtime.fork import Callee, CallPlacer, dial_fork
from callxml.runtime.leg import CallLeg, Leg
from callxml.runtime.phone import DialResult
from callxml.runtime.recorder import BridgeRecorder
from callxml.sip.auth import Credentials
from callxml.sip.target import Target, client_headers

__all__ = [
    "AmdReporter",
    "CallPlacer",
    "ChildCallback",
    "ChildLog",
    "DialTarget",
    "Dialer",
    "Directory",
    "RecordingSink",
    "WhisperRunner",
    "resolve_targets",
]

log = logging.getLogger(__name__)

#: Most targets one ``<Dial>`` calls (Twilio allows 10 nouns).
MAX_TARGETS = 10
#: Pause for each ``w`` in ``<Number sendDigits>`` (Twilio: half a second).
DIGIT_WAIT = 0.5
#: Why a ``<Client>`` cannot be dialled without a registrar.
NO_REGISTRAR = "no registrar: clients register to a SIP domain with credentials"


class Directory(Protocol):
    """Who is registered where: the engine's registrar, for the call's account."""

    def client(self, identity: str) -> Callee:
        """``<Client>identity</Client>``: the user's bindings in the account's domains."""
        ...

    def sip(self, target: Target) -> Callee | None:
        """The user a ``<Sip>`` URI names when its host is one of our registrar domains (its
        bindings, maybe none), else None: dial the URI as written."""
        ...


class BridgeHandle(Protocol):
    def stop(self) -> None: ...


class Bridger(Protocol):
    """:func:`callxml.runtime.leg.bridge`: relay audio and keys both ways until ``stop()``;
    ``on_star`` is called (and the key not relayed) when the caller presses ``*``."""

    def __call__(
        self,
        a: Any,
        b: Any,
        on_a_digit: Callable[[str], None] | None = None,
        *,
        on_star: Callable[[], None] | None = None,
        on_audio: Callable[[str, bytes], None] | None = None,
    ) -> BridgeHandle: ...


@dataclass(frozen=True, slots=True)
class ChildCallback:
    """A noun's ``statusCallback``: where the child call's status callbacks go, for which
    events (``initiated ringing answered completed``)."""

    url: str
    method: str = "POST"
    events: tuple[str, ...] = ("completed",)


class RecordingSink(Protocol):
    """Keeps a ``<Dial record>`` recording (PCM16, ``channels`` interleaved) under ``sid`` and
    returns its ``RecordingUrl``."""

    async def __call__(self, sid: str, pcm: bytes, channels: int, duration: int) -> str: ...


class WhisperRunner(Protocol):
    """Runs a noun's ``url`` (a whisper) on the answered called party before the bridge;
    True when its document ran to the end (bridge), False when it hung up or failed."""

    async def __call__(
        self, url: str, method: str, leg: CallLeg, *, child_sid: str, to: str, from_: str
    ) -> bool: ...


class AmdReporter(Protocol):
    """Where a dialled noun's answering machine verdict goes (``machineDetection``): the child
    call's record, and ``callback`` (the noun's ``amdStatusCallback``) when it has one."""

    async def __call__(
        self,
        child_sid: str,
        answered_by: str,
        duration_ms: int,
        callback: ChildCallback | None,
    ) -> None: ...


class ChildLog(Protocol):
    """Records of the child calls a dial makes (``outbound-dial`` calls with a parent); a
    child with a ``callback`` gets status callbacks as its status changes."""

    async def child_started(
        self, sid: str, to: str, from_: str, *, callback: ChildCallback | None = None
    ) -> None: ...

    async def child_status(self, sid: str, status: str, **changes: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class DialTarget:
    """One noun of a ``<Dial>``: the parsed SIP :class:`~callxml.sip.target.Target` to call,
    with the noun's digest credentials, or ``error`` when it cannot be called. ``label`` is
    what the call log and the child call's ``To`` show."""

    label: str
    target: Target | None = None
    credentials: Credentials | None = None
    kind: str = "sip"
    error: str = ""
    noun: DialNoun | None = None  # the noun as written: its sendDigits and statusCallback
    callee: Callee | None = None  # a registered user: its devices are rung together
    headers: tuple[tuple[str, str], ...] = ()  # <Client>: its identity and <Parameter>s
    warnings: tuple[str, ...] = ()

    @property
    def callable(self) -> bool:
        return not self.error and (self.target is not None or self.callee is not None)

    @property
    def callback(self) -> ChildCallback | None:
        noun = self.noun
        if not isinstance(noun, Number | Sip | Client) or noun.status_callback is None:
            return None
        return ChildCallback(
            noun.status_callback, noun.status_callback_method, noun.status_callback_event
        )

    @property
    def send_digits(self) -> str | None:
        return self.noun.send_digits if isinstance(self.noun, Number) else None

    @property
    def machine_detection(self) -> AmdSettings | None:
        """The noun's ``machineDetection``, or None when it asks for none."""
        noun = self.noun
        if not isinstance(noun, MachineDetection) or noun.machine_detection is None:
            return None
        return AmdSettings.from_twilio(
            noun.machine_detection,
            noun.machine_detection_timeout,
            noun.machine_detection_speech_threshold,
            noun.machine_detection_speech_end_threshold,
            noun.machine_detection_silence_timeout,
        )


def resolve_targets(
    nouns: Sequence[DialNoun],
    *,
    trunk_uri_template: str | None,
    directory: Directory | None = None,
) -> list[DialTarget]:
    """The targets for ``nouns`` (at most :data:`MAX_TARGETS`).

    ``<Sip>`` uses the target the markup parsed (transport, media policy and X- headers are
    decided there, once), or the registered user it names on one of our domains;
    ``<Number>`` goes through the trunk template; ``<Client>`` is the user's registered devices
    in the ``directory`` (the engine's registrar).
    """
    targets: list[DialTarget] = []
    for noun in nouns[:MAX_TARGETS]:
        match noun:
            case Sip(uri=uri, username=username, password=password):
                try:
                    parsed = noun.target or Target.parse(uri)
                except CallXmlError as exc:
                    targets.append(DialTarget(uri, error=f"invalid SIP URI: {exc}"))
                    continue
                creds = Credentials(username, password or "") if username else None
                callee = directory.sip(parsed) if directory is not None else None
                targets.append(DialTarget(str(parsed), parsed, creds, noun=noun, callee=callee))
            case Client(identity=identity):
                label = f"client:{identity}"
                if directory is None:
                    targets.append(DialTarget(label, kind="client", error=NO_REGISTRAR))
                    continue
                headers, warnings = client_headers(noun.identity, noun.parameters)
                targets.append(
                    DialTarget(
                        label,
                        kind="client",
                        noun=noun,
                        callee=directory.client(identity),
                        headers=headers,
                        warnings=warnings,
                    )
                )
            case Number(number=number):
                if trunk_uri_template is None:
                    targets.append(DialTarget(number, kind="number", error=NO_TRUNK))
                    continue
                uri = trunk_uri(number, trunk_uri_template)
                try:
                    targets.append(DialTarget(uri, Target.parse(uri), kind="number", noun=noun))
                except CallXmlError as exc:
                    targets.append(DialTarget(uri, kind="number", error=f"trunk URI: {exc}"))
            case _:  # the interpreter drops what the capability table cannot dial
                kind = type(noun).__name__
                error = message(capability(kind))
                targets.append(DialTarget(kind, kind=kind, error=error))
    return targets


#: How the final status of several failed attempts is chosen: the first of these present.
_FAILURE_ORDER = ("busy", "no-answer", "canceled", "failed")


class Dialer:
    """Runs ``<Dial>`` for :class:`~callxml.runtime.session.CallRunner` (its ``DialRunner``)."""

    def __init__(
        self,
        phone: CallPlacer,
        bridge: Bridger,
        *,
        trunk_uri_template: str | None = None,
        children: ChildLog | None = None,
        clock: Callable[[], float] | None = None,
        event: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
        whisper: WhisperRunner | None = None,
        recordings: RecordingSink | None = None,
        directory: Directory | None = None,
        amd: AmdReporter | None = None,
    ) -> None:
        self.phone = phone
        self.amd = amd
        self.directory = directory
        self.bridge = bridge
        self.whisper = whisper
        self.recordings = recordings
        self.trunk_uri_template = trunk_uri_template
        self.children = children
        self._clock = clock
        self._event = event

    def now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    async def _note(self, kind: str, data: dict[str, Any]) -> None:
        if self._event is not None:
            await self._event(kind, data)

    async def __call__(
        self,
        action: act.StartDial,
        caller: Leg,
        *,
        answer_caller: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
        on_audio: Callable[[str, bytes], None] | None = None,
    ) -> ev.DialFinished:
        """Run the dial; ``on_audio(side, pcm)`` (the whole call's recording, REST
        ``Record=true``) also hears the bridged audio, ``a`` the caller and ``b`` the callee."""
        targets = resolve_targets(
            action.targets, trunk_uri_template=self.trunk_uri_template, directory=self.directory
        )
        callable_targets = [t for t in targets if t.callable]
        for target in targets:
            if target.error:
                await self._note("warning", {"message": f"Dial {target.label}: {target.error}"})
            for warning in target.warnings:
                await self._note("warning", {"message": f"Dial {target.label}: {warning}"})
        if not callable_targets:
            return ev.DialFinished("failed")
        from_uri = action.caller_id or "sip:callxml@invalid"
        if not from_uri.startswith(("sip:", "sips:")):
            from_uri = f"sip:{from_uri}@callxml.invalid"
        recorder = None
        if action.record.startswith("record-from-ringing"):
            recorder = self._recorder(action)  # hears the ringing too, from now on
        ringback = None
        if isinstance(caller, CallLeg):  # a real call: early media and ringback to it
            hear = None if recorder is None else self._feeder(recorder)
            ringback = DialRingback(caller, action.ring_tone, self.bridge, on_audio=hear)
            await ringback.start()
        early = ringback.far_end_media if ringback is not None else None
        try:
            if action.sequential:
                attempts: list[_Attempt] = []
                winner = None
                for target in callable_targets:
                    if stop.is_set():
                        break
                    attempt = _Attempt(self, target, from_uri, action.timeout, early)
                    attempts.append(attempt)
                    winner = await self._race([attempt], stop)
                    if winner is not None:
                        break
            else:
                attempts = [
                    _Attempt(self, t, from_uri, action.timeout, early) for t in callable_targets
                ]
                winner = await self._race(attempts, stop)
        finally:
            if ringback is not None:
                await ringback.stop()  # the winner is bridged anew; the rest are over
        if winner is None:
            return self._failed(attempts, stop.is_set())
        return await self._bridge(
            action, caller, winner, answer_caller, stop, on_audio, recorder=recorder
        )

    def _feeder(self, recorder: BridgeRecorder) -> Callable[[str, bytes], None]:
        """``on_audio`` for the ringing: each side's audio into ``recorder`` on our clock."""

        def feed(side: str, pcm: bytes) -> None:
            recorder.audio(side, pcm, self.now())

        return feed

    def _recorder(self, action: act.StartDial) -> BridgeRecorder | None:
        """A recorder for ``<Dial record>``, started now (None when nothing keeps it)."""
        if action.record == "do-not-record" or self.recordings is None:
            return None
        return BridgeRecorder(
            self.now(), dual=action.record.endswith("-dual"), track=action.recording_track
        )

    async def _race(self, attempts: list[_Attempt], stop: asyncio.Event) -> _Attempt | None:
        """Start ``attempts`` and return the first answered one; cancel the rest."""
        for attempt in attempts:
            attempt.start()
        stopper = asyncio.ensure_future(stop.wait())
        pending: set[asyncio.Future[Any]] = {a.task for a in attempts if a.task is not None}
        winner: _Attempt | None = None
        try:
            while pending and winner is None:
                done, pending = await asyncio.wait(
                    pending | {stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(stopper)
                if stopper in done:
                    break
                for attempt in attempts:
                    if attempt.task in done and attempt.answered_leg() is not None:
                        winner = attempt
                        break
        finally:
            stopper.cancel()
            losers = [a for a in attempts if a is not winner]
            for attempt in losers:
                await attempt.cancel()
        return winner

    def _failed(self, attempts: list[_Attempt], stopped: bool) -> ev.DialFinished:
        statuses = [a.status for a in attempts]
        status = "canceled" if stopped else "failed"
        if not stopped:
            status = next((s for s in _FAILURE_ORDER if s in statuses), "failed")
        chosen = next(
            (a for a in attempts if a.status == status), attempts[-1] if attempts else None
        )
        if chosen is None:
            return ev.DialFinished(status)
        return ev.DialFinished(
            status,
            chosen.sid,
            0,
            sip_call_id=chosen.sip_call_id,
            sip_response_code=chosen.sip_response_code or (487 if stopped else None),
            sip_headers=chosen.sip_headers,
        )

    async def _bridge(
        self,
        action: act.StartDial,
        caller: Leg,
        winner: _Attempt,
        answer_caller: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
        call_audio: Callable[[str, bytes], None] | None = None,
        *,
        recorder: BridgeRecorder | None = None,
    ) -> ev.DialFinished:
        """Bridge the answered ``winner`` to the caller; ``recorder`` is a recording already
        running since the dial started (``record-from-ringing``), else one starts here."""
        child = winner.answered_leg()
        assert child is not None
        noun = winner.target.noun
        whisper = (
            (noun.url, noun.method)
            if isinstance(noun, Number | Sip | Client) and noun.url
            else None
        )
        if whisper is not None and not await self._whisper(winner, child, caller, stop, *whisper):
            return await self._whisper_declined(winner, child, caller, stop)
        if not caller.answered:
            await answer_caller()  # answerOnBridge: the caller is answered only now
        star = asyncio.Event()
        bridged_at = self.now()
        await self._child_status(
            winner.sid,
            "in-progress",
            start_time=_wall(),
            sip_response_code=winner.sip_response_code,
            sip_call_id=winner.sip_call_id,
        )
        if winner.target.send_digits:  # <Number sendDigits>: to the callee, before the bridge
            await _send_digits(child, winner.target.send_digits)
        on_star = star.set if action.hangup_on_star else None
        if recorder is None:
            recorder = self._recorder(action)
        settings = winner.target.machine_detection
        listener = verdict = None
        if settings is not None:  # machineDetection: asynchronous, beside the bridge
            listener = AmdListener(settings, asyncio.get_running_loop().time())
            verdict = asyncio.ensure_future(self._machine_verdict(winner, child, listener))
        if recorder is not None or call_audio is not None or listener is not None:
            tap = recorder  # bound for the closure below
            loop = asyncio.get_running_loop()

            def on_audio(side: str, pcm: bytes) -> None:
                if tap is not None:
                    tap.audio(side, pcm, self.now())
                if call_audio is not None:
                    call_audio(side, pcm)
                if listener is not None and side == "b":  # the called party is the far end
                    listener.audio("a", pcm, loop.time())

            handle = self.bridge(caller, child, on_star=on_star, on_audio=on_audio)
        else:
            handle = self.bridge(caller, child, on_star=on_star)
        ends = [
            asyncio.ensure_future(child.ended.wait()),
            asyncio.ensure_future(caller.ended.wait()),
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(star.wait()),
        ]
        try:
            await asyncio.wait(ends, timeout=action.time_limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in ends:
                waiter.cancel()
            handle.stop()
            if not child.ended.is_set():
                with contextlib.suppress(CallXmlError, TimeoutError, OSError):
                    await asyncio.wait_for(child.hangup("dial ended"), 10)
            if verdict is not None:  # decided by now, or "unknown" now that the child ended
                await verdict
        duration = max(0, round(self.now() - bridged_at))
        await self._child_status(winner.sid, "completed", end_time=_wall(), duration=duration)
        url, seconds, channels = "", 0, 1
        if recorder is not None and self.recordings is not None and action.recording_sid:
            pcm, channels, seconds = recorder.result(self.now())
            if seconds > 0:
                try:
                    url = await self.recordings(action.recording_sid, pcm, channels, seconds)
                except Exception:
                    log.exception("dial recording %s not saved", action.recording_sid)
                    url = ""
        return ev.DialFinished(
            "completed",
            winner.sid,
            duration,
            sip_call_id=winner.sip_call_id,
            sip_response_code=winner.sip_response_code,
            sip_headers=winner.sip_headers,
            recording_url=url,
            recording_duration=seconds if url else 0,
            recording_channels=channels,
        )

    async def _whisper_declined(
        self, winner: _Attempt, child: CallLeg, caller: Leg, stop: asyncio.Event
    ) -> ev.DialFinished:
        """The whisper hung up (or the caller left during it): no bridge, the child is ended
        and the dial is ``no-answer`` (``canceled`` when the caller left)."""
        if not child.ended.is_set():
            with contextlib.suppress(CallXmlError, TimeoutError, OSError):
                await asyncio.wait_for(child.hangup("whisper ended the call"), 10)
        await self._child_status(winner.sid, "completed", end_time=_wall(), duration=0)
        gone = stop.is_set() or caller.ended.is_set()
        return ev.DialFinished(
            "canceled" if gone else "no-answer",
            winner.sid,
            0,
            sip_call_id=winner.sip_call_id,
            sip_response_code=winner.sip_response_code,
            sip_headers=winner.sip_headers,
        )

    async def _whisper(
        self,
        winner: _Attempt,
        child: CallLeg,
        caller: Leg,
        stop: asyncio.Event,
        url: str,
        method: str,
    ) -> bool:
        """Run the noun's whisper document on ``child`` (the caller keeps hearing ringing);
        False when it hung up, failed, or the caller left meanwhile."""
        if self.whisper is None:
            await self._note("warning", {"message": f"Dial {winner.target.label}: no whisper"})
            return True
        whisper = asyncio.ensure_future(
            self.whisper(
                url,
                method,
                child,
                child_sid=winner.sid,
                to=winner.target.label,
                from_=winner.from_uri,
            )
        )
        waiters = [asyncio.ensure_future(caller.ended.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait([whisper, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not whisper.done():
            whisper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await whisper
            return False
        try:
            return bool(whisper.result()) and not child.ended.is_set()
        except Exception:
            log.exception("whisper for %s failed", winner.sid)
            return False

    async def _machine_verdict(
        self, winner: _Attempt, child: CallLeg, listener: AmdListener
    ) -> None:
        """Wait for ``listener``'s verdict on the called party (``unknown`` if the child
        ends first) and hand it to the :class:`AmdReporter`; never raises."""
        try:
            answered_by, took = await listener.result(child.ended)
            await self._note(
                "media",
                {"message": f"Dial {winner.target.label}: answered by {answered_by} ({took} ms)"},
            )
            if self.amd is None:
                return
            noun = winner.target.noun
            callback = None
            if isinstance(noun, MachineDetection) and noun.amd_status_callback is not None:
                callback = ChildCallback(noun.amd_status_callback, noun.amd_status_callback_method)
            await self.amd(winner.sid, answered_by, took, callback)
        except Exception:
            log.exception("machine detection for %s failed", winner.sid)

    async def _child_status(self, sid: str, status: str, **changes: Any) -> None:
        if self.children is not None:
            try:
                await self.children.child_status(sid, status, **changes)
            except Exception:
                log.exception("child call %s: status not recorded", sid)


class _Attempt:
    """One child call: a ``Phone.dial`` task and what came of it."""

    def __init__(
        self,
        dialer: Dialer,
        target: DialTarget,
        from_uri: str,
        timeout: float,
        on_early_media: Callable[[CallLeg], None] | None = None,
    ) -> None:
        self.dialer = dialer
        self.target = target
        self.from_uri = from_uri
        self.timeout = timeout
        self.on_early_media = on_early_media
        self.sid = new_sid("CA")
        self.task: asyncio.Task[DialResult | None] | None = None
        self.status = "failed"
        self.sip_response_code: int | None = None
        self.sip_call_id: str | None = None
        self.sip_headers: tuple[tuple[str, str], ...] = ()
        self._ringing: asyncio.Future[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> DialResult | None:
        children = self.dialer.children
        if children is not None:
            with contextlib.suppress(Exception):
                await children.child_started(
                    self.sid, self.target.label, self.from_uri, callback=self.target.callback
                )

        def ringing() -> None:
            if children is not None and self._ringing is None:
                self._ringing = asyncio.ensure_future(
                    self.dialer._child_status(self.sid, "ringing")
                )

        extra: dict[str, Any] = {}
        if self.on_early_media is not None:  # only real calls (fakes need not take it)
            extra["on_early_media"] = self.on_early_media
        try:
            if self.target.callee is not None:  # a registered user: every device at once
                result = await dial_fork(
                    self.dialer.phone,
                    self.target.callee,
                    from_uri=self.from_uri,
                    timeout=self.timeout,
                    headers=self._headers(),
                    on_ringing=ringing,
                    sid=self.sid,
                )
            else:
                assert self.target.target is not None  # only callable targets are attempted
                result = await self.dialer.phone.dial(
                    self.target.target,
                    from_uri=self.from_uri,
                    timeout=self.timeout,
                    credentials=self.target.credentials,
                    on_ringing=ringing,
                    sid=self.sid,
                    **extra,
                )
        except asyncio.CancelledError:
            self.status = "canceled"
            raise
        except CallXmlError as exc:
            self.status = "failed"
            await self.dialer._note("warning", {"message": f"Dial {self.target.label}: {exc}"})
            await self.dialer._child_status(self.sid, "failed", error=str(exc))
            return None
        self.status = result.status
        self.sip_response_code = result.sip_response_code
        self.sip_call_id = result.sip_call_id
        self.sip_headers = result.headers
        note: dict[str, Any] = {
            "uri": self.target.label,
            "status": result.status,
            "sip_response_code": result.sip_response_code,
            "sip_call_id": result.sip_call_id,
            "reason": result.reason,
        }
        leg = result.leg  # a CallLeg, or a test double of the Leg protocol without these
        if getattr(leg, "secure", False):
            note["suite"] = getattr(leg, "suite", None)
        zrtp = getattr(leg, "zrtp_result", None)
        if zrtp is not None:  # the SAS for the log (RFC 6189 §7): never a key
            note.update(zrtp_sas=zrtp.sas, zrtp_algorithms=zrtp.algorithms)
        await self.dialer._note("dial", note)
        if result.leg is None:
            await self.dialer._child_status(
                self.sid,
                result.status if result.status != "answered" else "failed",
                sip_response_code=result.sip_response_code,
                sip_call_id=result.sip_call_id,
                end_time=_wall(),
            )
        return result

    def _headers(self) -> tuple[tuple[str, str], ...]:
        """What a fork adds to each device's INVITE: the ``<Sip>`` URI's X- headers, or the
        ``<Client>``'s identity and parameters."""
        target = self.target.target
        return (*(target.headers if target is not None else ()), *self.target.headers)

    def answered_leg(self) -> CallLeg | None:
        task = self.task
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None
        result = task.result()
        return None if result is None else result.leg

    async def cancel(self) -> None:
        """Stop ringing (CANCEL), or hang up a leg that answered too late."""
        task = self.task
        if task is None:
            return
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            self.status = "canceled"
            self.sip_response_code = self.sip_response_code or 487
            await self.dialer._child_status(self.sid, "canceled", end_time=_wall())
            return
        leg = self.answered_leg()
        if leg is not None and not leg.ended.is_set():
            with contextlib.suppress(CallXmlError, TimeoutError, OSError):
                await asyncio.wait_for(leg.hangup("another target answered first"), 10)
            await self.dialer._child_status(self.sid, "completed", end_time=_wall(), duration=0)


async def _send_digits(leg: CallLeg, digits: str) -> None:
    """RFC 4733 keys to ``leg``; ``w`` waits half a second (Twilio's ``sendDigits``)."""
    for chunk in re.split(r"([wW])", digits):
        if chunk in ("w", "W"):
            await asyncio.sleep(DIGIT_WAIT)
        elif chunk:
            with contextlib.suppress(CallXmlError):
                await leg.send_digits(chunk)


def _wall() -> float:
    """Unix time, for records (the loop clock drives the call itself)."""
    return time.time()
