"""The sans-IO call-flow interpreter: events and ``now`` in, actions out.

One :class:`CallSession` per call runs the documents a webhook returns, verb by verb, with
Twilio's semantics. It never does I/O or reads a clock, so the simulator, the engine and the
tests all drive the same code. See ``docs/interpreter.md``.
"""

from callxml.interpreter import actions, events
from callxml.interpreter.call import API_VERSION, CallInfo, Limits, new_sid
from callxml.interpreter.session import CallSession, State

__all__ = [
    "API_VERSION",
    "CallInfo",
    "CallSession",
    "Limits",
    "State",
    "actions",
    "events",
    "new_sid",
]
