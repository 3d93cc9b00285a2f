"""Stage ``evaluate-cells``: every registered cell model and every baseline on the test years of every grid cell,
seen and held out, and averaged up to the six bands beside the band models (issue "Every grid cell").

Cell models are loaded from the MLflow registry (the version holding the weights ``train-cells@<arch>`` recorded),
after checking that the scalers they were trained with are those of these cells. Baselines, per cell: climatology,
persistence and seasonal persistence read each cell's own observations (held-out cells included: they are
observation-based references, not models that learn across cells); ridge is fitted on a sample of the seen cells'
training windows, its alpha chosen on their validation windows.

Outputs:

* ``metrics/cells.json`` / ``metrics/cells.md``: pooled skill on seen vs held-out cells, the band comparison
  (does a cell model, averaged up, beat a model trained on the band means, on the band targets?), and the skill
  by kind of ground (perennial snow, high ground, the rest; :mod:`thawcast.analysis.cell_ground`);
* ``data/cell_evaluation/cell_scores.nc``: per model, cell and layer, test RMSE/MAE/R2 (CF, with lat/lon);
* ``data/cell_evaluation/figures/``: maps of per-cell RMSE (layers 1 and 4) and of the skill against climatology.

Great Expectations checks the per-cell table (one row per cell, scores finite and in range).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.analysis.cell_evaluation import (
    band_comparison,
    band_means,
    band_targets,
    cells_markdown,
    per_cell_scores,
    summary,
)
from thawcast.analysis.cell_ground import ground_classes, ground_markdown, ground_scores
from thawcast.analysis.evaluation import baseline_predictions
from thawcast.analysis.plots import LAYER_LABELS, cell_maps
from thawcast.catalogue import BASELINES
from thawcast.config import Config
from thawcast.layout import Layout
from thawcast.parallel import torch_threads
from thawcast.prep.cell_windows import (
    CellData,
    CellHistory,
    build_cell_history,
    cell_grid,
    check_scaler,
    open_cells,
    subsample,
)
from thawcast.quality.provenance import git_commit, provenance, staged_output
from thawcast.quality.validation import run_suite, validate_stage
from thawcast.tracking.registry import load_registration, read_registration, start_run, use_store
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)

def cell_model_predictions(cfg: Config, hist: CellHistory, test, paths: Layout) -> tuple[dict[str, np.ndarray], dict]:
    """Test-window predictions (degC) of each registered cell model, after checking its scalers are these cells'."""
    preds, regs = {}, {}
    for arch in cfg.cells.architectures:
        reg = read_registration(paths.cell_registration(arch), arch, "train-cells")
        check_scaler(hist, paths.cell_model(arch) / "scaler.json", arch)
        model, mv = load_registration(reg)
        model.check_windows(test, reg.label)
        with torch_threads(1):
            preds[arch] = model.predict_windows(test)
        regs[arch] = (reg, mv)
        log.info("cells-%s: predicted %d test windows with %s (version %s)", arch, len(test), reg.label, mv.version)
    return preds, regs


