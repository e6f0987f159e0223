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

import asyncio
from typing import Protocol
from xml.sax.saxutils import escape, quoteattr

from callxml.engine.api import (
    ApiError,
    CallUpdate,
    OutboundCall,
    RegistrationInfo,
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
from callxml.engine.queues import LiveQueue, Member, Queues
from callxml.engine.rooms_api import (
    MemberView,
    ParticipantRequest,
    ParticipantUpdate,
    ParticipantView,
    QueueView,
)
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
#: Twilio: a queue with this friendly name exists already.
QUEUE_EXISTS = 22003


class CallEngine(Protocol):
    """What the adapter needs from the engine (:class:`~callxml.engine.server.Engine`)."""

    async def originate(self, account: AccountConfig, call: OutboundCall) -> CallRecord: ...

    def live(self, sid: str) -> LiveCall | None: ...

    def store_or_fail(self) -> Store: ...

    @property
    def conferences(self) -> Conferences: ...

    @property
    def queues(self) -> Queues: ...

    def fetcher_for(self, account: AccountConfig) -> Fetcher: ...
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

    # -- queues ---------------------------------------------------------------------------------

    def _queue_view(self, queue: LiveQueue) -> QueueView:
        size, average = self.engine.queues.counts(queue)
        return QueueView(queue.record, size, average)

    async def _queue(self, account: AccountConfig, sid: str) -> LiveQueue:
        store = self.engine.store_or_fail()
        record = await asyncio.to_thread(store.get_queue, sid)
        if record is None or record.account_sid != account.sid:
            raise ApiError(404, NOT_FOUND, f"The requested resource Queues/{sid} was not found")
        found = await self.engine.queues.find(account.sid, record.friendly_name)
        assert found is not None
        return found

    async def list_queues(
        self, account: AccountConfig, *, limit: int, offset: int
    ) -> tuple[list[QueueView], int]:
        store = self.engine.store_or_fail()
        records = await asyncio.to_thread(
            store.list_queues, account.sid, limit=limit, offset=offset
        )
        total = await asyncio.to_thread(store.count_queues, account.sid)
        views = []
        for record in records:
            found = await self.engine.queues.find(account.sid, record.friendly_name)
            if found is not None:
                views.append(self._queue_view(found))
        return views, total

    async def get_queue(self, account: AccountConfig, sid: str) -> QueueView:
        return self._queue_view(await self._queue(account, sid))

    async def create_queue(self, account: AccountConfig, name: str, max_size: int) -> QueueView:
        try:
            await self.engine.queues.create(account.sid, name, max_size)
        except ValueError:
            raise ApiError(400, QUEUE_EXISTS, f"A queue named {name!r} already exists") from None
        found = await self.engine.queues.find(account.sid, name)
        assert found is not None
        return self._queue_view(found)

    async def update_queue(
        self, account: AccountConfig, sid: str, name: str | None, max_size: int | None
    ) -> QueueView:
        queue = await self._queue(account, sid)
        changes: dict[str, object] = {}
        if name is not None:
            changes["friendly_name"] = name
        if max_size is not None:
            changes["max_size"] = max_size
        try:
            await self.engine.queues.update(queue.record, **changes)
        except ValueError:
            raise ApiError(400, QUEUE_EXISTS, f"A queue named {name!r} already exists") from None
        return self._queue_view(queue)

    async def delete_queue(self, account: AccountConfig, sid: str) -> None:
        queue = await self._queue(account, sid)
        if queue.members:
            raise ApiError(400, INVALID_PARAMETER, "The queue has callers waiting in it")
        await self.engine.queues.delete(queue.record)

    async def members(self, account: AccountConfig, queue: str) -> list[MemberView]:
        live = await self._queue(account, queue)
        return [_member_view(live, m) for m in live.members]

    async def member(self, account: AccountConfig, queue: str, key: str) -> MemberView:
        live = await self._queue(account, queue)
        member = self.engine.queues.take_front(live, None if key == "Front" else key)
        if member is None:
            raise ApiError(404, NOT_FOUND, f"No member {key} in queue {queue}")
        return _member_view(live, member)

    async def dequeue_member(
        self, account: AccountConfig, queue: str, key: str, url: str, method: str
    ) -> MemberView:
        """The member leaves the queue and its call runs the document at ``url``."""
        live = await self._queue(account, queue)
        member = self.engine.queues.take_front(live, None if key == "Front" else key)
        call = self.engine.live(member.call_sid) if member is not None else None
        if member is None or call is None:
            raise ApiError(404, NOT_FOUND, f"No member {key} in queue {queue}")
        view = _member_view(live, member)
        try:
            call.redirect(url, method, None)
        except CallNotInProgress:
            raise ApiError(404, NOT_FOUND, f"No member {key} in queue {queue}") from None
        return view

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


def _member_view(queue: LiveQueue, member: Member) -> MemberView:
    info = queue.info(member)
    return MemberView(
        info.call_sid, info.queue_sid, info.position, info.wait_time, info.date_enqueued
    )


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
