"""``<Say>``, ``<Play>`` and ``<Pause>``: verbs that only take the caller's time.

Owns turning these verbs into playback actions (also for the prompts nested in ``<Gather>``) and
timing ``<Pause>`` on the session clock. ``<Pause>`` is the one media verb that does not answer the
call: as the first verb it delays answering, as Twilio does.
"""

from __future__ import annotations

from callxml.interpreter import actions as act
from callxml.interpreter.events import Event, PlaybackFinished
from callxml.interpreter.tasks import Context, Continue, Step, Task
from callxml.markup.verbs import Pause, Play, Say

__all__ = ["PauseTask", "PlaybackTask", "playback_action"]


def playback_action(
    verb: Say | Play, ctx: Context, *, barge_in: bool = False
) -> act.Speak | act.Play | act.SendDigits:
    """The action that plays ``verb``, with a fresh id."""
    match verb:
        case Say():
            return act.Speak(
                id=ctx.next_id(),
                text=verb.text,
                voice=verb.voice,
                language=verb.language,
                loop=verb.loop,
                ssml=verb.ssml,
                barge_in=barge_in,
            )
        case Play(digits=str(digits)) if verb.url is None:
            return act.SendDigits(id=ctx.next_id(), digits=digits)
        case Play():
            return act.Play(id=ctx.next_id(), url=verb.url or "", loop=verb.loop, barge_in=barge_in)


class PlaybackTask(Task):
    """``<Say>`` or ``<Play>``: one playback action, done when it finishes."""

    def __init__(self, verb: Say | Play, ctx: Context) -> None:
        self._verb = verb
        self._ctx = ctx
        self._id = 0

    def start(self, now: float) -> Step:
        action = playback_action(self._verb, self._ctx)
        self._id = action.id
        return Step([action])

    def receive(self, event: Event, now: float) -> Step:
        if isinstance(event, PlaybackFinished) and event.id == self._id:
            return Step(outcome=Continue())
        return Step()


class PauseTask(Task):
    """``<Pause length>``: silence timed on the session clock; does not answer the call."""

    needs_answer = False

    def __init__(self, verb: Pause) -> None:
        self._length = max(0, verb.length)
        self._until: float | None = None

    def start(self, now: float) -> Step:
        self._until = now + self._length
        return Step([act.Pause(self._length)])

    def next_timer(self) -> float | None:
        return self._until

    def handle_timer(self, now: float) -> Step:
        if self._until is not None and now >= self._until:
            self._until = None
            return Step(outcome=Continue())
        return Step()
