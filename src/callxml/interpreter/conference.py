"""``<Dial><Conference>``: the rules of joining a conference room, before the room runs it.

Owns what the interpreter decides about a conference: it is dialled alone (other nouns of the
same ``<Dial>`` are ignored with a warning, as Twilio allows one ``<Conference>`` only), its
URLs resolve against the current document (``waitUrl``; an empty one means silence), and the
``<Dial>`` attributes that mean nothing for a room are warned about instead of silently dropped
(``record``: use ``<Conference record>``). The room itself — the mix, the beeps, the wait
music, the events — is the driver's (the engine's :mod:`callxml.engine.conference`, the
simulator's virtual rooms); the ``<Dial>`` then ends like any other, with its ``action``.
"""

from __future__ import annotations

from dataclasses import replace

from callxml.interpreter import actions as act
from callxml.interpreter.tasks import Context
from callxml.markup.verbs import Conference, Dial

__all__ = ["join_action"]


def join_action(
    verb: Dial, noun: Conference, ctx: Context
) -> tuple[list[act.Action], act.JoinConference]:
    """The warnings about what does not apply, and the action that joins ``noun``'s room."""
    warnings: list[act.Action] = []
    if len(verb.targets) > 1:
        warnings.append(
            act.Log("warning", "Dial: a <Conference> is dialled alone; the other nouns are ignored")
        )
    if verb.record != "do-not-record":
        warnings.append(
            act.Log(
                "warning",
                "Dial: record does not apply to a <Conference>; use <Conference record>",
            )
        )

    def resolved(url: str | None) -> str | None:
        return ctx.resolve(url) if url else url  # "" stays "": a wait without music

    conference = replace(
        noun,
        wait_url=resolved(noun.wait_url),
        status_callback=resolved(noun.status_callback),
        recording_status_callback=resolved(noun.recording_status_callback),
    )
    return warnings, act.JoinConference(
        conference=conference, time_limit=verb.time_limit, hangup_on_star=verb.hangup_on_star
    )
