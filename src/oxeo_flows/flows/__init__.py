"""Prefect 3 flows: thin wiring of `oxeo_flows.pipeline` into tasks, artifacts and logs."""

import logging

# The library logs at INFO through `logging`; Prefect forwards the `oxeo_flows` logger to the run's logs
# (PREFECT_LOGGING_EXTRA_LOGGERS=oxeo_flows, set by the CLI and `oxeo-flows up`) only at this level.
logging.getLogger("oxeo_flows").setLevel(logging.INFO)

from oxeo_flows.flows.water import extract_flow, predict_flow, timeseries_flow, water_flow  # noqa: E402

FLOWS = {
    "extract": extract_flow,
    "predict": predict_flow,
    "timeseries": timeseries_flow,
    "water": water_flow,
}

__all__ = ["FLOWS", "extract_flow", "predict_flow", "timeseries_flow", "water_flow"]
