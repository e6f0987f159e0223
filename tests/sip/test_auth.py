"""Digest authentication: RFC vectors, header round trips, client nonce counts, server nonces."""

from __future__ import annotations

from typing import Any

import pytest

from callxml.errors import LocalProtocolError, RemoteProtocolError
from callxml.sip.auth import (
    Credentials,
    DigestAuthorization,
    DigestChallenge,
    DigestClient,
    DigestServer,
    compute_response,
    parse_authorization,
    parse_challenges,
    select_challenge,
)

# RFC 7616 §3.9.1: the same request answered with MD5 and SHA-256.
RFC7616: dict[str, Any] = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "method": "GET",
    "uri": "/dir/index.html",
    "qop": "auth",
    "nc": "00000001",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}


def test_rfc7616_md5_vector() -> None:
    assert compute_response(algorithm="MD5", **RFC7616) == "8ca523f5e9506fed4657c9700eebdbec"


def test_rfc7616_sha256_vector() -> None:
    assert (
        compute_response(algorithm="SHA-256", **RFC7616)
        == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )


def test_rfc2617_vector() -> None:
    # RFC 2617 §3.5 (with the erratum-corrected response).
    assert (
        compute_response(
            algorithm="MD5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            method="GET",
            uri="/dir/index.html",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def test_parse_challenge_sip_style() -> None:
    value = (
        'Digest realm="atlanta.com", domain="sip:boxesbybob.com", qop="auth,auth-int", '
        'nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5'
    )
    [c] = parse_challenges([value])
    assert c == DigestChallenge(
        realm="atlanta.com",
        nonce="f84f1cec41e6cbe5aea9c8e88d359",
        algorithm="MD5",
        qop=("auth", "auth-int"),
        opaque="",
        stale=False,
        domain="sip:boxesbybob.com",
    )
    assert parse_challenges([str(c)]) == [c]


def test_parse_several_challenges_in_one_value_and_quoted_escapes() -> None:
    value = 'Basic realm="x", Digest realm="a\\"b", nonce="n1", algorithm=SHA-256, stale=true'
    [c] = parse_challenges([value])
    assert c.realm == 'a"b' and c.algorithm == "SHA-256" and c.stale
    assert parse_challenges([str(c)]) == [c]


@pytest.mark.parametrize(
    "value",
    ['Digest realm="unterminated', "Digest nonce=x", 'realm="x"', "Digest realm=x nonce=y"],
)
def test_bad_challenges_raise(value: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_challenges([value])


def test_oversized_header_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_challenges(["Digest " + ", ".join(f"p{i}=v" for i in range(2000))])


def test_select_prefers_strongest_supported() -> None:
    values = [
        'Digest realm="r", nonce="1", algorithm=MD5, qop="auth"',
        'Digest realm="r", nonce="1", algorithm=SHA-256, qop="auth"',
        'Digest realm="r", nonce="1", algorithm=UNKNOWN-HASH, qop="auth"',
    ]
    chosen = select_challenge(values)
    assert chosen is not None and chosen.algorithm == "SHA-256"
    assert select_challenge(['Basic realm="x"']) is None
    assert select_challenge(['Digest realm="r", nonce="1", algorithm=FOO']) is None


def test_client_counts_nonces_and_round_trips() -> None:
    client = DigestClient()
    ch = DigestChallenge(realm="r", nonce="abc", algorithm="SHA-256", qop=("auth",), opaque="o")
    creds = Credentials("alice", "secret")
    a1 = client.authorize(ch, creds, "INVITE", "sip:bob@example.com", cnonce="c1")
    a2 = client.authorize(ch, creds, "INVITE", "sip:bob@example.com", cnonce="c1")
    assert (a1.nc, a2.nc) == ("00000001", "00000002")
    assert a1.response != a2.response
    assert a1.response == compute_response(
        algorithm="SHA-256", username="alice", realm="r", password="secret", nonce="abc",
        method="INVITE", uri="sip:bob@example.com", qop="auth", nc="00000001", cnonce="c1",
    )  # fmt: skip
    assert parse_authorization(str(a1)) == a1
    # A new nonce starts again at 1.
    a3 = client.authorize(DigestChallenge("r", "other", qop=("auth",)), creds, "BYE", "sip:x")
    assert a3.nc == "00000001"


def test_client_rfc2069_server_without_qop() -> None:
    auth = DigestClient().authorize(
        DigestChallenge("r", "n"), Credentials("u", "p"), "REGISTER", "sip:r"
    )
    assert auth.qop is None and auth.nc is None and auth.cnonce is None
    assert "qop" not in str(auth)
    assert auth.response == compute_response(
        algorithm="MD5", username="u", realm="r", password="p", nonce="n",
        method="REGISTER", uri="sip:r",
    )  # fmt: skip


def test_client_refuses_unsupported() -> None:
    with pytest.raises(LocalProtocolError):
        DigestClient().authorize(
            DigestChallenge("r", "n", algorithm="SHA-1"), Credentials("u", "p"), "X", "sip:r"
        )


def test_credentials_hide_password_and_match_realm() -> None:
    creds = Credentials("u", "hunter2", realm="r")
    assert "hunter2" not in repr(creds)
    assert creds.matches("r") and not creds.matches("other")
    assert Credentials("u", "p").matches("anything")


# --- server -------------------------------------------------------------------------------

SECRET = b"0123456789abcdef0123456789abcdef"
USERS = {"alice": "wonderland"}


def make_server(**kw: object) -> DigestServer:
    return DigestServer("example.com", SECRET, USERS.get, **kw)  # type: ignore[arg-type]


def answer(server: DigestServer, now: float, algorithm: str = "SHA-256") -> DigestAuthorization:
    [ch] = [c for c in server.challenges(now) if c.algorithm == algorithm]
    return DigestClient().authorize(ch, Credentials("alice", "wonderland"), "INVITE", "sip:x@y")


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_server_accepts_correct_credentials(algorithm: str) -> None:
    server = make_server()
    challenges = server.challenges(100.0)
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert all(c.qop == ("auth",) and not c.stale for c in challenges)
    result = server.verify(str(answer(server, 100.0, algorithm)), "INVITE", "sip:x@y", 101.0)
    assert result.ok and result.username == "alice"


def test_server_rejects_wrong_password_without_stale() -> None:
    server = make_server()
    [ch, _] = server.challenges(0.0)
    auth = DigestClient().authorize(ch, Credentials("alice", "nope"), "INVITE", "sip:x@y")
    result = server.verify(auth, "INVITE", "sip:x@y", 1.0)
    assert not result.ok and not result.stale


def test_server_rejects_unknown_user_forged_nonce_and_wrong_uri() -> None:
    server = make_server()
    [ch, _] = server.challenges(0.0)
    bob = DigestClient().authorize(ch, Credentials("bob", "x"), "INVITE", "sip:x@y")
    assert not server.verify(bob, "INVITE", "sip:x@y", 1.0).ok
    forged = DigestChallenge("example.com", ch.nonce[:-2] + "AA", "SHA-256", ("auth",))
    auth = DigestClient().authorize(forged, Credentials("alice", "wonderland"), "INVITE", "sip:x@y")
    assert server.verify(auth, "INVITE", "sip:x@y", 1.0).reason == "unknown nonce"
    other = DigestServer("example.com", b"another-secret-of-16", USERS.get)
    auth = answer(other, 0.0)
    assert not server.verify(auth, "INVITE", "sip:x@y", 1.0).ok
    auth = answer(server, 0.0)
    assert not server.verify(auth, "INVITE", "sip:other@y", 1.0).ok
    assert not server.verify(auth, "BYE", "sip:x@y", 1.0).ok  # method is in A2


def test_server_expired_nonce_is_stale() -> None:
    server = make_server(nonce_lifetime=30.0)
    auth = answer(server, 0.0)
    result = server.verify(auth, "INVITE", "sip:x@y", 31.0)
    assert not result.ok and result.stale
    assert all(c.stale for c in server.challenges(31.0, stale=True))
    assert "stale=TRUE" in str(server.challenges(31.0, stale=True)[0])


def test_server_refuses_replayed_nonce_count() -> None:
    server = make_server()
    auth = answer(server, 0.0)
    assert server.verify(auth, "INVITE", "sip:x@y", 1.0).ok
    replay = server.verify(auth, "INVITE", "sip:x@y", 2.0)
    assert not replay.ok and replay.stale and replay.reason == "nonce count reused"


def test_server_accepts_increasing_nonce_counts() -> None:
    server = make_server()
    [ch, _] = server.challenges(0.0)
    client = DigestClient()
    creds = Credentials("alice", "wonderland")
    for i in range(3):
        assert server.verify(client.authorize(ch, creds, "INVITE", "sip:x@y"), "INVITE",
                             "sip:x@y", 1.0 + i).ok  # fmt: skip


def test_server_eviction_never_reopens_replay() -> None:
    server = make_server(max_nonces=2)
    auths = [answer(server, float(i)) for i in range(4)]
    for i, auth in enumerate(auths):
        assert server.verify(auth, "INVITE", "sip:x@y", 10.0 + i).ok
    # The first nonces were forgotten; replaying them must still fail (as stale).
    for auth in auths:
        result = server.verify(auth, "INVITE", "sip:x@y", 20.0)
        assert not result.ok and result.stale
    assert len(server._seen) <= 2


def test_server_requires_qop_and_handles_garbage() -> None:
    server = make_server()
    [ch, _] = server.challenges(0.0)
    no_qop = DigestClient().authorize(
        DigestChallenge(ch.realm, ch.nonce, "SHA-256"), Credentials("alice", "wonderland"),
        "INVITE", "sip:x@y",
    )  # fmt: skip
    assert not server.verify(no_qop, "INVITE", "sip:x@y", 1.0).ok
    for garbage in ["", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", 'Digest username="a"', "Digest ="]:
        assert not server.verify(garbage, "INVITE", "sip:x@y", 1.0).ok


def test_server_refuses_short_secret() -> None:
    with pytest.raises(LocalProtocolError):
        DigestServer("r", b"short", USERS.get)
