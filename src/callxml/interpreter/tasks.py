"""The contract between the session loop and the verbs it runs.

This module owns :class:`Task` (one running verb, jambonz-style: it declares whether it needs an
answered call and whether it waits for the caller, and how it starts, reacts and ends), the
:class:`Step` a task returns, and the outcomes that tell the session what to do next:
:class:`Continue` with the next verb, :class:`Navigate` to a new document, or :class:`EndCall`.

Tasks never read a clock or do I/O; they get ``now`` and return actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from callxml.interpreter.actions import Action, Hangup, Reject
from callxml.interpreter.call import CallInfo, Limits
from callxml.interpreter.events import Event
from callxml.webhooks.base import resolve_url

__all__ = ["Context", "Continue", "EndCall", "Navigate", "Outcome", "Release", "Step", "Task"]


@dataclass(frozen=True, slots=True)
class Continue:
    """Run the next verb of the current document."""


@dataclass(frozen=True, slots=True)
class Navigate:
    """Fetch a new document and run it: ``url`` is relative to the current document (``None``: the
    current document's URL itself); ``params`` are added after the call's own parameters."""

    url: str | None
    method: str = "POST"
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class EndCall:
    """End the call with ``action`` (Hangup or Reject); ``status`` is the final ``CallStatus``."""

    action: Hangup | Reject
    status: str


@dataclass(frozen=True, slots=True)
class Release:
    """End this session without ending the call: a queued caller's wait document ran
    ``<Leave>`` (``left``)."""

    left: bool = False


Outcome: TypeAlias = Continue | Navigate | EndCall | Release


@dataclass(slots=True)
class Step:
    """What a task did in one go: actions to carry out and, when it is done, its outcome."""

    actions: list[Action] = field(default_factory=list)
    outcome: Outcome | None = None


class Context:
    """What a task may ask of its session: ids for playbacks, sids, the call's facts."""

    def __init__(
        self,
        call: CallInfo,
        limits: Limits,
        new_sid: Callable[[str], str],
        is_answered: Callable[[], bool],
        current_url: Callable[[], str] = lambda: "",
        *,
        waiting: bool = False,
    ) -> None:
        self.call = call
        #: The session runs a queued caller's wait document (``<Leave>`` means something).
        self.waiting = waiting
        self.limits = limits
        self._new_sid = new_sid
        self._is_answered = is_answered
        self._current_url = current_url
        self._last_id = 0

    def next_id(self) -> int:
        """A fresh playback id, unique within the call."""
        self._last_id += 1
        return self._last_id

    def new_sid(self, prefix: str) -> str:
        return self._new_sid(prefix)

    @property
    def answered(self) -> bool:
        return self._is_answered()

    def resolve(self, url: str) -> str:
        """``url`` resolved against the document running now (RFC 3986 §5.2)."""
        return resolve_url(self._current_url(), url)


class Task:
    """One running verb. Subclasses override what they need; the defaults ignore events.

    ``needs_answer``: the session answers the call before starting it. ``waits_for_caller``: it
    takes the caller's time, so it resets the fetch-loop counter.
    """

    needs_answer: bool = True
    waits_for_caller: bool = True

    def start(self, now: float) -> Step:
        raise NotImplementedError

    def receive(self, event: Event, now: float) -> Step:
        return Step()

    def handle_timer(self, now: float) -> Step:
        return Step()

    def next_timer(self) -> float | None:
        return None

    def hang_up(self, now: float) -> Step:
        """The caller hung up. An outcome ends the task: :class:`Navigate` for a last request
        whose document is not run, anything else for none. No outcome: it waits for a result
        event (bounded by :attr:`Limits.hangup_grace`)."""
        return Step(outcome=Continue())
