"""Perfect-model scores: predictions of the pseudo-reality's soil temperature against its truth, decade by decade.

Every predictor maps drivers to ``[band, month, layer]`` soil temperature (degC) over the months of the
pseudo-reality; its error against the truth is summarised per decade (RMSE and mean bias), overall, per
layer and per band. Besides the networks and their ensemble mean, the references are:

* **climatology**: the training months' mean of that band, layer and calendar month (no warming at all);
* **delta_change**: that climatology shifted by the window's air-temperature anomaly, the mean of
  ``t_air`` over the 12 months before the target minus its training mean (soil warms as much as the air:
  a physical reference that extrapolates by construction);
* **ridge**: the linear model of the test-period evaluation (it extrapolates linearly);
* **seasonal_persistence**: the truth 12 months before the target. It reads the pseudo-truth itself, which
  no projection has: the bar a forecast with observations in hand would clear.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from thawcast.analysis.tables import markdown_table
from thawcast.errors import DataError
from thawcast.variables import TARGETS


def decades(first_year: int, last_year: int, min_years: int = 5) -> list[tuple[int, int]]:
    """Calendar decades covering ``first_year..last_year``; an end piece shorter than ``min_years`` joins its
    neighbour (2024-2100 gives 2024-2029, 2030-2039, ..., 2090-2100)."""
    if last_year < first_year:
        raise DataError(None, f"no years in {first_year}..{last_year}")
    edges = [first_year, *range((first_year // 10 + 1) * 10, last_year + 1, 10), last_year + 1]
    bins = [(a, b - 1) for a, b in itertools.pairwise(edges)]
    if len(bins) > 1 and bins[-1][1] - bins[-1][0] + 1 < min_years:
        bins[-2:] = [(bins[-2][0], bins[-1][1])]
    if len(bins) > 1 and bins[0][1] - bins[0][0] + 1 < min_years:
        bins[:2] = [(bins[0][0], bins[1][1])]
    return bins


def label(years: tuple[int, int]) -> str:
    return f"{years[0]}-{years[1]}"


def decade_scores(truth: np.ndarray, pred: np.ndarray, times: pd.DatetimeIndex, bins: list[tuple[int, int]],
                  band_names: list[str]) -> dict:
    """RMSE and mean bias (prediction - truth, degC) per decade: overall, per layer and per band.

    ``truth`` and ``pred`` are ``[band, time, layer]``; months where either is NaN are left out.
    """
    if truth.shape != pred.shape:
        raise DataError(None, f"truth {truth.shape} and predictions {pred.shape} differ in shape")
    years = np.asarray(times.year)
    out = {}
    for a, b in bins:
        sel = (years >= a) & (years <= b)
        err = pred[:, sel] - truth[:, sel]
        out[label((a, b))] = {
            **_summary(err),
            "per_layer": {lay: _summary(err[..., i]) for i, lay in enumerate(TARGETS)},
            "per_band": {name: _summary(err[i]) for i, name in enumerate(band_names)},
        }
    return out


def change(values: np.ndarray, times: pd.DatetimeIndex, first: tuple[int, int], last: tuple[int, int]) -> float:
    """Mean of ``values [band, time, layer]`` over the years ``last`` minus its mean over ``first`` (degC)."""
    years = np.asarray(times.year)

    def mean(span: tuple[int, int]) -> float:
        sel = (years >= span[0]) & (years <= span[1])
        if not sel.any():
            raise DataError(None, f"no month in {label(span)}")
        return float(np.mean(values[:, sel]))

    return mean(last) - mean(first)


def _summary(err: np.ndarray) -> dict[str, float]:
    e = err[np.isfinite(err)]
    if e.size == 0:
        return {"rmse": float("nan"), "bias": float("nan"), "n": 0}
    return {"rmse": float(np.sqrt(np.mean(e**2))), "bias": float(np.mean(e)), "n": int(e.size)}


def monthly_climatology(values: np.ndarray, times: pd.DatetimeIndex, fit: np.ndarray) -> np.ndarray:
    """``[band, 12, ...]`` mean of ``values [band, time, ...]`` over the ``fit`` months, per calendar month."""
    months = np.asarray(times.month)
    out = []
    for m in range(1, 13):
        sel = fit & (months == m)
        if not sel.any():
            raise DataError(None, f"no fitting month for calendar month {m}: climatology undefined")
        out.append(values[:, sel].mean(axis=1))
    return np.stack(out, axis=1)


def climatology_forecast(clim: np.ndarray, times: pd.DatetimeIndex) -> np.ndarray:
    """``[band, time, layer]``: the climatology of each month's calendar month."""
    return clim[:, np.asarray(times.month) - 1]


