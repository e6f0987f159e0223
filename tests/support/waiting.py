"""``until``: wait for something a test cannot be told about, by polling it, with a bound.

Real peers, sockets and stores change state on their own time: the record is written just after
the BYE, the packet arrives a few milliseconds later. A test waits for that by asking again and
again; this is the one way it does so, so that every such wait is bounded (no test can hang CI)
and a wait that runs out says *what* it was waiting for instead of a bare timeout.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["until"]

T = TypeVar("T")


async def until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    step: float = 0.02,
    *,
    what: str = "",
) -> T:
    """Call ``predicate`` (plain or async) every ``step`` seconds until it returns something
    true, and return that; after ``timeout`` seconds raise :class:`TimeoutError` naming ``what``
    was awaited (by default the source line of the predicate)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        value: T = await result if inspect.isawaitable(result) else result
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not true within {timeout} s: {what or _describe(predicate)}")
        await asyncio.sleep(step)


def _describe(predicate: Callable[..., object]) -> str:
    """A lambda's own text (``lambda: len(ear.digits) == 3``), else the callable's name."""
    name = getattr(predicate, "__qualname__", "")
    if not name.endswith("<lambda>"):
        return f"{name}()" if name else repr(predicate)
    try:
        source = inspect.getsource(predicate)
    except (OSError, TypeError):
        return repr(predicate)
    text = source[source.index("lambda") :] if "lambda" in source else source
    depth, quote = 0, ""
    for i, char in enumerate(text):  # up to where the lambda ends: ``)``, ``,`` or line end
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}" and depth:
            depth -= 1
        elif char in ")]},\n" and not depth:
            return text[:i].strip()
    return text.strip()
