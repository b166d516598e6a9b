"""One settings object for the whole project (pydantic-settings).

Sources, highest priority first: explicit overrides (flow parameters, CLI), environment variables with
prefix `OXEO_` (e.g. `OXEO_STORAGE=s3://bucket/archive`), a TOML file named by `OXEO_CONFIG` (or
`./oxeo.toml` when present), then the defaults below. Secrets (database passwords, catalog tokens) belong
in the environment or Prefect Secret blocks, never in the TOML file committed to a repository.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
    source_retries: int = Field(3, ge=0)
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

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        if v not in ("month", "quarter", "year"):
            raise ValueError("expected month, quarter or year")
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


def load_settings(**overrides: Any) -> Settings:
    """Settings with `overrides` (None values ignored); invalid values raise `InputError` naming the field."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        shown = "<hidden>" if field in SECRET_FIELDS else repr(err.get("input"))
        raise InputError(field, f"{err['msg']} (got {shown})") from None
