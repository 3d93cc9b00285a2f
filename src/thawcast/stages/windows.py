"""Stage ``windows``: scaled monthly feature arrays and window indices for training and scenarios.

Outputs (``data/windows/``):

* ``history.nc``: ERA5-Land features ``x[band, time, feature]`` and targets ``y`` (scaled),
  ``y_degc``, the scenario signal ``z[band, time]`` and the window index (band, last input
  month, split) of every train / validation / test window;
* ``<rcp>.nc``: the same features from the bias-corrected scenario, with one window per
  band for every target month of the projection period;
* ``scaler.json``: the z-score parameters (fitted on the training split only), the feature
  list with units, and the R_thermal mean/std behind ``z``.

Read them with :func:`thawcast.windows.open_windows`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.config import Config
from thawcast.errors import DataError
from thawcast.features import (
    FEATURES,
    SIGNAL,
    SIGNAL_SOURCE,
    monthly_matrix,
    monthly_names,
    scenario_signal,
)
from thawcast.provenance import is_synthetic, provenance, staged_output
from thawcast.readers.common import open_netcdf, select_years
from thawcast.stages.bands import ERA5_FILE
from thawcast.stages.scenarios import open_band_table, scenario_file
from thawcast.stages.static import STATIC_FILE
from thawcast.validation import run_suite, validate_stage
from thawcast.variables import TARGETS
from thawcast.windows import (
    SPLITS,
    Scaler,
    WindowSet,
    fit_months,
    nan_per_window,
    save_scalers,
    target_years,
    to_dataset,
    window_index,
)

log = logging.getLogger(__name__)

HISTORY_FILE = "history.nc"
SCALER_FILE = "scaler.json"


@dataclass
class History:
    windows: WindowSet
    split: np.ndarray  # [N] index into SPLITS
    y_degc: np.ndarray
    scalers: dict[str, Scaler]
    signal_ref: tuple[float, float]  # mu, sigma of monthly R_thermal over the training months
    fit: np.ndarray  # [time] the months the scaler was fitted on


def _signal_raw(dynamic: xr.Dataset, length: int, mu: float, sigma: float, source: str) -> np.ndarray:
    if SIGNAL_SOURCE not in dynamic:
        raise DataError(source, f"'{SIGNAL_SOURCE}' is needed for the scenario signal z but is missing")
    return scenario_signal(dynamic[SIGNAL_SOURCE].transpose("band", "time").values, length, mu, sigma)


def build_history(cfg: Config, era: xr.Dataset, static: xr.Dataset) -> History:
    """Scaled ERA5-Land windows for the three splits; every statistic from the training split only."""
    names, w = cfg.feature_names, cfg.windows.length_months
    era = select_years(era, cfg.period.start_year, cfg.period.end_year, "ERA5-Land bands")
    times = pd.DatetimeIndex(era["time"].values)
    fit = fit_months(times, cfg.windows)
    x_raw = monthly_matrix(era, static, names, "ERA5-Land bands").values
    y_raw = np.stack([era[t].transpose("band", "time").values for t in TARGETS], axis=-1)
    feat_scaler = Scaler.fit(x_raw[:, fit], monthly_names(names))
    targ_scaler = Scaler.fit(y_raw[:, fit], TARGETS)
    n_bands = x_raw.shape[0]

    bands, lasts, codes = [], [], []
    for code, (first, last) in enumerate(target_years(cfg.windows).values()):
        b, k = window_index(times, n_bands, w, first, last)
        bands.append(b)
        lasts.append(k)
        codes.append(np.full(len(b), code))
    band, last, split = (np.concatenate(a) for a in (bands, lasts, codes))
    if not (split == 0).any():
        raise DataError("windows", f"no training windows: the training years {target_years(cfg.windows)['train']}"
                        f" leave no target month after the first {w} input months")

    scalers = {"features": feat_scaler, "targets": targ_scaler}
    signal, mu_sigma = None, (float("nan"), float("nan"))
    if SIGNAL in names:
        r = era[SIGNAL_SOURCE].transpose("band", "time").values[:, fit]
        mu_sigma = (float(r.mean()), float(r.std()))
        z_raw = _signal_raw(era, w, *mu_sigma, "ERA5-Land bands")
        z_fit = z_raw[band[split == 0], last[split == 0]]
        scalers["signal"] = Scaler.fit(z_fit[:, None], (SIGNAL,))
        signal = scalers["signal"].transform(z_raw[..., None])[..., 0].astype(np.float32)
    ws = WindowSet(x=feat_scaler.transform(x_raw).astype(np.float32), band=band, last=last, length=w,
                   times=times, feature_names=names, signal=signal,
                   y=targ_scaler.transform(y_raw).astype(np.float32))
    return History(ws, split, y_raw.astype(np.float32), scalers, mu_sigma, fit)


def build_scenario(cfg: Config, scen: xr.Dataset, static: xr.Dataset, hist: History, source: str) -> WindowSet:
    """Windows of one corrected scenario: one per band for each projection month, history's scaling."""
    names, w, proj = cfg.feature_names, cfg.windows.length_months, cfg.projection
    times = pd.DatetimeIndex(scen["time"].values)
    need_first = pd.Timestamp(proj.start_year, 1, 1) - pd.DateOffset(months=w)
    need_last = pd.Timestamp(proj.end_year, 12, 1)
    if times[0] > need_first or times[-1] < need_last:
        raise DataError(source, f"windows for the projection {proj} need months {need_first:%Y-%m}..{need_last:%Y-%m};"
                        f" the scenario covers {times[0]:%Y-%m}..{times[-1]:%Y-%m}")
    x = hist.scalers["features"].transform(monthly_matrix(scen, static, names, source).values)
    band, last = window_index(times, x.shape[0], w, proj.start_year, proj.end_year)
    signal = None
    if SIGNAL in names:
        z_raw = _signal_raw(scen, w, *hist.signal_ref, source)
        signal = hist.scalers["signal"].transform(z_raw[..., None])[..., 0].astype(np.float32)
    return WindowSet(x=x.astype(np.float32), band=band, last=last, length=w, times=times,
                     feature_names=names, signal=signal)


