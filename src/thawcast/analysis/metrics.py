"""Skill scores: pure ``(obs, sim) -> float`` functions and the tables built from them.

All take arrays of the same shape, pool every element, and ignore positions where either
is NaN (after :func:`_pair` has checked shapes). Units are those of the inputs (degC here).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from thawcast.errors import DataError

SCORES = ("rmse", "mae", "r2")


def _pair(obs, sim) -> tuple[np.ndarray, np.ndarray]:
    o, s = np.asarray(obs, dtype=float), np.asarray(sim, dtype=float)
    if o.shape != s.shape:
        raise DataError(None, f"observed {o.shape} and simulated {s.shape} shapes differ")
    ok = np.isfinite(o) & np.isfinite(s)
    if not ok.any():
        raise DataError(None, "no finite observed/simulated pairs to score")
    return o[ok], s[ok]


def rmse(obs, sim) -> float:
    """Root-mean-square error, ``sqrt(mean((sim - obs)^2))``."""
    o, s = _pair(obs, sim)
    return float(np.sqrt(np.mean((s - o) ** 2)))


def mae(obs, sim) -> float:
    """Mean absolute error, ``mean(|sim - obs|)``."""
    o, s = _pair(obs, sim)
    return float(np.mean(np.abs(s - o)))


def r2(obs, sim) -> float:
    """Coefficient of determination, ``1 - sum((sim - obs)^2) / sum((obs - mean(obs))^2)``.

    1 is perfect, 0 is no better than the observed mean, negative is worse. NaN when the
    observations are constant.
    """
    o, s = _pair(obs, sim)
    sst = np.sum((o - o.mean()) ** 2)
    return float("nan") if sst == 0 else float(1.0 - np.sum((s - o) ** 2) / sst)


def fractional_reduction(model_rmse: float, baseline_rmse: float) -> float:
    """GeoCryoAI-style skill against a baseline: ``1 - rmse_model / rmse_baseline`` (> 0 = better)."""
    if not baseline_rmse > 0:
        raise DataError(None, f"baseline RMSE must be positive, got {baseline_rmse}")
    return float(1.0 - model_rmse / baseline_rmse)


def scores(obs, sim) -> dict[str, float]:
    """``{"rmse", "mae", "r2"}`` of one pooled comparison."""
    return {"rmse": rmse(obs, sim), "mae": mae(obs, sim), "r2": r2(obs, sim)}


def skill_table(obs: np.ndarray, sim: np.ndarray, band: np.ndarray, layers: Sequence[str],
                band_names: Sequence[str] | None = None) -> dict:
    """Scores overall, per band, per layer and per band x layer.

    Parameters
    ----------
    obs, sim
        ``[N, n_layers]`` observed and predicted values of ``N`` windows' target months.
    band
        ``[N]`` band index of each window.
    layers
        Names of the layer columns.
    band_names
        Label per band index (default ``band0``, ``band1``, ...).

    Returns
    -------
    dict
        ``{"overall": {...}, "per_band": {band: {...}}, "per_layer": {layer: {...}},
        "per_band_layer": {band: {layer: {...}}}}`` with :data:`SCORES` at each leaf.
    """
    obs, sim, band = np.asarray(obs), np.asarray(sim), np.asarray(band)
    if obs.ndim != 2 or obs.shape[1] != len(layers):
        raise DataError(None, f"expected [N, {len(layers)}] values, got {obs.shape}")
    if band.shape != obs.shape[:1]:
        raise DataError(None, f"band index shape {band.shape} does not match {obs.shape[0]} windows")
    bands = np.unique(band)
    names = list(band_names) if band_names is not None else [f"band{b}" for b in range(int(bands.max()) + 1)]
    out = {"overall": scores(obs, sim),
           "per_band": {names[b]: scores(obs[band == b], sim[band == b]) for b in bands},
           "per_layer": {lay: scores(obs[:, i], sim[:, i]) for i, lay in enumerate(layers)},
           "per_band_layer": {names[b]: {lay: scores(obs[band == b, i], sim[band == b, i])
                                         for i, lay in enumerate(layers)} for b in bands}}
    return out
