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

from callxml.engine.api import (
    ApiError,
    CallUpdate,
    OutboundCall,
    StreamRecord,
    StreamRequest,
)
from callxml.engine.calls import (
    CallAlreadyAnswered,
    CallNotInProgress,
    EngineStopping,
    InvalidTarget,
    LiveCall,
    NoSuchStream,
    StreamRefused,
)
from callxml.engine.config import AccountConfig
from callxml.engine.store import TERMINAL_STATUSES, CallRecord, Store
from callxml.errors import CapacityError
from callxml.interpreter import actions as act
from callxml.interpreter import new_sid
from callxml.markup.verbs import STREAM_TRACKS
from callxml.runtime.stream import StreamInfo

__all__ = ["CallEngine", "EngineControl"]

#: Twilio: "The 'To' number is not a valid phone number" (also used for bad SIP URIs).
INVALID_TO = 21211
#: Twilio: "Call is not in-progress. Cannot redirect."
NOT_IN_PROGRESS = 21220
#: Twilio: service unavailable.
UNAVAILABLE = 20503
#: Twilio: too many requests (the account's concurrency or rate limit).
TOO_MANY_REQUESTS = 20429
#: Twilio: invalid parameter.
INVALID_PARAMETER = 20001
#: Twilio: the requested resource was not found.
NOT_FOUND = 20404


class CallEngine(Protocol):
    """What the adapter needs from the engine (:class:`~callxml.engine.server.Engine`)."""

    async def originate(self, account: AccountConfig, call: OutboundCall) -> CallRecord: ...

    def live(self, sid: str) -> LiveCall | None: ...

    def store_or_fail(self) -> Store: ...


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
            raise ApiError(
                429,
                TOO_MANY_REQUESTS,
                f"Too Many Requests: {exc}",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        except InvalidTarget as exc:
            raise ApiError(400, INVALID_TO, f"Invalid 'To': {exc.to} ({exc.reason})") from None

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

    async def create_stream(
        self, account: AccountConfig, call_sid: str, stream: StreamRequest
    ) -> StreamRecord:
        live = self.engine.live(call_sid)
        if live is None:
            raise ApiError(400, NOT_IN_PROGRESS, "Call is not in-progress. Cannot start a stream.")
        sid = new_sid("MZ")
        action = act.StartStream(
            sid=sid,
            url=stream.url,
            name=stream.name or sid,
            tracks=STREAM_TRACKS[stream.track],
            parameters=stream.parameters,
            status_callback=stream.status_callback,
            status_callback_method=stream.status_callback_method,
        )
        try:
            info = live.start_stream(action)
        except CallNotInProgress:
            raise ApiError(
                400, NOT_IN_PROGRESS, "Call is not in-progress. Cannot start a stream."
            ) from None
        except StreamRefused as exc:
            raise ApiError(400, INVALID_PARAMETER, f"Cannot start the stream: {exc}") from None
        return _stream_record(account, call_sid, info)

    async def stop_stream(self, account: AccountConfig, call_sid: str, stream: str) -> StreamRecord:
        live = self.engine.live(call_sid)
        try:
            if live is None:
                raise NoSuchStream(stream)
            info = live.stop_stream(stream)
        except NoSuchStream:
            raise ApiError(
                404, NOT_FOUND, f"The requested resource {stream} was not found"
            ) from None
        return _stream_record(account, call_sid, info)

    def _not_live(self, sid: str, update: CallUpdate) -> CallRecord:
        """A call the engine does not run (any more): ending one that is over changes nothing
        and answers its record, as Twilio does; anything else is refused."""
        record = self.engine.store_or_fail().get_call(sid)
        ending = update.status is not None
        if ending and record is not None and record.status in TERMINAL_STATUSES:
            return record
        raise ApiError(400, NOT_IN_PROGRESS, "Call is not in-progress. Cannot redirect.")


def _stream_record(account: AccountConfig, call_sid: str, info: StreamInfo) -> StreamRecord:
    return StreamRecord(info.sid, account.sid, call_sid, info.name, info.status, info.updated)
