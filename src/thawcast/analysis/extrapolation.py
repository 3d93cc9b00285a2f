"""How far a window's inputs lie outside what the networks saw in training: a diagnostic that needs no truth.

A network maps a window of scaled inputs ``[w, F]`` to soil temperature; where the inputs leave the
training distribution it extrapolates, and nothing in its output says so. Two measures, both computed
from the training windows alone (so they work on real projections, where no truth exists):

* **outside range**: per feature, the share of the window's months whose value lies outside the range
  of that feature over the training windows' inputs; per window, the share of months in which *any*
  feature does;
* **distance**: the Euclidean distance of the flattened window (all features and months, z-scored) to
  its nearest training window, divided by the 95th percentile of the same distance among the training
  windows themselves (each to its nearest *other* training window). A window beyond 1 is further from
  the training set than 95% of the training windows are from each other: it is **extrapolating**.

:class:`Envelope` is fitted on the training windows; :meth:`Envelope.diagnose` scores any window set
scaled the same way; :func:`decade_summary` and :func:`binned_errors` summarise.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from thawcast.analysis.tables import markdown_table
from thawcast.errors import DataError
from thawcast.prep.windows import WindowSet

#: Percentile of the training windows' nearest-neighbour distances that defines distance 1.
REFERENCE_QUANTILE = 0.95
#: Distance bins (in units of that percentile) of the error-vs-distance table.
DISTANCE_BINS = (0.0, 1.0, 1.5, 2.0, 3.0, np.inf)


@dataclass(frozen=True)
class Diagnosis:
    """Per window (``[N]`` in the order of the window set): ``distance``, ``outside_share`` (months with
    any feature outside the training range) and ``outside_by_feature [N, F]``."""

    distance: np.ndarray
    outside_share: np.ndarray
    outside_by_feature: np.ndarray
    names: tuple[str, ...]

    @property
    def extrapolating(self) -> np.ndarray:
        return self.distance > 1.0


@dataclass(frozen=True)
class Envelope:
    """The training windows: per-feature range of their inputs and the flattened windows themselves."""

    names: tuple[str, ...]
    lo: np.ndarray
    hi: np.ndarray
    reference: np.ndarray
    scale: float

    @classmethod
    def fit(cls, ws: WindowSet, chunk: int = 1024) -> Envelope:
        """Fit on the training windows ``ws`` (scaled inputs, the signal included)."""
        if len(ws) < 2:
            raise DataError(None, f"need at least 2 training windows for the extrapolation envelope, got {len(ws)}")
        x = ws.inputs()
        names = _names(ws)
        flat = x.reshape(len(ws), -1).astype(np.float64)
        nn = np.concatenate([_nearest(flat[i:i + chunk], flat, exclude_from=i) for i in range(0, len(flat), chunk)])
        scale = float(np.quantile(nn, REFERENCE_QUANTILE))
        if not scale > 0:
            raise DataError(None, "the training windows are all identical: no distance scale")
        return cls(names, x.min(axis=(0, 1)), x.max(axis=(0, 1)), flat, scale)

    def diagnose(self, ws: WindowSet, chunk: int = 1024) -> Diagnosis:
        """Score every window of ``ws`` (scaled like the training windows, same features)."""
        names = _names(ws)
        if names != self.names:
            raise DataError(None, f"windows have features {list(names)}, the training windows {list(self.names)}")
        dist, share, by_feature = [], [], []
        for i in range(0, len(ws), chunk):
            x = ws.inputs(slice(i, i + chunk)).astype(np.float64)
            out = (x < self.lo) | (x > self.hi)  # [n, w, F]
            share.append(out.any(axis=-1).mean(axis=-1))
            by_feature.append(out.mean(axis=1))
            dist.append(_nearest(x.reshape(len(x), -1), self.reference) / self.scale)
        if not dist:
            raise DataError(None, "no windows to diagnose")
        return Diagnosis(np.concatenate(dist), np.concatenate(share), np.concatenate(by_feature), names)


def _names(ws: WindowSet) -> tuple[str, ...]:
    """Feature names of the window inputs, in order (the signal is the last column when present)."""
    return tuple(ws.feature_names[: ws.x.shape[2]]) + (("signal",) if ws.signal is not None else ())


def _nearest(query: np.ndarray, reference: np.ndarray, exclude_from: int | None = None) -> np.ndarray:
    """Euclidean distance of each ``query`` row to its nearest ``reference`` row; with ``exclude_from``
    the query rows are reference rows ``exclude_from ..`` and each skips itself."""
    d2 = (query**2).sum(1)[:, None] + (reference**2).sum(1)[None, :] - 2.0 * query @ reference.T
    if exclude_from is not None:
        rows = np.arange(len(query))
        d2[rows, exclude_from + rows] = np.inf
    return np.sqrt(np.clip(d2.min(axis=1), 0.0, None))


def decade_summary(diag: Diagnosis, times: pd.DatetimeIndex, bins: list[tuple[int, int]], top: int = 3) -> dict:
    """Per decade (``bins`` of target years; ``times`` the target month of each window): mean distance,
    share of windows extrapolating, mean share of months outside the range, and the ``top`` features
    most often outside it."""
    years = np.asarray(times.year)
    out = {}
    for a, b in bins:
        sel = (years >= a) & (years <= b)
        if not sel.any():
            raise DataError(None, f"no window has its target in {a}-{b}")
        per_feature = diag.outside_by_feature[sel].mean(axis=0)
        order = np.argsort(-per_feature, kind="stable")[:top]
        out[f"{a}-{b}"] = {
            "distance_mean": float(diag.distance[sel].mean()),
            "distance_median": float(np.median(diag.distance[sel])),
            "share_extrapolating": float(diag.extrapolating[sel].mean()),
            "outside_share_mean": float(diag.outside_share[sel].mean()),
            "top_features_outside": {diag.names[k]: float(per_feature[k]) for k in order if per_feature[k] > 0},
        }
    return out


def binned_errors(distance: np.ndarray, error: np.ndarray, edges=DISTANCE_BINS) -> list[dict]:
    """RMSE of ``error`` per distance bin (windows where both are finite), with the count per bin; an
    open-ended last bin has ``distance_to`` None (JSON has no infinity)."""
    d, e = np.asarray(distance, float).ravel(), np.asarray(error, float).ravel()
    ok = np.isfinite(d) & np.isfinite(e)
    rows = []
    for lo, hi in itertools.pairwise(edges):
        sel = ok & (d >= lo) & (d < hi)
        rows.append({"distance_from": float(lo), "distance_to": float(hi) if np.isfinite(hi) else None,
                     "n": int(sel.sum()),
                     "rmse": float(np.sqrt(np.mean(e[sel] ** 2))) if sel.any() else None})
    return rows


def error_check(distance: np.ndarray, error: np.ndarray, times: pd.DatetimeIndex, bins: list[tuple[int, int]],
                test_distance: np.ndarray, test_error: np.ndarray) -> dict:
    """Does the diagnostic (no truth needed) tell where a predictor fails, where a truth exists?

    ``distance [scenario, band, month]`` of each window and ``error [scenario, band, month, layer]`` of its
    prediction (degC) over ``times``; ``test_*`` the same for the test years (one scenario less). Returns
    the RMSE per distance bin (:func:`binned_errors`, error RMS over the layers per window), the rank
    correlation per window and per scenario x decade (mean distance vs RMSE), and the test years' mean
    distance, share extrapolating and RMSE.
    """
    err = np.sqrt(np.mean(np.asarray(error) ** 2, axis=-1))
    years = np.asarray(times.year)
    per_decade = [(float(distance[i][:, (years >= a) & (years <= b)].mean()),
                   float(np.sqrt(np.mean(err[i][:, (years >= a) & (years <= b)] ** 2))))
                  for i in range(len(distance)) for a, b in bins]
    d, e = np.array(per_decade).T
    return {"bins": binned_errors(distance, err),
            "rank_correlation_windows": rank_correlation(distance, err),
            "rank_correlation_decades": rank_correlation(d, e) if len(d) >= 3 else None,
            "test_years": {"distance_mean": float(np.mean(test_distance)),
                           "share_extrapolating": float(np.mean(np.asarray(test_distance) > 1.0)),
                           "rmse": float(np.sqrt(np.mean(np.asarray(test_error) ** 2)))}}


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D samples (finite pairs only)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        raise DataError(None, f"need at least 3 finite pairs for a rank correlation, got {int(ok.sum())}")
    return float(spearmanr(a[ok], b[ok]).statistic)


def markdown(summary: dict, reference: dict) -> str:
    """Per scenario x decade: share of windows extrapolating, mean distance, months outside the training
    range and the drivers most often outside it; ``reference`` is the same for the test-year windows."""
    lines = ["# Extrapolation: how far the projections' inputs lie outside the training climate", "",
             ("Distance: of each projected 24-month input window to its nearest training window, in units of the"
              f" {REFERENCE_QUANTILE:.0%} percentile of the training windows' own nearest-neighbour distances;"
              " 'extrapolating' = beyond 1. 'Months outside': share of a window's months with at least one input"
              " outside its training range. A decade where most windows extrapolate is marked **EXTRAPOLATION**:"
              " its projections rest on inputs the networks never saw."), ""]
    rows = [["test years (observed)", *_cells(reference), ""]]
    for rcp, per in summary.items():
        for dec, s in per.items():
            rows.append([f"{rcp} {dec}", *_cells(s), "**EXTRAPOLATION**" if s["share_extrapolating"] > 0.5 else ""])
    lines += markdown_table(["scenario decade", "windows extrapolating", "mean distance", "months outside",
                             "drivers most outside (share of months)", ""], rows)
    return "\n".join(lines) + "\n"


def _cells(s: dict) -> list[str]:
    top = ", ".join(f"{k} {v:.0%}" for k, v in s["top_features_outside"].items()) or "none"
    return [f"{s['share_extrapolating']:.0%}", f"{s['distance_mean']:.2f}", f"{s['outside_share_mean']:.0%}", top]
