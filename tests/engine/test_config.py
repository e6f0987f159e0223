"""Engine configuration: embedded defaults, a full TOML file, and one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from callxml.engine.config import (
    DEMO_ACCOUNT_SID,
    DEMO_DOMAIN,
    Listener,
    default_config,
    load_config,
    parse_config,
)
from callxml.errors import ConfigError

ACCOUNT = {"sid": "AC" + "a" * 32, "auth_token": "0123456789abcdef0123"}


def test_defaults_run_on_loopback_with_a_demo_domain() -> None:
    cfg = default_config()
    assert cfg.listeners == (
        Listener("udp", "127.0.0.1", 5060),
        Listener("tcp", "127.0.0.1", 5060),
        Listener("tls", "127.0.0.1", 5061),
    )
    assert (cfg.http_host, cfg.http_port) == ("127.0.0.1", 8080)
    assert cfg.database == Path("callxml.db")
    assert cfg.accounts[0].sid == DEMO_ACCOUNT_SID
    demo = cfg.domain(DEMO_DOMAIN.upper())
    assert demo is not None and demo.secure_media is False
    assert cfg.base_url == "http://127.0.0.1:8080"


def test_full_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "callxml.toml").write_text(
        f"""
[sip]
listen = ["udp:0.0.0.0:5070", "tls:[::1]:5071"]
trunk_uri_template = "sip:{{number}}@trunk.example.com;secure=true"
session_expires = 3600
min_se = 120
[http]
port = 9000
public_url = "https://calls.example.com/"
[tls]
ca_bundle = "ca.pem"
[store]
path = "db/calls.db"
[media]
port_min = 30000
port_max = 30100
[webhooks]
timeout = 5
[[accounts]]
sid = "{ACCOUNT["sid"]}"
auth_token = "{ACCOUNT["auth_token"]}"
[[domains]]
name = "Secure.Example.com"
account = "{ACCOUNT["sid"]}"
voice_url = "https://app.example.com/voice"
fallback_url = "https://app.example.com/fallback"
secure_media = true
allowed_ips = ["10.0.0.0/8"]
credentials = [{{ username = "alice", password = "s3cret" }}]
"""
    )
    cfg = load_config(tmp_path / "callxml.toml")
    assert cfg.listeners == (Listener("udp", "0.0.0.0", 5070), Listener("tls", "::1", 5071))
    assert cfg.http_port == 9000 and cfg.base_url == "https://calls.example.com"
    assert cfg.tls_ca_bundle == tmp_path / "ca.pem"
    assert cfg.database == tmp_path / "db/calls.db"
    assert cfg.webhook_timeout == 5.0
    assert (cfg.session_expires, cfg.min_se) == (3600, 120)
    domain = cfg.domain("secure.example.com")
    assert domain is not None and domain.secure_media and domain.needs_auth
    assert "s3cret" not in repr(domain)
    assert ACCOUNT["auth_token"] not in repr(cfg.accounts)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"http": {"port": 70000}}, "http.port: port out of range"),
        ({"http": {"port": "80"}}, "http.port: must be int"),
        ({"http": {"host": "localhost"}}, "http.host: must be an IP address"),
        ({"sip": {"listen": ["sctp:127.0.0.1:5060"]}}, "sip.listen[0]"),
        ({"sip": {"trunk_uri_template": "sip:x@y"}}, "sip.trunk_uri_template"),
        ({"sip": {"min_se": 30}}, "sip.min_se: must be between 90"),
        ({"sip": {"session_expires": 60}}, "sip.session_expires: 0 (no session timers)"),
        ({"sip": {"session_expires": 600, "min_se": 900}}, "sip.session_expires"),
        ({"media": {"port_min": 10, "port_max": 11}}, "media.port_max"),
        ({"webhooks": {"timeout": 0}}, "webhooks.timeout"),
        ({"tls": {"cert": "/nonexistent.pem", "key": "/nonexistent.key"}}, "tls.cert: file"),
        ({"tls": {"cert": "/x.pem"}}, "tls.key: cert and key"),
        ({"bogus": 1}, "bogus: unknown key"),
        ({"http": {"prot": 1}}, "http.prot: unknown key"),
        ({"accounts": [{"sid": "AC12", "auth_token": "x" * 20}]}, "accounts[0].sid"),
        ({"accounts": [{"sid": ACCOUNT["sid"], "auth_token": "short"}]}, "accounts[0].auth_token"),
        (
            {"accounts": [ACCOUNT], "domains": [{"name": "d", "account": ACCOUNT["sid"]}]},
            "domains[0].voice_url: required",
        ),
        (
            {
                "accounts": [ACCOUNT],
                "domains": [{"name": "d", "account": ACCOUNT["sid"], "voice_url": "ftp://x/"}],
            },
            "domains[0].voice_url: must be an http(s) URL",
        ),
        (
            {
                "accounts": [ACCOUNT],
                "domains": [{"name": "d", "account": "AC" + "b" * 32, "voice_url": "http://x/"}],
            },
            "domains[0].account: no account",
        ),
        (
            {
                "accounts": [ACCOUNT],
                "domains": [
                    {
                        "name": "d",
                        "account": ACCOUNT["sid"],
                        "voice_url": "http://x/",
                        "secure_media": "yes",
                    }
                ],
            },
            "domains[0].secure_media: must be bool",
        ),
    ],
)
def test_bad_config_names_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[http\nport=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


# -- sections the cases above leave out ---------------------------------------------------------

DOMAIN = {"name": "d.example", "account": ACCOUNT["sid"], "voice_url": "http://x/"}


def test_store_and_engine_sections(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "store": {"path": "db/calls.db", "data_dir": "/srv/callxml"},
            "engine": {"shutdown_grace": 5},
            "webhooks": {"status_callback_retries": 0},
            "tls": {"verify": False},
        },
        base_dir=tmp_path,
    )
    assert cfg.database == tmp_path / "db/calls.db"  # relative to the file's folder
    assert cfg.data_dir == Path("/srv/callxml")
    assert cfg.shutdown_grace == 5.0 and isinstance(cfg.shutdown_grace, float)
    assert cfg.status_callback_retries == 0
    assert cfg.tls_verify is False
    assert default_config().data_dir == Path("callxml-data")


def test_domain_access_settings() -> None:
    cfg = parse_config(
        {
            "accounts": [ACCOUNT],
            "domains": [
                {
                    **DOMAIN,
                    "name": "Office.Example.",
                    "voice_method": "get",
                    "status_callback": "https://app/status",
                    "allowed_ips": ["192.0.2.0/24", "2001:db8::1"],
                    "credentials": [{"username": "alice", "password": "pw"}],
                }
            ],
        }
    )
    (domain,) = cfg.domains
    assert domain.name == "office.example" and domain.voice_method == "GET"
    assert domain.status_callback == "https://app/status"
    assert domain.allowed_ips == ("192.0.2.0/24", "2001:db8::1")
    assert [c.username for c in domain.credentials] == ["alice"]


def test_no_accounts_and_no_domains_leaves_the_demo_domain_without_an_owner() -> None:
    with pytest.raises(ConfigError, match=r"^domains\[0\]\.account: no account ''"):
        parse_config({"accounts": []})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"store": {"path": 3}}, "store.path: must be str"),
        ({"store": {"journal": "wal"}}, "store.journal: unknown key"),
        ({"engine": {"shutdown_grace": "30s"}}, "engine.shutdown_grace: must be float"),
        ({"engine": {"grace": 1}}, "engine.grace: unknown key"),
        ({"webhooks": {"status_callback_retries": 11}}, "webhooks.status_callback_retries"),
        ({"tls": {"verify": "no"}}, "tls.verify: must be bool"),
        ({"tls": {"ca_bundle": "/nonexistent.pem"}}, "tls.ca_bundle: file not found"),
        ({"http": {"public_url": "ftp://x"}}, "http.public_url: must be an http(s) URL"),
        ({"media": {"address": "localhost"}}, "media.address: must be an IP address"),
        ({"sip": {"listen": "udp:127.0.0.1:5060"}}, "sip.listen: must be list"),
        ({"sip": 1}, "sip: must be dict"),
        ({"accounts": [ACCOUNT, ACCOUNT]}, "accounts: duplicate sid"),
        ({"accounts": [{**ACCOUNT, "name": "x"}]}, "accounts[0].name: unknown key"),
        ({"accounts": [ACCOUNT], "domains": [DOMAIN, DOMAIN]}, "domains: duplicate name"),
        ({"accounts": [ACCOUNT], "domains": [{**DOMAIN, "name": ""}]}, "domains[0].name: required"),
        (
            {"accounts": [ACCOUNT], "domains": [{**DOMAIN, "allowed_ips": ["10.0.0.0/8", "x"]}]},
            "domains[0].allowed_ips[1]: not an IP network",
        ),
        (
            {"accounts": [ACCOUNT], "domains": [{**DOMAIN, "credentials": [{"username": "a"}]}]},
            "domains[0].credentials[0]: username and password required",
        ),
        (
            {
                "accounts": [ACCOUNT],
                "domains": [
                    {**DOMAIN, "credentials": [{"username": "a", "password": "b", "realm": "c"}]}
                ],
            },
            "domains[0].credentials[0].realm: unknown key",
        ),
        (
            {"accounts": [ACCOUNT], "domains": [{**DOMAIN, "voice_method": "PUT"}]},
            "domains[0].voice_method: must be GET or POST",
        ),
        (
            {"accounts": [ACCOUNT], "domains": [{**DOMAIN, "port": 5060}]},
            "domains[0].port: unknown key",
        ),
        (
            {"accounts": [ACCOUNT], "domains": [{**DOMAIN, "digest_algorithms": ["SHA-1"]}]},
            "domains[0].digest_algorithms: 'SHA-1' is not one of MD5, SHA-256, SHA-512-256",
        ),
        (
            {"accounts": [ACCOUNT], "domains": [{**DOMAIN, "digest_algorithms": []}]},
            "domains[0].digest_algorithms: name at least one algorithm",
        ),
        ({"registrar": {"min_expires": 0}}, "registrar.min_expires: must be between 1 and"),
        (
            {"registrar": {"min_expires": 600, "max_expires": 60}},
            "registrar.min_expires: must not exceed registrar.max_expires",
        ),
        ({"registrar": {"max_bindings": 5000}}, "registrar.max_bindings: must be between 1"),
        ({"registrar": {"ttl": 1}}, "registrar.ttl: unknown key"),
    ],
)
def test_every_section_names_the_key(data: dict[str, object], message: str) -> None:
    test_bad_config_names_the_key(data, message)


def _domain_with(**extra: object) -> dict[str, object]:
    domain = {"name": "d", "account": ACCOUNT["sid"], "voice_url": "http://x/", **extra}
    return {"accounts": [ACCOUNT], "domains": [domain]}


def test_srtp_suites_default_and_ordered_list() -> None:
    (default,) = parse_config(_domain_with()).domains
    assert default.srtp_suites == ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
    wide = _domain_with(srtp_suites=["AEAD_AES_256_GCM", "aes_cm_128_hmac_sha1_80"])
    (domain,) = parse_config(wide).domains
    assert domain.srtp_suites == ("AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80")


@pytest.mark.parametrize(
    ("suites", "message"),
    [
        (["AES_192_CM_HMAC_SHA1_80"], "domains[0].srtp_suites: 'AES_192_CM_HMAC_SHA1_80' is not"),
        ([], "domains[0].srtp_suites: at least one suite is needed"),
        (["AEAD_AES_128_GCM", "AEAD_AES_128_GCM"], "domains[0].srtp_suites: AEAD_AES_128_GCM is"),
        ("AEAD_AES_128_GCM", "domains[0].srtp_suites: must be list"),
    ],
)
def test_bad_srtp_suites_name_the_key(suites: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_domain_with(srtp_suites=suites))
    assert str(info.value).startswith(message), str(info.value)


def test_the_default_srtp_suites_are_the_policy_s() -> None:
    from callxml.engine.config import DomainConfig
    from callxml.sdp.policy import INBOUND_SUITES

    assert DomainConfig("d", "AC", "http://x/").srtp_suites == INBOUND_SUITES


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, ("none", False)),
        ({"secure_media": True}, ("sdes", True)),
        ({"secure_media": False}, ("none", False)),
        ({"media_encryption": "sdes"}, ("sdes", True)),
        ({"media_encryption": "zrtp"}, ("zrtp", False)),
        ({"media_encryption": "sdes-or-zrtp", "secure_media": True}, ("sdes-or-zrtp", True)),
    ],
)
def test_media_encryption_and_the_older_secure_media(
    extra: dict[str, object], expected: tuple[str, bool]
) -> None:
    (domain,) = parse_config(_domain_with(**extra)).domains
    assert (domain.media_encryption, domain.secure_media) == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"media_encryption": "dtls"}, "domains[0].media_encryption: must be one of"),
        (
            {"media_encryption": "zrtp", "secure_media": True},
            "domains[0].secure_media: contradicts media_encryption = 'zrtp'",
        ),
    ],
)
def test_bad_media_encryption_names_the_key(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_domain_with(**extra))
    assert str(info.value).startswith(message), str(info.value)


def test_registrar_section_and_digest_algorithms() -> None:
    config = parse_config(
        {
            "registrar": {"min_expires": 30, "max_expires": 600, "max_bindings": 3},
            "accounts": [ACCOUNT],
            "domains": [{**DOMAIN, "digest_algorithms": ["sha-256", "MD5", "SHA-256"]}],
        }
    )
    assert (config.registrar_min_expires, config.registrar_max_expires) == (30, 600)
    assert config.registrar_default_expires == 600  # the default is cut to the maximum
    assert config.registrar_max_bindings == 3
    assert config.domains[0].digest_algorithms == ("SHA-256", "MD5")
    assert parse_config({}).domains[0].digest_algorithms == ("MD5", "SHA-256")


REGISTRATION = {
    "registrar": "sips:sip.carrier.example",
    "username": "customer-4711",
    "password": "secret-1",
    "domain": "d.example",
}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {**REGISTRATION, "registrar": "sip:sip.carrier.example"},
            "registrations[0].registrar: must be sips: or ;transport=tls",
        ),
        ({**REGISTRATION, "registrar": "http://x"}, "registrations[0].registrar: "),
        ({**REGISTRATION, "registrar": "sips:bob@x.example"}, "registrations[0].registrar: names"),
        ({k: v for k, v in REGISTRATION.items() if k != "password"}, "registrations[0].password"),
        ({**REGISTRATION, "password_env": "X"}, "registrations[0].password: give one of"),
        ({**REGISTRATION, "domain": "nowhere"}, "registrations[0].domain: no domain 'nowhere'"),
        ({**REGISTRATION, "expires": 10}, "registrations[0].expires: must be between 60"),
        ({**REGISTRATION, "keepalive": 0}, "registrations[0].keepalive: must be between 1"),
        ({**REGISTRATION, "outbound_proxy": "x"}, "registrations[0].outbound_proxy: "),
        ({**REGISTRATION, "pin": 1}, "registrations[0].pin: unknown key"),
    ],
)
def test_bad_registrations_name_the_key(entry: dict[str, object], message: str) -> None:
    data = {
        "sip": {"listen": ["tls:127.0.0.1:5061"]},
        "accounts": [ACCOUNT],
        "domains": [DOMAIN],
        "registrations": [entry],
    }
    test_bad_config_names_the_key(data, message)


def test_registrations_need_a_tls_listener_and_unique_names() -> None:
    base = {"accounts": [ACCOUNT], "domains": [DOMAIN]}
    with pytest.raises(ConfigError, match="need a tls listener"):
        parse_config(
            {**base, "sip": {"listen": ["udp:127.0.0.1:5060"]}, "registrations": [REGISTRATION]}
        )
    with pytest.raises(ConfigError, match="registrations: duplicate name"):
        parse_config({**base, "registrations": [REGISTRATION, REGISTRATION]})


def test_a_registration_password_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "carrier.secret").write_text("from-the-file\n")
    monkeypatch.setenv("CARRIER_PASSWORD", "from-the-environment")
    config_file = tmp_path / "callxml.toml"
    config_file.write_text(
        f"""
[[accounts]]
sid = "{ACCOUNT["sid"]}"
auth_token = "{ACCOUNT["auth_token"]}"

[[domains]]
name = "d"
account = "{ACCOUNT["sid"]}"
voice_url = "http://x/"

[[registrations]]
registrar = "sip:carrier.example;transport=tls"
username = "a"
password_file = "carrier.secret"
domain = "d"

[[registrations]]
name = "second"
registrar = "sips:carrier.example"
username = "b"
password_env = "CARRIER_PASSWORD"
domain = "D."
"""
    )
    first, second = load_config(config_file).registrations
    assert (first.name, first.password) == ("a@carrier.example", "from-the-file")
    assert (second.name, second.password, second.domain) == ("second", "from-the-environment", "d")
    assert "from-the" not in repr(first) + repr(second)  # never shown
    monkeypatch.delenv("CARRIER_PASSWORD")
    with pytest.raises(ConfigError, match="the environment has no CARRIER_PASSWORD"):
        load_config(config_file)
