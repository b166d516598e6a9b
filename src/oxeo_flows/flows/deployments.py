"""Deployments of every flow, and the work pool they run on (Prefect API calls only)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import oxeo_flows

DEFAULT_POOL = "oxeo-process"
FLOW_NAMES = ("extract", "predict", "timeseries", "water")


def package_source() -> tuple[Path, str]:
    """(directory holding the `oxeo_flows` package, entrypoint prefix) for code already installed."""
    pkg = Path(oxeo_flows.__file__).resolve().parent
    return pkg.parent, "oxeo_flows/flows/water.py"


def ensure_work_pool(name: str = DEFAULT_POOL, pool_type: str = "process") -> None:
    """Create the work pool unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
        except ObjectAlreadyExists:
            pass


def deploy_all(work_pool: str = DEFAULT_POOL, source: Path | None = None) -> dict[str, str]:
    """Register one deployment per flow (named like the flow) on `work_pool`; returns name -> id.

    The code is taken from `source` (default: the installed package), which suits process workers on the
    same machine. Remote workers use `prefect.yaml`, whose pull step clones the repository at run time.
    """
    from prefect import Flow

    root, entry = package_source() if source is None else (source, "src/oxeo_flows/flows/water.py")
    ids: dict[str, str] = {}
    for name in FLOW_NAMES:
        fl: Any = Flow.from_source(source=str(root), entrypoint=f"{entry}:{name}_flow")
        with contextlib.redirect_stdout(io.StringIO()):  # deploy() prints a table per deployment
            dep = fl.deploy(
                name=name,
                work_pool_name=work_pool,
                build=False,
                push=False,
                print_next_steps=False,
                ignore_warnings=True,
                tags=["oxeo-flows"],
                description=(fl.description or "").splitlines()[0] if fl.description else None,
            )
        ids[name] = str(dep)
    return ids
