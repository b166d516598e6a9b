"""Prefect 3 flows: thin wiring of `oxeo_flows.pipeline` into tasks, artifacts and logs."""

from oxeo_flows.flows.water import extract_flow, predict_flow, timeseries_flow, water_flow

FLOWS = {
    "extract": extract_flow,
    "predict": predict_flow,
    "timeseries": timeseries_flow,
    "water": water_flow,
}

__all__ = ["FLOWS", "extract_flow", "predict_flow", "timeseries_flow", "water_flow"]
