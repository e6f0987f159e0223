"""The development certificate verifies for localhost through its own CA, and is reused."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

from callxml.engine.devcert import ensure_dev_certificate


async def test_dev_certificate_serves_tls_that_verifies(tmp_path: Path) -> None:
    dev = ensure_dev_certificate(tmp_path)
    assert dev.created and len(dev.fingerprint.split(":")) == 32
    assert stat.S_IMODE(dev.key.stat().st_mode) == 0o600

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(dev.cert, dev.key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        for host in ("localhost", "127.0.0.1"):
            client_ctx = ssl.create_default_context(cafile=str(dev.ca))
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=host
            )
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            writer.close()
            await writer.wait_closed()
        # Any other name is refused: the certificate is only for loopback.
        client_ctx = ssl.create_default_context(cafile=str(dev.ca))
        try:
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="example.com"
            )
        except ssl.SSLCertVerificationError:
            pass
        else:
            raise AssertionError("a certificate for localhost verified as example.com")

    again = ensure_dev_certificate(tmp_path)
    assert not again.created and again.fingerprint == dev.fingerprint
