"""The REST API: a wire-compatible subset of Twilio's 2010-04-01 Calls resource.

Owns HTTP routing, Basic authentication, request validation and the JSON shapes, so existing
Twilio SDKs work with only the base URL changed. Starting, redirecting and ending live calls is
delegated to a :class:`CallControl` (the runtime), which keeps this module free of SIP and media;
records come from the :class:`~callxml.engine.store.Store`.

Errors are JSON ``{"code", "message", "more_info", "status"}`` with Twilio's error codes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import email.utils
import hashlib
import hmac
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from callxml.engine.config import AccountConfig, EngineConfig
from callxml.engine.store import (
    CALL_STATUSES,
    TERMINAL_STATUSES,
    CallEvent,
    CallRecord,
    RecordingRecord,
    Store,
    TimeRange,
)
from callxml.media.amd import AmdSettings

__all__ = [
    "API_VERSION",
    "ApiError",
    "CallControl",
    "CallUpdate",
    "OutboundCall",
    "RegistrationInfo",
    "build_app",
    "parse_create_form",
    "parse_stream_form",
    "parse_update_form",
    "recording_uri",
]

API_VERSION = "2010-04-01"
MAX_PAGE_SIZE = 1000
MAX_FORM_BYTES = 64 * 1024
#: Form fields Twilio SDKs send once per value (``StatusCallbackEvent=initiated&…=answered``).
REPEATABLE_FIELDS = frozenset({"StatusCallbackEvent", "RecordingStatusCallbackEvent"})
#: What ``POST Calls.json`` honours; any other parameter is refused, never silently ignored.
CREATE_FIELDS = frozenset(
    {
        "To",
        "From",
        "Url",
        "Twiml",
        "Method",
        "FallbackUrl",
        "FallbackMethod",
        "StatusCallback",
        "StatusCallbackEvent",
        "StatusCallbackMethod",
        "Timeout",
        "TimeLimit",
        "SipAuthUsername",
        "SipAuthPassword",
        "SendDigits",
        "CallerId",
        "Record",
        "RecordingChannels",
        "RecordingTrack",
        "RecordingStatusCallback",
        "RecordingStatusCallbackMethod",
        "RecordingStatusCallbackEvent",
        "MachineDetection",
        "MachineDetectionTimeout",
        "MachineDetectionSpeechThreshold",
        "MachineDetectionSpeechEndThreshold",
        "MachineDetectionSilenceTimeout",
        "AsyncAmd",
        "AsyncAmdStatusCallback",
        "AsyncAmdStatusCallbackMethod",
    }
)
#: What ``POST Calls/{Sid}.json`` honours.
UPDATE_FIELDS = frozenset({"Url", "Method", "Twiml", "Status"})
#: The filters of ``GET Calls.json``, kept in its page URIs.
CALL_FILTERS = frozenset(
    {
        "Status",
        "To",
        "From",
        "ParentCallSid",
        "StartTime",
        "StartTime<",
        "StartTime>",
        "EndTime",
        "EndTime<",
        "EndTime>",
    }
)
#: Twilio's "Invalid parameter": what a parameter callxml does not honour is answered with.
UNSUPPORTED_PARAMETER = 20001
#: Why some well-known parameters are refused.
UNSUPPORTED_HINTS = {
    "ApplicationSid": "there are no TwiML applications; give Url or Twiml",
    "Trim": "recordings are not trimmed",
}


class ApiError(Exception):
    """An error the API reports as Twilio does: HTTP status plus a Twilio error code."""

    def __init__(
        self, status: int, code: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """A validated ``POST …/Calls.json`` request."""

    to: str
    from_: str
    url: str | None
    twiml: str | None
    method: str = "POST"
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_event: tuple[str, ...] = ("completed",)
    status_callback_method: str = "POST"
    timeout: int = 60
    sip_auth_username: str | None = None
    sip_auth_password: str | None = None
    time_limit: int = 14400
    send_digits: str | None = None
    caller_id: str | None = None
    record: bool = False
    recording_channels: str = "mono"  # mono | dual
    recording_track: str = "both"  # both | inbound | outbound
    recording_status_callback: str | None = None
    recording_status_callback_method: str = "POST"
    recording_status_callback_event: tuple[str, ...] = ("completed",)
    #: ``MachineDetection``: None when not asked for.
    machine_detection: AmdSettings | None = None
    async_amd: bool = False
    async_amd_status_callback: str | None = None
    async_amd_status_callback_method: str = "POST"


@dataclass(frozen=True, slots=True)
class CallUpdate:
    """A validated ``POST …/Calls/{Sid}.json`` request: end the call (``status``), or else
    replace what it is doing with the document at ``url`` or the inline ``twiml``."""

    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    status: str | None = None  # completed | canceled


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A validated ``POST …/Calls/{Sid}/Streams.json``: fork the live call's audio to ``url``."""

    url: str
    name: str | None = None
    track: str = "inbound_track"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A media stream of a live call, as the Stream resource shows it."""

    sid: str
    account_sid: str
    call_sid: str
    name: str
    status: str  # in-progress | stopped
    date_updated: float


@dataclass(frozen=True)
class RegistrationInfo:
    """One ``[[registrations]]`` entry as ``Registrations.json`` shows it: its state
    (``registering``, ``registered``, ``failing``, ``unregistering``, ``stopped``), until when the
    carrier holds our binding, the last final response, consecutive failures, the next attempt
    (times in Unix seconds) and the flow (the connection calls come back over)."""

    name: str
    registrar: str
    username: str
    domain: str
    state: str
    registered_until: float | None
    last_response: str
    failures: int
    next_attempt: float | None
    expires: int
    flow: str | None


class CallControl(Protocol):
    """What the API needs from the runtime to act on live calls."""

    async def create_call(self, account: AccountConfig, call: OutboundCall) -> CallRecord: ...

    async def update_call(
        self, account: AccountConfig, sid: str, update: CallUpdate
    ) -> CallRecord: ...

    async def create_stream(
        self, account: AccountConfig, call_sid: str, stream: StreamRequest
    ) -> StreamRecord: ...

    async def stop_stream(
        self, account: AccountConfig, call_sid: str, stream: str
    ) -> StreamRecord: ...
    def registrations(self, account: AccountConfig) -> list[RegistrationInfo]:
        """The account's registrations with carriers (those of its domains)."""
        ...


