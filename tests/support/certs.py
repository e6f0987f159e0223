"""TLS certificates for tests: a trustme PKI with several names, and the development certificate.

Two kinds because tests need two things. The SIP transport tests need a CA and certificates for
names that must match or fail (a host, a wildcard, another host, a client), which trustme makes
quickly: :func:`make_pki`. The call tests need what ``callxml serve`` itself makes on a fresh
machine (:func:`callxml.engine.devcert.ensure_dev_certificate`: a CA file plus a server chain and
key on disk), which is also what baresip and ``callxml call`` load: :func:`dev_certificate`.
Both are written once per session by the fixtures in :mod:`support.fixtures`; nothing writes to
them afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

from callxml.engine.devcert import DevCertificate, ensure_dev_certificate
from callxml.sip.aio.tls import TlsConfig

__all__ = ["DEV_CERT_NAMES", "Pki", "dev_certificate", "make_pki"]

#: The names the shared development certificate is issued for: every test reaches its peers at
#: 127.0.0.1; "localhost" is there for the tests that had their own certificate with it.
DEV_CERT_NAMES = ("127.0.0.1", "localhost")


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


def make_pki(directory: Path) -> Pki:
    """A fresh CA and its certificates (see :class:`Pki`), written into ``directory``."""
    ca = trustme.CA()
    return Pki(
        ca_pem=ca.cert_pem.bytes().decode(),
        server=_write(ca, directory, "server", "sip.example.test", "127.0.0.1"),
        wildcard=_write(ca, directory, "wildcard", "*.example.test"),
        other=_write(ca, directory, "other", "other.example.test"),
        client=_write(ca, directory, "client", "alice.example.test"),
        untrusted_ca_pem=trustme.CA().cert_pem.bytes().decode(),
    )


def dev_certificate(directory: Path, names: tuple[str, ...] = DEV_CERT_NAMES) -> DevCertificate:
    """The engine's development certificate (CA, chain, key) for ``names``, in ``directory``."""
    return ensure_dev_certificate(directory, names)
