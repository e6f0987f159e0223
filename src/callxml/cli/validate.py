"""``callxml validate FILE...``: check documents without running them.

Prints one line per problem in the compiler convention ``file:line:col: error|warning: message``
(so editors can jump to it) and exits 1 if any file has an error, 0 otherwise (warnings alone do
not fail). Owns nothing but the presentation; parsing is :func:`callxml.markup.parse_document`.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import click

from callxml.errors import MarkupError
from callxml.markup.parser import MAX_DOCUMENT_BYTES, parse_document


def _read(name: str) -> bytes:
    """Read at most one byte more than the cap, so the parser can say "too large"."""
    stream: BinaryIO
    if name == "-":
        return sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
    with open(name, "rb") as stream:
        return stream.read(MAX_DOCUMENT_BYTES + 1)


def validate_file(name: str) -> list[tuple[str, str]]:
    """Validate one file; return ``(severity, report line)`` pairs, severity error or warning."""
    display = "<stdin>" if name == "-" else name
    try:
        data = _read(name)
    except OSError as exc:
        return [("error", f"{display}:0:0: error: cannot read: {exc.strerror or exc}")]
    try:
        document = parse_document(data)
    except MarkupError as exc:
        where = f"{display}:{exc.line}:{exc.column}"
        return [("error", f"{where}: error: {exc.message} [{exc.code}]")]
    return [
        ("warning", f"{display}:{w.line}:{w.column}: warning: {w.message} [{w.code}]")
        for w in document.warnings
    ]


@click.command("validate")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("-q", "--quiet", is_flag=True, help="Print errors only, not warnings.")
def validate_command(files: tuple[str, ...], quiet: bool) -> None:
    """Check callxml documents (use - for standard input).

    Prints file:line:col: error|warning: message for every problem; exits 1 if any file has an
    error.
    """
    failed = False
    for name in files:
        for severity, line in validate_file(name):
            failed = failed or severity == "error"
            if severity == "error" or not quiet:
                click.echo(line)
    sys.exit(1 if failed else 0)
