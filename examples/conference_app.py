"""An example conference line for callxml (aiohttp): a host PIN, a room, a recording.

Flow: every caller is asked for the host PIN (``<Gather>``). The host joins
``<Dial><Conference>`` with ``startConferenceOnEnter`` and ``endConferenceOnExit`` — the room
starts when the host arrives and ends for everyone when the host leaves — and records it from
the start; a guest (no PIN, or a wrong one) joins with ``startConferenceOnEnter="false"`` and
waits, hearing ``/wait`` (callxml requests it again each round), until the host is there. The
room's status callbacks arrive at ``/events`` and the recording's at ``/recording``; both are kept
in ``app[LOG]`` (and printed). Every request must carry a valid ``X-Twilio-Signature``.

Run it::

    python examples/conference_app.py --port 8091 --auth-token secret --pin 4242
    callxml simulate http://127.0.0.1:8091/voice --auth-token secret --digits 4242
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webhook_kit import params_of, say, signature_required, twiml

DEFAULT_TOKEN = "example-auth-token"
ROOM = "team-line"

HOST_PIN: web.AppKey[str] = web.AppKey("host_pin", str)
#: The room's status callbacks and recording callbacks, as they arrived (form parameters).
LOG: web.AppKey[list[dict[str, str]]] = web.AppKey("log", list)


async def welcome(request: web.Request) -> web.Response:
    # No input (or just #) falls through to the <Redirect>: a guest.
    return twiml(
        '<Gather action="/pin" finishOnKey="#" timeout="5">'
        + say("Welcome to the team line. Hosts, enter your PIN. Guests, press pound.")
        + "</Gather>",
        "<Redirect>/pin</Redirect>",
    )


def conference(*, host: bool) -> str:
    """The room for a host or a guest. Every participant names the same statusCallback: the
    first one to join sets the room's (callxml warns if a later one differs)."""
    flag = "true" if host else "false"
    record = (
        ' record="record-from-start" recordingStatusCallback="/recording"'
        ' recordingStatusCallbackEvent="in-progress completed absent"'
        if host
        else ""
    )
    return (
        '<Dial action="/left">'
        f'<Conference startConferenceOnEnter="{flag}" endConferenceOnExit="{flag}"'
        f' participantLabel={quoteattr("host" if host else "guest")} waitUrl="/wait"'
        ' beep="true" statusCallback="/events"'
        f' statusCallbackEvent="start end join leave"{record}>{ROOM}</Conference></Dial>'
    )


async def pin(request: web.Request) -> web.Response:
    digits = (await params_of(request)).get("Digits", "")
    if digits and digits == request.app[HOST_PIN]:
        return twiml(say("Welcome, host."), conference(host=True))
    return twiml(say("Joining as a guest."), conference(host=False))


async def wait(request: web.Request) -> web.Response:
    """Played to guests until the host joins; callxml requests it again after each round."""
    return twiml(say("Please wait for the host to join."), '<Pause length="5"/>')


async def left(request: web.Request) -> web.Response:
    return twiml(say("The conference has ended. Goodbye."), "<Hangup/>")


async def log_event(request: web.Request) -> web.Response:
    params = await params_of(request)
    request.app[LOG].append(params)
    event = params.get("StatusCallbackEvent") or f"recording {params.get('RecordingStatus')}"
    print(f"{request.path}: {event} {params.get('ParticipantLabel', '')}".rstrip())
    return web.Response(status=204)


def make_app(auth_token: str = DEFAULT_TOKEN, *, host_pin: str = "4242") -> web.Application:
    """Build the conference line; ``auth_token`` must be the one callxml signs with."""
    app = web.Application(middlewares=[signature_required(auth_token)])
    app[HOST_PIN] = host_pin
    app[LOG] = []
    for path, handler in (
        ("/voice", welcome),
        ("/pin", pin),
        ("/wait", wait),
        ("/left", left),
        ("/events", log_event),
        ("/recording", log_event),
    ):
        app.router.add_get(path, handler, allow_head=False)
        app.router.add_post(path, handler)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--auth-token", default=os.environ.get("CALLXML_AUTH_TOKEN", DEFAULT_TOKEN))
    parser.add_argument("--pin", default="4242", help="the host PIN")
    args = parser.parse_args()
    web.run_app(make_app(args.auth_token, host_pin=args.pin), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
