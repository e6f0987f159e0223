"""The REST API for rooms: Twilio's Conferences, Participants, Queues and Members resources.

Owns the HTTP side of conferences and queues — routes, validation, the JSON shapes with
Twilio's field names, so the official SDKs work unchanged — and delegates everything live
(ending a room, muting, holding, announcing to, removing or dialling out a participant; a
queue's size and members, dequeuing one to a URL) to a :class:`RoomControl` (the engine's
:class:`~callxml.engine.control.EngineControl`). Records
come from the :class:`~callxml.engine.store.Store`. Errors are Twilio's error JSON, as in
:mod:`callxml.engine.api`, whose helpers (authentication, forms, paging) it shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from callxml.engine.api import (
    API_VERSION,
    UNSUPPORTED_PARAMETER,
    ApiError,
    _Api,
    _check_url,
    _date,
    _int,
    _method,
    _page,
    _paging,
    _unsupported,
)
from callxml.engine.config import AccountConfig
from callxml.engine.store import CONFERENCE_STATUSES, ConferenceRecord, QueueRecord

__all__ = [
    "MemberView",
    "ParticipantRequest",
    "ParticipantUpdate",
    "ParticipantView",
    "QueueView",
    "RoomControl",
    "add_room_routes",
    "conference_json",
    "parse_participant_form",
    "participant_json",
]


@dataclass(frozen=True, slots=True)
class ParticipantView:
    """A participant as the Participant resource shows it."""

    call_sid: str
    conference_sid: str | None
    label: str | None
    muted: bool
    hold: bool
    coaching: bool
    call_sid_to_coach: str | None
    start_conference_on_enter: bool
    end_conference_on_exit: bool
    status: str  # queued | connecting | connected | complete
    date_created: float
    date_updated: float


@dataclass(frozen=True, slots=True)
class ParticipantUpdate:
    """A validated participant update: each field None when not asked for."""

    muted: bool | None = None
    hold: bool | None = None
    announce_url: str | None = None
    announce_method: str = "POST"


@dataclass(frozen=True, slots=True)
class ParticipantRequest:
    """A validated ``POST …/Participants.json``: dial ``to`` into the conference."""

    to: str
    from_: str
    label: str | None = None
    timeout: int = 30
    time_limit: int = 14400
    muted: bool = False
    beep: str = "true"
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    wait_url: str | None = None
    wait_method: str = "POST"
    max_participants: int = 250
    record: str = "do-not-record"
    trim: str = "trim-silence"
    coach: str | None = None
    conference_status_callback: str | None = None
    conference_status_callback_method: str = "POST"
    conference_status_callback_event: tuple[str, ...] = ()
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_event: tuple[str, ...] = ("completed",)
    caller_id: str | None = None
    sip_auth_username: str | None = None
    sip_auth_password: str | None = None


@dataclass(frozen=True, slots=True)
class QueueView:
    """A queue with its live counts, as the Queue resource shows it."""

    record: QueueRecord
    current_size: int
    average_wait_time: int


@dataclass(frozen=True, slots=True)
class MemberView:
    """A caller waiting in a queue, as the Member resource shows it."""

    call_sid: str
    queue_sid: str
    position: int
    wait_time: int
    date_enqueued: float


class RoomControl(Protocol):
    """What the API needs from the engine to act on live rooms."""

    async def end_conference(self, account: AccountConfig, sid: str) -> ConferenceRecord: ...

    def participants(self, account: AccountConfig, conference: str) -> list[ParticipantView]: ...

    def participant(self, account: AccountConfig, conference: str, key: str) -> ParticipantView: ...

    async def update_participant(
        self, account: AccountConfig, conference: str, key: str, update: ParticipantUpdate
    ) -> ParticipantView: ...

    async def remove_participant(
        self, account: AccountConfig, conference: str, key: str
    ) -> None: ...

    async def add_participant(
        self, account: AccountConfig, conference: str, request: ParticipantRequest
    ) -> ParticipantView: ...

    async def list_queues(
        self, account: AccountConfig, *, limit: int, offset: int
    ) -> tuple[list[QueueView], int]: ...

    async def get_queue(self, account: AccountConfig, sid: str) -> QueueView: ...

    async def create_queue(self, account: AccountConfig, name: str, max_size: int) -> QueueView: ...

    async def update_queue(
        self, account: AccountConfig, sid: str, name: str | None, max_size: int | None
    ) -> QueueView: ...

    async def delete_queue(self, account: AccountConfig, sid: str) -> None: ...

    async def members(self, account: AccountConfig, queue: str) -> list[MemberView]: ...

    async def member(self, account: AccountConfig, queue: str, key: str) -> MemberView: ...

    async def dequeue_member(
        self, account: AccountConfig, queue: str, key: str, url: str, method: str
    ) -> MemberView: ...


# ------------------------------------------------------------------------------ JSON shapes


def conference_json(record: ConferenceRecord) -> dict[str, Any]:
    """A conference in the exact shape of Twilio's Conference resource."""
    base = f"/{API_VERSION}/Accounts/{record.account_sid}/Conferences/{record.sid}"
    return {
        "account_sid": record.account_sid,
        "api_version": API_VERSION,
        "call_sid_ending_conference": record.call_sid_ending_conference,
        "date_created": _date(record.date_created),
        "date_updated": _date(record.date_updated),
        "friendly_name": record.friendly_name,
        "reason_conference_ended": record.reason_conference_ended,
        "region": "us1",
        "sid": record.sid,
        "status": record.status,
        "subresource_uris": {"participants": f"{base}/Participants.json"},
        "uri": f"{base}.json",
    }


