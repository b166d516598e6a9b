"""Tests for oxeo_flows.settings (defaults, environment, TOML file, overrides, validation)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oxeo_flows.errors import InputError
from oxeo_flows.settings import EARTH_SEARCH_V1, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No OXEO_* variables and an empty working directory (no ./oxeo.toml) for every test."""
    for key in list(os.environ):
        if key.startswith("OXEO_"):
            monkeypatch.delenv(key)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_defaults() -> None:
    s = load_settings()
    assert isinstance(s, Settings)
    assert s.storage == "./oxeo-data/archive"
    assert s.database_url == "sqlite:///./oxeo-data/oxeo.db"
    assert s.catalog == EARTH_SEARCH_V1 == "https://earth-search.aws.element84.com/v1"
    assert s.tile_size_m == 10_000
    assert s.max_tiles_per_run == 400
    assert s.window == "month"
    assert s.resampling == "nearest"
    assert s.min_object_m2 == 3125.0
    assert s.min_hole_m2 == 3125.0
    assert s.max_invalid_fraction == 0.10
    assert s.source_retries == 3
    assert s.task_retries == 1


def test_env_overrides_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OXEO_STORAGE", "s3://bucket/archive")
    monkeypatch.setenv("OXEO_TILE_SIZE_M", "5000")
    s = load_settings()
    assert s.storage == "s3://bucket/archive"
    assert s.tile_size_m == 5000
    assert s.database_url == "sqlite:///./oxeo-data/oxeo.db"


def test_toml_file_named_by_oxeo_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "settings.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        'storage = "gs://bucket/from-toml"\n'
        'window = "quarter"\n'
        "tile_size_m = 20000\n"
        "max_invalid_fraction = 0.25\n"
    )
    monkeypatch.setenv("OXEO_CONFIG", str(cfg))
    s = load_settings()
    assert s.storage == "gs://bucket/from-toml"
    assert s.window == "quarter"
    assert s.tile_size_m == 20000
    assert s.max_invalid_fraction == 0.25
    assert s.catalog == EARTH_SEARCH_V1
    # environment beats the file, explicit overrides beat both
    monkeypatch.setenv("OXEO_WINDOW", "year")
    assert load_settings().window == "year"
    assert load_settings().storage == "gs://bucket/from-toml"
    assert load_settings(window="month", storage="/data").storage == "/data"
    assert load_settings(window="month").window == "month"


def test_oxeo_toml_in_working_directory(clean_env: Path) -> None:
    (clean_env / "oxeo.toml").write_text('database_url = "sqlite:////tmp/x.db"\n')
    assert load_settings().database_url == "sqlite:////tmp/x.db"


def test_explicit_override_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OXEO_STORAGE", "s3://env/archive")
    monkeypatch.setenv("OXEO_CATALOG", "/env/catalog.json")
    s = load_settings(storage="/explicit/archive")
    assert s.storage == "/explicit/archive"
    assert s.catalog == "/env/catalog.json"


def test_none_overrides_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(storage=None, catalog=None, tile_size_m=None, window=None)
    assert s.storage == "./oxeo-data/archive"
    assert s.catalog == EARTH_SEARCH_V1
    assert s.tile_size_m == 10_000
    assert s.window == "month"
    monkeypatch.setenv("OXEO_STORAGE", "s3://env/archive")
    assert load_settings(storage=None).storage == "s3://env/archive"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"window": "week"}, "window"),
        ({"tile_size_m": 0}, "tile_size_m"),
        ({"tile_size_m": -10}, "tile_size_m"),
        ({"tile_size_m": "big"}, "tile_size_m"),
        ({"resampling": "lanczos9"}, "resampling"),
        ({"max_invalid_fraction": 1.5}, "max_invalid_fraction"),
        ({"max_tiles_per_run": 0}, "max_tiles_per_run"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_bad_values_name_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as exc:
        load_settings(**overrides)
    assert exc.value.parameter == field
    assert str(exc.value).startswith(f"{field}: ")
    assert repr(next(iter(overrides.values()))) in str(exc.value)


def test_bad_window_message() -> None:
    with pytest.raises(InputError, match=r"^window: .*expected month, quarter or year.*'week'"):
        load_settings(window="week")


def test_bad_env_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OXEO_RESAMPLING", "lanczos9")
    with pytest.raises(InputError) as exc:
        load_settings()
    assert exc.value.parameter == "resampling"


def test_anchored_pins_relative_local_paths(tmp_path: Path) -> None:
    from oxeo_flows.settings import Settings, anchored

    s = anchored(Settings(storage="./data/archive", database_url="sqlite:///./x/oxeo.db"), tmp_path)
    assert s.storage == str(tmp_path / "data" / "archive")
    assert s.database_url == f"sqlite:///{tmp_path / 'x' / 'oxeo.db'}"
    remote = Settings(storage="s3://bucket/a", database_url="postgresql://u@h/db")
    assert anchored(remote, tmp_path) == remote
    absolute = Settings(storage="/data/a", database_url="sqlite:////data/oxeo.db")
    assert anchored(absolute, tmp_path) == absolute
