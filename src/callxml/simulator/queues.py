"""Virtual call queues for the simulator: who waits where, in which order, and who takes whom.

Owns the queue rules as the engine applies them (:mod:`callxml.engine.queues`), without audio:
a queue is made by the first ``<Enqueue>`` that names it (with its ``maxQueueSize``, default
100), keeps its members in the order they came, refuses one past its size (``queue-full``),
and hands the member who waited longest to an agent's ``<Dial><Queue>`` — at once, or when the
next caller comes if the agent arrived first. The simulated calls sharing a
:class:`SimulatedQueues` (several run together by :func:`callxml.simulator.simulate_conference`
on one virtual clock) each schedule what follows on their own side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from callxml.interpreter import new_sid

__all__ = ["QueueRecord", "SimulatedQueues", "Waiter"]

DEFAULT_MAX_SIZE = 100


@dataclass(slots=True)
class QueueRecord:
    """What happened in one virtual queue: ``events`` are ``(time, event, CallSid)``
    (``enqueue``, ``leave``, ``dequeue``)."""

    sid: str
    name: str
    max_size: int
    events: list[tuple[float, str, str]] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class Waiter:
    """A queued caller: ``take(at, agent_sid)`` is how the simulated call hears it is taken."""

    call_sid: str
    enqueued: float
    take: Callable[[float, str], None]


@dataclass(eq=False, slots=True)
class _Agent:
    call_sid: str
    got: Callable[[float, Waiter], None]


class _Queue:
    def __init__(self, name: str, max_size: int) -> None:
        self.record = QueueRecord(new_sid("QU"), name, max_size)
        self.members: list[Waiter] = []
        self.agents: list[_Agent] = []
        self.waits: list[float] = []


class SimulatedQueues:
    """The virtual queues of one simulation (see the module docstring)."""

    def __init__(self) -> None:
        self.records: list[QueueRecord] = []
        self._queues: dict[str, _Queue] = {}

    def _get(self, name: str, max_size: int | None) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue(name, max_size or DEFAULT_MAX_SIZE)
            self.records.append(queue.record)
        return queue

    def exists(self, name: str) -> bool:
        return name in self._queues

    def enqueue(self, name: str, max_size: int | None, waiter: Waiter) -> tuple[str, bool]:
        """(QueueSid, admitted); a waiting agent takes the newcomer at once."""
        queue = self._get(name, max_size)
        if len(queue.members) >= queue.record.max_size:
            return queue.record.sid, False
        queue.record.events.append((waiter.enqueued, "enqueue", waiter.call_sid))
        if queue.agents:
            agent = queue.agents.pop(0)
            self._hand(queue, agent, waiter, waiter.enqueued)
        else:
            queue.members.append(waiter)
        return queue.record.sid, True

    def params(self, name: str, waiter: Waiter, now: float) -> tuple[tuple[str, str], ...]:
        """The wait document's queue parameters for ``waiter`` at ``now``."""
        queue = self._queues[name]
        position = queue.members.index(waiter) + 1 if waiter in queue.members else 0
        average = round(sum(queue.waits) / len(queue.waits)) if queue.waits else 0
        return (
            ("QueuePosition", str(position)),
            ("QueueSid", queue.record.sid),
            ("QueueTime", str(round(now - waiter.enqueued))),
            ("AvgQueueTime", str(average)),
            ("CurrentQueueSize", str(len(queue.members))),
            ("MaxQueueSize", str(queue.record.max_size)),
        )

    def leave(self, name: str, waiter: Waiter, now: float, why: str) -> None:
        queue = self._queues.get(name)
        if queue is not None and waiter in queue.members:
            queue.members.remove(waiter)
            queue.waits.append(now - waiter.enqueued)
            queue.record.events.append((now, why, waiter.call_sid))

    def dequeue(
        self, name: str, agent_sid: str, now: float, got: Callable[[float, Waiter], None]
    ) -> bool | None:
        """The longest waiter goes to ``got`` now (True); with none, the agent waits for the
        next (False, see :meth:`give_up`); None when there is no such queue."""
        queue = self._queues.get(name)
        if queue is None:
            return None
        agent = _Agent(agent_sid, got)
        if queue.members:
            self._hand(queue, agent, queue.members.pop(0), now)
            return True
        queue.agents.append(agent)
        return False

    def give_up(self, name: str, agent_sid: str) -> None:
        queue = self._queues.get(name)
        if queue is not None:
            queue.agents = [a for a in queue.agents if a.call_sid != agent_sid]

    def _hand(self, queue: _Queue, agent: _Agent, waiter: Waiter, now: float) -> None:
        queue.waits.append(now - waiter.enqueued)
        queue.record.events.append((now, "dequeue", waiter.call_sid))
        waiter.take(now, agent.call_sid)
        agent.got(now, waiter)
