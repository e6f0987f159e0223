"""Documents built with the official ``twilio`` SDK's ``VoiceResponse`` are never refused.

Every voice construct the SDK's builder offers (as Twilio documents them: each verb, each noun,
the nested forms, the attributes of each) is built here, and each document must validate
(warnings allowed: what callxml does not run is a warning, never a refusal), and run in the
simulator and in the engine's driver to a final status without an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from twilio.twiml.voice_response import (
    Client,
    Connect,
    Dial,
    Enqueue,
    Gather,
    Pay,
    Refer,
    Say,
    Sip,
    Start,
    Stop,
    VoiceResponse,
)

from callxml.markup import parse_document
from support.documents import drive_cleanly, simulate_cleanly

CB = "https://app.example.com/callback"


def say_ssml() -> VoiceResponse:
    response = VoiceResponse()
    say = Say("Hi", voice="Polly.Joanna", language="en-US", loop=2)
    say.break_(strength="x-weak", time="100ms")
    say.emphasis("Words", level="strong")
    say.lang("Bonjour", xml_lang="fr-FR")
    say.p("A paragraph")
    say.phoneme("Words", alphabet="ipa", ph="wɝdz")
    say.prosody("Slowly", volume="loud", rate="slow", pitch="low")
    say.s("A sentence")
    say.say_as("12345", interpret_as="spell-out")
    say.sub("W3C", alias="World Wide Web Consortium")
    say.w("Words", role="amazon:VBD")
    response.append(say)
    return response


def gather() -> VoiceResponse:
    response = VoiceResponse()
    g = Gather(
        input="speech dtmf",
        action="/gathered",
        method="GET",
        timeout=3,
        num_digits=4,
        finish_on_key="*",
        speech_timeout="auto",
        hints="one, two",
        language="en-GB",
        partial_result_callback=CB,
        partial_result_callback_method="POST",
        action_on_empty_result=True,
        enhanced=True,
        speech_model="phone_call",
        profanity_filter=False,
    )
    g.say("Please enter your account number")
    g.play("https://api.twilio.com/cowbell.mp3", loop=1)
    g.pause(length=1)
    response.append(g)
    return response


def dial_nouns() -> VoiceResponse:
    response = VoiceResponse()
    dial = Dial(
        action="/dialled",
        method="POST",
        timeout=20,
        hangup_on_star=True,
        time_limit=600,
        caller_id="+15551230000",
        record="record-from-answer-dual",
        trim="trim-silence",
        recording_status_callback=CB,
        recording_status_callback_method="GET",
        recording_status_callback_event="in-progress completed",
        answer_on_bridge=True,
        ring_tone="us",
        recording_track="both",
        sequential=True,
        refer_url="/refer",
        refer_method="POST",
        events="call-progress-events",
    )
    dial.number(
        "+15551234567",
        send_digits="ww1234",
        url="/whisper",
        method="GET",
        status_callback_event="initiated ringing answered completed",
        status_callback=CB,
        status_callback_method="POST",
        byoc="BY123",
        machine_detection="Enable",
    )
    dial.sip(
        "sip:jack@example.com;secure=true",
        username="jack",
        password="secret",
        url="/whisper",
        method="POST",
        status_callback_event="initiated completed",
        status_callback=CB,
    )
    client = Client(identity=None, url="/whisper", status_callback=CB)
    client.identity("alice")
    client.parameter(name="FirstName", value="Alice")
    dial.append(client)
    dial.conference(
        "Room 1234",
        muted=True,
        beep="onEnter",
        start_conference_on_enter=True,
        end_conference_on_exit=False,
        wait_url="",
        max_participants=10,
        record="record-from-start",
        region="us1",
        coach="CA" + "0" * 32,
        trim="do-not-trim",
        status_callback_event="start end",
        status_callback=CB,
        recording_status_callback=CB,
        jitter_buffer_size="small",
        participant_label="customer",
    )
    dial.queue("support", url="/about-to-connect", reservation_sid="WR1")
    dial.sim("DE" + "0" * 32)
    dial.whats_app("+15551234567")
    application = dial.application(customer_id="c1", copy_parent_to=True)
    application.application_sid("AP" + "0" * 32)
    application.parameter(name="a", value="b")
    response.append(dial)
    return response


def sip_uris_and_headers() -> VoiceResponse:
    response = VoiceResponse()
    dial = Dial()
    sip = Sip()
    sip.uri("sip:alice@example.com", priority=1, weight=10, username="a", password="p")
    sip.uri("sip:bob@example.com", priority=2)
    headers = sip.headers()
    headers.header(name="X-Customer", value="42")
    dial.append(sip)
    response.append(dial)
    return response


def record() -> VoiceResponse:
    response = VoiceResponse()
    response.record(
        action="/recorded",
        method="GET",
        timeout=10,
        finish_on_key="#",
        max_length=20,
        play_beep=False,
        trim="do-not-trim",
        recording_status_callback=CB,
        recording_status_callback_method="POST",
        recording_status_callback_event="in-progress completed absent",
        transcribe=True,
        transcribe_callback=CB,
    )
    return response


def enqueue_task() -> VoiceResponse:
    response = VoiceResponse()
    enqueue = Enqueue(None, workflow_sid="WW123", action="/after", wait_url="/wait")
    enqueue.task('{"account_number": "12345"}', priority=5, timeout=30)
    response.append(enqueue)
    response.leave()
    return response


def connect_stream() -> VoiceResponse:
    response = VoiceResponse()
    connect = Connect(action="/after")
    connect.stream(url="wss://example.com/stream").parameter(name="a", value="b")
    response.append(connect)
    connect2 = Connect()
    connect2.room("DailyStandup", participant_identity="alice")
    response.append(connect2)
    connect3 = Connect()
    connect3.conversation_relay(url="wss://example.com/relay", welcome_greeting="Hi")
    response.append(connect3)
    connect4 = Connect()
    connect4.virtual_agent(connector_name="project", language="en-US")
    response.append(connect4)
    return response


def start_stop() -> VoiceResponse:
    response = VoiceResponse()
    start = Start(action="/started")
    start.stream(name="s1", url="wss://example.com/audio", track="inbound_track")
    start.siprec(name="rec", connector_name="SR")
    start.transcription(status_callback_url=CB)
    response.append(start)
    stop = Stop()
    stop.stream(name="s1")
    stop.siprec(name="rec")
    response.append(stop)
    return response


def pay() -> VoiceResponse:
    response = VoiceResponse()
    payment = Pay(charge_amount="10.00", action="/paid", payment_connector="Stripe")
    prompt = payment.prompt(for_="payment-card-number", attempt=1)
    prompt.say("Please enter your card number")
    prompt.play("https://example.com/card.mp3")
    prompt.pause(length=1)
    payment.parameter(name="a", value="b")
    response.append(payment)
    return response


def steering() -> VoiceResponse:
    response = VoiceResponse()
    response.say("Goodbye", voice="alice", language="en-GB")
    response.play(digits="wwww3")
    response.play("https://api.twilio.com/cowbell.mp3", loop=0)
    response.pause(length=2)
    response.echo()
    response.sms("Thanks for calling", to="+15551234567", from_="+15550000000")
    refer = Refer(action="/referred", method="POST")
    refer.sip("sip:alice@example.com")
    response.append(refer)
    response.redirect("/next", method="GET")
    return response


def reject_with_parameters() -> VoiceResponse:
    response = VoiceResponse()
    response.reject(reason="busy").parameter(name="a", value="b")
    return response


def hangup_with_parameters() -> VoiceResponse:
    response = VoiceResponse()
    response.hangup().parameter(name="reason", value="done")
    return response


def dial_bare_number() -> VoiceResponse:
    response = VoiceResponse()
    response.dial("+15551234567", timeout=10)
    response.dial().sip("kate@example.com")
    return response


BUILDS: dict[str, Callable[[], VoiceResponse]] = {
    f.__name__: f
    for f in (
        say_ssml,
        gather,
        dial_nouns,
        sip_uris_and_headers,
        record,
        enqueue_task,
        connect_stream,
        start_stop,
        pay,
        steering,
        reject_with_parameters,
        hangup_with_parameters,
        dial_bare_number,
    )
}


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_builder_documents_validate_and_run(name: str, tmp_path: Path) -> None:
    document = str(BUILDS[name]())
    parsed = parse_document(document)  # no MarkupError: warnings at most
    assert parsed.response.verbs
    for outcome in ("answered", "busy"):
        simulate_cleanly(document, outcome)
    drive_cleanly(document, "busy", tmp_path)
