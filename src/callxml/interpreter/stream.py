"""``<Start>``, ``<Stop>`` and ``<Connect>``: media streams to the app's WebSocket.

Owns Twilio's flow rules for them: ``<Start><Stream>`` forks the call's audio to the app and the
next verb runs at once (the fork lives until ``<Stop>``, REST or the end of the call, across
documents); ``<Stop><Stream name>`` ends the fork of that name; ``<Connect><Stream>`` holds the
call on a bidirectional stream — the verbs after it do not run until the app closes the socket
(or the stream fails), then ``action`` is requested, or without one the next verb runs. Children
callxml does not run (``<Siprec>``, ``<Room>``...) are warned about from the capability table;
a ``<Connect>`` with nothing it can connect ends at once the same way.

The driver owns the socket, the audio and the status callbacks; this module only decides.
"""

from __future__ import annotations

from callxml.interpreter import actions as act
from callxml.interpreter.events import Event, StreamEnded
from callxml.interpreter.tasks import Context, Continue, Navigate, Step, Task
from callxml.markup.capabilities import capability, message
from callxml.markup.verbs import STREAM_TRACKS, Connect, Start, Stop, Stream

__all__ = ["ConnectTask", "StartTask", "StopTask", "stream_action"]


def stream_action(stream: Stream, ctx: Context, *, bidirectional: bool) -> act.StartStream:
    """The action that opens ``stream``, with a fresh ``MZ…`` StreamSid."""
    sid = ctx.new_sid("MZ")
    callback = stream.status_callback
    return act.StartStream(
        sid=sid,
        url=stream.url or "",
        name=stream.name or sid,
        tracks=("inbound",) if bidirectional else STREAM_TRACKS[stream.track],
        parameters=stream.parameters,
        status_callback=ctx.resolve(callback) if callback is not None else None,
        status_callback_method=stream.status_callback_method,
        bidirectional=bidirectional,
    )


def _others(verb: str, others: tuple[str, ...]) -> list[act.Action]:
    return [act.Log("warning", message(capability(f"{verb}/{name}"))) for name in others]


class StartTask(Task):
    """``<Start>``: open each stream and go on at once."""

    waits_for_caller = False

    def __init__(self, verb: Start, ctx: Context) -> None:
        self._verb = verb
        self._ctx = ctx

    def start(self, now: float) -> Step:
        actions: list[act.Action] = _others("Start", self._verb.others)
        for stream in self._verb.streams:
            actions.append(stream_action(stream, self._ctx, bidirectional=False))
        return Step(actions, Continue())


class StopTask(Task):
    """``<Stop>``: end the named streams (without a name, every fork)."""

    needs_answer = False
    waits_for_caller = False

    def __init__(self, verb: Stop) -> None:
        self._verb = verb

    def start(self, now: float) -> Step:
        actions: list[act.Action] = _others("Stop", self._verb.others)
        actions += [act.StopStream(stream.name) for stream in self._verb.streams]
        return Step(actions, Continue())


class ConnectTask(Task):
    """``<Connect><Stream>``: wait for the bidirectional stream to end, then ``action``."""

    def __init__(self, verb: Connect, ctx: Context) -> None:
        self._verb = verb
        self._ctx = ctx
        self._sid: str | None = None

    def start(self, now: float) -> Step:
        verb = self._verb
        if verb.stream is None:
            actions = _others("Connect", verb.others)
            if not verb.others:
                actions.append(act.Log("warning", "Connect: nothing to connect"))
            return Step(actions, self._after())
        action = stream_action(verb.stream, self._ctx, bidirectional=True)
        self._sid = action.sid
        return Step([action])

    def receive(self, event: Event, now: float) -> Step:
        if isinstance(event, StreamEnded) and event.sid == self._sid:
            self._sid = None
            return Step(outcome=self._after())
        return Step()

    def _after(self) -> Continue | Navigate:
        verb = self._verb
        return Navigate(verb.action, verb.method) if verb.action is not None else Continue()

    def hang_up(self, now: float) -> Step:
        """The caller left: the stream is closed; nothing more is requested."""
        if self._sid is None:
            return Step(outcome=Continue())
        return Step([act.StopStream(self._sid)], Continue())
