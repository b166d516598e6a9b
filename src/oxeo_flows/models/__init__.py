"""Cloud and water models behind one registry (see `registry`)."""

from oxeo_flows.models.registry import MODELS, WaterModel, get_model, predict_slice

__all__ = ["MODELS", "WaterModel", "get_model", "predict_slice"]
