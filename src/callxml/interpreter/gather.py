"""``<Gather>``: play the nested prompts, collect DTMF, post the digits.

Owns Twilio's collection rules, timed on the session clock:

* the nested ``<Say>``/``<Play>``/``<Pause>`` run in order; the first key stops them (barge-in);
* after the prompts, ``timeout`` seconds are allowed for each key (the timer restarts per key);
* a key in ``finishOnKey`` ends the input and is not part of ``Digits``; reaching ``numDigits``
  ends it too;
* with digits, the session requests ``action`` (default: the current document URL) with
  ``Digits`` and ``FinishedOnKey``; the rest of the document never runs;
* with none, the next verb runs, unless ``actionOnEmptyResult`` asks for the request anyway;
* if the caller hangs up, nothing is requested.

callxml collects DTMF only; ``input="speech"`` is accepted with a warning.
"""

from __future__ import annotations

from callxml.interpreter import actions as act
from callxml.interpreter.events import DigitReceived, Event, PlaybackFinished
from callxml.interpreter.media import playback_action
from callxml.interpreter.tasks import Context, Continue, Navigate, Step, Task
from callxml.markup.verbs import Gather, Pause

__all__ = ["GatherTask"]

_KEYS = frozenset("0123456789*#ABCD")


class GatherTask(Task):
    def __init__(self, verb: Gather, ctx: Context) -> None:
        self._verb = verb
        self._ctx = ctx
        self._next_child = 0
        self._playing: int | None = None  # id of the prompt playing now
        self._pause_until: float | None = None  # end of a nested <Pause>
        self._deadline: float | None = None  # when the wait for the next key ends
        self._digits: list[str] = []
        self._prompting = True

    def start(self, now: float) -> Step:
        verb = self._verb
        actions: list[act.Action] = [
            act.CollectDigits(
                timeout=verb.timeout,
                finish_on_key=verb.finish_on_key,
                num_digits=verb.num_digits,
            )
        ]
        if "speech" in verb.input:
            actions.append(
                act.Log("warning", "Gather: speech input is not supported; collecting DTMF only")
            )
        actions += self._next_prompt(now)
        return Step(actions)

    def _next_prompt(self, now: float) -> list[act.Action]:
        children = self._verb.children
        if self._next_child < len(children):
            child = children[self._next_child]
            self._next_child += 1
            if isinstance(child, Pause):
                self._pause_until = now + max(0, child.length)
                return [act.Pause(max(0, child.length))]
            action = playback_action(child, self._ctx, barge_in=True)
            self._playing = action.id
            return [action]
        self._stop_prompting(now)
        return []

    def _stop_prompting(self, now: float) -> None:
        self._prompting = False
        self._playing = None
        self._pause_until = None
        self._deadline = now + max(0, self._verb.timeout)

    def receive(self, event: Event, now: float) -> Step:
        match event:
            case PlaybackFinished(id=id) if self._prompting and id == self._playing:
                self._playing = None
                return Step(self._next_prompt(now))
            case DigitReceived(digit=digit) if digit in _KEYS:
                return self._key(digit, now)
        return Step()

    def _key(self, digit: str, now: float) -> Step:
        actions: list[act.Action] = []
        if self._prompting:
            if self._playing is not None:
                actions.append(act.StopPlayback(self._playing))
            self._stop_prompting(now)
        if self._verb.finish_on_key and digit in self._verb.finish_on_key:
            return self._finish(actions, finished_on_key=digit)
        if len(self._digits) >= self._ctx.limits.digits_per_gather:
            actions.append(act.Log("warning", "Gather: too many digits; input ends here"))
            return self._finish(actions)
        self._digits.append(digit)
        if self._verb.num_digits is not None and len(self._digits) >= self._verb.num_digits:
            return self._finish(actions)
        self._deadline = now + max(0, self._verb.timeout)
        return Step(actions)

    def next_timer(self) -> float | None:
        return self._pause_until if self._prompting else self._deadline

    def handle_timer(self, now: float) -> Step:
        if self._prompting:
            if self._pause_until is not None and now >= self._pause_until:
                self._pause_until = None
                return Step(self._next_prompt(now))
            return Step()
        if self._deadline is not None and now >= self._deadline:
            return self._finish([])
        return Step()

    def _finish(self, actions: list[act.Action], finished_on_key: str = "") -> Step:
        self._deadline = None
        digits = "".join(self._digits)
        actions.append(act.DigitsCollected(digits, finished_on_key))
        if not digits and not self._verb.action_on_empty_result:
            return Step(actions, Continue())
        params = (("Digits", digits), ("FinishedOnKey", finished_on_key))
        return Step(actions, Navigate(self._verb.action, self._verb.method, params))

    def hang_up(self, now: float) -> Step:
        return Step(outcome=Continue())

    @property
    def digits(self) -> str:
        """The digits collected so far."""
        return "".join(self._digits)
