"""``<Record>``: record the caller and post where the recording is.

Owns Twilio's rules for what follows a recording: the session requests ``action`` (default: the
current document URL) with ``RecordingUrl``, ``RecordingDuration``, ``RecordingSid`` and
``Digits`` (the key that ended it, or ``hangup``); an empty recording requests nothing and the
next verb runs. If the caller hangs up while recording, the request is still made (its document is
not run). The driver times silence, ``maxLength`` and ``finishOnKey``: that is media work.
"""

from __future__ import annotations

from callxml.interpreter import actions as act
from callxml.interpreter.events import Event, RecordingFinished
from callxml.interpreter.tasks import Context, Continue, Navigate, Step, Task
from callxml.markup.verbs import Record

__all__ = ["RecordTask"]


class RecordTask(Task):
    def __init__(self, verb: Record, ctx: Context) -> None:
        self._verb = verb
        self._ctx = ctx
        self._caller_gone = False

    def start(self, now: float) -> Step:
        verb = self._verb
        return Step(
            [
                act.StartRecording(
                    timeout=verb.timeout,
                    finish_on_key=verb.finish_on_key,
                    max_length=verb.max_length,
                    play_beep=verb.play_beep,
                    trim=verb.trim,
                )
            ]
        )

    def receive(self, event: Event, now: float) -> Step:
        if not isinstance(event, RecordingFinished):
            return Step()
        if event.duration <= 0:
            return Step(
                [act.Log("info", "Record: the recording is empty; no request is made")],
                Continue(),
            )
        digits = "hangup" if self._caller_gone else event.digits
        params: list[tuple[str, str]] = [
            ("RecordingUrl", event.url),
            ("RecordingDuration", str(event.duration)),
            ("RecordingSid", event.sid or self._ctx.new_sid("RE")),
        ]
        if digits:
            params.append(("Digits", digits))
        return Step(outcome=Navigate(self._verb.action, self._verb.method, tuple(params)))

    def hang_up(self, now: float) -> Step:
        self._caller_gone = True
        return Step([act.StopRecording()])
