"""Scores of cell models (issue "Every grid cell"): per cell, per group of cells (seen, held out), and averaged up
to the latitude bands, where they meet the band models on the bands' own targets.

Everything here is array arithmetic over windows: ``obs`` and ``pred`` are ``[N, layer]`` degC, ``cell`` the
window's cell and ``times`` its target month. Per-cell sums go through :func:`numpy.bincount` (no loop over cells).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from thawcast.analysis.metrics import fractional_reduction, scores
from thawcast.analysis.tables import markdown_table
from thawcast.catalogue import BASELINES
from thawcast.errors import DataError
from thawcast.ingest.common import open_netcdf
from thawcast.variables import TARGETS


def per_cell_scores(obs: np.ndarray, pred: np.ndarray, cell: np.ndarray, n_cells: int) -> dict[str, np.ndarray]:
    """RMSE, MAE and R2 of each cell and layer (``[cell, layer]``; NaN for a cell without windows, R2 NaN where
    the cell's observations are constant), pooled over the cell's windows."""
    obs, pred = np.asarray(obs, float), np.asarray(pred, float)
    if obs.shape != pred.shape or obs.shape[0] != len(cell):
        raise DataError(None, f"observed {obs.shape}, predicted {pred.shape} and {len(cell)} cells do not match")
    out = {k: np.full((n_cells, obs.shape[1]), np.nan) for k in ("rmse", "mae", "r2")}
    n = np.bincount(cell, minlength=n_cells).astype(float)
    has = n > 0
    for j in range(obs.shape[1]):
        err = pred[:, j] - obs[:, j]
        sse = np.bincount(cell, err ** 2, minlength=n_cells)
        sae = np.bincount(cell, np.abs(err), minlength=n_cells)
        so, so2 = np.bincount(cell, obs[:, j], minlength=n_cells), np.bincount(cell, obs[:, j] ** 2, minlength=n_cells)
        sst = so2 - so ** 2 / np.where(has, n, 1.0)
        out["rmse"][has, j] = np.sqrt(sse[has] / n[has])
        out["mae"][has, j] = sae[has] / n[has]
        spread = has & (sst > 1e-12 * np.maximum(so2, 1.0))
        out["r2"][spread, j] = 1.0 - sse[spread] / sst[spread]
    return out


def group_scores(obs: np.ndarray, pred: np.ndarray) -> dict:
    """Pooled scores of a group of windows: overall and per layer."""
    return {"overall": scores(obs, pred),
            "per_layer": {t: scores(obs[:, j], pred[:, j]) for j, t in enumerate(TARGETS)}}


def band_means(values: np.ndarray, cell: np.ndarray, times: pd.DatetimeIndex, band_of_cell: np.ndarray,
               weight_of_cell: np.ndarray, n_bands: int, months: pd.DatetimeIndex) -> np.ndarray:
    """``[band, month, k]``: the ``weight``-weighted mean over each band's cells of per-window ``values [N, k]``,
    for each of ``months`` (NaN where a band has no window in a month).

    Raises
    ------
    DataError
        A window's month is not among ``months``, or a weight is negative.
    """
    if (np.asarray(weight_of_cell) < 0).any():
        raise DataError(None, "cell weights must not be negative")
    pos = months.get_indexer(times)
    if (pos < 0).any():
        raise DataError(None, f"{(pos < 0).sum()} windows have a month outside the {len(months)} months asked for")
    slot = band_of_cell[cell] * len(months) + pos
    w = np.asarray(weight_of_cell, float)[cell]
    norm = np.bincount(slot, w, minlength=n_bands * len(months))
    out = np.full((n_bands * len(months), values.shape[1]), np.nan)
    ok = norm > 0
    for j in range(values.shape[1]):
        total = np.bincount(slot, w * values[:, j], minlength=n_bands * len(months))
        out[ok, j] = total[ok] / norm[ok]
    return out.reshape(n_bands, len(months), values.shape[1])


def band_targets(path: Path, months: pd.DatetimeIndex, n_bands: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The band targets ``[band, month, layer]`` and every band model's predictions of them, from the evaluate
    stage's test predictions (``path``), on ``months``.

    Raises
    ------
    DataError
        Its test windows are not the ``n_bands`` bands x ``months``.
    """
    with open_netcdf(path) as ds:
        ds = ds.load()
    pos = months.get_indexer(pd.DatetimeIndex(ds["target_time"].values))
    if (pos < 0).any() or len(ds["window"]) != n_bands * len(months):
        raise DataError(path, f"its test windows are not the {n_bands} bands x {len(months)} test months of the"
                        " cells: rerun `dvc repro evaluate`")
    band = ds["band"].values

    def grid(values: np.ndarray) -> np.ndarray:
        out = np.full((n_bands, len(months), values.shape[-1]), np.nan)
        out[band, pos] = values
        return out

    return grid(ds["observed"].values), {str(m): grid(ds["predicted"].sel(model=m).values)
                                         for m in ds["model"].values}


def summary(obs: np.ndarray, preds: Mapping[str, np.ndarray], held_out_window: np.ndarray,
            per_cell: Mapping[str, dict[str, np.ndarray]], held_out_cell: np.ndarray, networks: Sequence[str]) -> dict:
    """Per model: pooled scores on the seen and the held-out cells' windows, the median per-cell RMSE of each
    group, and each network's fractional RMSE reduction against each baseline on the held-out cells."""
    out: dict = {"models": {}}
    for name, p in preds.items():
        out["models"][name] = {
            group: {**group_scores(obs[mask], p[mask]),
                    "median_cell_rmse": {t: float(np.nanmedian(per_cell[name]["rmse"][cells, j]))
                                         for j, t in enumerate(TARGETS)}}
            for group, mask, cells in (("seen", ~held_out_window, ~held_out_cell),
                                       ("held_out", held_out_window, held_out_cell))}
    baselines = [n for n in preds if n not in networks]
    out["rmse_reduction_held_out"] = {
        net: {b: fractional_reduction(out["models"][net]["held_out"]["overall"]["rmse"],
                                      out["models"][b]["held_out"]["overall"]["rmse"]) for b in baselines}
        for net in networks}
    return out


def band_comparison(band_obs: np.ndarray, cell_models: Mapping[str, np.ndarray], band_models: Mapping[str, np.ndarray],
                    cell_truth: np.ndarray | None) -> dict:
    """Scores against the band targets ``band_obs [band, month, layer]``: each cell model's predictions averaged up
    to the bands, each band model's own predictions, and the observed cells averaged up (the aggregation gap: how
    far the area-weighted mean of the cells is from the band table itself, a floor for any averaged-up model;
    left out when ``cell_truth`` is None).

    Raises
    ------
    DataError
        A cell model has no value where the band table has one (a band without cells in some month): it would be
        scored on fewer targets than the band models.
    """
    for name, p in cell_models.items():
        if (np.isnan(p) & np.isfinite(band_obs)).any():
            raise DataError(None, f"{name}, averaged up, has no value for some band and month of the band targets"
                            " (a band without cells): it cannot be compared with the band models")

    def pooled(p: np.ndarray) -> dict:
        o, s = band_obs.reshape(-1, band_obs.shape[-1]), p.reshape(-1, p.shape[-1])
        return group_scores(o, s)

    out = {"cell_models": {n: pooled(p) for n, p in cell_models.items()},
           "band_models": {n: pooled(p) for n, p in band_models.items()}}
    if cell_truth is not None:
        out["aggregation_gap"] = pooled(cell_truth)
    return out


def cells_markdown(metrics: dict, networks: Sequence[str], test_years: str, n_seen: int, n_held_out: int) -> str:
    """The cells' evaluation as Markdown: seen vs held-out cells, then the band comparison."""
    models = metrics["summary"]["models"]
    order = sorted(models, key=lambda n: (n not in networks, models[n]["held_out"]["overall"]["rmse"]))
    head = ["model", "kind", "RMSE seen", "RMSE held out", "R2 held out",
            *[f"held out {t}" for t in TARGETS], "median cell RMSE held out (t_soil1)"]
    rows = [[n, "network" if n in networks else "baseline", f"{models[n]['seen']['overall']['rmse']:.3f}",
             f"{models[n]['held_out']['overall']['rmse']:.3f}", f"{models[n]['held_out']['overall']['r2']:.3f}",
             *(f"{models[n]['held_out']['per_layer'][t]['rmse']:.3f}" for t in TARGETS),
             f"{models[n]['held_out']['median_cell_rmse']['t_soil1']:.3f}"] for n in order]
    lines = [(f"Test years {test_years}, every window of {n_seen} seen and {n_held_out} held-out cells (spatial"
             " hold-out: whole blocks never seen in training, tuning or scaling), degC; pooled over windows."), "",
             *markdown_table(head, rows)]
    red = metrics["summary"]["rmse_reduction_held_out"]
    if red:
        bases = list(next(iter(red.values())))
        lines += ["", "Fractional RMSE reduction on the held-out cells, 1 - RMSE/RMSE_baseline:", "",
                  *markdown_table(["network", *bases], ([n, *(f"{red[n][b]:+.1%}" for b in bases)] for n in red))]
    comp = metrics["bands"]
    rows = [[f"{n} (cells, averaged up)", *(_rmse_cells(comp["cell_models"][n]))] for n in comp["cell_models"]]
    rows += [[f"{n} ({'band baseline' if n in BASELINES else 'band model'})", *(_rmse_cells(comp["band_models"][n]))]
             for n in comp["band_models"]]
    rows.sort(key=lambda r: float(r[1]))
    rows.append(["observed cells averaged up (aggregation gap)", *_rmse_cells(comp["aggregation_gap"])])
    lines += ["", ("Against the band targets (the band models' test months): cell predictions averaged up to the"
                   " six bands (area-weighted, every cell) beside the models trained on the band means. The last row"
                   " scores the observed cells averaged up: the band tables weigh partly covered cells and cells"
                   " without HWSD soil, which the cells leave out, so no averaged-up model can do better than it."),
              "", *markdown_table(["model", "RMSE", *[f"RMSE {t}" for t in TARGETS]], rows), ""]
    return "\n".join(lines)


def _rmse_cells(table: dict) -> list[str]:
    return [f"{table['overall']['rmse']:.3f}", *(f"{table['per_layer'][t]['rmse']:.3f}" for t in TARGETS)]
