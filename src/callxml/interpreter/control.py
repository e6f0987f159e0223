"""Verbs that steer the call without taking the caller's time: ``<Redirect>``, ``<Reject>``,
``<Hangup>``, and the verbs callxml skips.

Owns Twilio's rules for them: ``<Redirect>`` fetches a new document (relative URLs resolve against
the current one) and ends the current one; ``<Reject>`` refuses a call that is not answered yet
(``busy`` → SIP 486 and call status ``busy``; ``rejected`` → SIP 603 and ``no-answer``), and only
hangs up an answered one; ``<Hangup>`` answers first if needed (Twilio bills it) and ends the call.
"""

from __future__ import annotations

from callxml.interpreter import actions as act
from callxml.interpreter.tasks import Context, Continue, EndCall, Navigate, Step, Task
from callxml.markup.verbs import Redirect, Reject

__all__ = ["HangupTask", "RedirectTask", "RejectTask", "SkipTask"]


class RedirectTask(Task):
    needs_answer = False
    waits_for_caller = False

    def __init__(self, verb: Redirect) -> None:
        self._verb = verb

    def start(self, now: float) -> Step:
        return Step(outcome=Navigate(self._verb.url, self._verb.method))


class RejectTask(Task):
    needs_answer = False
    waits_for_caller = False

    def __init__(self, verb: Reject, ctx: Context) -> None:
        self._verb = verb
        self._ctx = ctx

    def start(self, now: float) -> Step:
        if self._ctx.answered:
            return Step(
                [act.Log("warning", "Reject: the call is already answered; hanging up instead")],
                EndCall(act.Hangup("<Reject> after answer"), "completed"),
            )
        if self._verb.reason == "busy":
            return Step(outcome=EndCall(act.Reject(486, "busy"), "busy"))
        return Step(outcome=EndCall(act.Reject(603, "rejected"), "no-answer"))


class HangupTask(Task):
    waits_for_caller = False

    def __init__(self, reason: str = "<Hangup>") -> None:
        self._reason = reason

    def start(self, now: float) -> Step:
        return Step(outcome=EndCall(act.Hangup(self._reason), "completed"))


class SkipTask(Task):
    """A verb callxml does not run: a warning in the call log, then the next verb."""

    needs_answer = False
    waits_for_caller = False

    def __init__(self, message: str) -> None:
        self._message = message

    def start(self, now: float) -> Step:
        return Step([act.Log("warning", self._message)], Continue())
