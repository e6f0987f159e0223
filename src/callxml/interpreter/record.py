"""``<Record>``: record the caller and post where the recording is.

Owns Twilio's rules for what follows a recording: the session requests ``action`` (default: the
current document URL) with ``RecordingUrl``, ``RecordingDuration``, ``RecordingSid`` and
``Digits`` (the key that ended it, or ``hangup``); an empty recording requests nothing and the
next verb runs. If the caller hangs up while recording, the request is still made (its document is
not run). With ``recordingStatusCallback`` it also sends Twilio's recording status callback for
the events asked for (``in-progress`` at the start, ``completed`` with the URL and duration,
``absent`` for an empty recording). The driver times silence, ``maxLength`` and
``finishOnKey``: that is media work.
"""

from __future__ import annotations

from callxml.errors import LocalProtocolError
from callxml.interpreter import actions as act
from callxml.interpreter.events import Event, RecordingFinished
from callxml.interpreter.tasks import Context, Continue, Navigate, Step, Task
from callxml.markup.verbs import Record
from callxml.webhooks.base import WebhookRequest

__all__ = ["RecordTask"]


class RecordTask(Task):
    def __init__(self, verb: Record, ctx: Context) -> None:
        self._verb = verb
        self._ctx = ctx
        self._caller_gone = False
        self._sid = ctx.new_sid("RE")

    def start(self, now: float) -> Step:
        verb = self._verb
        actions: list[act.Action] = [
            act.StartRecording(
                timeout=verb.timeout,
                finish_on_key=verb.finish_on_key,
                max_length=verb.max_length,
                play_beep=verb.play_beep,
                trim=verb.trim,
                sid=self._sid,
            )
        ]
        actions += self._status_callback("in-progress", (("RecordingSid", self._sid),))
        return Step(actions)

    def receive(self, event: Event, now: float) -> Step:
        if not isinstance(event, RecordingFinished):
            return Step()
        sid = event.sid or self._sid
        if event.duration <= 0:
            actions: list[act.Action] = [
                act.Log("info", "Record: the recording is empty; no request is made")
            ]
            actions += self._status_callback("absent", (("RecordingSid", sid),))
            return Step(actions, Continue())
        digits = "hangup" if self._caller_gone else event.digits
        params: list[tuple[str, str]] = [
            ("RecordingUrl", event.url),
            ("RecordingDuration", str(event.duration)),
            ("RecordingSid", sid),
        ]
        if digits:
            params.append(("Digits", digits))
        callback = self._status_callback(
            "completed",
            (
                ("RecordingSid", sid),
                ("RecordingUrl", event.url),
                ("RecordingDuration", str(event.duration)),
            ),
        )
        return Step(callback, Navigate(self._verb.action, self._verb.method, tuple(params)))

    def _status_callback(
        self, status: str, fields: tuple[tuple[str, str], ...]
    ) -> list[act.Action]:
        """``recordingStatusCallback``: Twilio's parameters for ``status`` when the verb asked
        for that event (``recordingStatusCallbackEvent``, default ``completed``)."""
        verb = self._verb
        if verb.recording_status_callback is None:
            return []
        if status not in verb.recording_status_callback_event:
            return []
        call = self._ctx.call
        params = (
            ("AccountSid", call.account_sid),
            ("CallSid", call.call_sid),
            *fields,
            ("RecordingStatus", status),
            ("RecordingChannels", "1"),
            ("RecordingSource", "RecordVerb"),
        )
        url = self._ctx.resolve(verb.recording_status_callback)
        try:
            request = WebhookRequest(url, verb.recording_status_callback_method, params)
        except LocalProtocolError as exc:
            return [act.Log("warning", f"Record: recordingStatusCallback not sent: {exc}")]
        return [act.Callback(request)]

    def hang_up(self, now: float) -> Step:
        self._caller_gone = True
        return Step([act.StopRecording()])
