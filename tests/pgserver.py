"""A throw-away PostgreSQL + PostGIS server on loopback, in a temporary directory (tests only).

`start()` runs `initdb` and `pg_ctl start` from Debian's postgresql-15 (+ postgresql-15-postgis-3),
creates the PostGIS extension as the cluster's superuser, and a login role `oxeo` that is NOT a
superuser and owns the database: the application runs as that role, which proves it needs no superuser
rights. As root (CI), the server runs as the `postgres` system user because `initdb` refuses root.
`stop()` stops the server and deletes the directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin")]
APP_USER = "oxeo"
APP_PASSWORD = "oxeo-test-password"  # throw-away server on loopback, gone after the test session
DB_NAME = "oxeo"


class PostgresUnavailable(RuntimeError):
    pass


@dataclass
class PgServer:
    root: Path
    port: int
    bin_dir: Path
    run_as: str | None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the application role (psycopg 3 driver)."""
        return f"postgresql+psycopg://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{self.port}/{DB_NAME}"

    def admin_url(self, db: str = DB_NAME) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def psql(self, sql: str, db: str = DB_NAME) -> str:
        return _run(
            [str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
            + ["-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            self.run_as,
        )

    def create_database(self, name: str) -> str:
        """A fresh database owned by the application role, with PostGIS; returns its URL."""
        self.psql(f'CREATE DATABASE "{name}" OWNER {APP_USER}', db="postgres")
        self.psql("CREATE EXTENSION IF NOT EXISTS postgis", db=name)
        return f"postgresql+psycopg://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            _run(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"],
                self.run_as,
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _run(cmd: list[str], run_as: str | None) -> str:
    if run_as:
        cmd = ["runuser", "-u", run_as, "--", *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise PostgresUnavailable(f"{' '.join(cmd)} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> str | None:
    """None when a server can be started here, else why not."""
    bin_dir = next((d for d in PG_BIN_DIRS if (d / "initdb").exists()), None)
    if bin_dir is None:
        return "PostgreSQL server binaries not installed (Debian: postgresql-15 postgresql-15-postgis-3)"
    if not any(Path("/usr/share/postgresql").glob("*/extension/postgis.control")):
        return "PostGIS not installed (Debian: postgresql-15-postgis-3)"
    return None


def start() -> PgServer:
    why = available()
    if why:
        raise PostgresUnavailable(why)
    bin_dir = next(d for d in PG_BIN_DIRS if (d / "initdb").exists())
    run_as = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="oxeo-pg-"))
    if run_as:
        shutil.chown(root, user=run_as)
    data = root / "data"
    port = _free_port()
    try:
        _run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], run_as
        )
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=60"
        _run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
            run_as,
        )
        server = PgServer(root, port, bin_dir, run_as)
        # `trust` auth on loopback for the superuser only; the application role logs in with its password.
        server.psql(
            f"CREATE ROLE {APP_USER} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{APP_PASSWORD}'",
            db="postgres",
        )
        server.create_database(DB_NAME)
    except Exception:
        if (data / "postmaster.pid").exists():
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], run_as)
        shutil.rmtree(root, ignore_errors=True)
        raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    return server
