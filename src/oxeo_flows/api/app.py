"""The results API: a FastAPI app over the results database, GET routes only, on a read-only engine.

Routes: `/health` (no auth), `/aois` (search, paginated), `/aois/{aoi_id}` (GeoJSON Feature),
`/aois/{aoi_id}/timeseries` (JSON or CSV, paginated), plus the OpenAPI docs at `/docs` and
`/openapi.json`. Times are UTC (ISO 8601 with `Z`), dates are solar days, areas m², bboxes degrees.
The database is opened read-only (SQLite `mode=ro` URI; PostgreSQL read-only transactions), so no request
can write even through a bug.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from oxeo_flows import __version__, aoi_registry, exports, store
from oxeo_flows.aoi import AOI_ID_PATTERN, validate_aoi_id
from oxeo_flows.api import auth
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.errors import InputError

log = logging.getLogger(__name__)

MAX_AOI_LIMIT = 1000
MAX_ROW_LIMIT = 10_000
MAX_OFFSET = 2**31 - 1
ROW_COLUMNS = [*exports.EXPORT_COLUMNS, "model_run_id"]
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
_MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


# --- the database ---------------------------------------------------------------------------------


def readonly_engine(database_url: str) -> Engine:
    """An engine that cannot write: SQLite opened with `mode=ro`, PostgreSQL in read-only transactions.

    The schema is created or upgraded first (one `store.connect`); a SQLite file must already exist.
    """
    url = sa.engine.make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise InputError("database_url", "expected a SQLite file, not an in-memory database")
        path = Path(url.database).expanduser().resolve()
        if not path.is_file():
            raise InputError("database_url", f"no SQLite database at {path} (run a flow or add AOIs first)")
    store.connect(database_url).dispose()
    if backend == "sqlite":
        ro_url = sa.engine.URL.create(
            url.drivername, database="file:" + quote(str(path)), query={"mode": "ro", "uri": "true"}
        )
        engine = sa.create_engine(ro_url)
        sa.event.listen(engine, "connect", _sqlite_busy_timeout)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, execution_options={"postgresql_readonly": True})


def _sqlite_busy_timeout(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


# --- response models (documentation and response validation) --------------------------------------


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong, in one line")


def _error(description: str) -> dict[str, Any]:
    """An error response as documented: always JSON, also on routes whose success is GeoJSON or CSV."""
    schema = ErrorOut.model_json_schema()
    return {"description": description, "content": {"application/json": {"schema": schema}}}


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str = Field(description="oxeo-flows version")
    database: Literal["ok", "unreachable"]


class MultiPolygonOut(BaseModel):
    type: Literal["MultiPolygon"]
    coordinates: list[list[list[list[float]]]] = Field(description="lon/lat degrees (EPSG:4326)")


class AoiPropertiesOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    labels: list[str]
    area_m2: float = Field(description="geodesic area on the WGS84 ellipsoid, m²")
    created_at: str = Field(json_schema_extra={"format": "date-time"}, description="UTC")
    updated_at: str = Field(json_schema_extra={"format": "date-time"}, description="UTC")
    sets: list[str] = Field(default_factory=list, description="AOI sets it belongs to (single AOI only)")


class AoiFeatureOut(BaseModel):
    """An AOI as a GeoJSON Feature (RFC 7946); extra `properties` are the AOI's own metadata."""

    type: Literal["Feature"]
    id: str
    bbox: list[float] = Field(min_length=4, max_length=4, description="west, south, east, north (degrees)")
    geometry: MultiPolygonOut
    properties: AoiPropertiesOut


class AoiCollectionOut(BaseModel):
    """One page of AOIs, ordered by id, as a GeoJSON FeatureCollection."""

    type: Literal["FeatureCollection"]
    features: list[AoiFeatureOut]
    total: int = Field(description="AOIs matching the filters, all pages together")
    limit: int
    offset: int


class ObservationOut(BaseModel):
    aoi_id: str
    datetime: str = Field(json_schema_extra={"format": "date-time"}, description="acquisition time, UTC")
    constellation: str
    water_area_m2: float
    valid_fraction: float = Field(description="fraction of the AOI's pixels that are valid (0-1)")
    cloud_fraction: float
    usable: bool = Field(description="enough valid pixels to trust the area")
    water_px: int
    valid_px: int
    cloud_px: int
    nodata_px: int
    total_px: int
    pixel_size_m: float
    solar_day: dt.date
    model: str = Field(description="versioned model key, e.g. mndwi-v1")
    model_run_id: str | None


