"""Run the hosted engine with the bundled example IVR behind its demo SIP domain.

Starts the example web app (:mod:`ivr_app`) on ``127.0.0.1:8081`` and ``callxml serve``'s engine
in the same process, with the embedded defaults (or ``--config``): SIP on 127.0.0.1 UDP/TCP 5060
and TLS 5061, the REST API on http://127.0.0.1:8080, the store in ``./callxml.db``. Calls to
``anything@demo.callxml.localhost`` then run the IVR. Stops on Ctrl-C or SIGTERM (live calls get
the configured grace period), or after ``--for`` seconds.

    python examples/serve_demo.py [--config callxml.toml] [--app-port 8081] [--for SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ivr_app import make_app

from callxml.engine import Engine, load_config
from callxml.engine.config import DEMO_AUTH_TOKEN
from callxml.errors import ConfigError


async def serve(config_path: Path | None, app_port: int, seconds: float | None) -> None:
    config = load_config(config_path)
    app = web.AppRunner(make_app(DEMO_AUTH_TOKEN), access_log=None)
    await app.setup()
    await web.TCPSite(app, "127.0.0.1", app_port).start()
    print(f"example IVR on http://127.0.0.1:{app_port}/ivr", file=sys.stderr)
    try:
        engine = Engine(config, echo=lambda line: print(line, file=sys.stderr))
        await engine.serve(seconds=seconds)  # until Ctrl-C or SIGTERM, then drains the calls
    finally:
        await app.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--app-port", type=int, default=8081)
    parser.add_argument("--for", dest="seconds", type=float, default=None)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.config, args.app_port, args.seconds))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
