"""The pytest fixtures every test directory may use, registered once by tests/conftest.py.

Each is a thin fixture over a helper of this package, so that a test that needs the thing without
the fixture (a different lifetime, several at once) uses the same code:

* ``sipp`` — a :class:`~support.sipp.Sipp` runner, scenarios from the test's nearest ``sipp/``
  directory; whatever still runs after the test is killed;
* ``pki`` — the trustme CA and certificates of :func:`~support.certs.make_pki`, per session;
* ``dev_cert`` — the development certificate (:func:`~support.certs.dev_certificate`) for
  127.0.0.1 and localhost, per session: the tests that load it only read it;
* ``baresip`` — start baresip softphones (:func:`~support.baresip.baresip_peers`), all stopped
  after the test;
* ``linphone`` — start linphonec softphones (:func:`~support.linphone.linphone_peers`), all
  stopped after the test;
* ``their_tone`` — a WAV of :data:`~support.baresip.THEIR_TONE` for a baresip to play;
* ``postgres_server`` — a PostgreSQL server (:func:`~support.postgres.start_postgres`), per
  session; ``postgres_url`` — a fresh database on it, per test;
* ``serve`` — serve an aiohttp app on a free port (:func:`~support.web.serve_app`), stopped
  after the test;
* ``phone_boxes`` — make our own phones whose incoming calls queue up
  (:func:`~support.phones.phone_boxes`), closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from callxml.engine.devcert import DevCertificate
from support.baresip import THEIR_TONE, BaresipFactory, baresip_peers, tone_wav
from support.certs import Pki, dev_certificate, make_pki
from support.linphone import LinphoneFactory, linphone_peers
from support.phones import PhoneFactory
from support.phones import phone_boxes as make_phone_boxes
from support.postgres import PostgresServer, start_postgres
from support.sipp import Sipp, scenario_dir
from support.web import Serve, serve_app


@pytest.fixture
async def sipp(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sipp]:
    runner = Sipp(tmp_path / "sipp", scenario_dir(request.path.parent))
    try:
        yield runner
    finally:
        await runner.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    yield make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def dev_cert(tmp_path_factory: pytest.TempPathFactory) -> DevCertificate:
    return dev_certificate(tmp_path_factory.mktemp("dev-cert"))


@pytest.fixture
async def baresip(tmp_path: Path) -> AsyncIterator[BaresipFactory]:
    async with baresip_peers(tmp_path) as make:
        yield make


@pytest.fixture
async def linphone(tmp_path: Path) -> AsyncIterator[LinphoneFactory]:
    async with linphone_peers(tmp_path) as make:
        yield make


@pytest.fixture
def their_tone(tmp_path: Path) -> Path:
    return tone_wav(tmp_path / "their-tone.wav", THEIR_TONE)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``base_url = await serve(app)``; every app served is stopped after the test."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner, port = await serve_app(app, shutdown_timeout=0.1)
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with start_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


@pytest.fixture
async def phone_boxes(dev_cert: DevCertificate) -> AsyncIterator[PhoneFactory]:
    """``box = await phone_boxes(**Phone.start options)``: see :mod:`support.phones`."""
    async with make_phone_boxes(dev_cert) as make:
        yield make
