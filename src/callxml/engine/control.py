"""The REST API's hold on live calls: a thin adapter from the API's requests to the engine.

Owns :class:`EngineControl`, the :class:`~callxml.engine.api.CallControl` the API delegates to,
and the translation of the engine's refusals (:class:`~callxml.engine.calls.CallControlError`)
into Twilio's error codes. ``POST Calls.json`` becomes :meth:`CallEngine.originate`;
``POST Calls/{Sid}.json`` becomes :meth:`~callxml.engine.calls.LiveCall.hangup` (``Status``)
or :meth:`~callxml.engine.calls.LiveCall.redirect` (``Url``/``Twiml``) on the live call. Ending
a call that is already over changes nothing and answers its record, as Twilio does.

It must not know how calls are dialled or run (that is the engine's), and it does not import
the engine's server module: the engine is reached through the small :class:`CallEngine`
Protocol, so the server can import this module and never the reverse.
"""

from __future__ import annotations

from typing import Protocol

from callxml.engine.api import ApiError, CallUpdate, OutboundCall, RegistrationInfo
from callxml.engine.calls import (
    CallAlreadyAnswered,
    CallNotInProgress,
    EngineStopping,
    InvalidTarget,
    LiveCall,
)
from callxml.engine.config import AccountConfig
from callxml.engine.store import TERMINAL_STATUSES, CallRecord, Store
from callxml.errors import CapacityError

__all__ = ["CallEngine", "EngineControl"]

#: Twilio: "The 'To' number is not a valid phone number" (also used for bad SIP URIs).
INVALID_TO = 21211
#: Twilio: "Call is not in-progress. Cannot redirect."
NOT_IN_PROGRESS = 21220
#: Twilio: service unavailable.
UNAVAILABLE = 20503
#: Twilio: too many requests (the account's concurrency or rate limit).
TOO_MANY_REQUESTS = 20429


class CallEngine(Protocol):
    """What the adapter needs from the engine (:class:`~callxml.engine.server.Engine`)."""

    async def originate(self, account: AccountConfig, call: OutboundCall) -> CallRecord: ...

    def live(self, sid: str) -> LiveCall | None: ...

    def store_or_fail(self) -> Store: ...

    def registrations_of(self, account: AccountConfig) -> list[RegistrationInfo]: ...


class EngineControl:
    """The engine's :class:`~callxml.engine.api.CallControl`."""

    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine

    async def create_call(self, account: AccountConfig, call: OutboundCall) -> CallRecord:
        try:
            return await self.engine.originate(account, call)
        except EngineStopping:
            raise ApiError(503, UNAVAILABLE, "The engine is shutting down") from None
        except CapacityError as exc:
            retry = {"Retry-After": str(exc.retry_after)}
            if exc.limit == "store":  # not the client's rate: the service is down for now
                raise ApiError(
                    503, UNAVAILABLE, "Service Unavailable: records cannot be kept", headers=retry
                ) from None
            raise ApiError(
                429, TOO_MANY_REQUESTS, f"Too Many Requests: {exc}", headers=retry
            ) from None
        except InvalidTarget as exc:
            raise ApiError(400, INVALID_TO, f"Invalid 'To': {exc.to} ({exc.reason})") from None

    def registrations(self, account: AccountConfig) -> list[RegistrationInfo]:
        return self.engine.registrations_of(account)

    async def update_call(self, account: AccountConfig, sid: str, update: CallUpdate) -> CallRecord:
        live = self.engine.live(sid)
        if live is not None:
            try:
                if update.status is not None:
                    return await live.hangup(update.status)
                return live.redirect(update.url, update.method, update.twiml)
            except CallAlreadyAnswered:
                raise ApiError(
                    400, NOT_IN_PROGRESS, "Call is in progress; use Status=completed"
                ) from None
            except CallNotInProgress:
                pass  # over while still tidying up: as if no longer live
        return self._not_live(sid, update)

    def _not_live(self, sid: str, update: CallUpdate) -> CallRecord:
        """A call the engine does not run (any more): ending one that is over changes nothing
        and answers its record, as Twilio does; anything else is refused."""
        record = self.engine.store_or_fail().get_call(sid)
        ending = update.status is not None
        if ending and record is not None and record.status in TERMINAL_STATUSES:
            return record
        raise ApiError(400, NOT_IN_PROGRESS, "Call is not in-progress. Cannot redirect.")