def participant_json(account_sid: str, view: ParticipantView) -> dict[str, Any]:
    """A participant in the exact shape of Twilio's Participant resource."""
    conference = view.conference_sid or ""
    return {
        "account_sid": account_sid,
        "call_sid": view.call_sid,
        "call_sid_to_coach": view.call_sid_to_coach,
        "coaching": view.coaching,
        "conference_sid": view.conference_sid,
        "date_created": _date(view.date_created),
        "date_updated": _date(view.date_updated),
        "end_conference_on_exit": view.end_conference_on_exit,
        "hold": view.hold,
        "label": view.label,
        "muted": view.muted,
        "start_conference_on_enter": view.start_conference_on_enter,
        "status": view.status,
        "queue_time": None,
        "uri": f"/{API_VERSION}/Accounts/{account_sid}/Conferences/{conference}"
        f"/Participants/{view.call_sid}.json",
    }


def queue_json(view: QueueView) -> dict[str, Any]:
    """A queue in the exact shape of Twilio's Queue resource."""
    record = view.record
    base = f"/{API_VERSION}/Accounts/{record.account_sid}/Queues/{record.sid}"
    return {
        "account_sid": record.account_sid,
        "average_wait_time": view.average_wait_time,
        "current_size": view.current_size,
        "date_created": _date(record.date_created),
        "date_updated": _date(record.date_updated),
        "friendly_name": record.friendly_name,
        "max_size": record.max_size,
        "sid": record.sid,
        "subresource_uris": {"members": f"{base}/Members.json"},
        "uri": f"{base}.json",
    }


def member_json(account_sid: str, view: MemberView) -> dict[str, Any]:
    """A queue member in the exact shape of Twilio's Member resource."""
    return {
        "call_sid": view.call_sid,
        "date_enqueued": _date(view.date_enqueued),
        "position": view.position,
        "queue_sid": view.queue_sid,
        "uri": f"/{API_VERSION}/Accounts/{account_sid}/Queues/{view.queue_sid}"
        f"/Members/{view.call_sid}.json",
        "wait_time": view.wait_time,
    }


# ------------------------------------------------------------------------------------ forms


def _bool(form: Mapping[str, str], name: str) -> bool | None:
    value = form.get(name)
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ApiError(400, 20001, f"{name} must be true or false")
    return lowered == "true"


def parse_participant_update(form: Mapping[str, str]) -> ParticipantUpdate:
    _unsupported(
        form,
        frozenset({"Muted", "Hold", "AnnounceUrl", "AnnounceMethod"}),
        "when updating a participant",
    )
    announce = form.get("AnnounceUrl") or None
    if announce is not None:
        _check_url(announce, "AnnounceUrl")
    update = ParticipantUpdate(
        muted=_bool(form, "Muted"),
        hold=_bool(form, "Hold"),
        announce_url=announce,
        announce_method=_method(form.get("AnnounceMethod"), "AnnounceMethod"),
    )
    if update.muted is None and update.hold is None and announce is None:
        raise ApiError(400, 20001, "Muted, Hold or AnnounceUrl is required")
    return update


