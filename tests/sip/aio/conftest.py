"""Fixtures for the asyncio SIP tests: TLS certificates made per session with trustme."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from callxml.sip.aio.tls import TlsConfig


@dataclass(frozen=True)
class Pki:
    """A test CA and server certificates for several names, written as PEM files."""

    ca_pem: str
    server: TlsConfig  # cert for sip.example.test (SAN DNS) and 127.0.0.1 (SAN IP)
    wildcard: TlsConfig  # cert for *.example.test only
    other: TlsConfig  # cert for other.example.test only
    client: TlsConfig  # a client certificate (mutual TLS) for alice.example.test
    untrusted_ca_pem: str  # a CA that signed none of these


def _write(ca: trustme.CA, directory: Path, name: str, *identities: str) -> TlsConfig:
    cert = ca.issue_cert(*identities)
    chain = directory / f"{name}.pem"
    key = directory / f"{name}.key"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return TlsConfig(cert_file=str(chain), key_file=str(key))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    yield Pki(
        ca_pem=ca.cert_pem.bytes().decode(),
        server=_write(ca, directory, "server", "sip.example.test", "127.0.0.1"),
        wildcard=_write(ca, directory, "wildcard", "*.example.test"),
        other=_write(ca, directory, "other", "other.example.test"),
        client=_write(ca, directory, "client", "alice.example.test"),
        untrusted_ca_pem=trustme.CA().cert_pem.bytes().decode(),
    )