def delta_change_forecast(clim: np.ndarray, t_air: np.ndarray, train_mean_air: np.ndarray,
                          record_times: pd.DatetimeIndex, times: pd.DatetimeIndex) -> np.ndarray:
    """Climatology plus the air-temperature anomaly of the 12 months before each target month.

    ``t_air [band, record month]`` over ``record_times`` (contiguous months, reaching 12 months before
    ``times[0]``); ``train_mean_air [band]`` its mean over the training months.
    """
    pos = record_times.get_indexer(times)
    if (pos < 12).any():
        raise DataError(None, "delta-change needs the 12 months of air temperature before every target month")
    csum = np.concatenate([np.zeros((t_air.shape[0], 1)), np.cumsum(t_air, axis=1)], axis=1)
    anomaly = (csum[:, pos] - csum[:, pos - 12]) / 12.0 - train_mean_air[:, None]
    return climatology_forecast(clim, times) + anomaly[..., None]


def seasonal_persistence_forecast(truth: np.ndarray, record_times: pd.DatetimeIndex,
                                  times: pd.DatetimeIndex) -> np.ndarray:
    """The truth 12 months before each target month (``truth [band, record month, layer]``)."""
    pos = record_times.get_indexer(times)
    if (pos < 12).any():
        raise DataError(None, "seasonal persistence needs the truth 12 months before every target month")
    return truth[:, pos - 12]


def markdown(metrics: dict, networks: list[str]) -> str:
    """RMSE per decade of every predictor under each scenario, with the in-climate test score beside it."""
    lines = ["# Perfect model: scores against the pseudo-reality", "",
             ("The synthetic world continued to the end of the century under each RCP is the truth; every"
              " registered network and every reference is driven by that world's own drivers (no GCM, no bias"
              " correction) and scored month by month. RMSE in degC over all bands and layers; 'test' is the"
              " observed test years of the same cells (inside the training climate)."), ""]
    lines.append(f"Truth's sampling error (band means of the simulated cells vs all cells, observed period):"
                 f" {', '.join(f'{k} {v:.2f}' for k, v in metrics['truth_sampling_rmse'].items())} degC RMSE.")
    for rcp, per_model in metrics["scores"].items():
        decs = list(next(iter(per_model.values())))
        order = sorted(per_model, key=lambda n: (n not in networks and n != "ensemble", per_model[n][decs[-1]]["rmse"]))
        rows = [[name, f"{metrics['test_rmse'].get(name, float('nan')):.2f}",
                 *(f"{per_model[name][d]['rmse']:.2f}" for d in decs),
                 f"{per_model[name][decs[-1]]['bias']:+.2f}"] for name in order]
        lines += ["", f"## {rcp}", "", *markdown_table(["model", "test", *decs, f"bias {decs[-1]}"], rows)]
    lines += ["", "## Last decade per layer (RMSE, degC)", ""]
    last = {rcp: list(next(iter(pm.values())))[-1] for rcp, pm in metrics["scores"].items()}
    head = ["model", *(f"{rcp} {lay}" for rcp in metrics["scores"] for lay in TARGETS)]
    names = list(next(iter(metrics["scores"].values())))
    rows = [[n, *(f"{metrics['scores'][rcp][n][last[rcp]]['per_layer'][lay]:.2f}"
                  for rcp in metrics["scores"] for lay in TARGETS)] for n in names]
    lines += markdown_table(head, rows)
    w = metrics["warming"]
    first, last = metrics["decades"][0], metrics["decades"][-1]
    lines += ["", f"Soil warming {first} to {last} (all bands and layers, degC): truth and what each predictor gives:", "",
              *markdown_table(["scenario", "truth", *(n for n in names if n != "seasonal_persistence")],
                              ([rcp, f"{v['truth']:+.2f}", *(f"{v[n]:+.2f}" for n in names if n != "seasonal_persistence")]
                               for rcp, v in w.items()))]
    lines += ["", metrics["verdict"], ""]
    return "\n".join(lines)
