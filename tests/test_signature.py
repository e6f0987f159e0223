"""X-Twilio-Signature computation and validation (callxml.signature)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict

from callxml.signature import sign, url_variants, validate

# Twilio's documented example ("Validating requests", twilio.com/docs/usage/security), also the
# vector in twilio-python's and twilio-node's validator tests.
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_vector() -> None:
    assert sign(TOKEN, URL, PARAMS) == EXPECTED
    assert validate(TOKEN, URL, PARAMS, EXPECTED)


def test_params_as_pairs_in_any_order() -> None:
    pairs = list(reversed(PARAMS.items()))
    assert sign(TOKEN, URL, pairs) == EXPECTED


def test_wrong_token_param_or_url_rejected() -> None:
    assert not validate("54321", URL, PARAMS, EXPECTED)
    assert not validate(TOKEN, URL, {**PARAMS, "Digits": "1235"}, EXPECTED)
    assert not validate(TOKEN, URL + "&baz=3", PARAMS, EXPECTED)
    assert not validate(TOKEN, URL, PARAMS, "")
    assert not validate(TOKEN, URL, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=é")


def test_payload_is_url_then_sorted_name_value() -> None:
    params = [("b", "2"), ("a", "1"), ("B", "3")]
    payload = "https://x.test/pathB3a1b2"  # code-point order: upper case before lower case
    mac = hmac.new(b"tok", payload.encode(), hashlib.sha1).digest()
    assert sign("tok", "https://x.test/path", params) == base64.b64encode(mac).decode()


def test_repeated_names_sorted_by_value_and_deduplicated() -> None:
    url = "https://x.test/h"
    expected = base64.b64encode(
        hmac.new(b"tok", (url + "Aa" + "Ab" + "Z1").encode(), hashlib.sha1).digest()
    ).decode()
    pairs = [("Z", "1"), ("A", "b"), ("A", "a"), ("A", "b")]
    assert sign("tok", url, pairs) == expected
    assert sign("tok", url, {"Z": "1", "A": ["b", "a"]}) == expected
    assert sign("tok", url, MultiDict(pairs)) == expected


def test_get_signature_is_over_full_url_only() -> None:
    url = "https://x.test/h?Digits=1&CallSid=CA00"
    expected = base64.b64encode(hmac.new(b"tok", url.encode(), hashlib.sha1).digest()).decode()
    assert sign("tok", url) == expected
    assert sign("tok", url, {}) == expected
    assert validate("tok", url, None, expected)


def test_unicode_values_signed_as_utf8() -> None:
    url = "https://x.test/h"
    mac = hmac.new(b"tok", (url + "SpeechResultcafé").encode("utf-8"), hashlib.sha1).digest()
    assert sign("tok", url, {"SpeechResult": "café"}) == base64.b64encode(mac).decode()


def test_port_variants() -> None:
    assert url_variants("https://a.test/x") == ["https://a.test/x", "https://a.test:443/x"]
    assert url_variants("http://a.test/x") == ["http://a.test/x", "http://a.test:80/x"]
    assert url_variants("https://a.test:8443/x?q") == [
        "https://a.test:8443/x?q",
        "https://a.test/x?q",
    ]
    assert url_variants("https://u:p@[::1]:443/x") == [
        "https://u:p@[::1]:443/x",
        "https://u:p@[::1]/x",
    ]
    assert url_variants("http://[::1]/x") == ["http://[::1]/x", "http://[::1]:80/x"]


def test_validate_accepts_signature_made_with_or_without_port() -> None:
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    # Signed over the URL without the port, checked by an app that sees ":443" (and vice versa).
    assert validate(TOKEN, with_port, PARAMS, EXPECTED)
    sig_with_port = sign(TOKEN, with_port, PARAMS)
    assert sig_with_port != EXPECTED
    assert validate(TOKEN, URL, PARAMS, sig_with_port)
    # Like Twilio's validators, any explicit port may be dropped (the app behind a proxy sees
    # its local port); the host, path and query must still match.
    assert validate(TOKEN, "https://mycompany.com:8443/myapp.php?foo=1&bar=2", PARAMS, EXPECTED)
    assert not validate(TOKEN, "https://mycompany.org:443/myapp.php?foo=1&bar=2", PARAMS, EXPECTED)
    assert not validate(TOKEN, "http://mycompany.com/myapp.php?foo=1&bar=2", PARAMS, EXPECTED)


def test_signature_whitespace_tolerated() -> None:
    assert validate(TOKEN, URL, PARAMS, f" {EXPECTED}\n")


_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
_pairs = st.lists(st.tuples(_names, st.text(max_size=8)), max_size=8)


@given(pairs=_pairs, token=st.text(min_size=1, max_size=16), data=st.data())
def test_round_trip_and_order_independence(
    pairs: list[tuple[str, str]], token: str, data: st.DataObject
) -> None:
    url = "https://x.test/voice?a=1"
    signature = sign(token, url, pairs)
    shuffled = data.draw(st.permutations(pairs))
    assert validate(token, url, shuffled, signature)
    assert not validate(token + "x", url, pairs, signature)
    extra = ("Extra", "1")
    if extra not in pairs:  # a repeated identical pair does not change the signature
        assert not validate(token, url, [*pairs, extra], signature)