class TimeseriesOut(BaseModel):
    """One page of an AOI's time series, ordered by (acquisition time, constellation, model)."""

    aoi_id: str
    total: int = Field(description="rows matching the filters, all pages together")
    limit: int
    offset: int
    rows: list[ObservationOut]


class GeoJSONResponse(JSONResponse):
    media_type = "application/geo+json"


# --- authentication -------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="an API token (`Authorization: Bearer <token>`)")


class TokenCheck:
    """Dependency: 401 with `WWW-Authenticate` unless the request carries one of the accepted tokens."""

    def __init__(self, hashes: Sequence[str]) -> None:
        self.hashes = tuple(hashes)

    def __call__(self, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if creds is None:
            raise HTTPException(
                401, "missing bearer token (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"}
            )
        if not auth.token_matches(creds.credentials, self.hashes):
            raise HTTPException(
                401, "invalid bearer token", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )


# --- parameters -----------------------------------------------------------------------------------


def _check_id(value: str) -> str:
    return validate_aoi_id(value)


def _check_bbox(value: str | None) -> str | None:
    if value is not None:
        aoi_registry.parse_bbox(value)  # InputError is a ValueError: reported as 422 on `bbox`
    return value


def _check_constellation(value: str | None) -> str | None:
    if value is not None and value not in CONSTELLATIONS:
        raise ValueError(f"unknown constellation {value!r}; expected one of {', '.join(CONSTELLATIONS)}")
    return value


AoiId = Annotated[
    str,
    PathParam(pattern=AOI_ID_PATTERN, description="AOI id (letters, digits, '.', '_', '-'; no '..')"),
    AfterValidator(_check_id),
]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip (pagination)")]


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    exports.write_csv(rows, buf, ROW_COLUMNS, lineterminator="\n")
    return buf.getvalue()


# --- the app --------------------------------------------------------------------------------------


