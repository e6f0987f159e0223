"""Drive ``callxml serve`` with the official ``twilio`` Python SDK: only the base URL changes.

A migrating app keeps its Twilio code. Start the engine (``callxml serve``, or
``python examples/serve_demo.py``), then::

    python examples/twilio_sdk_client.py --to 'sip:bob@192.0.2.10'

It places a call that says one sentence and hangs up, waits for it to end, then prints the call,
its webhook events and notifications, and the account's recordings, with the SDK's own objects.
A parameter callxml does not honour (``trim="trim-silence"``) is refused with Twilio's
error JSON, which the SDK raises as ``TwilioRestException``; the script shows that too.
Needs ``pip install twilio``.
"""

from __future__ import annotations

import argparse
import time

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

DEMO_ACCOUNT = "AC00000000000000000000000000000001"  # the embedded defaults' demo account
DEMO_TOKEN = "example-auth-token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", required=True, help="a SIP URI to call")
    parser.add_argument("--from", dest="from_", default="sip:ivr@example.com")
    parser.add_argument("--api", default="http://127.0.0.1:8080", help="the engine's REST API")
    parser.add_argument("--account", default=DEMO_ACCOUNT)
    parser.add_argument("--token", default=DEMO_TOKEN)
    args = parser.parse_args()

    client = Client(args.account, args.token)
    client.api.base_url = args.api  # the only change from talking to Twilio

    call = client.calls.create(
        to=args.to,
        from_=args.from_,
        twiml="<Response><Say>Hello from the Twilio SDK.</Say><Hangup/></Response>",
        timeout=20,
        time_limit=60,
    )
    print(f"created {call.sid}: {call.status}")
    for _ in range(60):
        call = client.calls(call.sid).fetch()
        if call.status in ("completed", "busy", "failed", "no-answer", "canceled"):
            break
        time.sleep(1)
    print(f"ended: {call.status}, {call.duration} s")
    for event in client.calls(call.sid).events.list():
        print("event:", event.request["method"], event.request["url"])
    for note in client.calls(call.sid).notifications.list():
        print("notification:", note.error_code, note.message_text)
    for recording in client.recordings.list(limit=5):
        print("recording:", recording.sid, recording.duration, "s")
    try:
        client.calls.create(to=args.to, from_=args.from_, url=args.api, trim="trim-silence")
    except TwilioRestException as exc:
        print(f"refused as expected: {exc.status} {exc.code} {exc.msg}")


if __name__ == "__main__":
    main()