def run(cfg: Config, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    data = open_cells(paths.cell_store, paths.static_cells)
    hist = build_cell_history(cfg, data)
    test = hist.windows("test", "all")
    obs = hist.y_degc[test.band, test.last + 1].astype(float)
    networks = list(cfg.cells.architectures)
    use_store(cfg.mlflow, create=False)
    preds, regs = cell_model_predictions(cfg, hist, test, paths)
    base, extra = baseline_predictions(
        cfg.windows, subsample(hist.windows("train", "seen"), cfg.cells.ridge_windows, cfg.seed),
        subsample(hist.windows("validation", "seen"), cfg.cells.ridge_windows, cfg.seed), test, hist.y_degc,
        hist.scalers["targets"], unit_onehot=False)
    preds.update(base)
    n_cells = len(data)
    per_cell = {name: per_cell_scores(obs, p, test.band, n_cells) for name, p in preds.items()}
    held_out = hist.held_out
    metrics = {"summary": summary(obs, preds, held_out[test.band], per_cell, held_out, networks),
               "ridge_alpha": extra["ridge_alpha"], "cells": {"seen": int((~held_out).sum()),
                                                             "held_out": int(held_out.sum())}}

    months = pd.DatetimeIndex(np.unique(test.target_times()))
    n_bands = len(cfg.study_area.band_edges) - 1
    band_obs, band_models = band_targets(paths.test_predictions, months, n_bands)
    up = {name: band_means(preds[name], test.band, test.target_times(), data.band, data.area_km2, n_bands, months)
          for name in networks}
    truth_up = band_means(obs, test.band, test.target_times(), data.band, data.area_km2, n_bands, months)
    metrics["bands"] = band_comparison(band_obs, up, band_models, truth_up)
    metrics["ground"] = ground_scores(obs, preds, test.band, held_out, _ground(cfg, data))
    test_years = f"{cfg.windows.test.start_year}-{cfg.windows.test.end_year}"
    text = cells_markdown(metrics, networks, test_years, metrics["cells"]["seen"], metrics["cells"]["held_out"])
    text += "\n" + ground_markdown(metrics["ground"], list(preds))

    frame = _score_frame(data, per_cell)
    suite = run_suite(frame, "cell_scores", paths.expectations, index_columns=["model", "cell", "layer"],
                      parameters={"n_rows": n_cells * len(preds) * len(TARGETS),
                                  "max_band": len(cfg.study_area.band_edges) - 2})
    validate_stage("evaluate-cells", [suite], paths.validation_reports)
    figures = paths.cell_evaluation / "figures"
    with staged_output(paths.cell_evaluation) as tmp:
        _scores_dataset(data, per_cell, networks, cfg).to_netcdf(tmp / paths.cell_scores.name)
        for arch in networks:  # every network mapped: none is picked on test scores
            _maps(cfg, data, per_cell, arch, tmp / figures.name)
    paths.metrics.mkdir(parents=True, exist_ok=True)
    paths.metric("cells.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    paths.metric("cells.md").write_text(f"# Grid cells: seen and held-out skill\n\n{text}")

    tags = {"thawcast.stage": "evaluate-cells", "thawcast.units": "cells", "git_commit": git_commit(),
            "synthetic_data": str(cfg.source.kind == "synthetic").lower()}
    with start_run(run_name="evaluate-cells", tags=tags):
        for name in preds:
            for group in ("seen", "held_out"):
                sc = metrics["summary"]["models"][name][group]["overall"]
                mlflow.log_metrics({f"{name}.{group}.{k}": v for k, v in sc.items()})
        for name, (reg, mv) in regs.items():
            mlflow.log_param(f"{name}.model", f"{reg.registered_model} v{mv.version}")
        mlflow.log_artifact(str(paths.metric("cells.md")))
        mlflow.log_artifact(str(paths.metric("cells.json")))
        mlflow.log_artifacts(str(figures), "figures")
    for arch in networks:
        log.info("cells-%s: test RMSE %.3f degC on held-out cells (climatology %.3f)", arch,
                 metrics["summary"]["models"][arch]["held_out"]["overall"]["rmse"],
                 metrics["summary"]["models"]["climatology"]["held_out"]["overall"]["rmse"])
    return paths.cell_evaluation


def _ground(cfg: Config, data: CellData) -> dict[str, np.ndarray]:
    """The cells' kinds of ground (perennial snow in the training years' Augusts, high ground, the rest)."""
    train = cfg.windows.train
    swe = data.dynamic["swe"].values if "swe" in data.dynamic else None
    height = data.static["elevation_m"].values if "elevation_m" in data.static else None
    return ground_classes(swe, pd.DatetimeIndex(data.dynamic["time"].values), (train.start_year, train.end_year),
                          height, len(data))


def _score_frame(data: CellData, per_cell: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """One row per model, cell and layer: band, held_out, RMSE, MAE and R2 (the GX suite's frame)."""
    n, k = len(data), len(TARGETS)
    return pd.concat([pd.DataFrame({
        "model": name, "cell": np.repeat(np.arange(n), k), "layer": np.tile(TARGETS, n),
        "band": np.repeat(data.band, k), "held_out": np.repeat(data.held_out.astype(int), k),
        **{key: sc[key].reshape(-1) for key in ("rmse", "mae", "r2")}}) for name, sc in per_cell.items()],
        ignore_index=True)


def _scores_dataset(data: CellData, per_cell: dict, networks: list[str], cfg: Config) -> xr.Dataset:
    models = list(per_cell)
    ds = xr.Dataset(
        {k: (("model", "cell", "layer"), np.stack([per_cell[m][k] for m in models]),
             {"units": "degC" if k != "r2" else "1", "long_name": f"test-period {k.upper()} per cell and layer"})
         for k in ("rmse", "mae", "r2")},
        coords={"model": models, "cell": np.arange(len(data)), "layer": list(TARGETS),
                "lat": ("cell", data.static["lat"].values, {"units": "degrees_north", "standard_name": "latitude"}),
                "lon": ("cell", data.static["lon"].values, {"units": "degrees_east", "standard_name": "longitude"}),
                "band": ("cell", data.band), "area_km2": ("cell", data.area_km2, {"units": "km2"})})
    ds["held_out"] = ("cell", data.held_out.astype(np.int8), {"long_name": "1: in the spatial hold-out"})
    ds["model_kind"] = ("model", ["network" if m in networks else "baseline" for m in models])
    ds.attrs = provenance("evaluate-cells", "per-cell test scores of the cell models and the baselines",
                          "data/cells, data/cell_models", synthetic=cfg.source.kind == "synthetic",
                          test_years=f"{cfg.windows.test.start_year}-{cfg.windows.test.end_year}",
                          baselines=" ".join(BASELINES))
    return ds


def _maps(cfg: Config, data: CellData, per_cell: dict, best: str, folder: Path) -> None:
    grid, index = cell_grid(data.static["lat"].values, data.static["lon"].values)
    area = cfg.study_area
    edges, lons = area.band_edges, (area.lon_min, area.lon_max)
    rmse = per_cell[best]["rmse"]
    cell_maps(grid, index, {f"{best}: {LAYER_LABELS[TARGETS[j]]}": rmse[:, j] for j in (0, 3)}, data.held_out, edges,
              lons, "test RMSE (degC)", folder / f"rmse_map_{best}.png", cmap="magma_r")
    gain = {f"{LAYER_LABELS[TARGETS[j]]}": 1.0 - rmse[:, j] / per_cell["climatology"]["rmse"][:, j] for j in (0, 3)}
    cell_maps(grid, index, gain, data.held_out, edges, lons, f"{best}: 1 - RMSE / RMSE climatology",
              folder / f"skill_map_{best}.png", cmap="RdBu", limits=(-1.0, 1.0))
