"""Live calls for the REST API: originate a call, redirect a live one, end one.

Owns :class:`EngineControl`, the :class:`~callxml.engine.api.CallControl` the API delegates to.
``POST Calls.json`` creates the record (``queued``) and returns at once; a background task dials
``To`` (a SIP URI: ``;secure=true`` means TLS + SRTP, ``?X-…`` headers are sent; a number goes
through the trunk template) with ``SipAuthUsername``/``SipAuthPassword`` for digest auth, moves
the record through ``initiated`` → ``ringing`` → ``in-progress`` (or ``busy``/``no-answer``/
``failed``/``canceled``) with status callbacks, and runs ``Url`` or ``Twiml`` on the answered
call. ``POST Calls/{Sid}.json`` redirects a live call or ends it (``Status=completed`` hangs up
an answered call; ``canceled`` stops one still ringing).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from callxml.engine.api import ApiError, OutboundCall
from callxml.engine.callbacks import CallbackTarget
from callxml.engine.config import AccountConfig
from callxml.engine.store import TERMINAL_STATUSES, CallRecord
from callxml.errors import CallXmlError
from callxml.interpreter import CallInfo, CallSession, new_sid
from callxml.markup.verbs import Number, Sip
from callxml.runtime.dial import resolve_targets
from callxml.sip.auth import Credentials
from callxml.sip.target import Target

if TYPE_CHECKING:
    from callxml.engine.server import Engine, LiveCall

__all__ = ["EngineControl", "dial_target"]

#: Twilio: "The 'To' number is not a valid phone number" (also used for bad SIP URIs).
INVALID_TO = 21211
#: Twilio: "Call is not in-progress. Cannot redirect."
NOT_IN_PROGRESS = 21220
#: The document URL an inline ``Twiml`` call runs under (relative URLs in it cannot resolve).
TWIML_URL = "http://twiml.callxml.invalid/inline"


def dial_target(to: str, trunk_uri_template: str | None) -> Target:
    """What to call for ``To``: a SIP URI as written, a number through the trunk template."""
    is_sip = to.lower().startswith(("sip:", "sips:"))
    noun: Sip | Number = Sip(uri=to) if is_sip else Number(number=to)
    resolved = resolve_targets([noun], trunk_uri_template=trunk_uri_template)[0]
    if resolved.error or resolved.target is None:
        raise ApiError(400, INVALID_TO, f"Invalid 'To': {to} ({resolved.error})")
    return resolved.target


class EngineControl:
    """The engine's :class:`~callxml.engine.api.CallControl`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tasks: set[asyncio.Task[None]] = set()

    async def create_call(self, account: AccountConfig, call: OutboundCall) -> CallRecord:
        engine = self.engine
        if not engine.accepting:
            raise ApiError(503, 20503, "The engine is shutting down")
        to = dial_target(call.to, engine.config.trunk_uri_template)
        now = time.time()
        record = CallRecord(
            sid=new_sid("CA"),
            account_sid=account.sid,
            direction="outbound-api",
            from_=call.from_,
            to=call.to,
            status="queued",
            date_created=now,
            date_updated=now,
        )
        target = (
            CallbackTarget(
                call.status_callback, call.status_callback_method, call.status_callback_event
            )
            if call.status_callback
            else None
        )
        from callxml.engine.server import LiveCall

        live = LiveCall(engine.book(record, target), account)
        await live.book.create()
        engine.calls[record.sid] = live
        task = asyncio.get_running_loop().create_task(
            self._originate(live, call, to), name=f"originate-{record.sid}"
        )
        live.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return live.book.record

    async def _originate(
        self,
        live: LiveCall,
        call: OutboundCall,
        target: Target,
    ) -> None:
        engine = self.engine
        book = live.book
        try:
            await book.status("initiated")
            phone = engine.phone
            assert phone is not None
            credentials = (
                Credentials(call.sip_auth_username, call.sip_auth_password or "")
                if call.sip_auth_username
                else None
            )
            ringing: list[asyncio.Task[None]] = []

            def on_ringing() -> None:
                ringing.append(asyncio.ensure_future(book.status("ringing")))

            from_uri = call.from_ if call.from_.startswith(("sip:", "sips:")) else None
            live.dialing = asyncio.ensure_future(
                phone.dial(
                    target,
                    from_uri=from_uri,
                    timeout=call.timeout,
                    credentials=credentials,
                    on_ringing=on_ringing,
                    sid=book.sid,
                )
            )
            try:
                result = await live.dialing
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if me is not None and me.cancelling():
                    raise  # the engine is stopping this task, not the API cancelling the dial
                await book.status("canceled", end_time=time.time(), sip_response_code=487)
                return
            finally:
                live.dialing = None
                for task in ringing:
                    await task
            await book.event(
                "sip",
                {
                    "message": f"dial {target}: {result.status}",
                    "sip_response_code": result.sip_response_code,
                    "reason": result.reason,
                },
            )
            leg = result.leg
            if leg is None:
                status = result.status if result.status in TERMINAL_STATUSES else "failed"
                await book.status(
                    status,
                    end_time=time.time(),
                    sip_response_code=result.sip_response_code,
                    sip_call_id=result.sip_call_id,
                    error=result.reason or None,
                )
                return
            await book.status(
                "in-progress",
                start_time=time.time(),
                sip_response_code=result.sip_response_code,
                sip_call_id=result.sip_call_id,
            )
            info = CallInfo(
                call_sid=book.sid,
                account_sid=live.account.sid,
                from_=call.from_,
                to=call.to,
                direction="outbound-api",
            )
            session = CallSession(
                url=call.url or TWIML_URL,
                method=call.method,
                fallback_url=call.fallback_url,
                fallback_method=call.fallback_method,
                call=info,
                answered=True,
            )
            inline = call.twiml.encode() if call.twiml is not None and not call.url else None
            await engine.run_call(live, leg, session, inline_document=inline)
        except CallXmlError as exc:
            await book.event("error", {"message": str(exc)})
            await book.status("failed", end_time=time.time(), error=str(exc))
        finally:
            live.ended.set()
            engine.calls.pop(book.sid, None)

    async def update_call(
        self,
        account: AccountConfig,
        sid: str,
        *,
        url: str | None,
        method: str,
        twiml: str | None,
        status: str | None,
    ) -> CallRecord:
        engine = self.engine
        live = engine.calls.get(sid)
        if live is None or live.book.record.status in TERMINAL_STATUSES:
            record = engine.store_or_fail().get_call(sid)
            if record is not None and status is not None and record.status in TERMINAL_STATUSES:
                return record  # ending an ended call changes nothing (as Twilio)
            raise ApiError(400, NOT_IN_PROGRESS, "Call is not in-progress. Cannot redirect.")
        if status is not None:
            if live.dialing is not None:
                live.dialing.cancel()
            elif live.runner is not None:
                if status == "canceled" and live.runner.session.answered:
                    raise ApiError(
                        400, NOT_IN_PROGRESS, "Call is in progress; use Status=completed"
                    )
                live.runner.end(status)
            await asyncio.wait_for(live.ended.wait(), 15)
            return live.book.record
        if live.runner is None:
            raise ApiError(400, NOT_IN_PROGRESS, "Call is not in-progress. Cannot redirect.")
        try:
            live.runner.redirect(url, method, twiml=twiml.encode() if twiml is not None else None)
        except CallXmlError:
            raise ApiError(
                400, NOT_IN_PROGRESS, "Call is not in-progress. Cannot redirect."
            ) from None
        return live.book.record
