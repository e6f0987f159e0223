"""The simulated call: drives a :class:`~callxml.interpreter.CallSession` on a virtual clock.

Owns everything media-specific that the engine would do with SIP and RTP, replaced by a scripted
caller and scripted far ends: how long a prompt lasts (estimated from the text; a nominal length
for audio URLs, which are never fetched), when the caller presses keys, how long a recording is,
how a ``<Dial>`` target answers. Time is virtual: the loop jumps to the next timer or scheduled
event, so ``<Pause length="30">`` costs nothing. Webhook requests are real (HTTP or files) and
cost no simulated time.

The caller script: ``digits`` holds one entry per ``<Gather>``/``<Record>``, in turn. For a
``<Gather>`` the keys are pressed one by one after the prompts (``"1234#"``); for a
``<Record>`` the caller speaks for a few seconds and then presses the first key of the entry that
ends the recording (``""``: the caller stays silent, an empty recording). With no entry left,
``prompt`` (if given) is asked; otherwise the caller stays silent (a ``<Gather>`` times out, a
``<Record>`` records a few seconds of speech then silence).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from callxml.errors import CallXmlError, WebhookError
from callxml.interpreter import CallInfo, CallSession, new_sid
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.interpreter.dial import NO_TRUNK, trunk_uri
from callxml.markup import verbs as v
from callxml.markup.capabilities import capability, message
from callxml.sdp.policy import OUTBOUND_SUITE
from callxml.simulator.result import DialRecord, RecordingRecord, RequestRecord, SimulationResult
from callxml.simulator.transcript import Transcript
from callxml.sip.target import Target, client_headers
from callxml.webhooks.base import Fetcher, WebhookRequest, fetch_outcome, resolve_url

__all__ = ["DIAL_OUTCOMES", "SimulatedCall", "estimate_speech"]

log = logging.getLogger(__name__)

#: Outcomes a scripted far end may have (``--dial-outcome URI=...``).
DIAL_OUTCOMES = ("answered", "busy", "no-answer", "failed")

PLAY_SECONDS = 5.0  # nominal length of an audio URL
SPEECH_CHARS_PER_SECOND = 15.0  # ~150 words a minute
KEY_GAP = 0.5  # between the caller's key presses
FIRST_KEY_DELAY = 1.0  # from the end of the prompts to the first key
RECORD_SPEECH = 5.0  # how long the scripted caller speaks into a <Record>
RING_TIME = 2.0  # before a scripted far end answers or says busy
TALK_TIME = 10.0  # how long an answered far end stays on the line
MAX_STEPS = 100_000
MAX_DURATION = 24 * 3600.0  # simulated seconds


#: A far end's scripted outcome -> the final status of its child call.
_CHILD_STATUS = {"busy": "busy", "no-answer": "no-answer", "failed": "failed"}


def estimate_speech(text: str) -> float:
    """Seconds text-to-speech takes to say ``text`` (at least half a second)."""
    return max(0.5, round(len(text) / SPEECH_CHARS_PER_SECOND, 2))


def _dtmf_seconds(digits: str) -> float:
    return sum(0.5 if d in "wW" else 0.2 for d in digits)


@dataclass
class _Dial:
    answer_at: float | None
    finish_at: float
    event: ev.DialFinished
    answer_on_bridge: bool


class SimulatedCall:
    """One simulated call. ``await run()`` returns the :class:`SimulationResult`."""

    def __init__(
        self,
        session: CallSession,
        fetcher: Fetcher,
        *,
        digits: Sequence[str] = (),
        dial_outcomes: Mapping[str, str] | None = None,
        hangup_after: float | None = None,
        prompt: Callable[[str], str] | None = None,
        echo: Callable[[str], object] | None = None,
        trunk_uri_template: str | None = None,
    ) -> None:
        outcomes = dict(dial_outcomes or {})
        for target, outcome in outcomes.items():
            if outcome not in DIAL_OUTCOMES:
                raise ValueError(
                    f"dial outcome for {target!r} must be one of {', '.join(DIAL_OUTCOMES)}, "
                    f"not {outcome!r}"
                )
        if hangup_after is not None and hangup_after < 0:
            raise ValueError("hangup_after must not be negative")
        self._session = session
        self._fetcher = fetcher
        self._script = list(digits)
        self._outcomes = outcomes
        self._hangup_after = hangup_after
        self._prompt = prompt
        self._trunk = trunk_uri_template
        self._transcript = Transcript(echo)
        self.result = SimulationResult(call_sid=session.call.call_sid)

        self._now = 0.0
        self._queue: list[tuple[float, int, ev.Event]] = []
        self._seq = itertools.count()
        self._playing: dict[int, float] = {}  # playback id -> when it ends
        self._pause_until = 0.0
        self._gather: act.CollectDigits | None = None  # a <Gather> waiting for the caller's keys
        self._recording: tuple[float, act.StartRecording] | None = None
        self._dial: _Dial | None = None
        self._failed = False  # the driver itself failed (see run)
        self._queued: list[act.Action] = []  # status callbacks to send at the next step
        self._dial_action: act.StartDial | None = None
        self._whisper: tuple[v.Number | v.Sip, str, str] | None = None  # to run on the callee

    # ----------------------------------------------------------------------------- the loop

    async def run(self) -> SimulationResult:
        """Run the call to its end. A failure inside the simulator or the interpreter (a bug)
        does not escape: the call ends ``failed`` with the error, as the engine's driver ends a
        real call, and the traceback is logged."""
        try:
            await self._run()
        except Exception as exc:
            log.error("simulated call: the driver failed", exc_info=exc)
            self.result.error = f"internal error: {type(exc).__name__}: {exc}"
            self._transcript.add(self._now, f"error: {self.result.error}")
            self._failed = True
        return self._finish()

    async def _run(self) -> None:
        session = self._session
        if self._hangup_after is not None:
            self._schedule(self._hangup_after, ev.CallerHungUp())
        await self._carry_out(session.start(self._now))
        steps = 0
        while not session.finished:
            self._caller_acts()
            steps += 1
            timer = session.next_timer()
            queued = self._queue[0][0] if self._queue else None
            if timer is None and queued is None:
                self._broken("the call is stuck: nothing is scheduled (driver bug)")
                break
            if steps > MAX_STEPS or min(t for t in (timer, queued) if t is not None) > MAX_DURATION:
                self._broken(f"the simulation exceeded {MAX_STEPS} steps or {MAX_DURATION:.0f} s")
                break
            if self._queued:  # status callbacks the far ends caused
                callbacks, self._queued = self._queued, []
                await self._carry_out(callbacks)
            if self._whisper is not None:
                await self._run_whisper(*self._whisper)
                continue
            if queued is not None and (timer is None or queued <= timer):
                at, _, event = heapq.heappop(self._queue)
                self._now = max(self._now, at)
                actions = self._deliver(event)
            else:
                assert timer is not None
                self._now = max(self._now, timer)
                actions = session.handle_timer(self._now)
            await self._carry_out(actions)

    def _finish(self) -> SimulationResult:
        result = self.result
        session = self._session
        result.status = "failed" if self._failed else session.status
        result.answered = session.answered
        result.duration = self._now
        if session.error is not None and result.error is None:
            result.error = str(session.error)
        self._transcript.add(
            self._now,
            f"call ended: {result.status}" + (f" (error: {result.error})" if result.error else ""),
        )
        result.transcript = self._transcript.lines
        return result

    def _broken(self, message: str) -> None:
        self.result.error = message
        self._transcript.add(self._now, f"simulation stopped: {message}")

    def _schedule(self, at: float, event: ev.Event) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), event))

    def _deliver(self, event: ev.Event) -> list[act.Action]:
        match event:
            case ev.PlaybackFinished(id=id):
                if self._playing.pop(id, None) is None:
                    return []  # stopped by barge-in
            case ev.DigitReceived(digit=digit):
                self._transcript.add(self._now, f"caller presses {digit}")
            case ev.CallerHungUp():
                if self._session.finished:
                    return []
                self._transcript.add(self._now, "caller hangs up")
            case ev.RecordingFinished():
                if self._recording is None:
                    return []
                self._recording = None
                self._recorded(event)
            case ev.DialFinished():
                if self._dial is None or self._dial.event is not event:
                    return []
                self._dial = None
                if event.recording_url:
                    recording = RecordingRecord(event.recording_url, event.recording_duration, "")
                    self.result.recordings.append(recording)
                self._transcript.add(
                    self._now,
                    f"dial ended: {event.status}, {event.duration} s bridged"
                    + (f", SIP {event.sip_response_code}" if event.sip_response_code else ""),
                )
            case ev.Answered():
                self._transcript.add(self._now, "far end answered: caller's leg answered on bridge")
        self.result.events.append((self._now, event))
        return self._session.receive(event, self._now)

    # ------------------------------------------------------------------------- the actions

    async def _carry_out(self, actions: list[act.Action]) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            self.result.actions.append((self._now, action))
            event = await self._do(action)
            if event is not None:
                self.result.events.append((self._now, event))
                queue += self._session.receive(event, self._now)

    async def _do(self, action: act.Action) -> ev.Event | None:
        now, say = self._now, self._transcript.add
        match action:
            case act.Fetch(request=request, final=final):
                self._transcript.request(now, request)
                response = await fetch_outcome(self._fetcher, request)
                if isinstance(response, WebhookError):
                    self.result.requests.append(RequestRecord(request, None, str(response)))
                    say(now, f"✗ {response} (error {response.error_code})")
                    return ev.FetchFailed(response)
                self.result.requests.append(RequestRecord(request, response))
                self._transcript.response(now, response)
                if final:
                    say(now, "(the call is over: this document is not run)")
                return ev.DocumentFetched(response)
            case act.VerbStarted(verb=v.Redirect(url=url, method=method)):
                say(now, f"Redirect ({method}) to {url}")
            case act.Answer():
                say(now, "call answered")
                return ev.Answered()
            case act.Speak(id=id, text=text, loop=loop):
                self.result.said.append(text)
                times = f" x{loop}" if loop > 1 else ""
                say(now, f'Say{times}: "{text}"' + (f" [{action.voice}]" if action.voice else ""))
                self._play(id, estimate_speech(text) * loop)
            case act.Play(id=id, url=url, loop=loop):
                self.result.played.append(url)
                say(now, f"Play{f' x{loop}' if loop > 1 else ''}: {url}")
                self._play(id, PLAY_SECONDS * loop)
            case act.SendDigits(id=id, digits=digits):
                say(now, f"Play digits: {digits}")
                self._play(id, _dtmf_seconds(digits))
            case act.StopPlayback(id=id):
                if self._playing.pop(id, None) is not None:
                    say(now, "(prompt interrupted by a key press)")
            case act.Pause(length=length):
                say(now, f"Pause {length:g} s")
                self._pause_until = now + length
            case act.CollectDigits():
                finish = action.finish_on_key or "none"
                limit = f", numDigits {action.num_digits}" if action.num_digits else ""
                say(now, f"Gather: timeout {action.timeout:g} s, finishOnKey {finish}{limit}")
                self._gather = action
            case act.DigitsCollected(digits=digits, finished_on_key=key):
                self._gather = None
                self.result.gathered.append(digits)
                how = f", ended with {key}" if key else ""
                say(now, f"Gather collected {digits!r}{how}" if digits else "Gather: no input")
            case act.StartRecording():
                self._start_recording(action)
            case act.StopRecording():
                if self._recording is not None:
                    self._stop_recording("hangup")
            case act.StartDial():
                self._start_dial(action)
            case act.StopDial():
                self._stop_dial()
            case act.Reject(status=status, reason=reason):
                say(now, f"Reject: {reason} (SIP {status})")
            case act.Hangup(reason=reason):
                say(now, f"Hangup ({reason})")
            case act.Callback(request=request):
                self._transcript.request(now, request)
                outcome = await fetch_outcome(self._fetcher, request)
                failed = isinstance(outcome, WebhookError)
                if isinstance(outcome, WebhookError):
                    self.result.callbacks.append(RequestRecord(request, None, str(outcome)))
                else:
                    self.result.callbacks.append(RequestRecord(request, outcome))
                say(now, f"(status callback: {'✗ ' + str(outcome) if failed else 'sent'})")
            case act.Log(level=level, message=text, code=code):
                self._log(level, text, code)
        return None

    def _log(self, level: str, text: str, code: int | None = None) -> None:
        line = f"{level}: {text}" + (f" [{code}]" if code else "")
        self.result.log.append(line)
        self._transcript.add(self._now, line)

    def _play(self, id: int, seconds: float) -> None:
        self._playing[id] = self._now + seconds
        self._schedule(self._now + seconds, ev.PlaybackFinished(id))

    # -------------------------------------------------------------------------- the caller

    def _next_entry(self, what: str) -> str | None:
        if self._script:
            return self._script.pop(0)
        if self._prompt is not None:
            return self._prompt(what).strip()
        return None

    def _caller_acts(self) -> None:
        """Once a <Gather>'s prompts are over, the caller answers it."""
        gather = self._gather
        if gather is None or self._playing or self._now < self._pause_until:
            return
        self._gather = None
        entry = self._next_entry("digits for <Gather>")
        if not entry:
            return
        at = self._now + FIRST_KEY_DELAY
        for key in entry[: self._session.limits.digits_per_gather * 2]:
            self._schedule(at, ev.DigitReceived(key))
            at += KEY_GAP

    def _start_recording(self, action: act.StartRecording) -> None:
        beep = 0.5 if action.play_beep else 0.0
        say = self._transcript.add
        say(
            self._now,
            f"Record: maxLength {action.max_length:g} s, timeout {action.timeout:g} s, "
            f"finishOnKey {action.finish_on_key or 'none'}"
            + (" (beep)" if action.play_beep else ""),
        )
        self._recording = (self._now + beep, action)
        entry = self._next_entry("keys to end <Record> (empty: silence)") if self._script else None
        if entry == "":  # silence from the start: nothing is recorded
            at = self._now + beep + action.timeout
            self._schedule(at, ev.RecordingFinished(url="", duration=0))
            return
        speech = min(RECORD_SPEECH, action.max_length)
        key = next((k for k in entry or "" if k in action.finish_on_key), "")
        if key:
            at, digits = self._now + beep + speech, key
        elif speech >= action.max_length:
            at, digits = self._now + beep + action.max_length, ""
        else:
            at, digits = self._now + beep + speech + action.timeout, ""
        sid = action.sid or new_sid("RE")
        url = f"https://simulator.callxml.invalid/Recordings/{sid}"
        self._schedule(
            at, ev.RecordingFinished(url=url, duration=round(speech), digits=digits, sid=sid)
        )

    def _stop_recording(self, digits: str) -> None:
        assert self._recording is not None
        started, action = self._recording
        duration = max(0, round(min(self._now - started, RECORD_SPEECH)))
        sid = action.sid or new_sid("RE")
        url = f"https://simulator.callxml.invalid/Recordings/{sid}" if duration else ""
        self._queue = [q for q in self._queue if not isinstance(q[2], ev.RecordingFinished)]
        heapq.heapify(self._queue)
        self._schedule(self._now, ev.RecordingFinished(url, duration, digits, sid))

    def _recorded(self, event: ev.RecordingFinished) -> None:
        if event.duration <= 0:
            self._transcript.add(self._now, "recording ended: nothing recorded")
            return
        self.result.recordings.append(RecordingRecord(event.url, event.duration, event.digits))
        how = f", ended with {event.digits}" if event.digits else ""
        self._transcript.add(self._now, f"recording ended: {event.duration} s{how}, {event.url}")

    # ---------------------------------------------------------------------------- far ends

    def _resolve(self, noun: v.DialNoun) -> DialRecord:
        """What the engine would call for ``noun``; ``outcome`` ``failed`` with the engine's
        reason in ``warnings`` when it could not place the call at all."""
        outcome = "answered"
        match noun:
            case v.Number(number=number):
                if self._trunk is None:
                    return DialRecord(
                        number, "number", None, None, None, "failed", False, (NO_TRUNK,)
                    )
                uri = trunk_uri(number, self._trunk)
                try:
                    target = Target.parse(uri)
                except CallXmlError as exc:
                    reason = f"trunk URI: {exc}"
                    return DialRecord(
                        number, "number", None, None, None, "failed", False, (reason,)
                    )
                suite = OUTBOUND_SUITE if target.secure else None
                port = target.next_hop.port
                return DialRecord(number, "number", target.transport, port, suite, outcome)
            case v.Sip(uri=uri):
                try:
                    target = noun.target or Target.parse(uri)
                except CallXmlError as exc:
                    reason = f"invalid SIP URI: {exc}"
                    return DialRecord(uri, "sip", None, None, None, "failed", False, (reason,))
                suite = OUTBOUND_SUITE if target.secure else None
                return DialRecord(
                    uri,
                    "sip",
                    target.transport,
                    target.next_hop.port,
                    suite,
                    outcome,
                    warnings=target.warnings,
                )
            case v.Client(identity=identity, parameters=parameters):
                # The engine rings the devices the user registered; the simulator has no
                # registrar, so the client is taken as registered (outcomes: "client:<name>").
                _, warnings = client_headers(identity, parameters)
                label = f"client:{identity}"
                return DialRecord(label, "client", None, None, None, outcome, warnings=warnings)
            case _:  # the interpreter drops what the capability table cannot dial
                kind = type(noun).__name__
                reason = message(capability(kind))
                return DialRecord(kind, kind.lower(), None, None, None, "failed", False, (reason,))

    def _outcome_for(self, record: DialRecord) -> str:
        if record.outcome == "failed":
            return "failed"
        for key in (record.target, f"{record.kind}:{record.target}", "*"):
            if key in self._outcomes:
                return self._outcomes[key]
        return "answered"

    def _start_dial(self, action: act.StartDial) -> None:
        now, say = self._now, self._transcript.add
        self._dial_action = action
        records = [self._resolve(noun) for noun in action.targets]
        say(now, f"Dial: timeout {action.timeout:g} s, callerId {action.caller_id or '-'}")
        unplaced = [r for r in records if r.outcome == "failed" and r.warnings]
        for record in unplaced:  # the engine's dialler says the same
            self._log("warning", f"Dial {record.target}: {record.warnings[0]}")
        for record in records:  # a <Client>'s parameters that cannot be headers
            if record.kind == "client" and record not in unplaced:
                for warning in record.warnings:
                    self._log("warning", f"Dial {record.target}: {warning}")
        if len(unplaced) == len(records):  # nothing was called: the engine fails at once
            for record in records:
                self.result.dials.append(record)
            event = ev.DialFinished(status="failed")
            self._dial = _Dial(None, now, event, action.answer_on_bridge)
            self._schedule(now, event)
            return
        nouns = [n for n, r in zip(action.targets, records, strict=True) if r not in unplaced]
        records = [r for r in records if r not in unplaced]
        outcomes = [self._outcome_for(r) for r in records]
        for record in records:
            if record.port:
                security = f", SRTP {record.srtp_suite}" if record.srtp_suite else ", RTP (no SRTP)"
                where = f"{(record.transport or '?').upper()} port {record.port}{security}"
                say(now, f"  → {record.kind} {record.target}: {where}")
            else:
                say(now, f"  → {record.kind} {record.target}")
        winner = outcomes.index("answered") if "answered" in outcomes else None
        ring = min(RING_TIME, action.timeout)
        first_sip = next((r for r in records if r.kind == "sip"), None)
        call_sid = new_sid("CA")
        sip_call_id = f"{secrets.token_hex(8)}@simulator.callxml.invalid" if first_sip else None
        answer_at: float | None = None
        if winner is not None:
            status = "completed"
            answer_at = now + ring
            talk = min(TALK_TIME, action.time_limit)
            finish_at, duration, code = answer_at + talk, round(talk), 200
        elif "no-answer" in outcomes:
            status, finish_at, duration, code = "no-answer", now + action.timeout, 0, 487
        elif "busy" in outcomes:
            status, finish_at, duration, code = "busy", now + ring, 0, 486
        else:
            status, finish_at, duration, code = "failed", now, 0, 503
        for i, record in enumerate(records):
            self.result.dials.append(
                DialRecord(
                    record.target,
                    record.kind,
                    record.transport,
                    record.port,
                    record.srtp_suite,
                    status,
                    answered=i == winner,
                    warnings=record.warnings,
                )
            )
        event = ev.DialFinished(
            status=status,
            call_sid=call_sid,
            duration=duration,
            sip_call_id=sip_call_id,
            sip_response_code=code if first_sip else None,
            **self._dial_recording(action, duration if winner is not None else 0),
        )
        self._dial = _Dial(answer_at, finish_at, event, action.answer_on_bridge)
        for i, (noun, record) in enumerate(zip(nouns, records, strict=True)):
            final = "completed" if i == winner else _CHILD_STATUS.get(outcomes[i], "canceled")
            self._child_callbacks(noun, record, action.caller_id or "", final, i == winner)
        answerer = nouns[winner] if winner is not None else None
        if isinstance(answerer, v.Number | v.Sip) and answerer.url and winner is not None:
            self._whisper = (answerer, records[winner].target, action.caller_id or "")
        if isinstance(answerer, v.Number) and answerer.send_digits and winner is not None:
            say(now, f"  sends digits {answerer.send_digits} to {records[winner].target}")
        if answer_at is not None:
            say(now, f"  far end answers after {ring:g} s and talks {duration} s")
            if action.answer_on_bridge and not self._session.answered:
                self._schedule(answer_at, ev.Answered())
        self._schedule(finish_at, event)

    def _child_callbacks(
        self, noun: v.DialNoun, record: DialRecord, from_: str, final: str, answered: bool
    ) -> None:
        """A noun's ``statusCallback``: the child call's callbacks, for the events asked for,
        sent (like the engine's) once the dial has started."""
        if not isinstance(noun, v.Number | v.Sip) or noun.status_callback is None:
            return
        call = self._session.call
        child = new_sid("CA")
        statuses = ["initiated", "ringing"] + (["in-progress"] if answered else []) + [final]
        events = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}
        for sequence, status in enumerate(
            s for s in statuses if events.get(s, "completed") in noun.status_callback_event
        ):
            params = (
                ("AccountSid", call.account_sid),
                ("ApiVersion", call.api_version),
                ("CallSid", child),
                ("CallStatus", status),
                ("CallbackSource", "call-progress-events"),
                ("Direction", "outbound-dial"),
                ("From", from_),
                ("ParentCallSid", call.call_sid),
                ("SequenceNumber", str(sequence)),
                ("To", record.target),
            )
            url = resolve_url(self._session.current_url, noun.status_callback)
            request = WebhookRequest(url, noun.status_callback_method, params)
            self._queued.append(act.Callback(request))

    async def _run_whisper(self, noun: v.Number | v.Sip, target: str, from_: str) -> None:
        """A noun's ``url``: its document runs on the answering far end (a nested simulated
        call, ``ParentCallSid`` set) before the bridge; a ``<Hangup>`` there (anything but
        running to the end) ends the dial ``no-answer``, as in the engine. It takes no
        simulated time of the caller's."""
        self._whisper = None
        assert noun.url is not None
        call = self._session.call
        info = CallInfo(
            call_sid=new_sid("CA"),
            account_sid=call.account_sid,
            from_=from_,
            to=target,
            direction="outbound-dial",
            extra=(("ParentCallSid", call.call_sid),),
        )
        session = CallSession(
            url=noun.url,
            method=noun.method,
            call=info,
            answered=True,
            whisper=True,
            limits=self._session.limits,
        )
        nested = SimulatedCall(session, self._fetcher, trunk_uri_template=self._trunk)
        whispered = await nested.run()
        for line in whispered.transcript:
            self._transcript.add(self._now, "  whisper: " + line.split("] ", 1)[-1])
        self.result.requests += whispered.requests
        dial = self._dial
        if session.returned or dial is None:
            return
        self._queue = [q for q in self._queue if not isinstance(q[2], ev.Answered)]
        heapq.heapify(self._queue)
        old = dial.event
        dial.answer_at = None
        dial.event = ev.DialFinished(
            "no-answer", old.call_sid, 0, old.sip_call_id, old.sip_response_code
        )
        self._schedule(self._now, dial.event)

    def _dial_recording(self, action: act.StartDial | None, seconds: int) -> dict[str, Any]:
        """``<Dial record>``: the bridged time as a recording (mono, or dual for ``-dual``)."""
        if action is None or not action.recording_sid or seconds <= 0:
            return {}
        url = f"https://simulator.callxml.invalid/Recordings/{action.recording_sid}"
        channels = 2 if action.record.endswith("-dual") else 1
        return {"recording_url": url, "recording_duration": seconds, "recording_channels": channels}

    def _stop_dial(self) -> None:
        dial = self._dial
        if dial is None:
            return
        bridged = dial.answer_at is not None and self._now >= dial.answer_at
        duration = round(self._now - dial.answer_at) if bridged and dial.answer_at else 0
        status = "completed" if bridged else "canceled"
        code = dial.event.sip_response_code
        event = ev.DialFinished(
            status,
            dial.event.call_sid,
            duration,
            dial.event.sip_call_id,
            (200 if bridged else 487) if code is not None else None,
            **self._dial_recording(self._dial_action, duration),
        )
        dial.event = event
        self._schedule(self._now, event)
