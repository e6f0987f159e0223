"""A self-signed development certificate for SIP over TLS on a fresh machine.

Owns making (once) and reusing a local certificate authority and a server certificate signed by
it, so ``callxml serve`` can listen on TLS 5061 with no configuration. The CA is separate from the
server certificate so that a test softphone can trust the CA file alone, as real deployments
trust a CA rather than a leaf (appliances such as SBCs have no system CA bundle: their operators
load the CA by hand).

Never used when the operator configures ``tls.cert``/``tls.key``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DevCertificate", "ensure_dev_certificate", "fingerprint"]


@dataclass(frozen=True, slots=True)
class DevCertificate:
    cert: Path  # server certificate chain (leaf + CA), PEM
    key: Path  # server private key, PEM, mode 0600
    ca: Path  # the CA certificate clients should trust, PEM
    fingerprint: str  # SHA-256 of the leaf, colon-separated hex
    created: bool  # made now, rather than found from an earlier run


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint of the first certificate in a PEM blob, as ``AB:CD:...``."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def ensure_dev_certificate(
    directory: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
) -> DevCertificate:
    """Return the development certificate in ``directory``, creating it on first use."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / "dev-cert.pem"
    key_path = directory / "dev-key.pem"
    ca_path = directory / "dev-ca.pem"
    created = False
    if not (cert_path.is_file() and key_path.is_file() and ca_path.is_file()):
        _create(cert_path, key_path, ca_path, names)
        created = True
    return DevCertificate(
        cert_path, key_path, ca_path, fingerprint(cert_path.read_bytes()), created
    )


def _create(cert_path: Path, key_path: Path, ca_path: Path, names: tuple[str, ...]) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callxml development CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
            # RFC 5922 §7.1: SIP identities in a URI subjectAltName are preferred by peers.
            alt_names.append(x509.UniformResourceIdentifier(f"sip:{name}"))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=397))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_bytes = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    ca_path.write_bytes(ca_cert.public_bytes(pem))
