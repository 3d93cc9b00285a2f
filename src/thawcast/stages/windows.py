"""Stage ``windows``: scaled monthly feature arrays and window indices for training and scenarios.

Outputs (``data/windows/``):

* ``history.nc``: ERA5-Land features ``x[band, time, feature]`` and targets ``y`` (scaled),
  ``y_degc``, the scenario signal ``z[band, time]`` and the window index (band, last input
  month, split) of every train / validation / test window;
* ``<rcp>.nc``: the same features from the bias-corrected scenario, with one window per
  band for every target month of the projection period;
* ``scaler.json``: the z-score parameters (fitted on the training split only), the feature
  list with units, and the R_thermal mean/std behind ``z``.

Read them with :func:`thawcast.prep.windows.open_windows`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from thawcast.catalogue import FEATURES, SIGNAL_SOURCE
from thawcast.config import Config
from thawcast.ingest.common import open_netcdf
from thawcast.layout import Layout
from thawcast.prep.scenarios import open_band_table
from thawcast.prep.windows import (
    SPLITS,
    History,
    build_history,
    build_scenario,
    save_scalers,
    scaling_frame,
    target_years,
    to_dataset,
    window_frame,
)
from thawcast.quality.provenance import is_synthetic, provenance, staged_output
from thawcast.quality.validation import run_suite, validate_stage
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)


def _suite_params(cfg: Config, hist: History, n_rows: int, n_scaled: int) -> tuple[dict, dict]:
    years = target_years(cfg.windows)
    win = {"n_rows": n_rows, "max_band": hist.windows.x.shape[0] - 1, "length": cfg.windows.length_months,
           "n_features": hist.windows.n_features, "splits": [*SPLITS, *cfg.rcp_experiments],
           "scenario_first": cfg.projection.start_year, "scenario_last": cfg.projection.end_year}
    for s, (a, b) in years.items():
        win[f"{s}_first"], win[f"{s}_last"] = a, b
    return win, {"n_rows": n_scaled}


def run(cfg: Config, paths: Layout | None = None) -> Path:
    paths = paths or Layout.at()
    names = cfg.feature_names
    dyn = tuple(n for n in names if FEATURES[n].kind == "dynamic")
    with open_netcdf(paths.static_table) as s:
        static = s.load()
    era = open_band_table(paths.era5_bands, (*dyn, SIGNAL_SOURCE, *TARGETS))
    hist = build_history(cfg, era, static)
    log.info("history windows: %s", {s: int((hist.split == i).sum()) for i, s in enumerate(SPLITS)})
    scen = {}
    for rcp in cfg.rcp_experiments:
        path = paths.scenario(rcp)
        scen[rcp] = (build_scenario(cfg, open_band_table(path, (*dyn, SIGNAL_SOURCE)), static, hist, str(path)), path)
        log.info("%s windows: %d", rcp, len(scen[rcp][0]))

    frame = pd.concat([window_frame(hist.windows, hist.split, hist.windows.y),
                       *[window_frame(ws, rcp) for rcp, (ws, _) in scen.items()]], ignore_index=True)
    scaled = scaling_frame(hist)
    win_params, scale_params = _suite_params(cfg, hist, len(frame), len(scaled))
    sections = [run_suite(frame, "windows", paths.expectations, win_params, ["split", "band", "target"]),
                run_suite(scaled, "windows_scaling", paths.expectations, scale_params, ["column"])]

    synthetic = is_synthetic(era.attrs)
    years = target_years(cfg.windows)
    common = {"window_length_months": cfg.windows.length_months,
              "splits_by_target_year": "; ".join(f"{s} {a}-{b}" for s, (a, b) in years.items()),
              "scaling": "z-score fitted on the training split months only (scaler.json)"}
    with staged_output(paths.windows) as tmp:
        validate_stage("windows", sections, paths.validation_reports)
        ds = to_dataset(hist.windows, hist.split, hist.y_degc, TARGETS,
                        provenance("windows", "sliding windows over ERA5-Land band series", str(paths.era5_bands),
                                   synthetic=synthetic, **common))
        ds.to_netcdf(tmp / paths.history.name)
        for rcp, (ws, path) in scen.items():
            ds = to_dataset(ws, None, None, TARGETS,
                            provenance("windows", f"sliding windows over the bias-corrected {rcp} inputs",
                                       str(path), synthetic=synthetic, experiment_id=rcp,
                                       projection=str(cfg.projection), **common))
            ds.to_netcdf(tmp / paths.scenario_windows(rcp).name)
        meta = {
            "fit_on": f"training split months {years['train'][0]}-{years['train'][1]}",
            "feature_order": list(names),
            "feature_units": {n: FEATURES[n].unit for n in names},
            "signal_reference": {"source": SIGNAL_SOURCE, "mean": hist.signal_ref[0], "std": hist.signal_ref[1]},
        }
        save_scalers(tmp / paths.scaler.name, hist.scalers, meta)
    return paths.windows
