"""Tests for callxml.markup.parser: verbs, defaults, warnings, errors and positions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from lxml import etree

from callxml.errors import MarkupError
from callxml.markup import (
    MAX_DOCUMENT_BYTES,
    Client,
    Conference,
    Dial,
    Document,
    Enqueue,
    Gather,
    Hangup,
    Leave,
    Number,
    Pause,
    Play,
    Queue,
    Record,
    Redirect,
    Refer,
    Reject,
    Say,
    Sip,
    Unsupported,
    parse_document,
)

FIXTURES = Path(__file__).parent / "fixtures"
VALID = sorted((FIXTURES / "valid").glob("*.xml"))
INVALID = sorted((FIXTURES / "invalid").glob("*.xml"))


def parse(body: str) -> Document:
    return parse_document(f"<Response>{body}</Response>")


def only_verb(body: str) -> object:
    (verb,) = parse(body).response.verbs
    return verb


def codes(document: Document) -> list[str]:
    return [w.code for w in document.warnings]


def error_of(data: str | bytes) -> MarkupError:
    with pytest.raises(MarkupError) as info:
        parse_document(data)
    return info.value


# ---------------------------------------------------------------------------- fixtures


def test_there_are_at_least_a_dozen_valid_samples() -> None:
    assert len(VALID) >= 12


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_fixture_parses_with_no_attribute_warnings(path: Path) -> None:
    document = parse_document(path.read_bytes())
    assert document.response.verbs
    assert not {"unknown-attribute", "bad-value"} & set(codes(document))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_verb_positions_point_at_their_start_tags(path: Path) -> None:
    data = path.read_bytes()
    lines = data.decode().splitlines()
    root = etree.fromstring(data, etree.XMLParser(recover=True))  # tolerate amazon: SSML
    verbs = parse_document(data).response.verbs
    assert len(verbs) == len(root)
    for verb, element in zip(verbs, root, strict=True):
        at = lines[verb.line - 1][verb.column - 1 :]
        assert at.startswith(f"<{element.tag}"), (verb, at)
        # lxml records the line where the start tag *ends*; ours is where it begins
        assert verb.line <= element.sourceline


# (file, code, line, column)
INVALID_EXPECTATIONS = {
    "bad_sip_uri.xml": ("invalid-sip-uri", 4, 9),
    "bare_text.xml": ("bare-text", 4, 5),
    "billion_laughs.xml": ("doctype", 2, 1),
    "dial_inside_gather.xml": ("wrong-nesting", 4, 9),
    "empty_dial.xml": ("missing-target", 3, 5),
    "empty_redirect.xml": ("missing-url", 3, 5),
    "external_entity.xml": ("doctype", 2, 1),
    "hangup_with_text.xml": ("unexpected-text", 3, 13),
    "not_response.xml": ("not-response", 2, 1),
    "not_well_formed.xml": ("not-well-formed", 3, 21),
    "say_inside_dial.xml": ("wrong-nesting", 4, 9),
    "too_large.xml": ("too-large", 802, 79),
    "undeclared_entity.xml": ("not-well-formed", 2, 30),
    "unknown_verb.xml": ("unknown-verb", 4, 5),
}


def test_every_invalid_fixture_has_an_expectation() -> None:
    assert {p.name for p in INVALID} == set(INVALID_EXPECTATIONS)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_fixture_is_refused_with_code_and_position(path: Path) -> None:
    error = error_of(path.read_bytes())
    assert (error.code, error.line, error.column) == INVALID_EXPECTATIONS[path.name]
    assert str(error).startswith(f"{error.line}:{error.column}: ")


# ---------------------------------------------------------------------------- verbs & defaults


def test_say_defaults_and_loop_zero_means_a_thousand() -> None:
    assert only_verb("<Say>Hi</Say>") == Say(text="Hi", line=1, column=11)
    say = only_verb('<Say loop="0" voice="alice" language="en-GB">Hi</Say>')
    assert isinstance(say, Say)
    assert (say.loop, say.voice, say.language) == (1000, "alice", "en-GB")


def test_say_keeps_raw_ssml_and_plain_text() -> None:
    say = only_verb('<Say>Hi <prosody rate="slow">there &amp; you</prosody>!</Say>')
    assert isinstance(say, Say)
    assert say.text == "Hi there & you!"
    assert say.ssml == 'Hi <prosody rate="slow">there &amp; you</prosody>!'
    assert only_verb("<Say>plain</Say>") == Say(text="plain", line=1, column=11)


def test_say_accepts_undeclared_amazon_prefix_as_twilio_does() -> None:
    say = only_verb('<Say><amazon:effect name="whispered">psst</amazon:effect></Say>')
    assert isinstance(say, Say)
    assert say.text == "psst"
    assert say.ssml == '<amazon:effect name="whispered">psst</amazon:effect>'


def test_other_undeclared_prefixes_are_not_well_formed() -> None:
    assert error_of("<Response><Say><foo:bar/></Say></Response>").code == "not-well-formed"


def test_play_url_loop_and_digits() -> None:
    play = only_verb('<Play loop="0">https://example.com/a.wav</Play>')
    assert play == Play(url="https://example.com/a.wav", loop=1000, line=1, column=11)
    assert only_verb('<Play digits="ww1#"/>') == Play(digits="ww1#", line=1, column=11)


def test_play_without_url_or_digits_is_an_error() -> None:
    error = error_of("<Response>\n  <Play/></Response>")
    assert (error.code, error.line, error.column) == ("missing-url", 2, 3)


def test_pause_default_length_is_one() -> None:
    assert only_verb("<Pause/>") == Pause(length=1, line=1, column=11)
    assert only_verb('<Pause length="7"/>') == Pause(length=7, line=1, column=11)


def test_gather_defaults() -> None:
    gather = only_verb("<Gather/>")
    assert gather == Gather(line=1, column=11)
    assert isinstance(gather, Gather)
    assert gather.input == ("dtmf",)
    assert gather.timeout == 5
    assert gather.finish_on_key == "#"
    assert gather.num_digits is None
    assert gather.action is None
    assert gather.method == "POST"
    assert gather.action_on_empty_result is False


def test_gather_attributes_and_children() -> None:
    gather = only_verb(
        '<Gather input="dtmf" timeout="9" finishOnKey="" numDigits="4" action="/next" '
        'method="get" actionOnEmptyResult="true" speechTimeout="auto">'
        "<Say>a</Say><Play>u.wav</Play><Pause/></Gather>"
    )
    assert isinstance(gather, Gather)
    assert (gather.timeout, gather.finish_on_key, gather.num_digits) == (9, "", 4)
    assert (gather.action, gather.method, gather.action_on_empty_result) == ("/next", "GET", True)
    assert gather.speech_timeout == "auto"
    assert [type(c) for c in gather.children] == [Say, Play, Pause]


def test_gather_speech_input_is_accepted_with_a_warning() -> None:
    document = parse('<Gather input="speech"/>')
    gather = document.response.verbs[0]
    assert isinstance(gather, Gather)
    assert gather.input == ("speech",)
    assert codes(document) == ["speech-input"]


def test_dial_defaults_and_bare_number() -> None:
    dial = only_verb("<Dial> +15551234567 </Dial>")
    assert isinstance(dial, Dial)
    assert dial.targets == (Number(number="+15551234567", line=1, column=11),)
    assert (dial.timeout, dial.time_limit) == (30, 14400)
    assert (dial.answer_on_bridge, dial.hangup_on_star) == (False, False)
    assert (dial.caller_id, dial.action, dial.method) == (None, None, "POST")
    assert (dial.record, dial.ring_tone) == ("do-not-record", None)


def test_dial_attributes() -> None:
    dial = only_verb(
        '<Dial timeout="12" timeLimit="60" answerOnBridge="true" hangupOnStar="TRUE" '
        'callerId="+15550001111" action="/after" method="GET" record="record-from-answer" '
        'ringTone="de"><Number>1</Number></Dial>'
    )
    assert isinstance(dial, Dial)
    assert (dial.timeout, dial.time_limit, dial.answer_on_bridge) == (12, 60, True)
    assert (dial.hangup_on_star, dial.caller_id) == (True, "+15550001111")
    assert (dial.action, dial.method, dial.record, dial.ring_tone) == (
        "/after",
        "GET",
        "record-from-answer",
        "de",
    )


@pytest.mark.parametrize(
    ("value", "expected"), [("true", "record-from-answer"), ("false", "do-not-record")]
)
def test_dial_record_accepts_legacy_booleans(value: str, expected: str) -> None:
    dial = only_verb(f'<Dial record="{value}">1</Dial>')
    assert isinstance(dial, Dial) and dial.record == expected


def test_dial_nouns_in_document_order() -> None:
    dial = only_verb(
        "<Dial><Number>1</Number><Sip>sip:a@b.example</Sip><Client>bob</Client>"
        "<Conference>room</Conference><Queue>support</Queue></Dial>"
    )
    assert isinstance(dial, Dial)
    assert [type(t) for t in dial.targets] == [Number, Sip, Client, Conference, Queue]


def test_dial_with_bare_text_and_nouns_is_an_error() -> None:
    error = error_of("<Response><Dial>123<Number>4</Number></Dial></Response>")
    assert (error.code, error.line, error.column) == ("bare-text", 1, 17)


def test_number_noun_attributes() -> None:
    dial = only_verb(
        '<Dial><Number sendDigits="ww12" url="/screen" method="GET" '
        'statusCallback="/cb" statusCallbackEvent="initiated answered">+1</Number></Dial>'
    )
    assert isinstance(dial, Dial)
    (number,) = dial.targets
    assert number == Number(
        number="+1",
        send_digits="ww12",
        url="/screen",
        method="GET",
        status_callback="/cb",
        status_callback_event=("initiated", "answered"),
        line=1,
        column=17,
    )


def test_number_and_sip_machine_detection_attributes() -> None:
    dial = only_verb(
        '<Dial><Number machineDetection="DetectMessageEnd" machineDetectionTimeout="12" '
        'machineDetectionSpeechThreshold="3000" machineDetectionSpeechEndThreshold="800" '
        'machineDetectionSilenceTimeout="4000" amdStatusCallback="/amd" '
        'amdStatusCallbackMethod="GET">+1</Number>'
        '<Sip machineDetection="Enable" machineDetectionTimeout="61">sip:a@b.test</Sip></Dial>'
    )
    assert isinstance(dial, Dial)
    number, sip = dial.targets
    assert isinstance(number, Number) and isinstance(sip, Sip)
    assert (
        number.machine_detection,
        number.machine_detection_timeout,
        number.machine_detection_speech_threshold,
        number.machine_detection_speech_end_threshold,
        number.machine_detection_silence_timeout,
        number.amd_status_callback,
        number.amd_status_callback_method,
    ) == ("DetectMessageEnd", 12, 3000, 800, 4000, "/amd", "GET")
    # out of Twilio's range (3-60 s): a warning, and the default
    assert (sip.machine_detection, sip.machine_detection_timeout) == ("Enable", 30)
    document = parse('<Dial><Sip machineDetection="Always">sip:a@b.test</Sip></Dial>')
    assert codes(document) == ["bad-value"]
    verb = document.response.verbs[0]
    assert isinstance(verb, Dial) and isinstance(verb.targets[0], Sip)
    assert verb.targets[0].machine_detection is None


def test_client_identity_and_parameters() -> None:
    dial = only_verb(
        '<Dial><Client><Identity>joey</Identity><Parameter name="a" value="b"/></Client></Dial>'
    )
    assert isinstance(dial, Dial)
    (client,) = dial.targets
    assert isinstance(client, Client)
    assert (client.identity, client.parameters) == ("joey", (("a", "b"),))


def test_conference_defaults() -> None:
    dial = only_verb("<Dial><Conference>Room 1234</Conference></Dial>")
    assert isinstance(dial, Dial)
    (conference,) = dial.targets
    assert isinstance(conference, Conference)
    assert conference.name == "Room 1234"
    assert (conference.muted, conference.beep, conference.max_participants) == (
        False,
        "true",
        250,
    )
    assert (conference.start_conference_on_enter, conference.end_conference_on_exit) == (
        True,
        False,
    )


def test_record_defaults() -> None:
    record = only_verb("<Record/>")
    assert isinstance(record, Record)
    assert (record.timeout, record.max_length, record.finish_on_key) == (5, 3600, "1234567890*#")
    assert (record.play_beep, record.trim, record.action, record.method) == (
        True,
        "trim-silence",
        None,
        "POST",
    )


def test_record_attributes() -> None:
    record = only_verb(
        '<Record timeout="0" maxLength="20" finishOnKey="*" playBeep="false" trim="do-not-trim" '
        'action="/rec"/>'
    )
    assert isinstance(record, Record)
    assert (record.timeout, record.max_length, record.finish_on_key) == (0, 20, "*")
    assert (record.play_beep, record.trim, record.action) == (False, "do-not-trim", "/rec")


def test_redirect_reject_hangup_leave_enqueue() -> None:
    verbs = parse(
        '<Redirect method="GET">/next</Redirect><Reject reason="busy"/><Reject/>'
        '<Hangup/><Leave/><Enqueue waitUrl="/wait">support</Enqueue>'
    ).response.verbs
    assert verbs[0] == Redirect(url="/next", method="GET", line=1, column=11)
    assert isinstance(verbs[1], Reject) and verbs[1].reason == "busy"
    assert isinstance(verbs[2], Reject) and verbs[2].reason == "rejected"
    assert isinstance(verbs[3], Hangup)
    assert isinstance(verbs[4], Leave)
    assert verbs[5] == Enqueue(name="support", wait_url="/wait", line=1, column=99)


def test_refer_parses_its_sip_target() -> None:
    refer = only_verb('<Refer action="/r"><Sip>sip:alice@example.com</Sip></Refer>')
    assert isinstance(refer, Refer)
    assert refer.target_uri == "sip:alice@example.com"
    assert refer.target is not None and refer.target.uri.host == "example.com"
    assert refer.action == "/r"


def test_refer_without_sip_is_an_error() -> None:
    assert error_of("<Response><Refer/></Response>").code == "missing-element"


@pytest.mark.parametrize("name", ["Siprec", "Pay", "Echo", "Sms", "Parameter"])
def test_known_but_unsupported_verbs_are_kept_with_a_warning(name: str) -> None:
    document = parse(f'<{name} foo="bar"><Anything>goes</Anything></{name}>')
    assert document.response.verbs == (
        Unsupported(name=name, attributes=(("foo", "bar"),), line=1, column=11),
    )
    assert codes(document) == ["unsupported-verb"]


# ---------------------------------------------------------------------------- SIP URIs


def sip_noun(uri: str) -> Sip:
    dial = only_verb(f"<Dial><Sip>{uri}</Sip></Dial>")
    assert isinstance(dial, Dial)
    (sip,) = dial.targets
    assert isinstance(sip, Sip)
    return sip


def test_plain_sip_defaults_to_udp_5060() -> None:
    sip = sip_noun("sip:jack@example.com")
    assert sip.target is not None
    assert (sip.target.secure, sip.target.transport, sip.target.next_hop.port) == (
        False,
        "udp",
        5060,
    )


@pytest.mark.parametrize("uri", ["sip:jack@example.com;secure=true", "sips:jack@example.com"])
def test_secure_sip_means_tls_on_5061(uri: str) -> None:
    sip = sip_noun(uri)
    assert sip.target is not None
    assert (sip.target.secure, sip.target.transport, sip.target.next_hop.port) == (
        True,
        "tls",
        5061,
    )


def test_sip_transport_tcp() -> None:
    sip = sip_noun("sip:jack@example.com;transport=tcp")
    assert sip.target is not None and sip.target.transport == "tcp"


def test_secure_other_than_true_or_false_is_false_with_a_warning() -> None:
    document = parse("<Dial>\n<Sip>sip:jack@example.com;secure=maybe</Sip></Dial>")
    dial = document.response.verbs[0]
    assert isinstance(dial, Dial) and isinstance(dial.targets[0], Sip)
    assert dial.targets[0].target is not None and not dial.targets[0].target.secure
    assert [(w.code, w.line, w.column) for w in document.warnings] == [("sip-uri", 2, 1)]


def test_sip_attributes() -> None:
    dial = only_verb(
        '<Dial><Sip username="u" password="p" url="/screen" method="GET" '
        'statusCallback="/s" statusCallbackEvent="ringing completed" '
        'statusCallbackMethod="GET">sip:a@b.example?X-Foo=bar&amp;X-Baz=1</Sip></Dial>'
    )
    assert isinstance(dial, Dial)
    (sip,) = dial.targets
    assert isinstance(sip, Sip)
    assert (sip.username, sip.password, sip.url, sip.method) == ("u", "p", "/screen", "GET")
    assert sip.status_callback == "/s"
    assert sip.status_callback_event == ("ringing", "completed")
    assert sip.status_callback_method == "GET"
    assert sip.target is not None and sip.target.headers == (("X-Foo", "bar"), ("X-Baz", "1"))
    assert "password=" not in repr(sip)  # kept out of logs


def test_sip_uri_over_255_characters_is_an_error_with_position() -> None:
    uri = "sip:" + "a" * 260 + "@example.com"
    error = error_of(f"<Response>\n <Dial><Sip>{uri}</Sip></Dial></Response>")
    assert (error.code, error.line, error.column) == ("invalid-sip-uri", 2, 8)


def test_sip_headers_over_1024_characters_is_an_error() -> None:
    uri = "sip:a@example.com?X-Big=" + "b" * 1100
    assert error_of(f"<Response><Dial><Sip>{uri}</Sip></Dial></Response>").code == (
        "invalid-sip-uri"
    )


def test_empty_sip_is_an_error() -> None:
    assert error_of("<Response><Dial><Sip> </Sip></Dial></Response>").code == "missing-target"


# ---------------------------------------------------------------------------- warnings


def test_unknown_attribute_is_a_warning_with_the_attribute_position() -> None:
    document = parse_document('<Response>\n  <Say  colour="red">x</Say></Response>')
    (warning,) = document.warnings
    assert (warning.code, warning.line, warning.column) == ("unknown-attribute", 2, 9)
    assert "colour" in warning.message


@pytest.mark.parametrize(
    ("element", "attribute", "field", "default"),
    [
        ("Dial", 'timeout="soon"', "timeout", 30),
        ("Dial", 'timeLimit="-1"', "time_limit", 14400),
        ("Dial", 'answerOnBridge="yes"', "answer_on_bridge", False),
        ("Dial", 'method="PUT"', "method", "POST"),
        ("Dial", 'record="always"', "record", "do-not-record"),
        ("Gather", 'numDigits="0"', "num_digits", None),
        ("Gather", 'finishOnKey="12"', "finish_on_key", "#"),
        ("Gather", 'input="voice"', "input", ("dtmf",)),
        ("Record", 'maxLength="x"', "max_length", 3600),
        ("Record", 'finishOnKey="a"', "finish_on_key", "1234567890*#"),
        ("Record", 'playBeep="maybe"', "play_beep", True),
        ("Reject", 'reason="nope"', "reason", "rejected"),
        ("Pause", 'length="long"', "length", 1),
        ("Say", 'loop="-2"', "loop", 1),
    ],
)
def test_bad_attribute_values_warn_and_fall_back_to_the_default(
    element: str, attribute: str, field: str, default: object
) -> None:
    content = "<Number>1</Number>" if element == "Dial" else ("x" if element == "Say" else "")
    document = parse(f"<{element} {attribute}>{content}</{element}>")
    assert getattr(document.response.verbs[0], field) == default
    assert codes(document) == ["bad-value"]


# ---------------------------------------------------------------------------- document level


def test_empty_response_is_valid() -> None:
    assert parse_document("<Response/>").response.verbs == ()


def test_str_input_with_an_encoding_declaration() -> None:
    document = parse_document(
        '<?xml version="1.0" encoding="ISO-8859-1"?><Response><Say>é</Say></Response>'
    )
    say = document.response.verbs[0]
    assert isinstance(say, Say) and say.text == "é"


def test_latin1_bytes_follow_the_declaration() -> None:
    data = '<?xml version="1.0" encoding="ISO-8859-1"?><Response><Say>é</Say></Response>'
    document = parse_document(data.encode("latin-1"))
    say = document.response.verbs[0]
    assert isinstance(say, Say) and say.text == "é"


def test_namespaced_response_is_refused() -> None:
    assert error_of('<Response xmlns="urn:x"/>').code == "not-response"


def test_unknown_element_inside_gather() -> None:
    error = error_of("<Response><Gather><Beep/></Gather></Response>")
    assert (error.code, error.column) == ("unknown-element", 19)


def test_size_cap_is_exact() -> None:
    head, tail = "<Response><Say>", "</Say></Response>"
    fits = head + "a" * (MAX_DOCUMENT_BYTES - len(head) - len(tail)) + tail
    assert len(fits.encode()) == MAX_DOCUMENT_BYTES
    assert parse_document(fits).response.verbs
    assert error_of(fits + " ").code == "too-large"


def test_comments_and_cdata_do_not_shift_positions() -> None:
    document = parse_document(
        "<Response><!-- <Say>not a verb</Say> --><Say><![CDATA[a <b> c]]></Say>\n"
        '<Play url="x>y">u.wav</Play></Response>'
    )
    say, play = document.response.verbs
    assert isinstance(say, Say) and say.text == "a <b> c"
    assert (say.line, say.column) == (1, 41)
    assert (play.line, play.column) == (2, 1)


def test_verbs_are_frozen() -> None:
    say = only_verb("<Say>x</Say>")
    assert isinstance(say, Say)
    with pytest.raises(dataclasses.FrozenInstanceError):
        say.text = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("uri", "transport"),
    [("sip:jack@example.com", "udp"), ("sip:jack@example.com;secure=true", "tls")],
)
def test_sip_media_encryption_zrtp_is_a_flagged_extension(uri: str, transport: str) -> None:
    """``<Sip mediaEncryption="zrtp">``: the media is keyed by ZRTP (RFC 6189) whatever the
    transport; the document says it uses a callxml extension."""
    document = parse(f'<Dial><Sip mediaEncryption="zrtp">{uri}</Sip></Dial>')
    dial = document.response.verbs[0]
    assert isinstance(dial, Dial) and isinstance(dial.targets[0], Sip)
    target = dial.targets[0].target
    assert target is not None and target.zrtp and target.transport == transport
    assert [w.code for w in document.warnings] == ["callxml-extension"]
    plain = parse(f'<Dial><Sip mediaEncryption="sdes">{uri}</Sip></Dial>').response.verbs[0]
    assert isinstance(plain, Dial) and isinstance(plain.targets[0], Sip)
    assert plain.targets[0].target is not None and not plain.targets[0].target.zrtp


def test_sip_srtp_suites_is_a_flagged_extension() -> None:
    document = parse(
        '<Dial><Sip srtpSuites="aead_aes_256_gcm AES_CM_128_HMAC_SHA1_80">'
        "sip:jack@example.com;secure=true</Sip></Dial>"
    )
    dial = document.response.verbs[0]
    assert isinstance(dial, Dial) and isinstance(dial.targets[0], Sip)
    target = dial.targets[0].target
    assert target is not None
    assert target.srtp_suites == ("AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80")
    assert [w.code for w in document.warnings] == ["callxml-extension"]
