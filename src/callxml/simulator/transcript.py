"""Readable transcript lines for a simulated call.

Owns the wording only: each line starts with the simulated time, so a flow's timing (prompts,
``<Gather>`` timeouts, ring time) reads straight off the page.
"""

from __future__ import annotations

from collections.abc import Callable

from callxml.webhooks.base import WebhookRequest, WebhookResponse

__all__ = ["Transcript"]

_MAX_VALUE = 80


def _short(value: str) -> str:
    return value if len(value) <= _MAX_VALUE else value[: _MAX_VALUE - 1] + "…"


class Transcript:
    """Collects lines (and echoes each one at once, for interactive use)."""

    def __init__(self, echo: Callable[[str], object] | None = None) -> None:
        self.lines: list[str] = []
        self._echo = echo

    def add(self, now: float, text: str) -> None:
        for i, part in enumerate(text.splitlines() or [""]):
            line = f"[{now:8.2f}s] {part}" if i == 0 else f"{'':12}{part}"
            self.lines.append(line)
            if self._echo is not None:
                self._echo(line)

    def request(self, now: float, request: WebhookRequest) -> None:
        params = " ".join(f"{name}={_short(value)}" for name, value in request.params)
        self.add(now, f"→ {request.method} {request.url}\n  {params}")

    def response(self, now: float, response: WebhookResponse) -> None:
        ms = response.elapsed * 1000
        where = f" from {response.url}" if response.url != response.request.url else ""
        self.add(
            now,
            f"← {response.status} {response.content_type or '-'}, {len(response.body)} bytes"
            f"{where} ({ms:.0f} ms)",
        )
