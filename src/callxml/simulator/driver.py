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
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from callxml.simulator.queues import SimulatedQueues, Waiter
from callxml.simulator.result import DialRecord, RecordingRecord, RequestRecord, SimulationResult
from callxml.simulator.rooms import SimulatedRooms
from callxml.simulator.streams import MAX_CONNECT_SECONDS, SimulatedStreams, StreamRecord
from callxml.simulator.transcript import Transcript
from callxml.sip.target import Target, client_headers
from callxml.webhooks.base import Fetcher, WebhookRequest, fetch_outcome, resolve_url
from callxml.webhooks.streams import status_callback_params

__all__ = ["DIAL_OUTCOMES", "SimulatedCall", "estimate_speech"]

log = logging.getLogger(__name__)

#: Outcomes a scripted far end may have (``--dial-outcome URI=...``): ``machine`` answers like
#: ``answered``, but with an answering machine (what a noun's ``machineDetection`` reports).
DIAL_OUTCOMES = ("answered", "machine", "busy", "no-answer", "failed")
#: How long the scripted detector takes: a person's hello and the silence after it; a
#: machine's greeting past the speech threshold (then to its beep, for ``DetectMessageEnd``).
HUMAN_DETECTION_MS = 1900
MACHINE_DETECTION_MS = 3500
MESSAGE_END_MS = 9000

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
    room: str | None = None  # a <Dial><Conference>: the room the caller is in
    peer: Waiter | None = None  # a <Dial><Queue>: the dequeued caller
    queue: str | None = None  # a <Dial><Queue>: the queue's name


@dataclass(eq=False)
class _Internal:
    """Something the simulator itself does at a simulated time (a queue's wait round ends,
    a queued caller gives up...): not an interpreter event."""

    run: Callable[[], Awaitable[list[act.Action]]]


