"""The demo behind ``make run``: a caller presses 1 in the example IVR and is dialed securely.

Starts the example web app (:mod:`ivr_app`) on a free loopback port, runs callxml's simulator
against it — the same interpreter, webhook client and signing the engine uses, with a scripted
caller instead of SIP and RTP — answers the menu with the digit 1, prints the transcript, and
exits 0 if the call reached ``<Dial><Sip>sip:jack@example.com;secure=true</Sip></Dial>`` as a
TLS + SRTP dial and ended without error (1 otherwise).

    python examples/run_demo.py [--digits 1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ivr_app import JACK, make_app

from callxml.simulator import SimulationResult, simulate

TOKEN = "demo-auth-token"


async def run(digits: list[str]) -> SimulationResult:
    runner = web.AppRunner(make_app(TOKEN), shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/ivr"
        print(f"example app listening on {url}")
        return await simulate(url, digits=digits, auth_token=TOKEN)
    finally:
        await runner.cleanup()


def reached_secure_dial(result: SimulationResult) -> bool:
    return any(
        dial.target == JACK and dial.transport == "tls" and dial.srtp_suite is not None
        for dial in result.dials
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", action="append", help="keys for each Gather (default: 1)")
    args = parser.parse_args()
    result = asyncio.run(run(args.digits or ["1"]))
    for line in result.transcript:
        print(line)
    ok = result.error is None and reached_secure_dial(result)
    print(f"demo {'OK' if ok else 'FAILED'}: status={result.status} error={result.error}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