def window_frame(ws: WindowSet, split: str | np.ndarray, y: np.ndarray | None = None) -> pd.DataFrame:
    """One row per window: split, band, target month, lead, span and NaN counts (for the GX suite)."""
    n = len(ws)
    labels = np.asarray(SPLITS)[split] if isinstance(split, np.ndarray) else np.full(n, split)
    first = ws.last - ws.length + 1
    nan_in = nan_per_window(ws.x, ws.length, ws.last, ws.band)
    if ws.signal is not None:
        nan_in = nan_in + np.isnan(ws.signal[ws.band, ws.last])
    nan_t = np.isnan(y[ws.band, ws.last + 1]).sum(axis=-1) if y is not None else np.zeros(n, dtype=int)
    target = ws.target_times()
    month = ws.times.year * 12 + ws.times.month
    return pd.DataFrame({
        "split": labels, "kind": labels if isinstance(split, np.ndarray) else "scenario", "band": ws.band,
        "target": target.strftime("%Y-%m"), "target_year": target.year,
        "lead_months": target.year * 12 + target.month - month[ws.last],
        "span_months": month[ws.last] - month[first] + 1,
        "n_features": ws.n_features, "nan_inputs": nan_in, "nan_targets": nan_t,
    })


def scaling_frame(hist: History) -> pd.DataFrame:
    """Mean/std of every scaled column over the training split (months, or windows for z)."""
    ws, fit, rows = hist.windows, hist.fit, []
    constant = hist.scalers["features"].constant
    for name, col, c in zip(monthly_names(ws.feature_names), np.moveaxis(ws.x[:, fit], -1, 0), constant, strict=True):
        rows.append((name, col, c))
    for i, name in enumerate(TARGETS):
        rows.append((name, ws.y[:, fit, i], False))
    if ws.signal is not None:
        tr = hist.split == 0
        rows.append((SIGNAL, ws.signal[ws.band[tr], ws.last[tr]], False))
    return pd.DataFrame([{"column": n, "train_mean": float(np.mean(v, dtype=np.float64)),
                          "train_std": float(np.std(v, dtype=np.float64)), "constant": bool(c)}
                         for n, v, c in rows])


