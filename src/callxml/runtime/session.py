"""The driver of one real call: runs the interpreter's :class:`CallSession` against a SIP call leg.

This module owns carrying out the interpreter's actions with real I/O: webhook fetches, text to
speech and audio files played on the leg, RFC 4733 digits in and out, recordings, dials, answer,
reject and hang-up; and turning what happens on the leg back into events. One asyncio
:class:`~asyncio.TaskGroup` per call holds every task the call starts, and every task releases
what it owns in ``finally``, so nothing outlives the call and a hang-up never leaks a socket.

The driver reads the clock (``loop.time()``) and hands it to the sans-IO session as ``now``;
timing rules (``<Pause>``, ``<Gather>`` timeouts) stay in the interpreter. It talks to the rest of
the system through small seams, so tests plug in fakes and the engine plugs in SIP, the store and
status callbacks:

* :class:`~callxml.runtime.leg.Leg` — the surface of :class:`~callxml.runtime.leg.CallLeg` the
  driver uses;
* :class:`AudioSource` — PCM for ``<Say>`` text and ``<Play>`` URLs (:class:`callxml.audio.
  AudioCache`);
* :class:`CallLog` — the call record: events, status changes, recordings (the engine's store);
* :class:`DialRunner` — ``<Dial>`` (:mod:`callxml.runtime.dial`).

Live control from the REST API (:meth:`CallRunner.redirect`, :meth:`CallRunner.end`) replaces
the running session or ends the call from outside, the way ``<Redirect>`` does from inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from callxml.audio import beep
from callxml.errors import CallXmlError, MediaError, WebhookError
from callxml.interpreter import CallSession, new_sid
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.markup.verbs import Verb
from callxml.runtime.leg import Leg
from callxml.runtime.recorder import AudioTap, RecordingMeter, save_recording
from callxml.webhooks.base import Fetcher, WebhookRequest, WebhookResponse, fetch_outcome

__all__ = [
    "AudioSource",
    "CallLog",
    "CallRunner",
    "DialRunner",
    "RuntimeServices",
    "webhook_event",
]

log = logging.getLogger(__name__)

#: The longest body kept in a ``webhook`` event of the call log.
MAX_LOGGED_BODY = 16 * 1024
#: How long answering, rejecting or hanging up a leg may take before the driver moves on.
LEG_OPERATION_TIMEOUT = 35.0
#: Pause for each ``w`` in ``<Play digits>`` (Twilio: half a second).
DIGIT_WAIT = 0.5
#: The longest a status callback (``act.Callback``) may take; the call waits for it at its end.
CALLBACK_TIMEOUT = 10.0
#: Twilio's error code for an internal failure, in the notification of a call whose driver failed.
INTERNAL_ERROR = 20500


class AudioSource(Protocol):
    """8 kHz mono PCM16 for prompts; raises :class:`MediaError` when it cannot."""

    async def speech(self, text: str, *, language: str | None, voice: str | None) -> bytes: ...

    async def url(self, url: str) -> bytes: ...


class CallLog(Protocol):
    """The durable record of one call (the engine writes it to its store)."""

    async def event(self, kind: str, data: Mapping[str, Any]) -> None:
        """Add an event: ``webhook``, ``verb``, ``info``, ``warning``, ``error``, ``dial``...

        ``warning`` and ``error`` events with a ``code`` are the call's notifications (the REST
        API's ``Notifications.json``)."""

    async def status(self, status: str, **changes: Any) -> None:
        """The call's status changed (``in-progress``, ``completed``...), with other fields."""

    async def recording(self, sid: str, path: Path, duration: int) -> str:
        """A recording was saved; return its ``RecordingUrl``."""
        ...


