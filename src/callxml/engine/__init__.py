"""The hosted engine (``callxml serve``), and what a program embedding it imports.

Configuration (:func:`load_config`, :func:`parse_config`, :class:`EngineConfig` and its parts)
and call records (the :class:`Store` Protocol, :class:`SqliteStore`, :class:`CallRecord`,
:class:`CallEvent`, :class:`RecordingRecord`) are plain data and import at once. The
:class:`Engine` itself, its live calls (:class:`LiveCall`), the request to originate a call
(:class:`OutboundCall`) and the engine's refusals (:class:`CallControlError` and subclasses)
pull in SIP, media, the runtime and aiohttp (about half a second), so they are imported on first
use: ``import callxml.engine`` stays cheap for ``callxml --help``, ``callxml call`` (which uses
only the development certificate) and programs that only read records.

Submodules: ``config``, ``store``, ``callbacks``, ``calls``, ``api`` (the REST API),
``control`` (its adapter to the engine), ``server`` (the engine), ``devcert``, ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from callxml.engine.config import (
    AccountConfig,
    Credential,
    DomainConfig,
    EngineConfig,
    Listener,
    load_config,
    parse_config,
)
from callxml.engine.store import (
    CALL_STATUSES,
    TERMINAL_STATUSES,
    CallEvent,
    CallRecord,
    RecordingRecord,
    SqliteStore,
    Store,
)

if TYPE_CHECKING:
    from callxml.engine.api import OutboundCall
    from callxml.engine.calls import (
        CallAlreadyAnswered,
        CallControlError,
        CallNotInProgress,
        EngineStopping,
        InvalidTarget,
        LiveCall,
    )
    from callxml.engine.server import Engine

__all__ = [
    "CALL_STATUSES",
    "TERMINAL_STATUSES",
    "AccountConfig",
    "CallAlreadyAnswered",
    "CallControlError",
    "CallEvent",
    "CallNotInProgress",
    "CallRecord",
    "Credential",
    "DomainConfig",
    "Engine",
    "EngineConfig",
    "EngineStopping",
    "InvalidTarget",
    "Listener",
    "LiveCall",
    "OutboundCall",
    "RecordingRecord",
    "SqliteStore",
    "Store",
    "load_config",
    "parse_config",
]

#: name -> the submodule that defines it, imported on first access (PEP 562)
_LAZY = {
    "Engine": "callxml.engine.server",
    "OutboundCall": "callxml.engine.api",
    "LiveCall": "callxml.engine.calls",
    "CallControlError": "callxml.engine.calls",
    "CallAlreadyAnswered": "callxml.engine.calls",
    "CallNotInProgress": "callxml.engine.calls",
    "EngineStopping": "callxml.engine.calls",
    "InvalidTarget": "callxml.engine.calls",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
