"""``<Enqueue>``, ``<Leave>`` and ``<Dial><Queue>``: the flow rules of call queues.

Owns what the interpreter decides: ``<Enqueue>`` puts the caller in the named queue (the driver
runs the queue: the wait document looped while the caller waits, the bridge when an agent
dequeues it) and, once the caller is out, requests ``action`` with ``QueueResult``
(``bridged``, ``hangup``, ``leave``, ``redirected``, ``error``, ``queue-full``,
``system-shutdown``), ``QueueSid`` and ``QueueTime`` — or, without ``action``, runs the next
verb; a caller who hangs up while queued still has ``action`` requested (``hangup``), its
document not run. TaskRouter (``workflowSid``, ``<Task>``) is not available: the parser warns
about it from the capability table; an ``<Enqueue>`` with no queue name is skipped.
``<Leave>`` ends the wait document of a queued caller (``QueueResult=leave``); anywhere else
it is skipped with a warning.
``<Dial><Queue>`` dequeues the caller who waited longest (the ``<Dial>`` rules apply; its
``url`` runs on the dequeued caller before the bridge).
"""

from __future__ import annotations

from dataclasses import replace

from callxml.interpreter import actions as act
from callxml.interpreter.events import Event, QueueLeft
from callxml.interpreter.tasks import Context, Continue, Navigate, Release, Step, Task
from callxml.markup.verbs import Dial, Enqueue, Queue

__all__ = ["QUEUE_RESULTS", "EnqueueTask", "LeaveTask", "dequeue_action"]

#: Values of ``QueueResult`` (Twilio's names).
QUEUE_RESULTS = (
    "bridged",
    "bridging-in-process",
    "error",
    "hangup",
    "leave",
    "queue-full",
    "redirected",
    "system-error",
    "system-shutdown",
)


class EnqueueTask(Task):
    """``<Enqueue>``: wait in the queue until the driver says how the caller left it."""

    def __init__(self, verb: Enqueue, ctx: Context) -> None:
        self._verb = verb
        self._ctx = ctx

    def start(self, now: float) -> Step:
        verb = self._verb
        actions: list[act.Action] = []  # workflowSid and <Task> were warned about by the parser
        if verb.name is None:
            actions.append(act.Log("warning", "Enqueue: no queue name to wait in; skipped"))
            return Step(actions, Continue())
        wait_url = self._ctx.resolve(verb.wait_url) if verb.wait_url else None
        actions.append(
            act.Enqueue(
                name=verb.name,
                wait_url=wait_url,
                wait_url_method=verb.wait_url_method,
                max_queue_size=verb.max_queue_size,
            )
        )
        return Step(actions)

    def receive(self, event: Event, now: float) -> Step:
        if not isinstance(event, QueueLeft):
            return Step()
        result = event.result if event.result in QUEUE_RESULTS else "error"
        verb = self._verb
        if verb.action is None:
            return Step(outcome=Continue())
        params = (
            ("QueueResult", result),
            ("QueueSid", event.queue_sid),
            ("QueueTime", str(max(0, event.queue_time))),
        )
        return Step(outcome=Navigate(verb.action, verb.method, params))

    def hang_up(self, now: float) -> Step:
        """The caller left while queued: out of the queue; the driver reports ``hangup``."""
        return Step([act.LeaveQueue()])


class LeaveTask(Task):
    """``<Leave>``: out of the queue, when run by a queued caller's wait document."""

    needs_answer = False
    waits_for_caller = False

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def start(self, now: float) -> Step:
        if self._ctx.waiting:
            return Step(outcome=Release(left=True))
        warning = act.Log("warning", "Leave: the call is not waiting in a queue; skipped")
        return Step([warning], Continue())


def dequeue_action(verb: Dial, noun: Queue, ctx: Context) -> tuple[list[act.Action], act.Dequeue]:
    """The warnings about what does not apply, and the action that dequeues from ``noun``."""
    warnings: list[act.Action] = []  # reservationSid & co were warned about by the parser
    if len(verb.targets) > 1:
        warnings.append(
            act.Log("warning", "Dial: a <Queue> is dialled alone; the other nouns are ignored")
        )
    if noun.url is not None:
        noun = replace(noun, url=ctx.resolve(noun.url))
    return warnings, act.Dequeue(
        queue=noun,
        timeout=verb.timeout,
        time_limit=verb.time_limit,
        hangup_on_star=verb.hangup_on_star,
    )