#: What ``POST …/Participants.json`` honours; anything else is refused.
PARTICIPANT_FIELDS = frozenset(
    {
        "From",
        "To",
        "Label",
        "Timeout",
        "TimeLimit",
        "Muted",
        "Beep",
        "StartConferenceOnEnter",
        "EndConferenceOnExit",
        "WaitUrl",
        "WaitMethod",
        "MaxParticipants",
        "ConferenceRecord",
        "ConferenceTrim",
        "ConferenceStatusCallback",
        "ConferenceStatusCallbackMethod",
        "ConferenceStatusCallbackEvent",
        "Coaching",
        "CallSidToCoach",
        "StatusCallback",
        "StatusCallbackMethod",
        "StatusCallbackEvent",
        "CallerId",
        "SipAuthUsername",
        "SipAuthPassword",
    }
)
_CONFERENCE_EVENTS: tuple[str, ...] = (
    "start",
    "end",
    "join",
    "leave",
    "mute",
    "hold",
    "speaker",
    "modify",
    "announcement",
)


def _events(form: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    events = tuple(form.get(name, "").replace(",", " ").split())
    for event in events:
        if event not in allowed:
            raise ApiError(400, 20001, f"Invalid {name} {event!r}")
    return events


def parse_participant_form(form: Mapping[str, str]) -> ParticipantRequest:
    """Validate a create-participant form; what callxml does not honour is refused."""
    _unsupported(form, PARTICIPANT_FIELDS, "when adding a participant")
    to = form.get("To", "").strip()
    from_ = form.get("From", "").strip()
    if not to:
        raise ApiError(400, 21201, "No 'To' number is specified")
    if not from_:
        raise ApiError(400, 21603, "A 'From' phone number is required.")
    for value in (to, from_):
        if any(not ch.isprintable() for ch in value):
            raise ApiError(400, 21211, f"Invalid number {value!r}")
    beep = form.get("Beep", "true")
    if beep not in ("true", "false", "onEnter", "onExit"):
        raise ApiError(400, 20001, "Beep must be true, false, onEnter or onExit")
    record = form.get("ConferenceRecord", "do-not-record")
    record = {"true": "record-from-start", "false": "do-not-record"}.get(record, record)
    if record not in ("do-not-record", "record-from-start"):
        raise ApiError(400, 20001, "ConferenceRecord must be record-from-start or do-not-record")
    trim = form.get("ConferenceTrim", "trim-silence")
    if trim not in ("trim-silence", "do-not-trim"):
        raise ApiError(400, 20001, "ConferenceTrim must be trim-silence or do-not-trim")
    if _bool(form, "Coaching") is False and form.get("CallSidToCoach"):
        raise ApiError(400, 20001, "CallSidToCoach needs Coaching=true")
    if _bool(form, "Coaching") and not form.get("CallSidToCoach"):
        raise ApiError(400, 20001, "Coaching=true needs CallSidToCoach")
    wait_url = form.get("WaitUrl")
    if wait_url:
        _check_url(wait_url, "WaitUrl")
    urls = {}
    for name in ("ConferenceStatusCallback", "StatusCallback"):
        url = form.get(name) or None
        if url is not None:
            _check_url(url, name)
        urls[name] = url
    return ParticipantRequest(
        to=to,
        from_=from_,
        label=form.get("Label") or None,
        timeout=_int(form.get("Timeout", "30"), "Timeout", 5, 600),
        time_limit=_int(form.get("TimeLimit", "14400"), "TimeLimit", 1, 86400),
        muted=bool(_bool(form, "Muted")),
        beep=beep,
        start_conference_on_enter=_bool(form, "StartConferenceOnEnter") is not False,
        end_conference_on_exit=bool(_bool(form, "EndConferenceOnExit")),
        wait_url=wait_url,
        wait_method=_method(form.get("WaitMethod"), "WaitMethod"),
        max_participants=_int(form.get("MaxParticipants", "250"), "MaxParticipants", 2, 250),
        record=record,
        trim=trim,
        coach=form.get("CallSidToCoach") or None,
        conference_status_callback=urls["ConferenceStatusCallback"],
        conference_status_callback_method=_method(
            form.get("ConferenceStatusCallbackMethod"), "ConferenceStatusCallbackMethod"
        ),
        conference_status_callback_event=_events(
            form, "ConferenceStatusCallbackEvent", _CONFERENCE_EVENTS
        ),
        status_callback=urls["StatusCallback"],
        status_callback_method=_method(form.get("StatusCallbackMethod"), "StatusCallbackMethod"),
        status_callback_event=_events(
            form, "StatusCallbackEvent", ("initiated", "ringing", "answered", "completed")
        )
        or ("completed",),
        caller_id=form.get("CallerId") or None,
        sip_auth_username=form.get("SipAuthUsername") or None,
        sip_auth_password=form.get("SipAuthPassword") or None,
    )


# --------------------------------------------------------------------------------- handlers


class _RoomsApi:
    def __init__(self, api: _Api, control: RoomControl) -> None:
        self.api = api
        self.control = control

    async def list_conferences(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        query = request.query
        for name in query:
            if name not in ("Status", "FriendlyName", "PageSize", "Page", "PageToken"):
                raise ApiError(400, UNSUPPORTED_PARAMETER, f"{name} is not a supported filter")
        page_size, page = _paging(query)
        status = query.get("Status")
        if status is not None and status not in CONFERENCE_STATUSES:
            raise ApiError(400, 20001, f"Invalid Status {status!r}")
        friendly_name = query.get("FriendlyName")
        store = self.api.store
        total = await self.api.in_thread(
            store.count_conferences, account.sid, status=status, friendly_name=friendly_name
        )
        records = await self.api.in_thread(
            store.list_conferences,
            account.sid,
            status=status,
            friendly_name=friendly_name,
            limit=page_size,
            offset=page * page_size,
        )
        kept = {k: query[k] for k in ("Status", "FriendlyName") if k in query}
        body = _page(
            "conferences",
            [conference_json(r) for r in records],
            request.path,
            kept,
            page=page,
            page_size=page_size,
            total=total,
        )
        return web.json_response(body)

    async def _record(self, account: AccountConfig, request: web.Request) -> ConferenceRecord:
        sid = request.match_info["conference"]
        record = await self.api.in_thread(self.api.store.get_conference, sid)
        if record is None or record.account_sid != account.sid:
            raise ApiError(404, 20404, f"The requested resource {request.path} was not found")
        assert isinstance(record, ConferenceRecord)
        return record

    async def get_conference(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        return web.json_response(conference_json(await self._record(account, request)))

    async def update_conference(self, request: web.Request) -> web.Response:
        """``Status=completed`` ends the conference for everyone."""
        account = self.api.authenticate(request)
        record = await self._record(account, request)
        form = await self.api.form(request)
        _unsupported(form, frozenset({"Status"}), "when updating a conference")
        if form.get("Status") != "completed":
            raise ApiError(400, 20001, "Status must be 'completed'")
        if record.status != "completed":
            record = await self.control.end_conference(account, record.sid)
        return web.json_response(conference_json(record))

    async def list_participants(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        conference = request.match_info["conference"]
        for name in request.query:
            if name not in ("PageSize", "Page", "PageToken"):
                raise ApiError(400, UNSUPPORTED_PARAMETER, f"{name} is not a supported filter")
        page_size, page = _paging(request.query)
        views = self.control.participants(account, conference)
        chosen = views[page * page_size : (page + 1) * page_size]
        body = _page(
            "participants",
            [participant_json(account.sid, p) for p in chosen],
            request.path,
            {},
            page=page,
            page_size=page_size,
            total=len(views),
        )
        return web.json_response(body)

    async def get_participant(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        view = self.control.participant(
            account, request.match_info["conference"], request.match_info["participant"]
        )
        return web.json_response(participant_json(account.sid, view))

    async def update_participant(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        update = parse_participant_update(await self.api.form(request))
        view = await self.control.update_participant(
            account, request.match_info["conference"], request.match_info["participant"], update
        )
        return web.json_response(participant_json(account.sid, view))

    async def delete_participant(self, request: web.Request) -> web.Response:
        """Remove (kick) the participant: its ``<Dial>`` ends, its flow goes on."""
        account = self.api.authenticate(request)
        await self.control.remove_participant(
            account, request.match_info["conference"], request.match_info["participant"]
        )
        return web.Response(status=204)

    async def create_participant(self, request: web.Request) -> web.Response:
        """Dial ``To`` and put the answered call in the conference."""
        account = self.api.authenticate(request)
        participant = parse_participant_form(await self.api.form(request))
        view = await self.control.add_participant(
            account, request.match_info["conference"], participant
        )
        return web.json_response(participant_json(account.sid, view), status=201)


class _QueuesApi:
    def __init__(self, api: _Api, control: RoomControl) -> None:
        self.api = api
        self.control = control

    async def list_queues(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        for name in request.query:
            if name not in ("PageSize", "Page", "PageToken"):
                raise ApiError(400, UNSUPPORTED_PARAMETER, f"{name} is not a supported filter")
        page_size, page = _paging(request.query)
        views, total = await self.control.list_queues(
            account, limit=page_size, offset=page * page_size
        )
        body = _page(
            "queues",
            [queue_json(v) for v in views],
            request.path,
            {},
            page=page,
            page_size=page_size,
            total=total,
        )
        return web.json_response(body)

    @staticmethod
    def _max_size(form: Mapping[str, str]) -> int | None:
        raw = form.get("MaxSize")
        return None if raw is None else _int(raw, "MaxSize", 1, 5000)

    async def create_queue(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        form = await self.api.form(request)
        _unsupported(form, frozenset({"FriendlyName", "MaxSize"}), "when creating a queue")
        name = form.get("FriendlyName", "").strip()
        if not name or len(name) > 64:
            raise ApiError(400, 20001, "FriendlyName is required (at most 64 characters)")
        view = await self.control.create_queue(account, name, self._max_size(form) or 100)
        return web.json_response(queue_json(view), status=201)

    async def get_queue(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        view = await self.control.get_queue(account, request.match_info["queue"])
        return web.json_response(queue_json(view))

    async def update_queue(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        form = await self.api.form(request)
        _unsupported(form, frozenset({"FriendlyName", "MaxSize"}), "when updating a queue")
        name = form.get("FriendlyName")
        if name is not None and not (0 < len(name.strip()) <= 64):
            raise ApiError(400, 20001, "FriendlyName must have 1 to 64 characters")
        view = await self.control.update_queue(
            account,
            request.match_info["queue"],
            name.strip() if name else None,
            self._max_size(form),
        )
        return web.json_response(queue_json(view))

    async def delete_queue(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        await self.control.delete_queue(account, request.match_info["queue"])
        return web.Response(status=204)

    async def list_members(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        for name in request.query:
            if name not in ("PageSize", "Page", "PageToken"):
                raise ApiError(400, UNSUPPORTED_PARAMETER, f"{name} is not a supported filter")
        page_size, page = _paging(request.query)
        views = await self.control.members(account, request.match_info["queue"])
        chosen = views[page * page_size : (page + 1) * page_size]
        body = _page(
            "queue_members",
            [member_json(account.sid, v) for v in chosen],
            request.path,
            {},
            page=page,
            page_size=page_size,
            total=len(views),
        )
        return web.json_response(body)

    async def get_member(self, request: web.Request) -> web.Response:
        account = self.api.authenticate(request)
        view = await self.control.member(
            account, request.match_info["queue"], request.match_info["member"]
        )
        return web.json_response(member_json(account.sid, view))

    async def dequeue_member(self, request: web.Request) -> web.Response:
        """Take the member out of the queue and run the document at ``Url`` on its call."""
        account = self.api.authenticate(request)
        form = await self.api.form(request)
        _unsupported(form, frozenset({"Url", "Method"}), "when dequeuing a member")
        url = form.get("Url") or ""
        if not url:
            raise ApiError(400, 21205, "Url parameter is required.")
        _check_url(url, "Url")
        view = await self.control.dequeue_member(
            account,
            request.match_info["queue"],
            request.match_info["member"],
            url,
            _method(form.get("Method"), "Method"),
        )
        return web.json_response(member_json(account.sid, view))


def add_room_routes(app: web.Application, api: _Api, control: Any) -> None:
    """Serve the Conferences, Participants, Queues and Members resources on ``app`` (``control``: a
    :class:`RoomControl`; :func:`callxml.engine.api.build_app` calls this through its
    ``routes``)."""
    rooms = _RoomsApi(api, control)
    prefix = f"/{API_VERSION}/Accounts/{{account}}"
    conference = f"{prefix}/Conferences/{{conference}}"
    participant = f"{conference}/Participants/{{participant}}.json"
    app.router.add_get(f"{prefix}/Conferences.json", rooms.list_conferences)
    app.router.add_get(f"{conference}.json", rooms.get_conference)
    app.router.add_post(f"{conference}.json", rooms.update_conference)
    app.router.add_get(f"{conference}/Participants.json", rooms.list_participants)
    app.router.add_post(f"{conference}/Participants.json", rooms.create_participant)
    app.router.add_get(participant, rooms.get_participant)
    app.router.add_post(participant, rooms.update_participant)
    app.router.add_delete(participant, rooms.delete_participant)
    queues = _QueuesApi(api, control)
    queue = f"{prefix}/Queues/{{queue}}"
    member = f"{queue}/Members/{{member}}.json"
    app.router.add_get(f"{prefix}/Queues.json", queues.list_queues)
    app.router.add_post(f"{prefix}/Queues.json", queues.create_queue)
    app.router.add_get(f"{queue}.json", queues.get_queue)
    app.router.add_post(f"{queue}.json", queues.update_queue)
    app.router.add_delete(f"{queue}.json", queues.delete_queue)
    app.router.add_get(f"{queue}/Members.json", queues.list_members)
    app.router.add_get(member, queues.get_member)
    app.router.add_post(member, queues.dequeue_member)
