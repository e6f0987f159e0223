"""``callxml simulate``: run a call flow from a URL or a file with a simulated caller.

Owns the command-line surface only: options to :func:`callxml.simulator.simulate` arguments, the
live transcript on stdout, and the exit status (0 for a call that ended normally, 1 with one
``error:`` line on stderr when the flow broke, 2 for bad options).
"""

from __future__ import annotations

import asyncio
import sys

import click

from callxml.simulator import DIAL_OUTCOMES, simulate

__all__ = ["simulate_command"]


def _split_digits(values: tuple[str, ...]) -> list[str]:
    """``--digits 1 --digits 1234#`` or ``--digits 1,1234#``: one entry per Gather/Record."""
    entries: list[str] = []
    for value in values:
        entries += value.split(",")
    for entry in entries:
        bad = set(entry) - set("0123456789*#ABCDw")
        if bad:
            raise click.BadParameter(
                f"{entry!r} has characters that are not DTMF keys: {''.join(sorted(bad))}",
                param_hint="--digits",
            )
    return entries


def _dial_outcomes(values: tuple[str, ...]) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for value in values:
        target, sep, outcome = value.rpartition("=")
        if not sep or not target or outcome not in DIAL_OUTCOMES:
            raise click.BadParameter(
                f"{value!r}: expected URI=OUTCOME with OUTCOME one of {', '.join(DIAL_OUTCOMES)}",
                param_hint="--dial-outcome",
            )
        outcomes[target] = outcome
    return outcomes


@click.command(name="simulate")
@click.argument("source", metavar="URL_OR_FILE")
@click.option("--from", "from_", default="+15005550006", show_default=True, help="Caller (From).")
@click.option("--to", default="+15005550001", show_default=True, help="Called number (To).")
@click.option(
    "--digits",
    multiple=True,
    metavar="KEYS",
    help="Keys for the next <Gather>/<Record> (repeat, or separate with commas): 1,1234#",
)
@click.option(
    "--dial-outcome",
    multiple=True,
    metavar="URI=OUTCOME",
    help=f"How a dialled target answers: {'|'.join(DIAL_OUTCOMES)} (default answered; * = any).",
)
@click.option(
    "--hangup-after",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="The caller hangs up after this many simulated seconds.",
)
@click.option(
    "--trunk",
    metavar="TEMPLATE",
    help="The engine's sip.trunk_uri_template (sip:{number}@trunk...): without one a <Number> "
    "cannot be dialled, as in the engine.",
)
@click.option("--method", type=click.Choice(["POST", "GET"]), default="POST", show_default=True)
@click.option("--fallback-url", metavar="URL", help="Requested when a document fetch fails.")
@click.option(
    "--auth-token",
    envvar="CALLXML_AUTH_TOKEN",
    default="callxml-simulator",
    show_default=True,
    help="Key for X-Twilio-Signature on http(s) requests.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the outcome line.")
def simulate_command(
    source: str,
    from_: str,
    to: str,
    digits: tuple[str, ...],
    dial_outcome: tuple[str, ...],
    hangup_after: float | None,
    trunk: str | None,
    method: str,
    fallback_url: str | None,
    auth_token: str,
    quiet: bool,
) -> None:
    """Run the call flow at URL_OR_FILE with a simulated caller: no SIP, no RTP, virtual time.

    Prints each webhook request and response, each verb, what the caller heard, the digits
    collected and each dial with its resolved target. When stdin is a terminal and no --digits
    were given, each <Gather> asks for the caller's keys.
    """
    entries = _split_digits(digits)
    outcomes = _dial_outcomes(dial_outcome)
    prompt = None
    if not digits and sys.stdin.isatty():

        def prompt(what: str) -> str:
            return str(click.prompt(f"caller: {what}", default="", show_default=False))

    echo = None if quiet else click.echo
    try:
        result = asyncio.run(
            simulate(
                source,
                from_=from_,
                to=to,
                digits=entries,
                dial_outcomes=outcomes,
                hangup_after=hangup_after,
                method=method,
                fallback_url=fallback_url,
                auth_token=auth_token,
                prompt=prompt,
                echo=echo,
                trunk_uri_template=trunk,
            )
        )
    except (click.exceptions.Abort, EOFError, KeyboardInterrupt):
        raise click.exceptions.Exit(130) from None
    if result.error is not None:
        click.echo(f"error: {result.error}", err=True)
        raise click.exceptions.Exit(1)
    if quiet:
        click.echo(f"call ended: {result.status} after {result.duration:.2f} s")
