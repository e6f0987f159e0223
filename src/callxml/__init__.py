"""callxml: a call-control engine driven by TwiML-like XML.

Developers return XML from their web apps; callxml fetches it by webhook, interprets each verb and
drives real phone calls over SIP and RTP (TLS and SRTP for ``;secure=true`` targets).

The public surface, importable from here (``docs/architecture.md`` lists it with the modules
behind it):

* errors — :class:`CallXmlError` and its branches;
* writing flows — :func:`parse_document`;
* testing flows offline — :func:`simulate`, :func:`simulate_calls` with :class:`Caller`
  (several calls on one clock: conferences, queues), :class:`SimulationResult`,
  :class:`MemoryFetcher`, :class:`CallFlow` (also the ``callflow`` pytest fixture);
* webhook signatures — :mod:`callxml.signature` (``sign``, ``validate``);
* real calls — :class:`Phone`, :class:`CallLeg`, :class:`IncomingCall`, :class:`Target`;
* the hosted engine — :class:`Engine`, :class:`EngineConfig`, :func:`load_config`, the
  :class:`Store` seam and :class:`SqliteStore`.

Everything but the errors is imported on first use, so ``import callxml`` (and ``callxml
validate``) does not pay for SIP, media or the web server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from callxml.errors import (
    CallXmlError,
    ConfigError,
    InterpreterError,
    LocalProtocolError,
    MarkupError,
    MediaError,
    ProtocolError,
    RemoteProtocolError,
    SecureMediaError,
    TransactionError,
    TransportError,
    WebhookError,
)

if TYPE_CHECKING:
    from callxml.engine.config import EngineConfig, load_config
    from callxml.engine.server import Engine
    from callxml.engine.store import SqliteStore, Store
    from callxml.markup import parse_document
    from callxml.runtime import CallLeg, IncomingCall, Phone
    from callxml.simulator import Caller, MemoryFetcher, SimulationResult, simulate, simulate_calls
    from callxml.sip.target import Target
    from callxml.testing import CallFlow

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    "parse_document": "callxml.markup",
    "simulate": "callxml.simulator",
    "simulate_calls": "callxml.simulator",
    "Caller": "callxml.simulator",
    "SimulationResult": "callxml.simulator",
    "MemoryFetcher": "callxml.simulator",
    "CallFlow": "callxml.testing",
    "Phone": "callxml.runtime",
    "CallLeg": "callxml.runtime",
    "IncomingCall": "callxml.runtime",
    "Target": "callxml.sip.target",
    "Engine": "callxml.engine.server",
    "EngineConfig": "callxml.engine.config",
    "load_config": "callxml.engine.config",
    "Store": "callxml.engine.store",
    "SqliteStore": "callxml.engine.store",
}

__all__ = [
    "CallFlow",
    "CallLeg",
    "CallXmlError",
    "Caller",
    "ConfigError",
    "Engine",
    "EngineConfig",
    "IncomingCall",
    "InterpreterError",
    "LocalProtocolError",
    "MarkupError",
    "MediaError",
    "MemoryFetcher",
    "Phone",
    "ProtocolError",
    "RemoteProtocolError",
    "SecureMediaError",
    "SimulationResult",
    "SqliteStore",
    "Store",
    "Target",
    "TransactionError",
    "TransportError",
    "WebhookError",
    "__version__",
    "load_config",
    "parse_document",
    "simulate",
    "simulate_calls",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'callxml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
