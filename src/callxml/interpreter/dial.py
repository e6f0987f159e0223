"""``<Dial>``: call other parties, bridge the first to answer, report how it went.

Owns the rules around the dial (the driver owns SIP and media): nouns the capability table
(:mod:`callxml.markup.capabilities`) says callxml cannot dial (``<Sim>``, ``<Application>``)
are not dialled, with a warning, for the simulator and the engine alike; a ``<Conference>``
joins a room instead of calling anyone (:mod:`.conference`), a ``<Queue>`` dequeues a waiting
caller (:mod:`.queue`); ``callerId`` defaults to the caller's number; with ``answerOnBridge``
the caller's leg is not answered first. When the dial ends the session requests ``action``
with ``DialCallStatus``, ``DialCallSid``, ``DialCallDuration`` (and
``DialSipCallId``/``DialSipResponseCode`` and one ``DialSipHeader_X-…`` per ``X-`` header of
the far end's final response for SIP targets, and ``DialBridged``); without ``action`` the next
verb runs. If the caller hangs up, the request is still made and its document is not run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from callxml.errors import LocalProtocolError
from callxml.interpreter import actions as act
from callxml.interpreter.conference import join_action
from callxml.interpreter.events import DIAL_STATUSES, DialFinished, Event
from callxml.interpreter.queue import dequeue_action
from callxml.interpreter.tasks import Context, Continue, Navigate, Step, Task
from callxml.markup.capabilities import Support, capability, message
from callxml.markup.verbs import Client, Conference, Dial, DialNoun, Number, Queue, Sip
from callxml.webhooks.base import WebhookRequest

__all__ = ["NO_TRUNK", "DialTask", "trunk_uri"]

#: Why a ``<Number>`` cannot be dialled without a trunk (engine and simulator say the same).
NO_TRUNK = "no trunk is configured (sip.trunk_uri_template)"


def trunk_uri(number: str, template: str) -> str:
    """The SIP URI that dials ``number`` through the trunk ``template`` (``{number}`` is
    replaced by the number's digits and a leading ``+``, as written)."""
    digits = "".join(c for c in number if c.isdigit() or c == "+")
    return template.replace("{number}", digits)


class DialTask(Task):
    def __init__(self, verb: Dial, ctx: Context) -> None:
        self._verb = verb
        self._ctx = ctx
        self.needs_answer = not verb.answer_on_bridge
        recording = verb.record != "do-not-record"
        self._recording_sid = ctx.new_sid("RE") if recording else ""

    def start(self, now: float) -> Step:
        verb = self._verb
        room = next((n for n in verb.targets if isinstance(n, Conference)), None)
        if room is not None and capability("Conference").support is not Support.UNSUPPORTED:
            warnings, join = join_action(verb, room, self._ctx)
            self._recording_sid = ""  # a conference records with <Conference record>
            return Step([*warnings, join])
        queue = next((n for n in verb.targets if isinstance(n, Queue)), None)
        if queue is not None and capability("Queue").support is not Support.UNSUPPORTED:
            warnings, dequeue = dequeue_action(verb, queue, self._ctx)
            return Step([*warnings, dequeue])
        actions: list[act.Action] = []
        targets: list[DialNoun] = []
        for noun in verb.targets:
            row = capability(type(noun).__name__)
            if row.support is Support.UNSUPPORTED:
                actions.append(act.Log("warning", f"Dial: {message(row)}"))
                continue
            if isinstance(noun, Number | Sip | Client):
                noun = self._resolved(noun)
            targets.append(noun)
        if not targets:
            actions.append(act.Log("warning", "Dial: nothing to dial"))
            step = self._finished(DialFinished(status="failed"))
            step.actions[:0] = actions
            return step
        actions.append(
            act.StartDial(
                targets=tuple(targets),
                timeout=verb.timeout,
                time_limit=verb.time_limit,
                caller_id=verb.caller_id or self._ctx.call.from_,
                answer_on_bridge=verb.answer_on_bridge,
                hangup_on_star=verb.hangup_on_star,
                record=verb.record,
                ring_tone=verb.ring_tone,
                sequential=verb.sequential,
                recording_sid=self._recording_sid,
                recording_track=verb.recording_track,
            )
        )
        return Step(actions)

    def _resolved(self, noun: Number | Sip | Client) -> Number | Sip | Client:
        """The noun with its URLs (whisper document, status and AMD callbacks) absolute, like
        every other URL of the document: relative to the document's own."""
        resolve = self._ctx.resolve
        changes: dict[str, Any] = {}
        if noun.url is not None:
            changes["url"] = resolve(noun.url)
        if noun.status_callback is not None:
            changes["status_callback"] = resolve(noun.status_callback)
        if isinstance(noun, Number | Sip) and noun.amd_status_callback is not None:
            changes["amd_status_callback"] = resolve(noun.amd_status_callback)
        return replace(noun, **changes) if changes else noun

    def receive(self, event: Event, now: float) -> Step:
        if isinstance(event, DialFinished):
            return self._finished(event)
        return Step()

    def _finished(self, event: DialFinished) -> Step:
        actions: list[act.Action] = []
        status = event.status
        if status not in DIAL_STATUSES:
            actions.append(act.Log("warning", f"Dial: unknown outcome {status!r}, taken as failed"))
            status = "failed"
        actions += self._recording_callback(event)
        if self._verb.action is None:
            return Step(actions, Continue())
        params: list[tuple[str, str]] = [("DialCallStatus", status)]
        if event.call_sid:
            params.append(("DialCallSid", event.call_sid))
        params.append(("DialCallDuration", str(max(0, event.duration))))
        bridged = status in ("completed", "answered")
        params.append(("DialBridged", "true" if bridged else "false"))
        if event.sip_call_id is not None:
            params.append(("DialSipCallId", event.sip_call_id))
        if event.sip_response_code is not None:
            params.append(("DialSipResponseCode", str(event.sip_response_code)))
        params += [(f"DialSipHeader_{name}", value) for name, value in event.sip_headers]
        if event.recording_url:
            params += [
                ("RecordingUrl", event.recording_url),
                ("RecordingSid", self._recording_sid),
                ("RecordingDuration", str(event.recording_duration)),
            ]
        return Step(actions, Navigate(self._verb.action, self._verb.method, tuple(params)))

    def hang_up(self, now: float) -> Step:
        return Step([act.StopDial()])

    def _recording_callback(self, event: DialFinished) -> list[act.Action]:
        """``<Dial record recordingStatusCallback>``: ``completed`` with the recording, or
        ``absent`` when recording was asked for and nothing was bridged."""
        verb = self._verb
        if not self._recording_sid or verb.recording_status_callback is None:
            return []
        status = "completed" if event.recording_url else "absent"
        if status not in verb.recording_status_callback_event:
            return []
        call = self._ctx.call
        params: list[tuple[str, str]] = [
            ("AccountSid", call.account_sid),
            ("CallSid", call.call_sid),
            ("RecordingSid", self._recording_sid),
            ("RecordingStatus", status),
            ("RecordingSource", "DialVerb"),
            ("RecordingChannels", str(event.recording_channels)),
        ]
        if event.recording_url:
            params += [
                ("RecordingUrl", event.recording_url),
                ("RecordingDuration", str(event.recording_duration)),
            ]
        url = self._ctx.resolve(verb.recording_status_callback)
        try:
            request = WebhookRequest(url, verb.recording_status_callback_method, tuple(params))
        except LocalProtocolError as exc:
            return [act.Log("warning", f"Dial: recordingStatusCallback not sent: {exc}")]
        return [act.Callback(request)]
