"""A fake-clock driver for CallSession tests: pages by URL, actions recorded, events by hand.

The interpreter is sans-IO, so its tests need no network and no wall clock: this harness plays
the runtime's part (fetching pages, answering, moving time) for every interpreter test module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from callxml.errors import WebhookError
from callxml.interpreter import CallInfo, CallSession, Limits
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.webhooks import WebhookRequest, WebhookResponse

A = TypeVar("A")

BASE = "https://app.test/voice"
CALL = CallInfo(
    call_sid="CA" + "1" * 32,
    account_sid="AC" + "2" * 32,
    from_="+15005550006",
    to="+15005550001",
)


def fixed_sid(prefix: str) -> str:
    return prefix + "f" * 32


@dataclass
class Harness:
    """Serves ``pages`` (URL → XML text, or a WebhookError to fail) and answers the call at once.

    Everything else (playbacks, digits, dial results) the test sends itself with :meth:`send`;
    :meth:`advance` moves the fake clock and fires due timers.
    """

    pages: dict[str, str | WebhookError]
    url: str = BASE
    fallback_url: str | None = None
    auto_answer: bool = True
    auto_playback: bool = False
    limits: Limits = field(default_factory=Limits)
    now: float = 0.0
    actions: list[act.Action] = field(default_factory=list)
    requests: list[WebhookRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session = CallSession(
            url=self.url,
            call=CALL,
            fallback_url=self.fallback_url,
            limits=self.limits,
            new_sid=fixed_sid,
        )

    def start(self) -> Harness:
        self._take(self.session.start(self.now))
        return self

    def send(self, event: ev.Event) -> list[act.Action]:
        out = self.session.receive(event, self.now)
        return self._take(out)

    def advance(self, seconds: float) -> list[act.Action]:
        """Move the clock by ``seconds``, firing every timer due on the way."""
        end = self.now + seconds
        new: list[act.Action] = []
        while (due := self.session.next_timer()) is not None and due <= end:
            self.now = max(self.now, due)
            new += self._take(self.session.handle_timer(self.now))
        self.now = end
        return new

    def _take(self, out: list[act.Action]) -> list[act.Action]:
        taken: list[act.Action] = []
        queue = list(out)
        while queue:
            action = queue.pop(0)
            taken.append(action)
            self.actions.append(action)
            more: list[act.Action] = []
            match action:
                case act.Fetch(request=request):
                    self.requests.append(request)
                    more = self.session.receive(self._serve(request), self.now)
                case act.Answer() if self.auto_answer:
                    more = self.session.receive(ev.Answered(), self.now)
                case act.Speak(id=i) | act.Play(id=i) | act.SendDigits(id=i) if self.auto_playback:
                    more = self.session.receive(ev.PlaybackFinished(i), self.now)
            queue += more
        return taken

    def _serve(self, request: WebhookRequest) -> ev.DocumentFetched | ev.FetchFailed:
        page = self.pages.get(request.url)
        if page is None:
            return ev.FetchFailed(WebhookError("404 not found", error_code=11200, url=request.url))
        if isinstance(page, WebhookError):
            return ev.FetchFailed(page)
        wrap = page.startswith("<") and not page.startswith(("<Response", "<?xml"))
        body = f"<Response>{page}</Response>" if wrap else page
        return ev.DocumentFetched(
            WebhookResponse(
                request=request,
                status=200,
                body=body.encode(),
                content_type="text/xml",
                url=request.url,
                elapsed=0.0,
            )
        )

    # ------------------------------------------------------------------ inspection helpers

    def of(self, kind: type[A]) -> list[A]:
        return [a for a in self.actions if isinstance(a, kind)]

    def spoken(self) -> list[str]:
        return [a.text for a in self.actions if isinstance(a, act.Speak)]

    def last_playback_id(self) -> int:
        ids = [a.id for a in self.actions if isinstance(a, act.Speak | act.Play | act.SendDigits)]
        return ids[-1]

    def finish_playback(self) -> list[act.Action]:
        return self.send(ev.PlaybackFinished(self.last_playback_id()))

    def press(self, keys: str, gap: float = 0.5) -> None:
        for key in keys:
            self.send(ev.DigitReceived(key))
            self.advance(gap)


def params(request: WebhookRequest) -> dict[str, str]:
    return dict(request.params)
