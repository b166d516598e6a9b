"""One settings object for the whole project (pydantic-settings).

Sources, highest priority first: explicit overrides (flow parameters, CLI), environment variables with
prefix `OXEO_` (e.g. `OXEO_STORAGE=s3://bucket/archive`), a TOML file named by `OXEO_CONFIG` (or
`./oxeo.toml` when present), then the defaults below. Secrets (database passwords, catalog tokens) belong
in the environment or Prefect Secret blocks, never in the TOML file committed to a repository.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from oxeo_flows.errors import InputError

EARTH_SEARCH_V1 = "https://earth-search.aws.element84.com/v1"
SECRET_FIELDS = ("database_url", "catalog_token")
#: Tiles are whole multiples of the finest archive pixel (Sentinel-2, 10 m), at most 100 km a side.
TILE_PIXEL_M = 10
MAX_TILE_SIZE_M = 100_000
DATABASE_BACKENDS = ("sqlite", "postgresql")


class Settings(BaseSettings):
    """Project settings; every field can be overridden per flow run.

    Secret values (`catalog_token`, a `database_url` with a password) may be given as `secret:NAME`; the
    flows resolve such references from Prefect Secret blocks (see `oxeo_flows.flows.secrets`).
    """

    model_config = SettingsConfigDict(env_prefix="OXEO_", extra="forbid")

    storage: str = Field("./oxeo-data/archive", description="fsspec URL of the archive root")
    database_url: str = Field("sqlite:///./oxeo-data/oxeo.db", description="SQLAlchemy URL")
    catalog: str = Field(EARTH_SEARCH_V1, description="STAC API URL or static catalog JSON path")
    catalog_token: SecretStr | None = Field(
        None, description="bearer token for STAC APIs that need one (sent as an Authorization header)"
    )
    tile_size_m: int = Field(10_000, gt=0, description="UTM tile side in metres")
    max_tiles_per_run: int = Field(400, gt=0, description="refuse requests needing more tiles")
    window: str = Field("month", description="extraction time window: month, quarter or year")
    resampling: str = Field("nearest", description="resampling of reflectance when warping")
    min_object_m2: float = Field(3125.0, ge=0)
    min_hole_m2: float = Field(3125.0, ge=0)
    max_invalid_fraction: float = Field(0.10, ge=0, le=1)
    cloud_dilation_m: float = Field(0.0, ge=0, description="dilate cloud/shadow masks by this many metres")
    shoreline_refinement: bool = Field(
        True, description="re-decide shoreline pixels by their water fraction (model key + '-lu')"
    )
    source_retries: int = Field(3, ge=0, description="whole-asset re-reads after a failed read, with backoff")
    task_retries: int = Field(
        1, ge=0, description="Prefect retries of an extraction task after source_retries ran out"
    )
    source_http_retries: int = Field(
        3, ge=0, description="GDAL retries of one HTTP request to a source on 429/5xx/timeout"
    )
    source_retry_delay_s: float = Field(
        0.5, ge=0, description="first delay between source retries in seconds (doubles per retry)"
    )
    source_timeout_s: float = Field(30.0, gt=0, description="timeout of one HTTP request to a source")
    task_runner: str = Field(
        "threads", description="threads, or dask (local cluster / address / cluster class)"
    )
    max_workers: int | None = Field(None, gt=0, description="threads of the thread-pool runner")
    dask_address: str | None = Field(None, description="scheduler address of an existing Dask cluster")
    dask_workers: int = Field(2, gt=0, description="workers of the local Dask cluster")
    dask_cluster_class: str | None = Field(
        None, description="import path of a cluster class, e.g. dask_kubernetes.operator.KubeCluster"
    )
    dask_cluster_kwargs: dict[str, Any] = Field(default_factory=dict)
    dask_adapt_kwargs: dict[str, Any] = Field(default_factory=dict)
    # --- results API (`oxeo-flows serve`, oxeo_flows.api) ---
    api_host: str = Field("127.0.0.1", description="address the results API binds to")
    api_port: int = Field(8000, ge=1, le=65535, description="TCP port of the results API")
    api_token_hashes: list[str] | str = Field(
        default_factory=list,
        description="accepted API tokens as 'sha256:<hex>' lines (`oxeo-flows serve --hash-token`), or "
        "'secret:NAME' (a Prefect Secret block holding such lines); env: comma-separated or a JSON list",
    )

    api_cors_origins: list[str] | str = Field(
        default_factory=list,
        description="browser origins allowed to call the API cross-site, e.g. 'https://dash.example.org' "
        "(GET only; none by default); env: comma-separated or a JSON list",
    )

    @field_validator("api_cors_origins", mode="before")
    @classmethod
    def _api_cors_origins(cls, v: Any) -> Any:
        values = [x for x in re.split(r"[\s,]+", v) if x] if isinstance(v, str) else v
        for o in values if isinstance(values, list) else []:
            if o != "*" and not re.fullmatch(r"https?://[^/\s]+", str(o)):
                raise ValueError(f"expected origins like https://host[:port] (no path) or '*', got {o!r}")
        return values

    @field_validator("api_token_hashes", mode="before")
    @classmethod
    def _api_token_hashes(cls, v: Any) -> Any:
        # Format checks live in oxeo_flows.api.auth, whose errors never echo a value (it may be a token).
        if isinstance(v, str):
            return [x for x in re.split(r"[\s,]+", v) if x]
        return v

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        if v not in ("month", "quarter", "year"):
            raise ValueError("expected month, quarter or year")
        return v

    @field_validator("tile_size_m")
    @classmethod
    def _tile_size(cls, v: int) -> int:
        if v % TILE_PIXEL_M or v > MAX_TILE_SIZE_M:
            raise ValueError(
                f"expected a multiple of {TILE_PIXEL_M} m (the Sentinel-2 pixel) up to {MAX_TILE_SIZE_M}"
            )
        return v

    @field_validator("storage", "catalog")
    @classmethod
    def _fsspec_url(cls, v: str) -> str:
        return _check_fsspec_url(v)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if v.startswith("secret:"):
            return v  # resolved later from a Prefect Secret block, then checked again
        import sqlalchemy as sa

        try:
            backend = sa.engine.make_url(v).get_backend_name()
        except (sa.exc.ArgumentError, ValueError):
            raise ValueError(
                "expected a SQLAlchemy URL like sqlite:///path/oxeo.db or postgresql://..."
            ) from None
        if backend not in DATABASE_BACKENDS:
            raise ValueError(f"expected a {' or '.join(DATABASE_BACKENDS)} URL, got backend {backend!r}")
        return v

    @field_validator("task_runner")
    @classmethod
    def _task_runner(cls, v: str) -> str:
        if v not in ("threads", "dask"):
            raise ValueError("expected threads or dask")
        return v

    @field_validator("resampling")
    @classmethod
    def _resampling(cls, v: str) -> str:
        if v not in ("nearest", "bilinear", "cubic", "average"):
            raise ValueError("expected nearest, bilinear, cubic or average")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = os.environ.get("OXEO_CONFIG") or ("oxeo.toml" if Path("oxeo.toml").exists() else None)
        if config and not Path(config).is_file():
            raise InputError("OXEO_CONFIG", f"expected a TOML settings file, got {config!r} (not found)")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)


def anchored(settings: Settings, base: Path) -> Settings:
    """A copy whose relative local `storage` path and relative SQLite file are made absolute under `base`.

    Workers run flows in the code's directory, so the defaults (`./oxeo-data/...`) must be pinned to the
    directory the user meant before they are handed to a worker.
    """
    update: dict[str, Any] = {}
    if "://" not in settings.storage and not Path(settings.storage).is_absolute():
        update["storage"] = str((base / settings.storage).resolve())
    prefix = "sqlite:///"
    db = settings.database_url
    if db.startswith(prefix) and not db.startswith(prefix + "/") and db != prefix + ":memory:":
        update["database_url"] = prefix + str((base / db[len(prefix) :]).resolve())
    return settings.model_copy(update=update) if update else settings


def _check_fsspec_url(v: str) -> str:
    """`v` if it is a local path or a URL whose protocol(s) fsspec knows; else ValueError."""
    if not v.strip() or "\x00" in v:
        raise ValueError("expected a local path or an fsspec URL such as s3://bucket/prefix")
    for part in v.split("::"):
        protocol, _ = fsspec.core.split_protocol(part)
        if protocol is not None and protocol not in fsspec.available_protocols():
            raise ValueError(
                f"unknown protocol {protocol!r}: expected a local path or an fsspec URL (s3://, gs://, ...)"
            )
    return v


def _source(field: str, overrides: dict[str, Any]) -> str:
    env = f"OXEO_{field.upper()}"
    if field not in overrides and env in os.environ:
        return f" from {env}"
    return ""


# Flow parameters that override the setting of the same name (None: keep the configured value).
FLOW_SETTING_PARAMS = (
    "catalog",
    "catalog_token",
    "storage",
    "database_url",
    "window",
    "tile_size_m",
    "cloud_dilation_m",
    "shoreline_refinement",
)


def flow_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """The setting overrides among a flow's parameters (`FLOW_SETTING_PARAMS`)."""
    return {k: params.get(k) for k in FLOW_SETTING_PARAMS}


def load_settings(**overrides: Any) -> Settings:
    """Settings with `overrides` (None values ignored); invalid values raise `InputError` naming the field."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        shown = "<hidden>" if field in SECRET_FIELDS else repr(err.get("input"))
        msg = re.sub(r"^Value error, ", "", err["msg"])
        raise InputError(field, f"{msg} (got {shown}{_source(field, clean)})") from None
    except tomllib.TOMLDecodeError as exc:
        config = os.environ.get("OXEO_CONFIG") or "oxeo.toml"
        raise InputError("OXEO_CONFIG", f"expected a valid TOML file, got {config!r}: {exc}") from None
