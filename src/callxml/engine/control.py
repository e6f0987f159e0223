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
from xml.sax.saxutils import escape, quoteattr

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
from callxml.engine.conference import Conferences, Participant, Room
from callxml.engine.config import AccountConfig
from callxml.engine.rooms_api import ParticipantRequest, ParticipantUpdate, ParticipantView
from callxml.engine.store import TERMINAL_STATUSES, CallRecord, ConferenceRecord, Store
from callxml.errors import CapacityError
from callxml.interpreter import actions as act
from callxml.interpreter import new_sid
from callxml.markup.verbs import STREAM_TRACKS
from callxml.runtime.stream import StreamInfo
from callxml.webhooks.base import Fetcher

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

    @property
    def conferences(self) -> Conferences: ...

    def fetcher_for(self, account: AccountConfig) -> Fetcher: ...


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

    # -- conferences ----------------------------------------------------------------------------

    def _room(self, account: AccountConfig, conference: str) -> Room | None:
        """The live room named by its sid or its friendly name, of ``account``."""
        rooms = self.engine.conferences
        room = rooms.live(conference) or rooms.live_by_name(account.sid, conference)
        return room if room is not None and room.account_sid == account.sid else None

    def _known(self, account: AccountConfig, conference: str) -> ConferenceRecord | None:
        record = self.engine.store_or_fail().get_conference(conference)
        return record if record is not None and record.account_sid == account.sid else None

    def _participant(
        self, account: AccountConfig, conference: str, key: str
    ) -> tuple[Room, Participant]:
        room = self._room(account, conference)
        participant = room.participant(key) if room is not None else None
        if room is None or participant is None:
            raise ApiError(404, NOT_FOUND, f"Participant {key} is not in conference {conference}")
        return room, participant

    async def end_conference(self, account: AccountConfig, sid: str) -> ConferenceRecord:
        room = self._room(account, sid)
        if room is not None:
            room.end("conference-ended-via-api", why="Conference ended via API")
            await self.engine.conferences.flush()
        record = self._known(account, sid)
        if record is None:
            raise ApiError(404, NOT_FOUND, f"The requested resource {sid} was not found")
        return record

    def participants(self, account: AccountConfig, conference: str) -> list[ParticipantView]:
        room = self._room(account, conference)
        if room is None:
            if self._known(account, conference) is None:
                raise ApiError(404, NOT_FOUND, f"The conference {conference} was not found")
            return []
        return [_view(p) for p in room.participants.values()]

    def participant(self, account: AccountConfig, conference: str, key: str) -> ParticipantView:
        return _view(self._participant(account, conference, key)[1])

    async def update_participant(
        self, account: AccountConfig, conference: str, key: str, update: ParticipantUpdate
    ) -> ParticipantView:
        room, participant = self._participant(account, conference, key)
        if update.muted is not None:
            room.set_muted(participant, update.muted)
        if update.hold is not None:
            room.set_hold(participant, update.hold)
        if update.announce_url is not None:
            await self.engine.conferences.announce(
                room,
                participant,
                update.announce_url,
                update.announce_method,
                fetcher=self.engine.fetcher_for(account),
                notes=participant.notes,
            )
        room.modified(participant)
        return _view(participant)

    async def remove_participant(self, account: AccountConfig, conference: str, key: str) -> None:
        room, participant = self._participant(account, conference, key)
        room.remove(participant, "Participant removed via API")

    async def add_participant(
        self, account: AccountConfig, conference: str, request: ParticipantRequest
    ) -> ParticipantView:
        room = self._room(account, conference)
        name = conference
        if room is not None:
            name = room.name
        elif (known := self._known(account, conference)) is not None:
            if known.status == "completed":
                raise ApiError(404, NOT_FOUND, f"The conference {conference} is over")
            name = known.friendly_name
        call = OutboundCall(
            to=request.to,
            from_=request.from_,
            url=None,
            twiml=_conference_twiml(name, request),
            timeout=request.timeout,
            time_limit=request.time_limit,
            status_callback=request.status_callback,
            status_callback_method=request.status_callback_method,
            status_callback_event=request.status_callback_event,
            caller_id=request.caller_id,
            sip_auth_username=request.sip_auth_username,
            sip_auth_password=request.sip_auth_password,
        )
        record = await self.create_call(account, call)
        return ParticipantView(
            call_sid=record.sid,
            conference_sid=room.sid if room is not None else None,
            label=request.label,
            muted=request.muted,
            hold=False,
            coaching=request.coach is not None,
            call_sid_to_coach=request.coach,
            start_conference_on_enter=request.start_conference_on_enter,
            end_conference_on_exit=request.end_conference_on_exit,
            status="queued",
            date_created=record.date_created,
            date_updated=record.date_updated,
        )

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


def _view(participant: Participant) -> ParticipantView:
    info = participant.info()
    return ParticipantView(
        call_sid=info.call_sid,
        conference_sid=info.conference_sid,
        label=info.label,
        muted=info.muted,
        hold=info.hold,
        coaching=info.coaching,
        call_sid_to_coach=info.call_sid_to_coach,
        start_conference_on_enter=info.start_conference_on_enter,
        end_conference_on_exit=info.end_conference_on_exit,
        status=info.status,
        date_created=info.date_created,
        date_updated=info.date_updated,
    )


def _conference_twiml(name: str, request: ParticipantRequest) -> str:
    """The document a dialled-out participant runs: ``<Dial><Conference>`` with its options."""
    attributes = {
        "muted": "true" if request.muted else "false",
        "beep": request.beep,
        "startConferenceOnEnter": "true" if request.start_conference_on_enter else "false",
        "endConferenceOnExit": "true" if request.end_conference_on_exit else "false",
        "waitMethod": request.wait_method,
        "maxParticipants": str(request.max_participants),
        "record": request.record,
        "trim": request.trim,
        "statusCallbackMethod": request.conference_status_callback_method,
    }
    optional = {
        "waitUrl": request.wait_url,
        "participantLabel": request.label,
        "coach": request.coach,
        "statusCallback": request.conference_status_callback,
        "statusCallbackEvent": " ".join(request.conference_status_callback_event) or None,
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    text = " ".join(f"{k}={quoteattr(v)}" for k, v in attributes.items())
    limit = request.time_limit
    return (
        f'<Response><Dial timeLimit="{limit}"><Conference {text}>{escape(name)}</Conference>'
        "</Dial></Response>"
    )
