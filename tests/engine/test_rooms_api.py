"""The Conferences and Participants resources' forms and shapes, without an engine: what is
refused (never silently ignored) and the JSON Twilio's SDKs read."""

from __future__ import annotations

import pytest

from callxml.engine.api import ApiError
from callxml.engine.control import _conference_twiml
from callxml.engine.rooms_api import (
    ParticipantView,
    conference_json,
    parse_participant_form,
    parse_participant_update,
    participant_json,
)
from callxml.engine.store import ConferenceRecord
from callxml.markup import parse_document
from callxml.markup.verbs import Conference, Dial


def test_a_participant_form_becomes_the_conference_it_joins() -> None:
    request = parse_participant_form(
        {
            "From": "sip:conf@example.com",
            "To": "sip:bob@example.com",
            "Label": "bob & co",
            "Muted": "true",
            "Beep": "onExit",
            "StartConferenceOnEnter": "false",
            "EndConferenceOnExit": "true",
            "WaitUrl": "https://app.example.com/wait",
            "ConferenceRecord": "true",
            "ConferenceStatusCallback": "https://app.example.com/events",
            "ConferenceStatusCallbackEvent": "start end",
            "Coaching": "true",
            "CallSidToCoach": "CA" + "1" * 32,
            "TimeLimit": "60",
        }
    )
    document = parse_document(_conference_twiml("sales & support", request))
    assert not document.warnings
    (dial,) = document.response.verbs
    assert isinstance(dial, Dial) and dial.time_limit == 60
    (noun,) = dial.targets
    assert isinstance(noun, Conference)
    assert noun.name == "sales & support" and noun.participant_label == "bob & co"
    assert noun.muted and noun.beep == "onExit" and noun.end_conference_on_exit
    assert not noun.start_conference_on_enter and noun.record == "record-from-start"
    assert noun.wait_url == "https://app.example.com/wait"
    assert noun.status_callback_event == ("start", "end")
    assert noun.coach == "CA" + "1" * 32


@pytest.mark.parametrize(
    "form",
    [
        {"From": "a", "To": "b", "EarlyMedia": "true"},  # not honoured: refused, named
        {"From": "a"},
        {"From": "a", "To": "b", "Beep": "loud"},
        {"From": "a", "To": "b", "Coaching": "true"},
        {"From": "a", "To": "b", "ConferenceStatusCallbackEvent": "dance"},
        {"From": "a", "To": "b", "WaitUrl": "ftp://x"},
    ],
)
def test_participant_forms_are_checked(form: dict[str, str]) -> None:
    with pytest.raises(ApiError) as caught:
        parse_participant_form(form)
    assert caught.value.status == 400


def test_participant_updates_are_checked() -> None:
    update = parse_participant_update({"Muted": "true", "AnnounceUrl": "https://a.test/x"})
    assert update.muted is True and update.hold is None
    for form in ({}, {"Muted": "maybe"}, {"HoldUrl": "https://a.test/h"}):
        with pytest.raises(ApiError):
            parse_participant_update(form)


def test_json_shapes_use_twilios_field_names() -> None:
    record = ConferenceRecord("CF1", "AC1", "room", "completed", 0.0, 1.0, "last-participant-left")
    body = conference_json(record)
    assert (
        body["friendly_name"] == "room"
        and body["reason_conference_ended"] == "last-participant-left"
    )
    assert body["uri"] == "/2010-04-01/Accounts/AC1/Conferences/CF1.json"
    assert body["subresource_uris"]["participants"].endswith("/CF1/Participants.json")
    view = ParticipantView(
        "CA1", "CF1", "bob", True, False, False, None, True, False, "connected", 0.0, 0.0
    )
    shown = participant_json("AC1", view)
    assert shown["muted"] is True and shown["label"] == "bob" and shown["conference_sid"] == "CF1"
    assert shown["uri"].endswith("/Conferences/CF1/Participants/CA1.json")
