"""Anomaly detectors behind one contract (``base.Detector``), found by name.

>>> sorted(available())[:2]
['bdh', 'iforest']
"""

from __future__ import annotations

from importlib import import_module

from amoskys.errors import ModelError
from amoskys.models.base import Contribution, Detector, feature_columns

# name -> "module:Class", imported on first use so that torch loads only for the deep models
_DETECTORS = {
    "iforest": "amoskys.models.iforest:IsolationForestDetector",
    "pca": "amoskys.models.pca:PcaDetector",
    "xgboost": "amoskys.models.xgb:XGBoostDetector",
    "lstm_ae": "amoskys.models.sequence:LstmAutoencoder",
    "transformer_ae": "amoskys.models.sequence:TransformerAutoencoder",
    "bdh": "amoskys.models.bdh:BdhEnsemble",
    "live": "amoskys.models.live:LiveEnsemble",
}
ENSEMBLES = ("bdh", "live")  # trained after the others, from the members trained in the same run


def available() -> list[str]:
    """The names of every detector."""
    return list(_DETECTORS)


def detector_class(name: str) -> type[Detector]:
    if name not in _DETECTORS:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(_DETECTORS)}")
    module, cls = _DETECTORS[name].split(":")
    return getattr(import_module(module), cls)


def get(name: str, **params) -> Detector:
    """A new, unfitted detector: ``get("iforest", threshold_quantile=0.995)``."""
    return detector_class(name)(**params)


__all__ = ["ENSEMBLES", "Contribution", "Detector", "available", "detector_class", "feature_columns", "get"]