class DialRunner(Protocol):
    """Runs one ``<Dial>`` for the caller's leg; see :mod:`callxml.runtime.dial`.

    ``answer_caller`` answers the caller's leg (for ``answerOnBridge``); ``stop`` is set when the
    dial must end now (the caller hung up, or the call was redirected).
    """

    async def __call__(
        self,
        action: act.StartDial,
        caller: Leg,
        *,
        answer_caller: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
        on_audio: Callable[[str, bytes], None] | None = None,
    ) -> ev.DialFinished: ...


@dataclass
class RuntimeServices:
    """What every call's driver shares: fetcher, audio, dialer, where recordings go."""

    fetcher: Fetcher
    audio: AudioSource
    dial: DialRunner | None = None
    recordings_dir: Path = Path("recordings")
    clock: Callable[[], float] | None = None  # default: the running loop's time()
    new_sid: Callable[[str], str] = field(default=new_sid)


def webhook_event(
    request: WebhookRequest,
    response: WebhookResponse | None,
    error: WebhookError | None,
    duration: float,
) -> dict[str, Any]:
    """The ``webhook`` event of the call log (the keys the REST API's Events.json reads)."""
    data: dict[str, Any] = {
        "method": request.method,
        "url": request.url,
        "parameters": dict(request.params),
        "duration_ms": round(duration * 1000),
        "status": None,
        "body": None,
        "content_type": None,
        "error": None,
    }
    if response is not None:
        body = response.body[:MAX_LOGGED_BODY].decode("utf-8", errors="replace")
        data.update(status=response.status, body=body, content_type=response.content_type)
        if response.url != request.url:
            data["final_url"] = response.url
    if error is not None:
        data.update(error=str(error), error_code=error.error_code)
    return data


def _verb_name(verb: Verb) -> str:
    name = getattr(verb, "name", None)  # markup.verbs.Unsupported keeps the element name
    return name if isinstance(name, str) else type(verb).__name__