def _suite_params(cfg: Config, hist: History, n_rows: int, n_scaled: int) -> tuple[dict, dict]:
    years = target_years(cfg.windows)
    win = {"n_rows": n_rows, "max_band": hist.windows.x.shape[0] - 1, "length": cfg.windows.length_months,
           "n_features": hist.windows.n_features, "splits": [*SPLITS, *cfg.rcp_experiments],
           "scenario_first": cfg.projection.start_year, "scenario_last": cfg.projection.end_year}
    for s, (a, b) in years.items():
        win[f"{s}_first"], win[f"{s}_last"] = a, b
    return win, {"n_rows": n_scaled}


def run(cfg: Config, bands_dir: Path = Path("data/bands"), static_dir: Path = Path("data/static"),
        scenarios_dir: Path = Path("data/scenarios"), out_dir: Path = Path("data/windows"),
        suite_dir: Path = Path("expectations"), report_dir: Path = Path("reports/validation")) -> Path:
    names = cfg.feature_names
    dyn = tuple(n for n in names if FEATURES[n].kind == "dynamic")
    with open_netcdf(static_dir / STATIC_FILE) as s:
        static = s.load()
    era = open_band_table(bands_dir / ERA5_FILE, (*dyn, SIGNAL_SOURCE, *TARGETS))
    hist = build_history(cfg, era, static)
    log.info("history windows: %s", {s: int((hist.split == i).sum()) for i, s in enumerate(SPLITS)})
    scen = {}
    for rcp in cfg.rcp_experiments:
        path = scenarios_dir / scenario_file(rcp)
        scen[rcp] = (build_scenario(cfg, open_band_table(path, (*dyn, SIGNAL_SOURCE)), static, hist, str(path)), path)
        log.info("%s windows: %d", rcp, len(scen[rcp][0]))

    frame = pd.concat([window_frame(hist.windows, hist.split, hist.windows.y),
                       *[window_frame(ws, rcp) for rcp, (ws, _) in scen.items()]], ignore_index=True)
    scaled = scaling_frame(hist)
    win_params, scale_params = _suite_params(cfg, hist, len(frame), len(scaled))
    sections = [run_suite(frame, "windows", suite_dir, win_params, ["split", "band", "target"]),
                run_suite(scaled, "windows_scaling", suite_dir, scale_params, ["column"])]

    synthetic = is_synthetic(era.attrs)
    years = target_years(cfg.windows)
    common = {"window_length_months": cfg.windows.length_months,
              "splits_by_target_year": "; ".join(f"{s} {a}-{b}" for s, (a, b) in years.items()),
              "scaling": "z-score fitted on the training split months only (scaler.json)"}
    with staged_output(out_dir) as tmp:
        validate_stage("windows", sections, report_dir)
        ds = to_dataset(hist.windows, hist.split, hist.y_degc, TARGETS,
                        provenance("windows", "sliding windows over ERA5-Land band series", str(bands_dir / ERA5_FILE),
                                   synthetic=synthetic, **common))
        ds.to_netcdf(tmp / HISTORY_FILE)
        for rcp, (ws, path) in scen.items():
            ds = to_dataset(ws, None, None, TARGETS,
                            provenance("windows", f"sliding windows over the bias-corrected {rcp} inputs",
                                       str(path), synthetic=synthetic, experiment_id=rcp,
                                       projection=str(cfg.projection), **common))
            ds.to_netcdf(tmp / scenario_file(rcp))
        meta = {
            "fit_on": f"training split months {years['train'][0]}-{years['train'][1]}",
            "feature_order": list(names),
            "feature_units": {n: FEATURES[n].unit for n in names},
            "signal_reference": {"source": SIGNAL_SOURCE, "mean": hist.signal_ref[0], "std": hist.signal_ref[1]},
        }
        save_scalers(tmp / SCALER_FILE, hist.scalers, meta)
    return out_dir
