"""An example support line for callxml (aiohttp): customers wait in a queue, agents take them.

Flow: a customer (``/voice``) is put in the ``support`` queue with ``<Enqueue>``. While it waits,
callxml runs ``/wait`` again and again; it tells the caller its place and the average wait
(``QueuePosition``, ``AvgQueueTime``) and offers 0 to leave a message instead (``<Gather>``, then
``<Leave>``). When the caller is out of the queue the ``<Enqueue>`` action ``/after`` gets
``QueueResult``: ``bridged`` (talked to an agent), ``leave`` (pressed 0: record a voicemail),
``hangup``, ``error``... An agent (``/agent``, e.g. a second SIP domain's ``voice_url``) takes
the caller who waited longest with ``<Dial><Queue url="/whisper">`` — ``/whisper`` runs on the
customer just before the bridge — and is offered the next caller when the call ends. Every
request must carry a valid ``X-Twilio-Signature``.

Run it::

    python examples/queue_app.py --port 8092 --auth-token secret
    callxml simulate http://127.0.0.1:8092/voice --auth-token secret --digits 0
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from xml.sax.saxutils import escape

from aiohttp import web

from callxml.signature import HEADER, validate

DEFAULT_TOKEN = "example-auth-token"
QUEUE = "support"

AUTH_TOKEN: web.AppKey[str] = web.AppKey("auth_token", str)
#: Every ``QueueResult`` the ``<Enqueue>`` action got, with the caller's CallSid.
RESULTS: web.AppKey[list[dict[str, str]]] = web.AppKey("results", list)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def twiml(*verbs: str) -> web.Response:
    body = '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n'
    body += "".join(f"  {verb}\n" for verb in verbs) + "</Response>\n"
    return web.Response(text=body, content_type="text/xml", charset="utf-8")


def say(text: str) -> str:
    return f"<Say>{escape(text)}</Say>"


async def params_of(request: web.Request) -> dict[str, str]:
    """The call parameters: the form body for POST, the query string for GET."""
    if request.method == "POST":
        return {name: str(value) for name, value in (await request.post()).items()}
    return dict(request.query)


@web.middleware
async def require_signature(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 unless ``X-Twilio-Signature`` signs this URL and form (see examples/ivr_app.py)."""
    form = list((await request.post()).items()) if request.method == "POST" else []
    pairs = [(name, str(value)) for name, value in form]
    signature = request.headers.get(HEADER, "")
    if not signature or not validate(request.app[AUTH_TOKEN], str(request.url), pairs, signature):
        raise web.HTTPForbidden(text="invalid or missing X-Twilio-Signature\n")
    return await handler(request)


async def voice(request: web.Request) -> web.Response:
    return twiml(
        say("Thank you for calling support. All our agents are busy."),
        f'<Enqueue waitUrl="/wait" action="/after">{QUEUE}</Enqueue>',
    )


async def wait(request: web.Request) -> web.Response:
    """One round of the wait document: the caller's place, then music; 0 leaves the queue."""
    params = await params_of(request)
    position = params.get("QueuePosition", "1")
    average = params.get("AvgQueueTime", "0")
    return twiml(
        '<Gather numDigits="1" action="/wait-key" timeout="3">'
        + say(f"You are caller number {position}. The average wait is {average} seconds.")
        + say("To leave a message instead, press 0.")
        + "</Gather>",
        '<Pause length="5"/>',
    )


async def wait_key(request: web.Request) -> web.Response:
    if (await params_of(request)).get("Digits") == "0":
        return twiml("<Leave/>")  # the <Enqueue> action runs with QueueResult=leave
    return twiml('<Pause length="5"/>')  # stay in the queue: the next round starts after


async def after(request: web.Request) -> web.Response:
    params = await params_of(request)
    request.app[RESULTS].append(params)
    result = params.get("QueueResult", "")
    if result == "leave":
        return twiml(
            say("Please leave a message after the beep."),
            '<Record action="/recorded" maxLength="120" finishOnKey="#"/>',
            say("We did not get a message. Goodbye."),
        )
    if result == "bridged":
        return twiml(say("Thank you for calling. Goodbye."), "<Hangup/>")
    return twiml("<Hangup/>")  # hangup: the caller is gone; error & co: nothing more to do


async def recorded(request: web.Request) -> web.Response:
    return twiml(say("Thank you. We will call you back. Goodbye."), "<Hangup/>")


async def agent(request: web.Request) -> web.Response:
    """An agent's line: take the caller who waited longest (wait up to 60 s for one)."""
    return twiml(
        say("Next caller."),
        f'<Dial action="/agent-done" timeout="60"><Queue url="/whisper">{QUEUE}</Queue></Dial>',
    )


async def whisper(request: web.Request) -> web.Response:
    """Runs on the customer, just before the bridge (QueueSid, QueueTime, DequeingCallSid)."""
    return twiml(say("Connecting you to an agent."))


async def agent_done(request: web.Request) -> web.Response:
    status = (await params_of(request)).get("DialCallStatus", "")
    if status == "failed":  # no such queue or an error: do not loop on it
        return twiml(say("The queue is not available."), "<Hangup/>")
    return twiml("<Redirect>/agent</Redirect>")  # the next caller


def make_app(auth_token: str = DEFAULT_TOKEN) -> web.Application:
    """Build the support line; ``auth_token`` must be the one callxml signs with."""
    app = web.Application(middlewares=[require_signature])
    app[AUTH_TOKEN] = auth_token
    app[RESULTS] = []
    for path, handler in (
        ("/voice", voice),
        ("/wait", wait),
        ("/wait-key", wait_key),
        ("/after", after),
        ("/recorded", recorded),
        ("/agent", agent),
        ("/whisper", whisper),
        ("/agent-done", agent_done),
    ):
        app.router.add_get(path, handler, allow_head=False)
        app.router.add_post(path, handler)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument("--auth-token", default=os.environ.get("CALLXML_AUTH_TOKEN", DEFAULT_TOKEN))
    args = parser.parse_args()
    web.run_app(make_app(args.auth_token), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
