"""Create and upgrade the results database with the Alembic migrations in `oxeo_flows/migrations`.

`upgrade(engine)` is idempotent and safe when several processes start at once: on PostgreSQL the
migration runs in one transaction under an advisory lock (DDL is transactional there); on SQLite under a
file lock next to the database file. A database made by oxeo-flows 0.1 (tables, no `alembic_version`) is
stamped at revision 0001 and upgraded from there. The application's database role needs no superuser
rights: only CREATE on its schema; PostGIS must already be installed in the database
(`CREATE EXTENSION postgis`, once, by an administrator).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from sqlalchemy.engine import Connection, Engine

from oxeo_flows.errors import InputError

MIGRATIONS = Path(__file__).parent / "migrations"
_ADVISORY_KEY = 0x0E0F10  # any constant shared by all oxeo-flows processes


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    """The newest revision shipped with this version."""
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def current(engine: Engine) -> str | None:
    """The database's revision (None: empty database or made before migrations existed)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _file_lock(engine: Engine) -> AbstractContextManager[object]:
    db = engine.url.database
    if engine.dialect.name == "sqlite" and db not in (None, "", ":memory:"):
        return FileLock(str(Path(db).expanduser()) + ".migrate.lock", timeout=120)
    return nullcontext()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision` (default: the newest); a no-op when it is already there."""
    if engine.dialect.name not in ("sqlite", "postgresql"):
        raise InputError("database_url", f"expected a sqlite or postgresql URL, got {engine.dialect.name}")
    target = head() if revision == "head" else revision
    if current(engine) == target:
        return  # the common case: one cheap read, no lock
    sqlite = engine.dialect.name == "sqlite"
    with _file_lock(engine), engine.connect() as conn:
        if sqlite:
            # Batch migrations recreate tables, which foreign keys would block; the pragma only works
            # outside a transaction. Checked again below before the migration commits.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        with conn.begin():
            _upgrade(conn, engine, revision)
            if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                raise RuntimeError("migration left rows that break foreign keys; rolled back")
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def _upgrade(conn: Connection, engine: Engine, revision: str) -> None:
    if engine.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_KEY)))
        if not conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")).first():
            raise InputError(
                "database_url",
                f"PostGIS is not installed in database {engine.url.database!r}: an administrator must "
                "run `CREATE EXTENSION postgis` in it once",
            )
    tables = set(sa.inspect(conn).get_table_names())
    if MigrationContext.configure(conn).get_current_revision() is None and "aoi" in tables:
        command.stamp(_config(conn), "0001")  # made by 0.1, before migrations
    command.upgrade(_config(conn), revision)
