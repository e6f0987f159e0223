"""``callxml serve``: run the hosted engine until SIGINT/SIGTERM.

Owns the command line of the engine: reading the configuration (or the embedded defaults when
there is none), logging, and turning bad configuration into one clear line naming the key (exit
status 1). Starting, printing where it listens and the shutdown on a signal (stop accepting
calls, let live calls finish within ``engine.shutdown_grace``, then hang them up) are
:meth:`~callxml.engine.server.Engine.serve`'s, which embedding programs use too.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from callxml.engine.config import load_config
from callxml.errors import ConfigError

__all__ = ["serve_command"]


async def _serve(config_path: Path | None) -> None:
    from callxml.engine.server import Engine  # SIP, media and HTTP: only when serving

    config = load_config(config_path)
    await Engine(config, echo=lambda line: click.echo(line, err=True)).serve()


@click.command("serve")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML configuration file (default: embedded defaults on loopback).",
)
@click.option("--verbose", "-v", is_flag=True, help="Log SIP and call details.")
def serve_command(config_path: Path | None, verbose: bool) -> None:
    """Run the call-control engine: SIP domains, the REST API and call records."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_serve(config_path))
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None
    except KeyboardInterrupt:  # a second Ctrl-C
        pass