def create_app(
    database_url: str, token_hashes: Sequence[str] = (), cors_origins: Sequence[str] = ()
) -> FastAPI:
    """The API over `database_url`; with `token_hashes` ('sha256:<hex>' lines) every data route needs a
    matching `Authorization: Bearer <token>`, without them the data routes are open (local use).
    `cors_origins` are the browser origins allowed to call it cross-site (GET, with the Authorization
    header; none by default, so browsers refuse cross-site reads).

    The engine is `app.state.engine` (read-only); it is disposed when the app shuts down.
    """
    hashes = auth.parse_token_hashes(token_hashes)
    engine = readonly_engine(database_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    # FastAPIOffline = FastAPI with Swagger UI / ReDoc assets served from the package, not a CDN: the
    # docs work on an offline machine too.
    app = FastAPIOffline(
        title="oxeo-flows results API",
        version=__version__,
        description="Read-only access to the AOI registry and the water time series. Times are UTC, "
        "areas m², coordinates lon/lat degrees (EPSG:4326).",
        lifespan=lifespan,
    )
    app.state.engine = engine
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET"],
            allow_headers=["Authorization"],
            allow_credentials=False,  # tokens travel in the Authorization header, never in cookies
        )
    protected: list[Any] = [Depends(TokenCheck(hashes))] if hashes else []
    errors: dict[int | str, dict[str, Any]] = {404: _error("unknown AOI")}
    if hashes:
        errors[401] = _error("missing or invalid token")

    @app.exception_handler(sa.exc.OperationalError)
    async def _db_down(_: Request, exc: sa.exc.OperationalError) -> JSONResponse:
        log.error("database error: %s", type(exc.orig).__name__ if exc.orig else type(exc).__name__)
        return JSONResponse({"detail": "database unavailable"}, status_code=503)

    @app.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}}, tags=["service"])
    def health() -> JSONResponse:
        """Liveness and database reachability (no authentication)."""
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            out = HealthOut(status="unavailable", version=__version__, database="unreachable")
            return JSONResponse(out.model_dump(), status_code=503)
        return JSONResponse(HealthOut(status="ok", version=__version__, database="ok").model_dump())

    def _known(aoi_id: str) -> None:
        if not aoi_registry.count_aois(engine, ids=[aoi_id]):
            raise HTTPException(404, f"no AOI with id {aoi_id!r}")

    @app.get(
        "/aois",
        response_model=AoiCollectionOut,
        response_class=GeoJSONResponse,
        dependencies=protected,
        responses={k: v for k, v in errors.items() if k != 404},
        tags=["aois"],
    )
    def list_aois(
        bbox: Annotated[
            str | None,
            Query(
                max_length=200,
                description="west,south,east,north in degrees: AOIs whose geometry intersects the box",
                examples=["30,-1.5,32,0"],
            ),
            AfterValidator(_check_bbox),
        ] = None,
        label: Annotated[
            str | None, Query(max_length=200, pattern=_NO_CONTROL, description="AOIs with this label")
        ] = None,
        name: Annotated[
            str | None,
            Query(max_length=200, pattern=_NO_CONTROL, description="case-insensitive substring of the name"),
        ] = None,
        set_name: Annotated[
            str | None, Query(alias="set", pattern=AOI_ID_PATTERN, description="members of this AOI set")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_AOI_LIMIT, description="page size")] = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Search AOIs (all filters combine with AND), ordered by id, one page at a time."""
        box = aoi_registry.parse_bbox(bbox) if bbox else None
        filters: dict[str, Any] = {"name": name, "label": label, "bbox": box, "set_name": set_name}
        total = aoi_registry.count_aois(engine, **filters)
        records = aoi_registry.list_aois(engine, **filters, limit=limit, offset=offset) if total else []
        return {
            "type": "FeatureCollection",
            "features": [r.to_feature() for r in records],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @app.get(
        "/aois/{aoi_id}",
        response_model=AoiFeatureOut,
        response_class=GeoJSONResponse,
        dependencies=protected,
        responses=errors,
        tags=["aois"],
    )
    def get_aoi(aoi_id: AoiId) -> dict[str, Any]:
        """One AOI as a GeoJSON Feature, with the sets it belongs to."""
        record = aoi_registry.get_aoi(engine, aoi_id)
        if record is None:
            raise HTTPException(404, f"no AOI with id {aoi_id!r}")
        return record.to_feature()

    @app.get(
        "/aois/{aoi_id}/timeseries",
        response_model=TimeseriesOut,
        dependencies=protected,
        responses={
            **errors,
            200: {
                "description": "rows as JSON, or as CSV (header row, same columns) with `format=csv`",
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "headers": {"X-Total-Count": {"description": "rows matching, all pages together"}},
            },
        },
        tags=["timeseries"],
    )
    def timeseries(
        aoi_id: AoiId,
        start: Annotated[dt.date | None, Query(description="first solar day, inclusive (UTC)")] = None,
        end: Annotated[dt.date | None, Query(description="last solar day, inclusive (UTC)")] = None,
        constellation: Annotated[
            str | None,
            Query(description="one constellation", json_schema_extra={"enum": list(CONSTELLATIONS)}),
            AfterValidator(_check_constellation),
        ] = None,
        model: Annotated[
            str | None,
            Query(
                pattern=_MODEL_PATTERN,
                description="model name (every version, e.g. mndwi) or versioned key (mndwi-v1)",
            ),
        ] = None,
        usable_only: Annotated[bool, Query(description="only rows with enough valid pixels")] = False,
        limit: Annotated[int, Query(ge=1, le=MAX_ROW_LIMIT, description="page size")] = 1000,
        offset: Offset = 0,
        format: Annotated[Literal["json", "csv"], Query(description="response format")] = "json",
    ) -> Any:
        """An AOI's water time series, filtered, one page at a time."""
        if start is not None and end is not None and end < start:
            err = {"loc": ("query", "end"), "msg": "end is before start", "type": "value_error"}
            raise RequestValidationError([{**err, "input": end.isoformat()}])
        _known(aoi_id)
        filters: dict[str, Any] = {
            "aoi_ids": [aoi_id],
            "constellation": constellation,
            "model": model,
            "start": start,
            "end": end,
            "usable_only": usable_only,
        }
        total = store.count_observations(engine, **filters)
        found = store.query_observations(
            engine, **filters, limit=limit, offset=offset, columns=store.TIMESERIES_FIELDS
        )
        headers = {"X-Total-Count": str(total)}
        if format == "csv":
            return Response(_csv(found), media_type="text/csv; charset=utf-8", headers=headers)
        rows = exports.records(found, ROW_COLUMNS)
        body = {"aoi_id": aoi_id, "total": total, "limit": limit, "offset": offset, "rows": rows}
        return JSONResponse(TimeseriesOut.model_validate(body).model_dump(mode="json"), headers=headers)

    return app