class CallRunner:
    """Drives ``session`` on ``leg`` until the call is over. ``await run()`` once.

    ``inline_document`` answers the session's first fetch without a request (a REST call made
    with ``Twiml``). ``on_finished`` is awaited with the final status after the leg is hung up.
    """

    def __init__(
        self,
        session: CallSession,
        leg: Leg,
        services: RuntimeServices,
        call_log: CallLog,
        *,
        inline_document: bytes | None = None,
        call_recorder: AudioTap | None = None,
    ) -> None:
        self.session = session
        self.leg = leg
        self.services = services
        self.call_log = call_log
        self._inline = inline_document
        #: What hears the whole call (REST ``Record=true``'s recording, ``AsyncAmd``): ``a``
        #: is the far end's audio, ``b`` what callxml plays to it and, during a ``<Dial>``, the
        #: bridged party.
        self.call_recorder = call_recorder
        self._events: asyncio.Queue[ev.Event | _Control] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._playing: dict[int, asyncio.Task[None]] = {}
        self._recorder: RecordingMeter | None = None
        self._recorder_wakeup = asyncio.Event()
        self._dial_stop: asyncio.Event | None = None
        self._we_ended = False
        self._caller_gone = False
        self._answered_at: float | None = None
        self._final_status: str | None = None
        self._end_request: str | None = None
        self._generation = 0  # bumped by redirect(): results of older work are dropped
        self._crash: str | None = None  # why the driver failed, if it did
        self.done = asyncio.Event()

    # ---------------------------------------------------------------------------- public

    @property
    def status(self) -> str:
        return self._final_status or self.session.status

    def now(self) -> float:
        clock = self.services.clock
        return clock() if clock is not None else asyncio.get_running_loop().time()

    async def run(self) -> str:
        """Run the call to its end; returns the final ``CallStatus``."""
        if self.leg.answered and not self.session.answered:
            self.session.receive(ev.Answered(), self.now())
        if self.session.answered:
            self._answered_at = self.now()
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._spawn(self._watch_leg(), "watch-leg")
                self._start_consumer()
                await self._carry_out(self.session.start(self.now()))
                await self._loop()
                for task in list(self._tasks):
                    if task.get_name() != "callback":  # status callbacks are let finish
                        task.cancel()
        except Exception as exc:  # a bug in the driver or the interpreter: end the call cleanly
            await self._crashed(exc)
        finally:
            self._group = None
            await self._finish()
            self.done.set()
        return self.status

    async def _crashed(self, exc: BaseException) -> None:
        """The call's driver failed unexpectedly: the call must still end (``_finish`` hangs
        up: BYE, or a final response if unanswered; a ringing ``<Dial>`` was cancelled with the
        task group), its record must get the final status ``failed`` and a notification saying
        why, and the traceback goes to the log for whoever fixes the bug."""
        exc = _innermost(exc)
        log.error(
            "call %s: the call's driver failed; ending the call",
            self.session.call.call_sid,
            exc_info=exc,
        )
        self._final_status = "failed"
        self._crash = f"internal error: {type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            await self.call_log.event("error", {"message": self._crash, "code": INTERNAL_ERROR})

    def redirect(
        self, url: str | None, method: str = "POST", *, twiml: bytes | None = None
    ) -> None:
        """Stop what the call is doing and run the document at ``url`` (or ``twiml``) instead.

        Raises :class:`CallXmlError` if the call is already over.
        """
        if self.session.finished or self._caller_gone or self.done.is_set():
            raise CallXmlError("the call is not in progress")
        self._events.put_nowait(_Control(redirect=(url, method, twiml)))

    def end(self, status: str = "completed") -> None:
        """End the call from outside (REST ``Status=completed|canceled``)."""
        if not self.session.finished:
            self._events.put_nowait(_Control(end=status))

    # ---------------------------------------------------------------------------- the loop

    async def _loop(self) -> None:
        while not self.session.finished:
            if self._end_request is not None:
                await self._end_from_outside(self._end_request)
                return
            timer = self.session.next_timer()
            now = self.now()
            timeout = None if timer is None else max(0.0, timer - now)
            if timeout is None and not self._tasks_pending() and self._events.empty():
                await self._stuck()
                return
            try:
                event = await asyncio.wait_for(self._events.get(), timeout)
            except TimeoutError:
                await self._carry_out(self.session.handle_timer(self.now()))
                continue
            if isinstance(event, _Control):
                await self._control(event)
                continue
            await self._carry_out(self._deliver(event))

    async def _control(self, control: _Control) -> None:
        if control.end is not None:
            self._end_request = control.end
        elif control.redirect is not None and not self._caller_gone:
            url, method, twiml = control.redirect
            self._generation += 1
            self._stop_media()
            old = self.session
            self.session = CallSession(
                url=url or old.current_url,
                method=method,
                call=old.call,
                answered=old.answered,
                limits=old.limits,
            )
            self._inline = twiml
            where = url or "inline Twiml"
            await self.call_log.event("info", {"message": f"call redirected to {where}"})
            await self._carry_out(self.session.start(self.now()))

    def _tasks_pending(self) -> bool:
        return any(
            not t.done() for t in self._tasks if t.get_name() not in ("watch-leg", "callback")
        )

    async def _stuck(self) -> None:
        await self.call_log.event("error", {"message": "the call is stuck (driver bug); ended"})
        self._final_status = "completed" if self.session.answered else "failed"
        await self._hang_up("stuck")

    async def _end_from_outside(self, status: str) -> None:
        self._stop_media()
        if status == "failed":  # a task of the call failed (see _crashed)
            self._final_status = "failed"
            await self._hang_up("internal error")
        elif self.session.answered:
            self._final_status = "completed"
            await self._hang_up("ended by the REST API")
        else:
            self._final_status = "canceled" if status == "canceled" else "completed"
            await self._hang_up("canceled by the REST API")

    def _deliver(self, event: ev.Event) -> list[act.Action]:
        now = self.now()
        match event:
            case ev.PlaybackFinished(id=id) if id not in self._playing:
                return []  # stopped (barge-in) or from before a redirect
            case ev.PlaybackFinished(id=id):
                del self._playing[id]
            case ev.Answered():
                if self._answered_at is None:
                    self._answered_at = now
                self._spawn(self.call_log.status("in-progress", start_time=_wall()))
            case ev.CallerHungUp():
                self._caller_gone = True
                if self._recorder is not None:
                    self._recorder.hang_up()
                    self._recorder_wakeup.set()
        return self.session.receive(event, now)

    # ---------------------------------------------------------------------------- actions

    async def _carry_out(self, actions: list[act.Action]) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            event = await self._do(action)
            if event is not None:
                queue += self._deliver(event)

    async def _do(self, action: act.Action) -> ev.Event | None:
        generation = self._generation
        match action:
            case act.Fetch(request=request):
                if self._inline is not None:
                    body, self._inline = self._inline, None
                    await self.call_log.event("info", {"message": "running inline Twiml"})
                    return ev.DocumentFetched(
                        WebhookResponse(request, 200, body, "text/xml", request.url, 0.0)
                    )
                self._spawn(self._fetch(request, generation))
            case act.VerbStarted(verb=verb, url=url):
                await self.call_log.event("verb", {"verb": _verb_name(verb), "url": url})
            case act.Answer():
                self._spawn(self._answer(generation))
            case act.Speak() | act.Play() | act.SendDigits():
                task = self._spawn(self._playback(action, generation))
                self._playing[action.id] = task
            case act.StopPlayback(id=id):
                task_or_none = self._playing.pop(id, None)
                if task_or_none is not None:
                    task_or_none.cancel()
                    self.leg.stop_playing()
            case act.Pause() | act.CollectDigits() | act.DigitsCollected():
                pass  # the session times these; digits always flow in through the consumer
            case act.StartRecording():
                self._spawn(self._record(action, generation))
            case act.StopRecording():
                if self._recorder is not None:
                    self._recorder.hang_up()
                    self._recorder_wakeup.set()
            case act.StartDial():
                self._spawn(self._dial(action, generation))
            case act.StopDial():
                if self._dial_stop is not None:
                    self._dial_stop.set()
            case act.Reject(status=status, reason=reason):
                self._final_status = self.session.status
                await self._leg_call(self.leg.reject(status, reason), "reject")
                self._we_ended = True
            case act.Hangup(reason=reason):
                await self._hang_up(reason)
            case act.Callback(request=request):
                self._spawn(self._callback(request), "callback")
            case act.Log(level=level, message=message, code=code):
                data: dict[str, Any] = {"message": message}
                if code is not None:
                    data["code"] = code
                await self.call_log.event(level, data)
        return None

    # ---------------------------------------------------------------------------- tasks

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        if self._group is None:  # the call is over: never leave the coroutine un-awaited
            coro.close()
            raise CallXmlError("the call is not running")
        task = self._group.create_task(
            self._guard(coro), name=name or getattr(coro, "__name__", "call-task")
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, Any]) -> None:
        """A bug in one task is logged and must not take the call's other tasks down."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._crashed(exc)
            self._events.put_nowait(_Control(end="failed"))

    def _post(self, event: ev.Event, generation: int) -> None:
        if generation == self._generation:
            self._events.put_nowait(event)

    async def _watch_leg(self) -> None:
        await self.leg.ended.wait()
        if not self._we_ended:
            self._events.put_nowait(ev.CallerHungUp())

    async def _fetch(self, request: WebhookRequest, generation: int) -> None:
        started = self.now()
        outcome = await fetch_outcome(self.services.fetcher, request)
        elapsed = self.now() - started
        if isinstance(outcome, WebhookError):
            await self.call_log.event("webhook", webhook_event(request, None, outcome, elapsed))
            self._post(ev.FetchFailed(outcome), generation)
        else:
            await self.call_log.event("webhook", webhook_event(request, outcome, None, elapsed))
            self._post(ev.DocumentFetched(outcome), generation)

    async def _callback(self, request: WebhookRequest) -> None:
        """A status callback (signed by the fetcher): recorded as a ``callback`` event; a failure
        is a warning and changes nothing in the call."""
        started = self.now()
        try:
            outcome = await asyncio.wait_for(
                fetch_outcome(self.services.fetcher, request), CALLBACK_TIMEOUT
            )
        except TimeoutError:
            outcome = WebhookError("status callback timed out", error_code=11205, url=request.url)
        elapsed = self.now() - started
        if isinstance(outcome, WebhookError):
            data = webhook_event(request, None, outcome, elapsed)
            await self.call_log.event("callback", data)
            message = f"status callback to {request.url} failed: {outcome}"
            await self.call_log.event("warning", {"message": message})
        else:
            await self.call_log.event("callback", webhook_event(request, outcome, None, elapsed))

    async def _answer(self, generation: int) -> None:
        if not self.leg.answered:
            await self._leg_call(self.leg.answer(), "answer")
        if self.leg.answered:
            self._post(ev.Answered(), generation)
        elif not self.leg.ended.is_set():
            await self.call_log.event("error", {"message": "the call could not be answered"})
            self._events.put_nowait(_Control(end="completed"))

    async def _playback(self, action: act.Speak | act.Play | act.SendDigits, gen: int) -> None:
        try:
            match action:
                case act.Speak(text=text, language=language, voice=voice, loop=loop):
                    pcm = await self.services.audio.speech(text, language=language, voice=voice)
                    for _ in range(loop):
                        self._heard(pcm)
                        await self.leg.play(pcm)
                case act.Play(url=url, loop=loop):
                    pcm = await self.services.audio.url(url)
                    for _ in range(loop):
                        self._heard(pcm)
                        await self.leg.play(pcm)
                case act.SendDigits(digits=digits):
                    for chunk in re.split(r"([wW])", digits):
                        if chunk in ("w", "W"):
                            await asyncio.sleep(DIGIT_WAIT)
                        elif chunk:
                            await self.leg.send_digits(chunk)
        except MediaError as exc:
            what = type(action).__name__
            await self.call_log.event("warning", {"message": f"{what}: {exc}"})
        self._post(ev.PlaybackFinished(action.id), gen)

    async def _record(self, action: act.StartRecording, generation: int) -> None:
        if action.play_beep:
            with contextlib.suppress(MediaError):
                self._heard(beep())
                await self.leg.play(beep())
        meter = RecordingMeter(
            started=self.now(),
            timeout=action.timeout,
            max_length=action.max_length,
            finish_on_key=action.finish_on_key,
            trim=action.trim != "do-not-trim",
        )
        if self._caller_gone:
            meter.hang_up()
        self._recorder = meter
        try:
            while not meter.done:
                self._recorder_wakeup.clear()
                due = meter.next_timer()
                timeout = None if due is None else max(0.0, due - self.now())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._recorder_wakeup.wait(), timeout)
                meter.handle_timer(self.now())
        finally:
            self._recorder = None
        if generation != self._generation:
            return  # redirected away: the recording is dropped, as Twilio does
        result = meter.result()
        sid = action.sid or self.services.new_sid("RE")
        url = ""
        if result.duration > 0:
            path = await asyncio.to_thread(
                save_recording, self.services.recordings_dir, sid, result.pcm
            )
            url = await self.call_log.recording(sid, path, result.duration)
        self._post(ev.RecordingFinished(url, result.duration, result.digits, sid), generation)

    async def _dial(self, action: act.StartDial, generation: int) -> None:
        runner = self.services.dial
        if runner is None:
            await self.call_log.event("warning", {"message": "Dial: dialling is not configured"})
            self._post(ev.DialFinished("failed"), generation)
            return
        stop = self._dial_stop = asyncio.Event()
        if self._caller_gone:
            stop.set()

        async def answer_caller() -> None:
            await self._answer(generation)

        try:
            if self.call_recorder is not None:
                recorder = self.call_recorder

                def bridged(side: str, pcm: bytes) -> None:
                    recorder.audio(side, pcm, self.now())

                result = await runner(
                    action, self.leg, answer_caller=answer_caller, stop=stop, on_audio=bridged
                )
            else:
                result = await runner(action, self.leg, answer_caller=answer_caller, stop=stop)
        finally:
            self._dial_stop = None
            if not self.leg.ended.is_set():
                self._start_consumer()  # the bridge had the caller's audio and keys
        self._post(result, generation)

    def _stop_media(self) -> None:
        """Stop playback, recording and dialling (a redirect or an end from outside)."""
        for task in self._playing.values():
            task.cancel()
        if self._playing:
            self.leg.stop_playing()
        self._playing.clear()
        if self._recorder is not None:
            self._recorder.hang_up()
            self._recorder_wakeup.set()
        if self._dial_stop is not None:
            self._dial_stop.set()

    # ---------------------------------------------------------------------------- the leg

    def _start_consumer(self) -> None:
        self.leg.set_consumer(self._on_audio, self._on_digit)

    def _heard(self, pcm: bytes) -> None:
        """What callxml plays to the far end, for the whole call's recording."""
        if self.call_recorder is not None:
            self.call_recorder.audio("b", pcm, self.now())

    def _on_audio(self, pcm: bytes) -> None:
        if self.call_recorder is not None:
            self.call_recorder.audio("a", pcm, self.now())
        if self._recorder is not None:
            self._recorder.audio(pcm, self.now())
            if self._recorder.done:
                self._recorder_wakeup.set()

    def _on_digit(self, digit: str) -> None:
        if self._recorder is not None:
            self._recorder.digit(digit, self.now())
            if self._recorder.done:
                self._recorder_wakeup.set()
        self._events.put_nowait(ev.DigitReceived(digit))

    async def _leg_call(self, operation: Awaitable[None], what: str) -> None:
        try:
            await asyncio.wait_for(operation, LEG_OPERATION_TIMEOUT)
        except (CallXmlError, TimeoutError, OSError) as exc:
            await self.call_log.event("warning", {"message": f"{what} failed: {exc!r}"})

    async def _hang_up(self, reason: str) -> None:
        if self._we_ended or self.leg.ended.is_set():
            return
        self._we_ended = True
        await self._leg_call(self.leg.hangup(reason), "hang-up")

    async def _finish(self) -> None:
        """Release the leg and write the final status, whatever happened."""
        self.leg.set_consumer(None, None)
        returned = self.session.returned and self._crash is None  # a whisper: bridge next
        if not self.leg.ended.is_set() and not self._we_ended and not returned:
            await asyncio.shield(self._hang_up("call over"))
        status = self.status
        ended = self.now()
        duration = 0 if self._answered_at is None else max(0, round(ended - self._answered_at))
        changes: dict[str, Any] = {"end_time": _wall(), "duration": duration}
        if self._crash is not None:
            changes["error"] = self._crash
        elif self.session.error is not None:
            changes["error"] = str(self.session.error)
        try:
            await asyncio.shield(self.call_log.status(status, **changes))
        except Exception:
            log.exception("call %s: final status not recorded", self.session.call.call_sid)


@dataclass(frozen=True, slots=True)
class _Control:
    """A request from outside the call's loop: redirect to a document, or end the call."""

    redirect: tuple[str | None, str, bytes | None] | None = None
    end: str | None = None


def _innermost(exc: BaseException) -> BaseException:
    """The real error inside ``exc`` (a task group wraps errors in ExceptionGroups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _wall() -> float:
    """Unix time, for records (the loop clock drives the call itself)."""
    return time.time()
