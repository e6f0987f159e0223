"""An example IVR web app for callxml (aiohttp): the kind of app developers point a number at.

Flow: a menu read with ``<Gather>``; press 1 to be connected to Jack over secure SIP (TLS + SRTP,
``<Sip>sip:jack@example.com;secure=true</Sip>``), press 2 to leave a message (``<Record>``),
anything else hears the menu again. Every request must carry a valid ``X-Twilio-Signature``
(checked with :func:`callxml.signature.validate`); anything else gets 403.

Run it::

    python examples/ivr_app.py --port 8080 --auth-token secret
    callxml simulate http://127.0.0.1:8080/ivr --auth-token secret --digits 1

Behind a proxy or tunnel, pass ``--public-url https://ivr.example.com`` so the signature is
checked against the URL callxml requested rather than the local one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webhook_kit import params_of, say, signature_required, twiml

DEFAULT_TOKEN = "example-auth-token"
JACK = "sip:jack@example.com;secure=true"

PUBLIC_URL: web.AppKey[str] = web.AppKey("public_url", str)  # origin, or "" for none
DIAL_TARGET: web.AppKey[str] = web.AppKey("dial_target", str)


def signed_url(request: web.Request) -> str:
    """The URL callxml signed: the request URL, or the same path under ``--public-url``."""
    public = request.app[PUBLIC_URL]
    if not public:
        return str(request.url)
    return str(URL(public).join(request.rel_url))


async def menu(request: web.Request) -> web.Response:
    return twiml(
        '<Gather numDigits="1" action="/ivr/menu" method="POST" timeout="5">'
        + say("Welcome to Example Company. To talk to Jack, press 1. To leave a message, press 2.")
        + "</Gather>",
        say("We did not receive any input. Goodbye."),
        "<Hangup/>",
    )


async def choice(request: web.Request) -> web.Response:
    digits = (await params_of(request)).get("Digits", "")
    if digits == "1":
        return twiml(
            say("Connecting you to Jack."),
            '<Dial action="/ivr/dial-status" timeout="20" ringTone="us">'
            f"<Sip>{escape(request.app[DIAL_TARGET])}</Sip></Dial>",
        )
    if digits == "2":
        return twiml(
            say("Please leave a message after the beep. Press the pound key when you are done."),
            '<Record action="/ivr/recorded" maxLength="60" finishOnKey="#" playBeep="true"/>',
            say("We did not get a recording. Goodbye."),
        )
    return twiml(say("Sorry, that is not a valid choice."), "<Redirect>/ivr</Redirect>")


async def recorded(request: web.Request) -> web.Response:
    seconds = (await params_of(request)).get("RecordingDuration", "0")
    return twiml(
        say(f"Thank you. Your message of {seconds} seconds was recorded. Goodbye."), "<Hangup/>"
    )


async def dial_status(request: web.Request) -> web.Response:
    status = (await params_of(request)).get("DialCallStatus", "failed")
    if status == "completed":
        return twiml(say("Thank you for calling. Goodbye."), "<Hangup/>")
    return twiml(say(f"Sorry, Jack could not be reached ({status}). Goodbye."), "<Hangup/>")


def make_app(
    auth_token: str = DEFAULT_TOKEN, *, public_url: str | None = None, dial_target: str = JACK
) -> web.Application:
    """Build the IVR app; ``auth_token`` must be the one callxml signs with."""
    app = web.Application(middlewares=[signature_required(auth_token, signed_url)])
    app[PUBLIC_URL] = public_url or ""
    app[DIAL_TARGET] = dial_target
    for path, handler in (
        ("/ivr", menu),
        ("/ivr/menu", choice),
        ("/ivr/recorded", recorded),
        ("/ivr/dial-status", dial_status),
    ):
        app.router.add_get(path, handler, allow_head=False)
        app.router.add_post(path, handler)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--auth-token", default=os.environ.get("CALLXML_AUTH_TOKEN", DEFAULT_TOKEN))
    parser.add_argument("--public-url", default=None)
    args = parser.parse_args()
    web.run_app(
        make_app(args.auth_token, public_url=args.public_url), host=args.host, port=args.port
    )


if __name__ == "__main__":
    main()
