"""A real PostgreSQL server for the tests: ``initdb`` into a temporary directory, ``postgres``
listening on loopback at a free port, one fresh database per test.

PostgreSQL (Debian ``postgresql``) refuses to run as root, and CI runs the tests as root, so the
server then runs as ``nobody`` (the data directory is handed to it). One server serves the whole
session (initdb and start take a few seconds); each test gets its own database, so tests never see
each other's rows.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.ports import free_port

__all__ = ["PostgresServer", "start_postgres"]


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


BINDIR = _bindir()
SUPERUSER = "callxml"


@dataclass
class PostgresServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    datadir: Path
    _databases: int = 0

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = f"test_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, database_url: str, statement: str, params: Any = None) -> list[Any]:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []


def _demote() -> dict[str, Any]:
    """Popen arguments to run as ``nobody`` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def start_postgres(host: str = "127.0.0.1") -> Iterator[PostgresServer]:
    """A PostgreSQL server on ``host`` and a free port, stopped and deleted on exit."""
    if BINDIR is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="callxml-pg-"))
    datadir, sockets = root / "data", root / "run"
    sockets.mkdir()
    demote = _demote()
    if demote:
        os.chown(root, demote["user"], demote["group"])
        os.chown(sockets, demote["user"], demote["group"])
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(
        [str(BINDIR / "initdb"), "-D", str(datadir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        **demote,
    )
    port = free_port("tcp")
    log = (root / "postgres.log").open("wb")
    options = {"-D": str(datadir), "-h": host, "-p": str(port), "-k": str(sockets)}
    settings = ["-c", "fsync=on", "-c", "max_connections=200"]
    process = subprocess.Popen(
        [str(BINDIR / "postgres"), *(x for pair in options.items() for x in pair), *settings],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        **demote,
    )
    server = PostgresServer(host, port, process, datadir)
    try:
        _wait_ready(server, root)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: PostgresServer, root: Path) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"postgres exited: {(root / 'postgres.log').read_text()[-2000:]}")
        try:
            with psycopg.connect(server.url("postgres"), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
