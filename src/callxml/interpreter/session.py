"""The per-call interpreter: a sans-IO state machine that runs call-flow documents.

:class:`CallSession` owns the order of things in a call, following Twilio's rules: fetch the
document, run its verbs top to bottom, answer the call only when a verb needs media, follow
``action``/``<Redirect>`` to the next document (relative URLs resolve against the current
document's URL, RFC 3986 §5.2), fall back to the fallback URL on a failed fetch, and end the call.
It does no I/O and reads no clock: every input carries ``now`` (seconds, any monotonic origin),
outputs are :mod:`~callxml.interpreter.actions`, and :meth:`CallSession.next_timer` says when to
call :meth:`CallSession.handle_timer`. The simulator and the engine drive the same session.

The verbs themselves live in small task classes (:mod:`.media`, :mod:`.gather`, :mod:`.record`,
:mod:`.dial`, :mod:`.control`); this loop only starts them and follows their outcomes.

States::

    NEW --start--> FETCHING --document--> RUNNING --(verb needs media)--> ANSWERING --> RUNNING
                      ^                      |  \\--Navigate-------------------------> FETCHING
                      '----------------------'   \\--EndCall / end of document / error--> ENDED
    caller hangs up: a running task may make one last request (FINAL_FETCH) --> ENDED
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from callxml.errors import (
    CallXmlError,
    InterpreterError,
    LocalProtocolError,
    MarkupError,
    WebhookError,
)
from callxml.interpreter import actions as act
from callxml.interpreter.call import CallInfo, Limits, new_sid
from callxml.interpreter.control import HangupTask, RedirectTask, RejectTask, SkipTask
from callxml.interpreter.dial import DialTask
from callxml.interpreter.events import (
    Answered,
    CallerHungUp,
    DocumentFetched,
    Event,
    FetchFailed,
)
from callxml.interpreter.gather import GatherTask
from callxml.interpreter.media import PauseTask, PlaybackTask
from callxml.interpreter.queue import EnqueueTask, LeaveTask
from callxml.interpreter.record import RecordTask
from callxml.interpreter.stream import ConnectTask, StartTask, StopTask
from callxml.interpreter.tasks import (
    Context,
    Continue,
    EndCall,
    Navigate,
    Outcome,
    Release,
    Step,
    Task,
)
from callxml.markup import verbs as v
from callxml.markup.capabilities import capability, message
from callxml.webhooks.base import WebhookRequest, WebhookResponse, resolve_url

__all__ = ["DOCUMENT_PARSE_FAILURE", "CallSession", "State", "make_task"]

#: Twilio's error code for a document that cannot be parsed or run.
DOCUMENT_PARSE_FAILURE = 12100

#: The verbs a queue's wait document may use (Twilio's list for ``<Enqueue waitUrl>``).
WAIT_VERBS = (v.Play, v.Say, v.Pause, v.Gather, v.Redirect, v.Leave, v.Hangup)

Parser = Callable[[bytes], v.Document]


class State(enum.Enum):
    NEW = "new"
    FETCHING = "fetching"
    ANSWERING = "answering"
    RUNNING = "running"
    FINAL_FETCH = "final-fetch"
    ENDED = "ended"


def _default_parse(body: bytes) -> v.Document:
    from callxml.markup.parser import parse_document  # lazily: lxml and the schema load once

    return parse_document(body)


def make_task(verb: v.Verb, ctx: Context) -> Task:
    """The task that runs ``verb``: one ``match`` arm per verb, the vocabulary in one place."""
    match verb:
        case v.Say() | v.Play():
            return PlaybackTask(verb, ctx)
        case v.Pause():
            return PauseTask(verb)
        case v.Gather():
            return GatherTask(verb, ctx)
        case v.Record():
            return RecordTask(verb, ctx)
        case v.Dial():
            return DialTask(verb, ctx)
        case v.Redirect():
            return RedirectTask(verb)
        case v.Reject():
            return RejectTask(verb, ctx)
        case v.Hangup():
            return HangupTask()
        case v.Start():
            return StartTask(verb, ctx)
        case v.Stop():
            return StopTask(verb)
        case v.Connect():
            return ConnectTask(verb, ctx)
        case v.Enqueue():
            return EnqueueTask(verb, ctx)
        case v.Leave():
            return LeaveTask(ctx)
        case v.Unsupported(name=name):
            return SkipTask(message(capability(name)))
        case _:  # recognised verbs the capability table says are not run (Enqueue, Refer...)
            return SkipTask(message(capability(type(verb).__name__)))


class CallSession:
    """Runs one call's documents. Feed it events; carry out the actions it returns.

    ``url``/``method`` name the first document; ``fallback_url`` is requested (with ``ErrorCode``
    and ``ErrorUrl``) when a fetch fails or returns something that is not valid markup. Pass
    ``answered=True`` for a call that is already up (an outbound API call). ``parse`` turns a
    body into a :class:`~callxml.markup.verbs.Document` (default: the markup parser);
    ``new_sid`` makes ``RE…`` and other identifiers (inject a fixed one in tests). A ``whisper``
    session runs a noun's ``url`` on the called party: at the end of its document it ends
    without hanging up and sets :attr:`returned` (the dial then bridges the legs). A
    ``waiting`` session runs a queued caller's wait document: it too ends without hanging up
    at the end of its document (the queue runs it again), ``<Leave>`` ends it with
    :attr:`left`, and only the verbs Twilio allows there run (:data:`WAIT_VERBS`).
    """

    def __init__(
        self,
        *,
        url: str,
        call: CallInfo,
        method: str = "POST",
        fallback_url: str | None = None,
        fallback_method: str = "POST",
        limits: Limits | None = None,
        parse: Parser | None = None,
        new_sid: Callable[[str], str] = new_sid,
        answered: bool = False,
        whisper: bool = False,
        waiting: bool = False,
    ) -> None:
        self.call = call
        self.whisper = whisper
        self.waiting = waiting
        #: A ``waiting`` session whose document ran ``<Leave>``: the caller leaves the queue.
        self.left = False
        #: A whisper session (``whisper=True``: a noun's ``url`` run on the called party before
        #: the bridge) that reached the end of its document without hanging up: bridge now.
        self.returned = False
        self.limits = limits or Limits()
        self._url = url
        self._method = method
        self._fallback_url = fallback_url
        self._fallback_method = fallback_method
        self._parse = parse or _default_parse
        self._ctx = Context(
            call,
            self.limits,
            new_sid,
            lambda: self.answered,
            lambda: self._current_url,
            waiting=waiting,
        )

        self.state = State.NEW
        self.answered = answered
        #: Twilio ``CallStatus``: ringing, in-progress, then completed, busy, no-answer, canceled
        #: or failed.
        self.status = "in-progress" if answered else "ringing"
        #: Why the call ended early (fetch failure without fallback, loop, bounds...), or None.
        self.error: CallXmlError | None = None

        self._current_url = url  # the document running now; relative URLs resolve against it
        self._verbs: tuple[v.Verb, ...] = ()
        self._next_verb = 0
        self._task: Task | None = None
        self._pending: WebhookRequest | None = None  # the fetch in flight
        self._pending_is_fallback = False
        self._caller_gone = False
        self._hangup_deadline: float | None = None
        self._fetches_in_a_row = 0
        self._documents = 0
        self._verbs_run = 0
        self._out: list[act.Action] = []

    # ------------------------------------------------------------------------------ queries

    @property
    def finished(self) -> bool:
        """True once the call is over for the interpreter; later events are ignored."""
        return self.state is State.ENDED

    @property
    def current_url(self) -> str:
        """The URL of the document being run (the final URL after HTTP redirects)."""
        return self._current_url

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` should be called next, or None if nothing is timed."""
        if self.state is State.ENDED:
            return None
        times = [t for t in (self._hangup_deadline,) if t is not None]
        if self._task is not None and (task_time := self._task.next_timer()) is not None:
            times.append(task_time)
        return min(times, default=None)

    def params(self) -> tuple[tuple[str, str], ...]:
        """The call's own webhook parameters, Twilio names and order."""
        call = self.call
        return (
            ("CallSid", call.call_sid),
            ("AccountSid", call.account_sid),
            ("From", call.from_),
            ("To", call.to),
            ("Caller", call.from_),
            ("Called", call.to),
            ("CallStatus", self.status),
            ("Direction", call.direction),
            ("ApiVersion", call.api_version),
            *call.extra,
        )

    # ------------------------------------------------------------------------------ inputs

    def start(self, now: float) -> list[act.Action]:
        """Begin the call: request the first document."""
        if self.state is not State.NEW:
            raise LocalProtocolError("CallSession.start() called twice")
        self._fetch(self._url, self._method, (), now, resolve=False)
        return self._flush()

    def receive(self, event: Event, now: float) -> list[act.Action]:
        """Feed one event; returns the actions to carry out, in order."""
        if self.state is State.ENDED:
            return []
        match event:
            case DocumentFetched(response=response):
                if self._pending is not None:
                    self._on_document(response, now)
            case FetchFailed(error=error):
                if self._pending is not None:
                    self._on_fetch_failure(error.error_code, str(error), error.url, error, now)
            case Answered():
                self._on_answered(now)
            case CallerHungUp():
                self._on_caller_hung_up(now)
            case _:
                if self._task is not None:
                    self._apply(self._task.receive(event, now), now)
        self._run(now)
        return self._flush()

    def handle_timer(self, now: float) -> list[act.Action]:
        """Advance timed work (Pause, Gather timeouts) to ``now``."""
        if self.state is State.ENDED:
            return []
        if self._hangup_deadline is not None and now >= self._hangup_deadline:
            self._out.append(act.Log("warning", "no result reported after hang-up; call ended"))
            self._end()
        elif self._task is not None:
            due = self._task.next_timer()
            if due is not None and now >= due:
                self._apply(self._task.handle_timer(now), now)
        self._run(now)
        return self._flush()

    # ------------------------------------------------------------------------------ internals

    def _flush(self) -> list[act.Action]:
        out, self._out = self._out, []
        return out

    def _end(self) -> None:
        self.state = State.ENDED
        self._task = None
        self._pending = None
        self._hangup_deadline = None

    def _fail(self, error: CallXmlError, code: int | None = None) -> None:
        """End the call cleanly because of ``error``: log it, hang up, remember it."""
        self.error = error
        self._out.append(act.Log("error", str(error), code))
        if self.waiting:  # a wait document that fails takes the caller out of the queue only
            self.returned = True
            self._end()
            return
        if not self._caller_gone:
            self._out.append(act.Hangup(f"error: {error}"))
            self.status = "completed" if self.answered else "failed"
        self._end()

    def _fetch(
        self,
        url: str | None,
        method: str,
        extra: tuple[tuple[str, str], ...],
        now: float,
        *,
        resolve: bool = True,
        fallback: bool = False,
        params: tuple[tuple[str, str], ...] | None = None,
    ) -> None:
        final = self._caller_gone
        if url is None:
            target = self._current_url
        elif resolve:
            target = resolve_url(self._current_url, url)
        else:
            target = url
        if not final:
            self._fetches_in_a_row += 1
            self._documents += 1
            if self._fetches_in_a_row > self.limits.fetches_in_a_row:
                self._fail(
                    InterpreterError(
                        f"more than {self.limits.fetches_in_a_row} documents fetched in a row "
                        f"without a verb that waits for the caller (a redirect loop?); "
                        f"last URL {target}"
                    )
                )
                return
            if self._documents > self.limits.documents_per_call:
                self._fail(
                    InterpreterError(
                        f"more than {self.limits.documents_per_call} documents in one call"
                    )
                )
                return
        try:
            request = WebhookRequest(
                url=target, method=method, params=params or self.params() + extra
            )
        except LocalProtocolError as exc:
            self._fail(InterpreterError(str(exc)))
            return
        self._pending = request
        self._pending_is_fallback = fallback
        self.state = State.FINAL_FETCH if final else State.FETCHING
        self._out.append(act.Fetch(request, final=final))

    def _on_document(self, response: WebhookResponse, now: float) -> None:
        if self.state is State.FINAL_FETCH:
            self._out.append(act.Log("info", "document returned after hang-up is not run"))
            self._end()
            return
        url = response.url or response.request.url
        if not 200 <= response.status < 300:
            message = f"{url} answered HTTP {response.status}"
            self._on_fetch_failure(11200, message, url, WebhookError(message, url=url), now)
            return
        try:
            document = self._parse(response.body)
        except MarkupError as exc:
            self._on_fetch_failure(
                DOCUMENT_PARSE_FAILURE, f"document at {url} is not valid: {exc}", url, exc, now
            )
            return
        verbs = document.response.verbs
        if len(verbs) > self.limits.verbs_per_document:
            message = (
                f"document at {url} has {len(verbs)} verbs, more than "
                f"{self.limits.verbs_per_document}"
            )
            self._on_fetch_failure(
                DOCUMENT_PARSE_FAILURE, message, url, InterpreterError(message), now
            )
            return
        self._pending = None
        self._current_url = url
        self._out += [act.Log("warning", f"{url}:{w}", None) for w in document.warnings]
        self._verbs = verbs
        self._next_verb = 0
        self.state = State.RUNNING

    def _on_fetch_failure(
        self, code: int, message: str, url: str, error: CallXmlError, now: float
    ) -> None:
        failed = self._pending
        assert failed is not None
        self._pending = None
        if self.state is State.FINAL_FETCH:
            self._out.append(act.Log("warning", f"request after hang-up failed: {message}", code))
            self._end()
            return
        if self._fallback_url and not self._pending_is_fallback:
            self._out.append(act.Log("error", f"{message}; trying the fallback URL", code))
            params = (*failed.params, ("ErrorCode", str(code)), ("ErrorUrl", url or failed.url))
            self._fetch(
                self._fallback_url,
                self._fallback_method,
                (),
                now,
                resolve=False,
                fallback=True,
                params=params,
            )
            return
        if not isinstance(error, WebhookError | MarkupError | InterpreterError):
            error = InterpreterError(message)
        if isinstance(error, MarkupError):
            error = WebhookError(message, error_code=code, url=url)
        self._fail(error, code)

    def _on_answered(self, now: float) -> None:
        if self.answered:
            return
        self.answered = True
        self.status = "in-progress"
        if self.state is State.ANSWERING and self._task is not None:
            self.state = State.RUNNING
            self._start_task(self._task, now)

    def _on_caller_hung_up(self, now: float) -> None:
        self._caller_gone = True
        self.status = "completed" if self.answered else "canceled"
        task, self._task = self._task, None
        if task is None or self.state is not State.RUNNING:
            self._end()
            return
        step = task.hang_up(now)
        self._out += step.actions
        if step.outcome is None:
            self._task = task
            self._hangup_deadline = now + self.limits.hangup_grace
        else:
            self._follow(step.outcome, now)

    def _run(self, now: float) -> None:
        """Start verbs until one is running, a fetch is in flight, or the call is over."""
        while self.state is State.RUNNING and self._task is None and not self._caller_gone:
            if self._next_verb >= len(self._verbs):
                if self.whisper or self.waiting:  # bridged next, or the wait runs again
                    self.returned = True
                    self._end()
                    return
                task: Task = HangupTask("end of document")
            else:
                verb = self._verbs[self._next_verb]
                self._next_verb += 1
                self._verbs_run += 1
                if self._verbs_run > self.limits.verbs_per_call:
                    self._fail(
                        InterpreterError(f"more than {self.limits.verbs_per_call} verbs in a call")
                    )
                    return
                self._out.append(act.VerbStarted(verb, self._current_url))
                if self.waiting and not isinstance(verb, WAIT_VERBS):
                    name = getattr(verb, "name", type(verb).__name__)
                    self._out.append(
                        act.Log(
                            "warning",
                            f"<{name}> is not run in a queue's wait document (only Play, Say, "
                            "Pause, Gather, Redirect, Leave, Hangup); skipped",
                        )
                    )
                    continue
                task = make_task(verb, self._ctx)
            if task.needs_answer and not self.answered:
                self._task = task
                self.state = State.ANSWERING
                self._out.append(act.Answer())
                return
            self._start_task(task, now)

    def _start_task(self, task: Task, now: float) -> None:
        if task.waits_for_caller:
            self._fetches_in_a_row = 0
        self._task = task
        self._apply(task.start(now), now)

    def _apply(self, step: Step, now: float) -> None:
        self._out += step.actions
        if step.outcome is not None:
            self._task = None
            self._follow(step.outcome, now)

    def _follow(self, outcome: Outcome, now: float) -> None:
        if isinstance(outcome, Release):  # out of the queue's wait: the call goes on
            self.returned = True
            self.left = outcome.left
            self._end()
            return
        if self._caller_gone:
            self._hangup_deadline = None
            if isinstance(outcome, Navigate):
                self._fetch(outcome.url, outcome.method, outcome.params, now)
            else:
                self._end()
            return
        match outcome:
            case Continue():
                pass  # _run() starts the next verb
            case Navigate(url=url, method=method, params=params):
                self._fetch(url, method, params, now)
            case EndCall(action=action, status=status):
                self._out.append(action)
                self.status = status
                self._end()