def _date(ts: float | None) -> str | None:
    return (
        None if ts is None else email.utils.formatdate(ts, usegmt=False).replace("-0000", "+0000")
    )


def recording_uri(account_sid: str, sid: str) -> str:
    """The path of a recording's media (``.json`` for its metadata), as Twilio names it."""
    return f"/{API_VERSION}/Accounts/{account_sid}/Recordings/{sid}"


def call_json(record: CallRecord) -> dict[str, Any]:
    """A call record in the exact shape of Twilio's Call resource."""
    base = f"/{API_VERSION}/Accounts/{record.account_sid}/Calls/{record.sid}"
    return {
        "account_sid": record.account_sid,
        "annotation": None,
        "answered_by": record.answered_by,
        "api_version": API_VERSION,
        "caller_name": record.caller_name,
        "date_created": _date(record.date_created),
        "date_updated": _date(record.date_updated),
        "direction": record.direction,
        "duration": None if record.duration is None else str(record.duration),
        "end_time": _date(record.end_time),
        "forwarded_from": record.forwarded_from,
        "from": record.from_,
        "from_formatted": record.from_,
        "group_sid": None,
        "parent_call_sid": record.parent_call_sid,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": record.sid,
        "start_time": _date(record.start_time),
        "status": record.status,
        # Only what this API serves: Twilio's payments, siprec and user-defined messages have
        # no counterpart here, so they are not advertised.
        "subresource_uris": {
            "events": f"{base}/Events.json",
            "notifications": f"{base}/Notifications.json",
            "recordings": f"{base}/Recordings.json",
            "streams": f"{base}/Streams.json",
        },
        "to": record.to,
        "to_formatted": record.to,
        "trunk_sid": None,
        "uri": f"{base}.json",
        # callxml extensions (Twilio SDKs ignore unknown keys)
        "sip_response_code": record.sip_response_code,
        "sip_call_id": record.sip_call_id,
    }


def recording_json(rec: RecordingRecord, base_url: str) -> dict[str, Any]:
    uri = recording_uri(rec.account_sid, rec.sid)
    return {
        "account_sid": rec.account_sid,
        "api_version": API_VERSION,
        "call_sid": rec.call_sid,
        "channels": rec.channels,
        "date_created": _date(rec.date_created),
        "date_updated": _date(rec.date_created),
        "start_time": _date(rec.date_created),
        "duration": str(rec.duration),
        "sid": rec.sid,
        "source": rec.source,
        "status": rec.status,
        "conference_sid": None,
        "price": None,
        "price_unit": "USD",
        "error_code": None,
        "encryption_details": None,
        "track": "both",
        "uri": f"{uri}.json",
        "media_url": f"{base_url}{uri}",
        "subresource_uris": {},
    }


def stream_json(stream: StreamRecord) -> dict[str, Any]:
    """A stream in the exact shape of Twilio's Stream resource."""
    base = f"/{API_VERSION}/Accounts/{stream.account_sid}/Calls/{stream.call_sid}/Streams"
    return {
        "account_sid": stream.account_sid,
        "call_sid": stream.call_sid,
        "date_updated": _date(stream.date_updated),
        "name": stream.name,
        "sid": stream.sid,
        "status": stream.status,
        "uri": f"{base}/{stream.sid}.json",
    }


