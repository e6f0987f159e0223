"""What the engine adds to a webhook round trip: signed fetch + document parse vs a bare POST.

A local aiohttp app (in its own process, so its CPU is not ours) answers every POST with a small
document. Two clients fetch it in turns, on one event loop, so the shared noisy machine treats
both alike:

* **engine** — what a call does for each document: :class:`~callxml.webhooks.WebhookClient`
  (Twilio-signed, bounded, through the SSRF-guarded connector the engine uses) with a call's
  worth of Twilio parameters, then :func:`~callxml.markup.parse_document` on the body;
* **reference** — a bare ``aiohttp`` POST of the same form to the same URL, body read.

It prints p50 and p99 of each and the added p99 (engine minus reference). Goal (issue 15): the
added p99 below 5 ms.

    python bench/webhook.py [--requests 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from callxml.markup import parse_document
from callxml.webhooks import WebhookClient, WebhookRequest
from callxml.webhooks.guard import GuardedConnector, NetworkPolicy

GOAL_MS = 5.0
DOCUMENT = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response>'
    b'<Gather numDigits="1" action="/menu" timeout="5"><Say>Press 1 for sales, 2 for support.'
    b"</Say></Gather><Say>We did not get your choice.</Say><Redirect>/voice</Redirect></Response>"
)
PARAMS = (
    ("AccountSid", "AC" + "a" * 32),
    ("ApiVersion", "2010-04-01"),
    ("CallSid", "CA" + "b" * 32),
    ("CallStatus", "in-progress"),
    ("Called", "sip:ivr@demo.callxml.localhost"),
    ("Caller", "sip:alice@example.com"),
    ("Direction", "inbound"),
    ("From", "sip:alice@example.com"),
    ("To", "sip:ivr@demo.callxml.localhost"),
    ("SipCallId", "3848276298220188511@127.0.0.1"),
    ("SipDomain", "demo.callxml.localhost"),
    ("SipTransport", "tls"),
)


def _serve(port_out: multiprocessing.connection.Connection) -> None:
    async def voice(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=DOCUMENT, content_type="text/xml")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/voice", voice)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_out.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _round(url: str, requests: int) -> tuple[list[float], list[float]]:
    connector = GuardedConnector(NetworkPolicy(), limit=10)
    async with (
        aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        ) as guarded,
        aiohttp.ClientSession() as bare,
    ):
        client = WebhookClient(auth_token="bench-token-0123456789", session=guarded)
        request = WebhookRequest(url, "POST", PARAMS)
        form = urlencode(PARAMS).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(20):  # warm both connection pools
            await client.fetch(request)
            async with bare.post(url, data=form, headers=headers) as resp:
                await resp.read()
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.fetch(request)
            parse_document(response.body)
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            async with bare.post(url, data=form, headers=headers) as resp:
                await resp.read()
            theirs.append(time.perf_counter() - started)
        return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    here, there = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(there,), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{here.recv()}/voice"
        print(f"webhook round trip, {args.requests} requests x {args.rounds} rounds (ms)")
        widths = (5, 11, 7, 9, 7, 10)
        columns = ("round", "engine p50", "p99", "bare p50", "p99", "added p99")
        print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
        added = []
        for index in range(max(1, args.rounds)):
            ours, theirs = asyncio.run(_round(url, max(100, args.requests)))
            o50, o99 = _percentile(ours, 0.5) * 1e3, _percentile(ours, 0.99) * 1e3
            t50, t99 = _percentile(theirs, 0.5) * 1e3, _percentile(theirs, 0.99) * 1e3
            added.append(o99 - t99)
            row = (o50, o99, t50, t99, o99 - t99)
            cells = " ".join(f"{v:>{w}.2f}" for v, w in zip(row, widths[1:], strict=True))
            print(f"{index + 1:>5} {cells}")
        median = statistics.median(added)
        verdict = "met" if median < GOAL_MS else "NOT met"
        print(f"goal: added p99 < {GOAL_MS:g} ms: {verdict} (median added p99 {median:.2f} ms)")
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
