"""Shared fixtures. Prefect runs against a throw-away ephemeral API (one per test session)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in sample data, written once per session."""
    from oxeo_flows.sample_data import write_sample_data

    root = tmp_path_factory.mktemp("sample")
    write_sample_data(root)
    return root


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    """A throw-away PostgreSQL + PostGIS server for the session (tests/pgserver.py).

    Skipped where the server packages are missing, unless OXEO_REQUIRE_POSTGRES=1 (set by .ci/run),
    which turns the skip into a failure.
    """
    from tests import pgserver

    why = pgserver.available()
    if why:
        if os.environ.get("OXEO_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"OXEO_REQUIRE_POSTGRES=1 but {why}")
        pytest.skip(why)
    server = pgserver.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty results database on each backend: SQLite file, or a new PostGIS database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'oxeo.db'}"
    import uuid

    server = request.getfixturevalue("pg_server")
    return str(server.create_database(f"t_{uuid.uuid4().hex[:12]}"))