def account_json(account: AccountConfig) -> dict[str, Any]:
    """An account in the shape of Twilio's Account resource (without the auth token)."""
    base = f"/{API_VERSION}/Accounts/{account.sid}"
    return {
        "auth_token": None,  # never echoed: the client already has it
        "date_created": None,
        "date_updated": None,
        "friendly_name": account.friendly_name or account.sid,
        "owner_account_sid": account.sid,
        "sid": account.sid,
        "status": "active",
        "type": "Full",
        "uri": f"{base}.json",
        "subresource_uris": {
            "calls": f"{base}/Calls.json",
            "recordings": f"{base}/Recordings.json",
        },
    }


def notification_json(account_sid: str, event: CallEvent) -> dict[str, Any]:
    """A call's warning or error event in the shape of Twilio's Notification resource."""
    sid = "NO" + hashlib.md5(f"{event.call_sid}:{event.seq}".encode()).hexdigest()
    code = event.data.get("code")
    base = f"/{API_VERSION}/Accounts/{account_sid}/Calls/{event.call_sid}/Notifications"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "call_sid": event.call_sid,
        "date_created": _date(event.at),
        "date_updated": _date(event.at),
        "error_code": None if code is None else str(code),
        "log": "0" if event.kind == "error" else "1",
        "message_date": _date(event.at),
        "message_text": str(event.data.get("message", "")),
        "more_info": f"https://www.twilio.com/docs/errors/{code}" if code else None,
        "request_method": None,
        "request_url": None,
        "sid": sid,
        "uri": f"{base}/{sid}.json",
    }


def _page(
    key: str,
    items: list[dict[str, Any]],
    path: str,
    query: Mapping[str, str],
    *,
    page: int,
    page_size: int,
    total: int,
) -> dict[str, Any]:
    """A page of a 2010-04-01 list resource (``calls``, ``recordings``...), with the page URIs
    Twilio's SDKs follow."""

    def page_uri(number: int) -> str:
        return path + "?" + urlencode({**query, "PageSize": page_size, "Page": number})

    last_page = max(0, math.ceil(total / page_size) - 1)
    start = page * page_size
    return {
        key: items,
        "end": start + len(items) - 1 if items else start,
        "first_page_uri": page_uri(0),
        "next_page_uri": page_uri(page + 1) if page < last_page else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": page_uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": page_uri(page),
    }


