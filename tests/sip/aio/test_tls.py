"""RFC 5922 identity checks and TLS context construction (no sockets)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from callxml.errors import ConfigError, TransportError
from callxml.sip.aio.tls import (
    TlsConfig,
    certificate_identities,
    client_context,
    server_context,
    verify_sip_identity,
)


def make_cert(*, cn: str | None = None, san: list[x509.GeneralName] | None = None) -> bytes:
    """A self-signed DER certificate with exactly the names given."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


def test_dns_san_matches_exactly_and_case_insensitively() -> None:
    der = make_cert(san=[x509.DNSName("sip.example.com")])
    verify_sip_identity(der, "sip.example.com")
    verify_sip_identity(der, "SIP.Example.COM")
    with pytest.raises(TransportError, match=r"does not match 'example\.com'"):
        verify_sip_identity(der, "example.com")
    with pytest.raises(TransportError):
        verify_sip_identity(der, "a.sip.example.com")


def test_sip_uri_san_without_user_is_an_identity() -> None:
    # RFC 5922 §7.1 step 1: sip: URI with no user part names a domain.
    der = make_cert(san=[x509.UniformResourceIdentifier("sip:example.com")])
    verify_sip_identity(der, "example.com")


def test_uri_san_with_user_or_other_scheme_is_not_an_identity() -> None:
    der = make_cert(
        san=[
            x509.UniformResourceIdentifier("sip:alice@example.com"),
            x509.UniformResourceIdentifier("https://example.net/"),
            x509.UniformResourceIdentifier("sips:example.org"),
        ]
    )
    domains, _ = certificate_identities(der)
    assert domains == frozenset()
    for host in ("example.com", "example.net", "example.org"):
        with pytest.raises(TransportError):
            verify_sip_identity(der, host)


def test_wildcard_refused_by_default_and_allowed_when_configured() -> None:
    der = make_cert(san=[x509.DNSName("*.example.com")])
    with pytest.raises(TransportError, match="wildcard certificates are refused"):
        verify_sip_identity(der, "sip.example.com")
    verify_sip_identity(der, "sip.example.com", allow_wildcards=True)
    # Even when allowed, a wildcard covers exactly one label.
    with pytest.raises(TransportError):
        verify_sip_identity(der, "a.b.example.com", allow_wildcards=True)
    with pytest.raises(TransportError):
        verify_sip_identity(der, "example.com", allow_wildcards=True)


def test_common_name_only_used_without_subject_alt_name() -> None:
    verify_sip_identity(make_cert(cn="cn.example.com"), "cn.example.com")
    der = make_cert(cn="cn.example.com", san=[x509.DNSName("san.example.com")])
    with pytest.raises(TransportError):
        verify_sip_identity(der, "cn.example.com")


def test_ip_literal_targets_match_ip_address_san() -> None:
    der = make_cert(
        san=[
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
            x509.DNSName("127.0.0.2"),
        ]
    )
    verify_sip_identity(der, "127.0.0.1")
    verify_sip_identity(der, "[::1]")
    with pytest.raises(TransportError):
        verify_sip_identity(der, "127.0.0.2")  # a dNSName never matches an IP literal


def test_missing_or_garbage_certificate_is_a_transport_error() -> None:
    with pytest.raises(TransportError, match="no certificate"):
        verify_sip_identity(None, "example.com")
    with pytest.raises(TransportError, match="cannot be parsed"):
        verify_sip_identity(b"\x30\x03junk", "example.com")


def test_contexts(tmp_path: pytest.TempPathFactory) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("sip.example.test")
    ca_pem = ca.cert_pem.bytes().decode()
    chain = tmp_path / "chain.pem"  # type: ignore[operator]
    key = tmp_path / "key.pem"  # type: ignore[operator]
    cert.private_key_pem.write_to_path(str(key))
    cert.cert_chain_pems[0].write_to_path(str(chain))

    ctx = client_context(TlsConfig(ca_data=ca_pem))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is False  # the name check is RFC 5922, ours
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client_context(TlsConfig(verify=False)).verify_mode == ssl.CERT_NONE

    server = server_context(TlsConfig(cert_file=str(chain), key_file=str(key)))
    assert server.verify_mode == ssl.CERT_NONE
    mutual = server_context(
        TlsConfig(cert_file=str(chain), key_file=str(key), ca_data=ca_pem, require_client_cert=True)
    )
    assert mutual.verify_mode == ssl.CERT_REQUIRED

    with pytest.raises(ConfigError, match="needs a certificate"):
        server_context(TlsConfig())
    with pytest.raises(ConfigError, match="cannot load certificate"):
        server_context(TlsConfig(cert_file=str(tmp_path / "missing.pem")))  # type: ignore[operator]
    with pytest.raises(ConfigError, match="CA bundle"):
        client_context(TlsConfig(ca_file=str(tmp_path / "missing.pem")))  # type: ignore[operator]
    with pytest.raises(ConfigError, match="needs its key"):
        client_context(TlsConfig(ca_data=ca_pem, cert_file=str(chain)))