@dataclass(eq=False)
class _Queued:
    """This call's place in a virtual queue."""

    action: act.Enqueue
    sid: str
    waiter: Waiter
    state: str = "waiting"  # waiting | bridged | out
    round: int = 0
    agent_end: Callable[[float], None] | None = None
    taken_at: float | None = None


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
        auth_token: str = "callxml-simulator",
        rooms: SimulatedRooms | None = None,
        queues: SimulatedQueues | None = None,
        room_seconds: float = TALK_TIME,
        peers: dict[str, SimulatedCall] | None = None,
        start_at: float = 0.0,
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

        self._now = start_at  # a call that starts later on a clock shared with others
        self._queue: list[tuple[float, int, ev.Event | _Internal]] = []
        self._seq = itertools.count()
        self._playing: dict[int, float] = {}  # playback id -> when it ends
        self._pause_until = 0.0
        self._gather: act.CollectDigits | None = None  # a <Gather> waiting for the caller's keys
        self._recording: tuple[float, act.StartRecording] | None = None
        self._dial: _Dial | None = None
        self._failed = False  # the driver itself failed (see run)
        self._steps = 0
        self._queued: list[act.Action] = []  # status callbacks to send at the next step
        self._dial_action: act.StartDial | None = None
        self._whisper: tuple[v.Number | v.Sip, str, str] | None = None  # to run on the callee
        self._auth_token = auth_token
        self._streams = SimulatedStreams(
            account_sid=session.call.account_sid,
            call_sid=session.call.call_sid,
            auth_token=auth_token,
            say=lambda text: self._transcript.add(self._now, text),
        )
        self._stream_actions: dict[str, act.StartStream] = {}
        self.result.streams = self._streams.records
        self._rooms = rooms if rooms is not None else SimulatedRooms(session.call.account_sid)
        self._room_seconds = room_seconds
        self.result.rooms = self._rooms.records
        self._queues = queues if queues is not None else SimulatedQueues()
        self.result.queues = self._queues.records
        self._queued_in: _Queued | None = None
        self._dequeue_action: act.Dequeue | None = None
        #: The other calls of the simulation by CallSid (queues bridge across calls).
        self._peers: dict[str, SimulatedCall] = peers if peers is not None else {}
        self._peers[session.call.call_sid] = self

    # ----------------------------------------------------------------------------- the loop

    async def run(self) -> SimulationResult:
        """Run the call to its end. A failure inside the simulator or the interpreter (a bug)
        does not escape: the call ends ``failed`` with the error, as the engine's driver ends a
        real call, and the traceback is logged."""
        try:
            try:
                await self._run()
            finally:
                for record in await self._streams.close():
                    await self._stream_callback(record, "stream-stopped")
        except Exception as exc:
            log.error("simulated call: the driver failed", exc_info=exc)
            self.result.error = f"internal error: {type(exc).__name__}: {exc}"
            self._transcript.add(self._now, f"error: {self.result.error}")
            self._failed = True
        return self._finish()

    async def _run(self) -> None:
        await self.begin()
        while await self.step():
            pass

    async def begin(self) -> None:
        """Start the call (for a driver running several calls on one clock)."""
        if self._hangup_after is not None:
            self._schedule(self._hangup_after, ev.CallerHungUp())
        await self._carry_out(self._session.start(self._now))
        self._steps = 0

    def next_time(self) -> float | None:
        """When this call next has something to do (None: over, or nothing scheduled)."""
        if self._queued:  # status callbacks to send, even after the call ended
            return self._now
        if self._session.finished:
            return None
        timer = self._session.next_timer()
        queued = self._queue[0][0] if self._queue else None
        times = [t for t in (timer, queued) if t is not None]
        if self._queued or self._whisper is not None:
            times.append(self._now)
        return min(times, default=None)

    async def step(self) -> bool:
        """Do the next thing; False once the call is over (or the simulation broke)."""
        session = self._session
        if self._queued:  # status callbacks the far ends or the rooms caused
            callbacks, self._queued = self._queued, []
            await self._carry_out(callbacks)
            return not session.finished or bool(self._queued)
        if session.finished:
            return False
        self._caller_acts()
        self._steps += 1
        timer = session.next_timer()
        queued = self._queue[0][0] if self._queue else None
        if timer is None and queued is None:
            self._broken("the call is stuck: nothing is scheduled (driver bug)")
            return False
        due = [t for t in (timer, queued) if t is not None]
        if self._steps > MAX_STEPS or (due and min(due) > MAX_DURATION):
            self._broken(f"the simulation exceeded {MAX_STEPS} steps or {MAX_DURATION:.0f} s")
            return False
        if self._whisper is not None:
            await self._run_whisper(*self._whisper)
            return not session.finished
        if queued is not None and (timer is None or queued <= timer):
            at, _, event = heapq.heappop(self._queue)
            self._now = max(self._now, at)
            if isinstance(event, _Internal):
                actions = await event.run()
            else:
                actions = self._deliver(event)
        else:
            assert timer is not None
            self._now = max(self._now, timer)
            actions = session.handle_timer(self._now)
        await self._carry_out(actions)
        return not session.finished

    async def guarded(self, work: Awaitable[object]) -> bool:
        """Run a piece of the call (:meth:`begin`, :meth:`step`) as :meth:`run` runs the whole:
        a failure inside (a bug) ends the call ``failed`` with the error instead of escaping.
        False once the call is over."""
        try:
            outcome = await work
        except Exception as exc:
            log.error("simulated call: the driver failed", exc_info=exc)
            self.result.error = f"internal error: {type(exc).__name__}: {exc}"
            self._transcript.add(self._now, f"error: {self.result.error}")
            self._failed = True
            return False
        return outcome is not False and not self._session.finished

    async def close(self) -> SimulationResult:
        """End what is still open (streams), send what is still queued, give the result."""
        while self._queued:
            callbacks, self._queued = self._queued, []
            await self._carry_out(callbacks)
        for record in await self._streams.close():
            await self._stream_callback(record, "stream-stopped")
        return self._finish()

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

    def _schedule(self, at: float, event: ev.Event | _Internal) -> None:
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
                if self._dial.room is not None:
                    self._left_room(self._dial.room, event)
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
            case act.JoinConference():
                await self._join_conference(action)
            case act.Enqueue():
                await self._enqueue(action)
            case act.LeaveQueue():
                self._leave_queue("hangup")
            case act.Dequeue():
                await self._dequeue(action)
            case act.StartStream():
                return await self._start_stream(action)
            case act.StopStream(name=name):
                for record in await self._streams.stop(name):
                    await self._stream_callback(record, "stream-stopped")
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

    # -------------------------------------------------------------------------- conferences

    async def _join_conference(self, action: act.JoinConference) -> None:
        """The caller joins a virtual room (shared with the other calls of the simulation)
        and stays ``room_seconds`` (or until the room ends, ``*``, ``timeLimit``, hang-up)."""
        noun, now, say = action.conference, self._now, self._transcript.add
        call_sid = self._session.call.call_sid
        joined, started, requests = self._rooms.join(call_sid, noun, now, self._kicked)
        self._queued += [act.Callback(r) for r in requests]
        if not joined:
            self._log("warning", f"Conference {noun.name}: full ({noun.max_participants})")
            event = ev.DialFinished("failed")
            self._dial = _Dial(None, now, event, False)
            self._schedule(now, event)
            return
        self.result.dials.append(
            DialRecord(noun.name, "conference", None, None, None, "completed", True)
        )
        stay = min(self._room_seconds, action.time_limit)
        say(now, f"Conference {noun.name}: joined, stays up to {stay:g} s")
        if not started:
            say(now, "  waits for a participant who starts the conference")
            await self._hear_wait(noun)
        event = ev.DialFinished("completed", duration=round(stay))
        self._dial = _Dial(now, now + stay, event, False, room=noun.name)
        self._schedule(now + stay, event)

    async def _hear_wait(self, noun: v.Conference) -> None:
        """What a waiting participant hears: the ``waitUrl`` document, fetched for real."""
        say = self._transcript.add
        if noun.wait_url is None:
            say(self._now, "  hears the hold tone")
            return
        if noun.wait_url == "":
            say(self._now, "  waits in silence")
            return
        params = (
            *self._session.params(),
            ("ConferenceSid", self._rooms.sid(noun.name)),
            ("FriendlyName", noun.name),
        )
        request = WebhookRequest(noun.wait_url, noun.wait_method, params)
        self._transcript.request(self._now, request)
        outcome = await fetch_outcome(self._fetcher, request)
        if isinstance(outcome, WebhookError):
            self.result.requests.append(RequestRecord(request, None, str(outcome)))
            self._log("warning", f"Conference waitUrl {noun.wait_url}: {outcome}")
            return
        self.result.requests.append(RequestRecord(request, outcome))
        self._transcript.response(self._now, outcome)
        if outcome.content_type.startswith("audio/"):
            say(self._now, f"  hears {noun.wait_url} (audio)")
            return
        from callxml.markup.parser import parse_document  # lazily: lxml and the schema

        try:
            verbs = parse_document(outcome.body).response.verbs
        except CallXmlError as exc:
            self._log("warning", f"Conference waitUrl {noun.wait_url}: {exc}")
            return
        for verb in verbs:
            match verb:
                case v.Say(text=text):
                    self.result.said.append(text)
                    say(self._now, f'  hears Say: "{text}" (while waiting)')
                case v.Play(url=str(url)):
                    self.result.played.append(url)
                    say(self._now, f"  hears Play: {url} (while waiting)")

    def _kicked(self, at: float) -> None:
        """The room ended with this caller in it: its ``<Dial>`` ends now."""
        dial = self._dial
        if dial is None or dial.room is None:
            return
        duration = round(max(0.0, at - (at if dial.answer_at is None else dial.answer_at)))
        dial.event = ev.DialFinished("completed", duration=duration)
        dial.room = None  # out already: nothing to leave
        self._transcript.add(at, "  the conference ended")
        self._schedule(at, dial.event)

    def _left_room(self, name: str, event: ev.DialFinished) -> None:
        call_sid = self._session.call.call_sid
        requests = self._rooms.leave(call_sid, name, self._now, "Participant left")
        self._queued += [act.Callback(r) for r in requests]

    # ------------------------------------------------------------------------------- queues

    async def _enqueue(self, action: act.Enqueue) -> None:
        """The caller waits in a virtual queue: its wait document runs round after round
        until an agent takes it, it leaves, or it gives up after ``room_seconds``."""
        now, say = self._now, self._transcript.add
        waiter = Waiter(self._session.call.call_sid, now, self._taken)
        state = _Queued(action, "", waiter)
        self._queued_in = state
        state.sid, admitted = self._queues.enqueue(action.name, action.max_queue_size, waiter)
        if not admitted:
            state.state = "out"
            self._log("warning", f"Enqueue: queue {action.name} is full")
            self._schedule(now, ev.QueueLeft("queue-full", state.sid, 0))
            return
        if state.state != "waiting":
            return  # an agent was waiting: taken at once
        say(now, f"Enqueue: waits in {action.name}")

        async def give_up() -> list[act.Action]:
            if state.state == "waiting":
                self._transcript.add(self._now, "caller gives up waiting and hangs up")
                self._schedule(self._now, ev.CallerHungUp())
            return []

        self._schedule(now + self._room_seconds, _Internal(give_up))
        await self._wait_round(state)

    async def _wait_round(self, state: _Queued) -> None:
        """One round of waiting; what it leads to happens when the round is over."""
        state.round += 1
        number, action, say = state.round, state.action, self._transcript.add
        if action.wait_url is None:
            say(self._now, "  hears the hold tone")
            seconds, outcome = 6.0, "again"
        else:
            params = self._queues.params(action.name, state.waiter, self._now)
            call = self._session.call
            info = CallInfo(
                call_sid=call.call_sid,
                account_sid=call.account_sid,
                from_=call.from_,
                to=call.to,
                direction=call.direction,
                extra=(*call.extra, *params),
            )
            session = CallSession(
                url=action.wait_url,
                method=action.wait_url_method,
                call=info,
                answered=True,
                waiting=True,
                limits=self._session.limits,
            )
            nested = SimulatedCall(
                session, self._fetcher, digits=self._script, trunk_uri_template=self._trunk
            )
            waited = await nested.run()
            for line in waited.transcript[:-1]:
                say(self._now, "  wait: " + line.split("] ", 1)[-1])
            self.result.requests += waited.requests
            self.result.said += waited.said
            self.result.played += waited.played
            seconds = max(1.0, waited.duration)
            if session.left:
                outcome = "leave"
            elif session.error is not None:
                outcome = "error"
            elif not session.returned:
                outcome = "hangup"
            else:
                outcome = "again"

        async def over() -> list[act.Action]:
            if state.state != "waiting" or state.round != number:
                return []  # taken, or left, meanwhile
            if outcome == "again":
                await self._wait_round(state)
            elif outcome == "hangup":  # the wait document hung up
                self._schedule(self._now, ev.CallerHungUp())
            else:
                self._leave_queue(outcome)
            return []

        self._schedule(self._now + seconds, _Internal(over))

    def _leave_queue(self, result: str) -> None:
        state = self._queued_in
        if state is None or state.state == "out":
            return
        waited = round(self._now - state.waiter.enqueued)
        if state.state == "bridged":
            waited = round(
                (state.taken_at or self._now) - state.waiter.enqueued
            )  # hung up while bridged: the agent's dial ends too
            state.state = "out"
            if state.agent_end is not None:
                state.agent_end(self._now)
            self._schedule(self._now, ev.QueueLeft("bridged", state.sid, waited))
            return
        state.state = "out"
        self._queues.leave(state.action.name, state.waiter, self._now, result)
        self._schedule(self._now, ev.QueueLeft(result, state.sid, waited))

    def _taken(self, at: float, agent_sid: str) -> None:
        """An agent took this caller out of its queue at ``at``."""
        state = self._queued_in
        if state is None:
            return
        state.state = "bridged"
        state.taken_at = at
        self._transcript.add(at, f"dequeued by {agent_sid}: bridged")

    def _bridge_over(self, at: float) -> None:
        """The agent's side of the bridge ended at ``at``: the <Enqueue> action follows."""
        state = self._queued_in
        if state is None or state.state != "bridged":
            return
        state.state = "out"
        waited = round((state.taken_at or at) - state.waiter.enqueued)
        self._transcript.add(at, "the agent left: bridge over")
        self._schedule(at, ev.QueueLeft("bridged", state.sid, max(0, waited)))

    async def _dequeue(self, action: act.Dequeue) -> None:
        """``<Dial><Queue>``: take the caller who waited longest in a virtual queue."""
        name, now = action.queue.name, self._now
        me = self._session.call.call_sid
        pending = ev.DialFinished("no-answer")
        self._dial = _Dial(None, now + action.timeout, pending, False, queue=name)
        self._dequeue_action = action
        taken = self._queues.dequeue(name, me, now, self._got)
        outcome = "failed" if taken is None else "completed"
        self.result.dials.append(DialRecord(name, "queue", None, None, None, outcome, bool(taken)))
        if taken is None:
            self._log("warning", f"Dial: there is no queue named {name}")
            self._dial.event = ev.DialFinished("failed")
            self._schedule(now, self._dial.event)
            return
        if taken:
            return
        self._transcript.add(now, f"Dial: waits up to {action.timeout:g} s for a caller in {name}")

        async def no_one() -> list[act.Action]:
            dial = self._dial
            if dial is not None and dial.event is pending:
                self._queues.give_up(name, me)
                self._schedule(self._now, pending)
            return []

        self._schedule(now + action.timeout, _Internal(no_one))

    def _got(self, at: float, waiter: Waiter) -> None:
        """The caller ``waiter`` is ours from ``at``: bridged for ``room_seconds``."""
        action = self._dequeue_action
        dial = self._dial
        if dial is None or action is None:
            return
        talk = min(self._room_seconds, action.time_limit)
        self._transcript.add(at, f"Dial: bridged to {waiter.call_sid}, talks {talk:g} s")
        if action.queue.url:
            url, method = action.queue.url, action.queue.method

            async def announce() -> list[act.Action]:
                await self._run_queue_url(url, method, waiter, at)
                return []

            self._schedule(at, _Internal(announce))
        dial.answer_at, dial.peer = at, waiter
        dial.event = ev.DialFinished("completed", call_sid=waiter.call_sid, duration=round(talk))
        self._schedule(at + talk, dial.event)
        waiter_call = self._peers.get(waiter.call_sid)
        if waiter_call is not None:
            waiter_call.bridged_with(self, at + talk)

    async def _run_queue_url(self, url: str, method: str, waiter: Waiter, at: float) -> None:
        """The queue's ``url`` runs on the dequeued caller (a nested simulated call with
        QueueSid, QueueTime, DequeingCallSid), in no simulated time of the agent's."""
        peer = self._peers.get(waiter.call_sid)
        if peer is None:
            return
        call = peer._session.call
        state = peer._queued_in
        params = (
            ("QueueSid", state.sid if state is not None else ""),
            ("QueueTime", str(round(at - waiter.enqueued))),
            ("DequeingCallSid", self._session.call.call_sid),
        )
        info = CallInfo(
            call_sid=call.call_sid,
            account_sid=call.account_sid,
            from_=call.from_,
            to=call.to,
            direction=call.direction,
            extra=(*call.extra, *params),
        )
        session = CallSession(
            url=url,
            method=method,
            call=info,
            answered=True,
            whisper=True,
            limits=self._session.limits,
        )
        nested = SimulatedCall(session, self._fetcher, trunk_uri_template=self._trunk)
        ran = await nested.run()
        for line in ran.transcript[:-1]:
            self._transcript.add(
                self._now, f"  {waiter.call_sid} hears: " + line.split("] ", 1)[-1]
            )
        self.result.requests += ran.requests
        peer.result.said += ran.said

    def bridged_with(self, agent: SimulatedCall, until: float) -> None:
        """This queued caller is bridged to ``agent`` until ``until`` (its side's end)."""
        state = self._queued_in
        if state is not None:
            state.agent_end = agent._end_queue_dial

            async def over() -> list[act.Action]:
                self._bridge_over(until)
                return []

            self._schedule(until, _Internal(over))

    def _end_queue_dial(self, at: float) -> None:
        """The bridge ends early (a side hung up): the agent's <Dial> ends at ``at``."""
        dial = self._dial
        if dial is None:
            return
        if dial.peer is None:  # still waiting for a caller
            self._queues.give_up(dial.queue or "", self._session.call.call_sid)
            dial.event = ev.DialFinished("canceled")
            self._schedule(at, dial.event)
            return
        peer_call = self._peers.get(dial.peer.call_sid)
        duration = round(max(0.0, at - (at if dial.answer_at is None else dial.answer_at)))
        dial.event = ev.DialFinished("completed", call_sid=dial.peer.call_sid, duration=duration)
        dial.peer = None
        self._schedule(at, dial.event)
        if peer_call is not None:
            peer_call._bridge_over(at)

    async def _start_stream(self, action: act.StartStream) -> ev.Event | None:
        """Open the stream for real; a ``<Connect>`` one is held until the app closes it."""
        self._stream_actions[action.sid] = action
        record = await self._streams.start(action)
        if record.error:
            message = f"Stream {record.name} ({record.url}): {record.error}"
            self._log("error", message, record.code)
            await self._stream_callback(record, "stream-error")
            return ev.StreamEnded(action.sid, record.error) if action.bidirectional else None
        await self._stream_callback(record, "stream-started")
        if not action.bidirectional:
            return None
        keys = self._script.pop(0) if self._script else ""
        limit = MAX_CONNECT_SECONDS
        if self._hangup_after is not None:
            limit = min(limit, max(0.0, self._hangup_after - self._now))
        elapsed = await self._streams.converse(record, keys, limit)
        self._now += elapsed
        if record.error:
            self._log("error", f"Stream {record.name} ({record.url}): {record.error}", record.code)
        await self._stream_callback(record, "stream-error" if record.error else "stream-stopped")
        if self._hangup_after is not None and self._now >= self._hangup_after:
            return None  # the caller hangs up (queued): the <Connect> ends with the call
        return ev.StreamEnded(action.sid, record.error)

    async def _stream_callback(self, record: StreamRecord, event: str) -> None:
        """A ``<Stream statusCallback>``, sent like the engine sends it."""
        action = self._stream_actions.get(record.sid)
        if action is None or action.status_callback is None:
            return
        call = self._session.call
        params = status_callback_params(
            account_sid=call.account_sid,
            call_sid=call.call_sid,
            stream_sid=record.sid,
            name=record.name,
            event=event,
            error=record.error if event == "stream-error" else "",
            timestamp=f"{self._now:.3f}",
        )
        request = WebhookRequest(action.status_callback, action.status_callback_method, params)
        await self._carry_out([act.Callback(request)])

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
        answering = [i for i, outcome in enumerate(outcomes) if outcome in ("answered", "machine")]
        winner = answering[0] if answering else None
        ring = min(RING_TIME, action.timeout)
        first_sip = next((r for r in records if r.kind == "sip"), None)
        children = [new_sid("CA") for _ in records]  # each target's child call
        call_sid = children[winner] if winner is not None else new_sid("CA")
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
            self._child_callbacks(
                noun, record, children[i], action.caller_id or "", final, i == winner
            )
        answerer = nouns[winner] if winner is not None else None
        if isinstance(answerer, v.Number | v.Sip) and answerer.url and winner is not None:
            self._whisper = (answerer, records[winner].target, action.caller_id or "")
        if isinstance(answerer, v.Number) and answerer.send_digits and winner is not None:
            say(now, f"  sends digits {answerer.send_digits} to {records[winner].target}")
        if answer_at is not None:
            say(now, f"  far end answers after {ring:g} s and talks {duration} s")
            assert winner is not None
            self._machine_detection(
                nouns[winner], records[winner], children[winner], outcomes[winner]
            )
            if action.answer_on_bridge and not self._session.answered:
                self._schedule(answer_at, ev.Answered())
        self._schedule(finish_at, event)

    def _machine_detection(
        self, noun: v.DialNoun, record: DialRecord, child: str, outcome: str
    ) -> None:
        """A noun's ``machineDetection`` on the far end that answered: the scripted verdict
        (``machine`` outcome: a greeting, else a person), in the transcript and, like the
        engine's, posted to ``amdStatusCallback``."""
        if not isinstance(noun, v.MachineDetection) or noun.machine_detection is None:
            return
        if outcome != "machine":
            answered_by, took = "human", HUMAN_DETECTION_MS
        elif noun.machine_detection == "DetectMessageEnd":
            answered_by, took = "machine_end_beep", MESSAGE_END_MS
        else:
            answered_by, took = "machine_start", MACHINE_DETECTION_MS
        self._transcript.add(
            self._now, f"  machine detection on {record.target}: {answered_by} ({took} ms)"
        )
        if noun.amd_status_callback is None:
            return
        call = self._session.call
        params = (
            ("AccountSid", call.account_sid),
            ("CallSid", child),
            ("ParentCallSid", call.call_sid),
            ("AnsweredBy", answered_by),
            ("MachineDetectionDuration", str(took)),
        )
        url = resolve_url(self._session.current_url, noun.amd_status_callback)
        request = WebhookRequest(url, noun.amd_status_callback_method, params)
        self._queued.append(act.Callback(request))

    def _child_callbacks(
        self,
        noun: v.DialNoun,
        record: DialRecord,
        child: str,
        from_: str,
        final: str,
        answered: bool,
    ) -> None:
        """A noun's ``statusCallback``: the child call's (``child``) callbacks, for the events
        asked for, sent (like the engine's) once the dial has started."""
        if not isinstance(noun, v.Number | v.Sip) or noun.status_callback is None:
            return
        call = self._session.call
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
        if dial.room is not None:  # the caller leaves the room now
            duration = round(
                max(0.0, self._now - (self._now if dial.answer_at is None else dial.answer_at))
            )
            dial.event = ev.DialFinished("completed", duration=duration)
            self._schedule(self._now, dial.event)
            return
        if dial.queue is not None:
            self._end_queue_dial(self._now)
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