def _error_response(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        response = _error_response(exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response
    except web.HTTPNotFound:
        return _error_response(404, 20404, f"The requested resource {request.path} was not found")
    except web.HTTPMethodNotAllowed:
        return _error_response(405, 20004, "Method not allowed")
    except web.HTTPRequestEntityTooLarge:
        return _error_response(413, 21617, "Request entity too large")


class _Api:
    def __init__(self, config: EngineConfig, store: Store, control: CallControl) -> None:
        self.config = config
        self.store = store
        self.control = control

    # -- helpers --------------------------------------------------------------------------------

    def authenticate(self, request: web.Request) -> AccountConfig:
        """HTTP Basic with AccountSid:AuthToken, and the path's account must be that account."""
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        username = password = ""
        if scheme.lower() == "basic":
            try:
                username, _, password = base64.b64decode(encoded).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                pass
        account = self.config.account(username)
        ok = account is not None and hmac.compare_digest(
            account.auth_token.encode(), password.encode()
        )
        if not ok or account is None:
            raise ApiError(401, 20003, "Authenticate")
        if request.match_info.get("account") not in (None, account.sid):
            raise ApiError(404, 20404, f"The requested resource {request.path} was not found")
        return account

    async def form(self, request: web.Request) -> Mapping[str, str]:
        if request.content_length and request.content_length > MAX_FORM_BYTES:
            raise ApiError(413, 21617, "Request entity too large")
        data = await request.post()
        form: dict[str, str] = {}
        for key, value in data.items():
            if not isinstance(value, str):
                continue
            if key in form and key in REPEATABLE_FIELDS:  # SDKs repeat the key per value
                form[key] += " " + value
            else:
                form[key] = value
        return form

    def record_or_404(self, account: AccountConfig, sid: str, path: str) -> CallRecord:
        record = self.store.get_call(sid)
        if record is None or record.account_sid != account.sid:
            raise ApiError(404, 20404, f"The requested resource {path} was not found")
        return record

    async def in_thread(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kw)

    # -- handlers -------------------------------------------------------------------------------

    async def create_call(self, request: web.Request) -> web.Response:
        account = self.authenticate(request)
        form = await self.form(request)
        call = parse_create_form(form)
        record = await self.control.create_call(account, call)
        return web.json_response(call_json(record), status=201)

    async def list_calls(self, request: web.Request) -> web.Response:
        account = self.authenticate(request)
        query = request.query
        page_size, page = _paging(query)
        status = query.get("Status")
        if status is not None and status not in CALL_STATUSES:
            raise ApiError(400, 20001, f"Invalid Status {status!r}")
        filters: dict[str, Any] = {
            "status": status,
            "to": query.get("To"),
            "from_": query.get("From"),
            "parent_call_sid": query.get("ParentCallSid"),
            "start_time": _time_range(query, "StartTime"),
            "end_time": _time_range(query, "EndTime"),
        }
        total = await self.in_thread(self.store.count_calls, account.sid, **filters)
        records = await self.in_thread(
            self.store.list_calls, account.sid, limit=page_size, offset=page * page_size, **filters
        )
        path = f"/{API_VERSION}/Accounts/{account.sid}/Calls.json"
        kept = {k: v for k, v in query.items() if k in CALL_FILTERS}
        body = _page(
            "calls",
            [call_json(r) for r in records],
            path,
            kept,
            page=page,
            page_size=page_size,
            total=total,
        )
        return web.json_response(body)

    async def get_call(self, request: web.Request) -> web.Response:
        account = self.authenticate(request)
        record = self.record_or_404(account, request.match_info["sid"], request.path)
        return web.json_response(call_json(record))

    async def update_call(self, request: web.Request) -> web.Response:
        account = self.authenticate(request)
        sid = request.match_info["sid"]
        self.record_or_404(account, sid, request.path)
        update = parse_update_form(await self.form(request))
        record = await self.control.update_call(account, sid, update)
        return web.json_response(call_json(record))

    async def call_events(self, request: web.Request) -> web.Response:
        account = self.authenticate(request)
        sid = request.match_info["sid"]
        self.record_or_404(account, sid, request.path)
        events = await self.in_thread(self.store.list_events, sid, kind="webhook")
        items = []
        for event in events:
            data = event.data
            items.append(
                {
                    "request": {
                        "method": data.get("method"),
                        "url": data.get("url"),
                        "parameters": data.get("parameters", {}),
                    },
                    "response": {
                        "request_duration": data.get("duration_ms"),
                        "response_code": data.get("status"),
                        "response_body": data.get("body"),
                        "content_type": data.get("content_type"),
                        "error": data.get("error"),
                    },
                }
            )
        path = f"/{API_VERSION}/Accounts/{account.sid}/Calls/{sid}/Events.json"
        return web.json_response(
            {
                "events": items,
                "meta": {
                    "first_page_url": path,
                    "key": "events",
                    "next_page_url": None,
                    "page": 0,
                    "page_size": len(items),
                    "previous_page_url": None,
                    "url": path,
                },
            }
        )

    async def delete_call(self, request: web.Request) -> web.Response:
        """Delete a finished call's record (204); a call not over yet is refused (20009)."""
        account = self.authenticate(request)
        sid = request.match_info["sid"]
        record = self.record_or_404(account, sid, request.path)
        if record.status not in TERMINAL_STATUSES:
            raise ApiError(
                400, 20009, f"Call {sid} is {record.status}; end it before deleting its record"
            )
        await self.in_thread(self.store.delete_call, sid)
        return web.Response(status=204)

    async def call_notifications(self, request: web.Request) -> web.Response:
        account = self.authenticate(request)
        sid = request.match_info["sid"]
        self.record_or_404(account, sid, request.path)
        query = request.query
        page_size, page = _paging(query)
        events = await self.in_thread(self.store.list_events, sid)
        notes = [
            notification_json(account.sid, e) for e in events if e.kind in ("warning", "error")
        ]
        path = f"/{API_VERSION}/Accounts/{account.sid}/Calls/{sid}/Notifications.json"
        chunk = notes[page * page_size : (page + 1) * page_size]
        body = _page(
            "notifications", chunk, path, {}, page=page, page_size=page_size, total=len(notes)
        )
        return web.json_response(body)

    async def get_account(self, request: web.Request) -> web.Response:
        account = self.authenticate(request)
        return web.json_response(account_json(account))

    async def call_recordings(self, request: web.Request) -> web.Response:
        account = self.authenticate(request)
        sid = request.match_info["sid"]
        self.record_or_404(account, sid, request.path)
        return await self._recordings_page(request, account, call_sid=sid)

    async def list_recordings(self, request: web.Request) -> web.Response:
        account = self.authenticate(request)
        return await self._recordings_page(
            request, account, call_sid=request.query.get("CallSid") or None
        )

    async def _recordings_page(
        self, request: web.Request, account: AccountConfig, *, call_sid: str | None
    ) -> web.Response:
        page_size, page = _paging(request.query)
        total = await self.in_thread(
            self.store.count_account_recordings, account.sid, call_sid=call_sid
        )
        records = await self.in_thread(
            self.store.list_account_recordings,
            account.sid,
            call_sid=call_sid,
            limit=page_size,
            offset=page * page_size,
        )
        kept = {"CallSid": request.query["CallSid"]} if "CallSid" in request.query else {}
        body = _page(
            "recordings",
            [recording_json(r, self.config.base_url) for r in records],
            request.path,
            kept,
            page=page,
            page_size=page_size,
            total=total,
        )
        return web.json_response(body)

    async def _recording_or_404(
        self, request: web.Request, *, media: bool = False
    ) -> RecordingRecord:
        """The recording the path names, for an authenticated request; for ``media`` (the
        audio), an account whose ``media_auth`` is off needs no credentials."""
        owner = self.config.account(request.match_info.get("account", ""))
        if media and owner is not None and not owner.media_auth:
            account = owner
        else:
            account = self.authenticate(request)
        sid = request.match_info["sid"]
        rec: RecordingRecord | None = await self.in_thread(self.store.get_recording, sid)
        call_sid = request.match_info.get("call")
        if rec is None or rec.account_sid != account.sid or call_sid not in (None, rec.call_sid):
            raise ApiError(404, 20404, f"The requested resource {request.path} was not found")
        return rec

    async def get_recording(self, request: web.Request) -> web.StreamResponse:
        ext = request.match_info.get("ext") or ""
        rec = await self._recording_or_404(request, media=ext != ".json")
        if ext == ".json":
            return web.json_response(recording_json(rec, self.config.base_url))
        path = Path(rec.path)
        if not path.is_file():
            raise ApiError(404, 20404, f"The recording {rec.sid} has no media")
        if ext == ".mp3":
            try:
                path = await self.in_thread(mp3_of, path)
            except (RuntimeError, OSError) as exc:  # soundfile's LibsndfileError is a RuntimeError
                raise ApiError(500, 20500, f"cannot encode {rec.sid} as MP3: {exc}") from None
            return web.FileResponse(path, headers={"Content-Type": "audio/mpeg"})
        return web.FileResponse(path, headers={"Content-Type": "audio/x-wav"})

    async def delete_recording(self, request: web.Request) -> web.Response:
        """Delete a recording: its record and its audio file (204)."""
        rec = await self._recording_or_404(request)
        await self.in_thread(self.store.delete_recording, rec.sid)
        for path in (Path(rec.path), Path(rec.path).with_suffix(".mp3")):
            with contextlib.suppress(OSError):
                await self.in_thread(path.unlink)
        return web.Response(status=204)

    async def create_stream(self, request: web.Request) -> web.Response:
        """Fork a live call's audio to a WebSocket app (``<Start><Stream>`` from outside)."""
        account = self.authenticate(request)
        sid = request.match_info["sid"]
        self.record_or_404(account, sid, request.path)
        stream = parse_stream_form(await self.form(request))
        record = await self.control.create_stream(account, sid, stream)
        return web.json_response(stream_json(record), status=201)

    async def update_stream(self, request: web.Request) -> web.Response:
        """``Status=stopped`` ends a stream (by its sid or its name)."""
        account = self.authenticate(request)
        call_sid = request.match_info["call"]
        self.record_or_404(account, call_sid, request.path)
        form = await self.form(request)
        _unsupported(form, frozenset({"Status"}), "when updating a stream")
        if form.get("Status") != "stopped":
            raise ApiError(400, 20001, "Status must be 'stopped'")
        record = await self.control.stop_stream(account, call_sid, request.match_info["stream"])
        return web.json_response(stream_json(record))

    async def openapi(self, request: web.Request) -> web.Response:
        text = resources.files("callxml").joinpath("schemas/openapi.yaml").read_text()
        return web.Response(text=text, content_type="application/yaml")

    async def list_registrations(self, request: web.Request) -> web.Response:
        """``GET Registrations.json`` (a callxml extension): the account's registrations with
        carriers and where each stands. Never a password."""
        account = self.authenticate(request)
        items = [
            {
                "name": r.name,
                "registrar": r.registrar,
                "username": r.username,
                "domain": r.domain,
                "state": r.state,
                "registered_until": _date(r.registered_until),
                "expires": r.expires,
                "last_response": r.last_response or None,
                "failures": r.failures,
                "next_attempt": _date(r.next_attempt),
                "flow": r.flow,
            }
            for r in self.control.registrations(account)
        ]
        uri = f"/{API_VERSION}/Accounts/{account.sid}/Registrations.json"
        return web.json_response({"registrations": items, "uri": uri})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def mp3_of(wav: Path) -> Path:
    """The MP3 of a recording's WAV, encoded once beside it (libsndfile >= 1.1 writes MP3 through
    LAME, via soundfile) and served from there afterwards."""
    import soundfile

    mp3 = wav.with_suffix(".mp3")
    if mp3.is_file() and mp3.stat().st_mtime >= wav.stat().st_mtime:
        return mp3
    data, rate = soundfile.read(str(wav), dtype="int16")
    partial = mp3.with_suffix(".mp3.part")
    soundfile.write(str(partial), data, rate, format="MP3")
    partial.replace(mp3)
    return mp3


def _paging(query: Mapping[str, str]) -> tuple[int, int]:
    page_size = _int(query.get("PageSize", "50"), "PageSize", 1, MAX_PAGE_SIZE)
    page = _int(query.get("Page", "0"), "Page", 0, 10**6)
    return page_size, page


def _when(value: str, name: str) -> tuple[float, float]:
    """``YYYY-MM-DD`` (that UTC day) or ``YYYY-MM-DDTHH:MM:SSZ`` (that second), as the span of
    Unix time it covers: [start, end)."""
    for pattern, span in (("%Y-%m-%d", 86400.0), ("%Y-%m-%dT%H:%M:%SZ", 1.0)):
        try:
            moment = datetime.datetime.strptime(value.strip(), pattern)
        except ValueError:
            continue
        start = moment.replace(tzinfo=datetime.UTC).timestamp()
        return start, start + span
    raise ApiError(400, 20001, f"{name} must be a date (YYYY-MM-DD) or YYYY-MM-DDTHH:MM:SSZ")


def _time_range(query: Mapping[str, str], name: str) -> TimeRange:
    """Twilio's ``StartTime``/``EndTime`` filters: ``Name=D`` (on the UTC day of D),
    ``Name<=D`` (on or before D: the SDKs send ``Name<``) and ``Name>=D`` (on or after D:
    ``Name>``); D is a date (the whole day) or a UTC time to the second."""
    since: float | None = None
    until: float | None = None
    if (exact := query.get(name)) is not None:  # that UTC day (the SDKs send its midnight)
        moment = _when(exact, name)[0]
        since = moment - moment % 86400
        until = since + 86400
    if (before := query.get(f"{name}<")) is not None:
        end = _when(before, f"{name}<")[1]
        until = end if until is None else min(until, end)
    if (after := query.get(f"{name}>")) is not None:
        begin = _when(after, f"{name}>")[0]
        since = begin if since is None else max(since, begin)
    return since, until


def _unsupported(form: Mapping[str, str], supported: frozenset[str], what: str) -> None:
    """Refuse the first parameter callxml does not honour: never a silent 201."""
    for name in form:
        if name not in supported:
            hint = UNSUPPORTED_HINTS.get(name, "")
            raise ApiError(
                400,
                UNSUPPORTED_PARAMETER,
                f"{name} is not supported by callxml {what}" + (f": {hint}" if hint else ""),
            )


def _int(value: str, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, 20001, f"{name} must be an integer") from None
    if not low <= number <= high:
        raise ApiError(400, 20001, f"{name} must be between {low} and {high}")
    return number


def _method(value: str | None, name: str) -> str:
    method = (value or "POST").upper()
    if method not in ("GET", "POST"):
        raise ApiError(400, 21207, f"{name} must be GET or POST")
    return method


def _check_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(400, 21205, f"{name} is not a valid URL: {url}")
    return url


def parse_create_form(form: Mapping[str, str]) -> OutboundCall:
    """Validate a create-call form as Twilio does, with Twilio's error codes; a parameter
    callxml does not honour is refused (400, code 20001, naming it)."""
    _unsupported(form, CREATE_FIELDS, "when creating a call")
    to = form.get("To", "").strip()
    if not to:
        raise ApiError(400, 21201, "No 'To' number is specified")
    from_ = form.get("From", "").strip()
    if not from_:
        raise ApiError(400, 21603, "A 'From' phone number is required.")
    for name, value in (("To", to), ("From", from_)):
        if any(not ch.isprintable() for ch in value):  # CR/LF would end up in a SIP header
            raise ApiError(400, 21212 if name == "From" else 21211, f"Invalid '{name}': {value!r}")
    url = form.get("Url") or None
    twiml = form.get("Twiml") or None
    if url is None and twiml is None:
        raise ApiError(400, 21205, "Url parameter is required.")
    if url is not None:
        _check_url(url, "Url")
    fallback = form.get("FallbackUrl") or None
    if fallback is not None:
        _check_url(fallback, "FallbackUrl")
    callback = form.get("StatusCallback") or None
    if callback is not None:
        _check_url(callback, "StatusCallback")
    events = tuple(
        e
        for raw in form.get("StatusCallbackEvent", "completed").replace(",", " ").split()
        if (e := raw.strip().lower())
    )
    for event in events:
        if event not in ("initiated", "ringing", "answered", "completed"):
            raise ApiError(400, 21626, f"Invalid StatusCallbackEvent {event!r}")
    timeout = _int(form.get("Timeout", "60"), "Timeout", 1, 600)
    time_limit = _int(form.get("TimeLimit", "14400"), "TimeLimit", 1, 86400)
    send_digits = form.get("SendDigits") or None
    if send_digits is not None and (
        len(send_digits) > 32 or any(c not in "0123456789*#wW" for c in send_digits)
    ):
        raise ApiError(400, 20001, "SendDigits may hold only 0-9, *, # and w (at most 32)")
    caller_id = form.get("CallerId", "").strip() or None
    record = form.get("Record", "false").strip().lower()
    if record not in ("true", "false", ""):
        raise ApiError(400, 20001, "Record must be true or false")
    recording = _recording_options(form, record == "true")
    amd = _amd_options(form)
    return OutboundCall(
        to=to,
        from_=from_,
        url=url,
        twiml=twiml,
        method=_method(form.get("Method"), "Method"),
        fallback_url=fallback,
        fallback_method=_method(form.get("FallbackMethod"), "FallbackMethod"),
        status_callback=callback,
        status_callback_event=events or ("completed",),
        status_callback_method=_method(form.get("StatusCallbackMethod"), "StatusCallbackMethod"),
        timeout=timeout,
        sip_auth_username=form.get("SipAuthUsername") or None,
        sip_auth_password=form.get("SipAuthPassword") or None,
        time_limit=time_limit,
        send_digits=send_digits,
        caller_id=caller_id,
        **recording,
        **amd,
    )


def _amd_options(form: Mapping[str, str]) -> dict[str, Any]:
    """``MachineDetection`` and its knobs, with Twilio's ranges (the thresholds in ms, the
    timeout in seconds); the knobs mean nothing, and are refused, without it."""
    given = [name for name in form if name.startswith(("MachineDetection", "AsyncAmd"))]
    mode = form.get("MachineDetection", "").strip()
    if not mode:
        if given:
            raise ApiError(400, UNSUPPORTED_PARAMETER, f"{given[0]} needs MachineDetection")
        return {}
    if mode not in ("Enable", "DetectMessageEnd"):
        raise ApiError(400, 20001, "MachineDetection must be Enable or DetectMessageEnd")

    def number(name: str, default: int, low: int, high: int) -> int:
        return _int(form.get(name, str(default)), name, low, high)

    settings = AmdSettings.from_twilio(
        mode,
        number("MachineDetectionTimeout", 30, 3, 59),
        number("MachineDetectionSpeechThreshold", 2400, 1000, 6000),
        number("MachineDetectionSpeechEndThreshold", 1200, 500, 5000),
        number("MachineDetectionSilenceTimeout", 5000, 2000, 10000),
    )
    async_amd = form.get("AsyncAmd", "false").strip().lower() or "false"
    if async_amd not in ("true", "false"):
        raise ApiError(400, 20001, "AsyncAmd must be true or false")
    callback = form.get("AsyncAmdStatusCallback") or None
    if async_amd == "false" and (callback or form.get("AsyncAmdStatusCallbackMethod")):
        raise ApiError(400, UNSUPPORTED_PARAMETER, "AsyncAmdStatusCallback needs AsyncAmd=true")
    if callback is not None:
        _check_url(callback, "AsyncAmdStatusCallback")
    return {
        "machine_detection": settings,
        "async_amd": async_amd == "true",
        "async_amd_status_callback": callback,
        "async_amd_status_callback_method": _method(
            form.get("AsyncAmdStatusCallbackMethod"), "AsyncAmdStatusCallbackMethod"
        ),
    }


def _recording_options(form: Mapping[str, str], record: bool) -> dict[str, Any]:
    """``Record=true`` and its ``Recording*`` options (which mean nothing, and are refused,
    without it)."""
    given = [name for name in form if name.startswith("Recording")]
    if not record:
        if given:
            raise ApiError(400, UNSUPPORTED_PARAMETER, f"{given[0]} needs Record=true")
        return {}
    channels = form.get("RecordingChannels", "mono").strip().lower() or "mono"
    if channels not in ("mono", "dual"):
        raise ApiError(400, 20001, "RecordingChannels must be mono or dual")
    track = form.get("RecordingTrack", "both").strip().lower() or "both"
    if track not in ("both", "inbound", "outbound"):
        raise ApiError(400, 20001, "RecordingTrack must be both, inbound or outbound")
    callback = form.get("RecordingStatusCallback") or None
    if callback is not None:
        _check_url(callback, "RecordingStatusCallback")
    raw_events = form.get("RecordingStatusCallbackEvent", "completed").replace(",", " ").split()
    events = tuple(e.lower() for e in raw_events) or ("completed",)
    for event in events:
        if event not in ("in-progress", "completed", "absent"):
            raise ApiError(400, 20001, f"Invalid RecordingStatusCallbackEvent {event!r}")
    return {
        "record": True,
        "recording_channels": channels,
        "recording_track": track,
        "recording_status_callback": callback,
        "recording_status_callback_method": _method(
            form.get("RecordingStatusCallbackMethod"), "RecordingStatusCallbackMethod"
        ),
        "recording_status_callback_event": events,
    }


#: ``ParameterN.Name``/``ParameterN.Value`` of a stream (Twilio allows up to 99).
_STREAM_PARAMETER = re.compile(r"Parameter([1-9][0-9]?)\.(Name|Value)")
STREAM_FIELDS = frozenset({"Url", "Name", "Track", "StatusCallback", "StatusCallbackMethod"})


def parse_stream_form(form: Mapping[str, str]) -> StreamRequest:
    """Validate a create-stream form; what callxml does not honour is refused."""
    parameters: dict[int, dict[str, str]] = {}
    for name, value in form.items():
        match = _STREAM_PARAMETER.fullmatch(name)
        if match is not None:
            parameters.setdefault(int(match[1]), {})[match[2]] = value
        elif name not in STREAM_FIELDS:
            raise ApiError(
                400, UNSUPPORTED_PARAMETER, f"{name} is not supported by callxml for a stream"
            )
    url = form.get("Url", "").strip()
    scheme = urlsplit(url).scheme.lower() if url else ""
    if scheme not in ("wss", "ws") or not urlsplit(url).hostname:
        raise ApiError(400, 21205, f"Url must be a wss:// URL: {url!r}")
    track = form.get("Track", "inbound_track").strip() or "inbound_track"
    if track not in ("inbound_track", "outbound_track", "both_tracks"):
        raise ApiError(400, 20001, "Track must be inbound_track, outbound_track or both_tracks")
    callback = form.get("StatusCallback") or None
    if callback is not None:
        _check_url(callback, "StatusCallback")
    pairs = []
    for index in sorted(parameters):
        pair = parameters[index]
        if "Name" not in pair:
            raise ApiError(400, 20001, f"Parameter{index}.Value without Parameter{index}.Name")
        pairs.append((pair["Name"], pair.get("Value", "")))
    return StreamRequest(
        url=url,
        name=form.get("Name") or None,
        track=track,
        status_callback=callback,
        status_callback_method=_method(form.get("StatusCallbackMethod"), "StatusCallbackMethod"),
        parameters=tuple(pairs),
    )


def parse_update_form(form: Mapping[str, str]) -> CallUpdate:
    """Validate an update-call form as Twilio does, with Twilio's error codes; a parameter
    callxml does not honour is refused (400, code 20001, naming it)."""
    _unsupported(form, UPDATE_FIELDS, "when updating a call")
    url = form.get("Url") or None
    twiml = form.get("Twiml") or None
    status = form.get("Status") or None
    method = _method(form.get("Method"), "Method")
    if status is not None and status not in ("completed", "canceled"):
        raise ApiError(400, 21218, "Status must be 'completed' or 'canceled'")
    if url is not None:
        _check_url(url, "Url")
    if url is None and twiml is None and status is None:
        raise ApiError(400, 21205, "Url, Twiml or Status is required")
    return CallUpdate(url=url, method=method, twiml=twiml, status=status)


#: Adds more resources to the app (the engine's rooms: :mod:`callxml.engine.rooms_api`), given
#: the API's helpers and the control.
Routes = Callable[[web.Application, "_Api", Any], None]


def build_app(
    config: EngineConfig, store: Store, control: CallControl, *, routes: Sequence[Routes] = ()
) -> web.Application:
    """The aiohttp application serving the REST API, recordings and the OpenAPI document;
    ``routes`` add more resources."""
    api = _Api(config, store, control)
    app = web.Application(middlewares=[_errors], client_max_size=MAX_FORM_BYTES)
    prefix = f"/{API_VERSION}/Accounts/{{account}}"
    app.router.add_post(f"{prefix}/Calls.json", api.create_call)
    app.router.add_get(f"{prefix}/Calls.json", api.list_calls)
    recording = "{sid:RE[0-9a-f]{32}}"
    app.router.add_get(f"/{API_VERSION}/Accounts/{{account}}.json", api.get_account)
    app.router.add_get(f"{prefix}/Calls/{{sid}}.json", api.get_call)
    app.router.add_post(f"{prefix}/Calls/{{sid}}.json", api.update_call)
    app.router.add_delete(f"{prefix}/Calls/{{sid}}.json", api.delete_call)
    app.router.add_get(f"{prefix}/Calls/{{sid}}/Events.json", api.call_events)
    app.router.add_get(f"{prefix}/Calls/{{sid}}/Notifications.json", api.call_notifications)
    app.router.add_get(f"{prefix}/Calls/{{sid}}/Recordings.json", api.call_recordings)
    app.router.add_post(f"{prefix}/Calls/{{sid}}/Streams.json", api.create_stream)
    app.router.add_post(f"{prefix}/Calls/{{call}}/Streams/{{stream}}.json", api.update_stream)
    app.router.add_get(
        f"{prefix}/Calls/{{call}}/Recordings/{recording}{{ext:\\.json}}", api.get_recording
    )
    app.router.add_delete(
        f"{prefix}/Calls/{{call}}/Recordings/{recording}.json", api.delete_recording
    )
    app.router.add_get(f"{prefix}/Recordings.json", api.list_recordings)
    app.router.add_get(f"{prefix}/Registrations.json", api.list_registrations)
    app.router.add_get(
        f"{prefix}/Recordings/{recording}{{ext:(\\.json|\\.wav|\\.mp3)?}}", api.get_recording
    )
    app.router.add_delete(
        f"{prefix}/Recordings/{recording}{{ext:(\\.json)?}}", api.delete_recording
    )
    app.router.add_get("/openapi.yaml", api.openapi)
    app.router.add_get("/healthz", api.health)
    for add in routes:
        add(app, api, control)
    return app
