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
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webhook_kit import params_of, say, signature_required, twiml

DEFAULT_TOKEN = "example-auth-token"
QUEUE = "support"

#: Every ``QueueResult`` the ``<Enqueue>`` action got, with the caller's CallSid.
RESULTS: web.AppKey[list[dict[str, str]]] = web.AppKey("results", list)


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
    app = web.Application(middlewares=[signature_required(auth_token)])
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
