"""Stage ``seed-spread-cells``: how much of a cell model's skill, and of its lead over the band models, is seed luck.

Every cell model (``cells.architectures``) is trained again with each seed of ``robustness.all_seeds`` (the
pipeline's ``seed``, whose run is the registered one, plus ``robustness.seeds``) exactly as ``train-cells`` trains
it (with its registered settings: the ``tune-cells`` study's best, ``metrics/cell_tuning.json``), and scored as
``evaluate-cells`` scores it: on the test years of every seen and every held-out cell, and
averaged up to the six bands on the band targets. Nothing is registered: the models are thrown away, the scores
kept. The run with the registered seed must give the registered weights bit for bit (reported).

Outputs: ``metrics/cell_seed_spread.json`` and ``metrics/cell_seed_spread.md`` (an MLflow run holds the same):

* per cell model, each score's mean, std, min and max over seeds, and the held-out minus seen gap, paired by seed;
* where the registered settings are tuned, the ``params.yaml`` defaults trained with the same seeds beside them:
  tuned minus defaults, on validation and on the test years, with its standard error;
* averaged up to the bands beside each band model over the same seeds (``metrics/seed_spread.json``, the settings
  the train stage registers): the difference and its standard error. A single registered run of each side (the
  table of ``evaluate-cells``) can differ by seed luck alone; this says whether the difference survives it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from thawcast.analysis.cell_evaluation import (
    band_comparison,
    band_means,
    band_targets,
    group_scores,
)
from thawcast.config import Config
from thawcast.layout import Layout
from thawcast.learn.cells import (
    CellTraining,
    cell_settings,
    default_cell_settings,
    train_cell_models,
    validation_scores,
)
from thawcast.learn.seeds import (
    cell_markdown,
    cell_spread_row,
    cell_tuning_effect,
    registered_band_rmse,
)
from thawcast.learn.training import check_devices
from thawcast.parallel import torch_threads
from thawcast.prep.cell_windows import build_cell_history, open_cells
from thawcast.quality.provenance import git_commit
from thawcast.tracking.registry import read_registration, start_run, use_store

log = logging.getLogger(__name__)


def run(cfg: Config, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    chosen = {arch: cell_settings(cfg, arch, paths.metric("cell_tuning.json")) for arch in cfg.cells.architectures}
    for settings in chosen.values():
        check_devices(settings.training)  # before anything is trained or logged
    registered = {arch: read_registration(paths.cell_registration(arch), arch, "train-cells").weights_sha256
                  for arch in cfg.cells.architectures}
    seeds = cfg.robustness.all_seeds(cfg.seed)
    band_rmse = registered_band_rmse(paths.metric("seed_spread.json"), seeds)  # checked before any training
    data_cells = open_cells(paths.cell_store, paths.static_cells)
    hist = build_cell_history(cfg, data_cells)
    data = CellTraining.build(cfg, hist)
    test = hist.windows("test", "all")
    obs = hist.y_degc[test.band, test.last + 1].astype(float)
    held = hist.held_out[test.band]
    months = pd.DatetimeIndex(np.unique(test.target_times()))
    n_bands = len(cfg.study_area.band_edges) - 1
    band_obs, _ = band_targets(paths.test_predictions, months, n_bands)

    # The registered settings with every seed; where they are tuned, the defaults with every seed too.
    runs = [(arch, name, settings, seed) for arch in cfg.cells.architectures
            for name, settings in (("registered", chosen[arch]), ("defaults", default_cell_settings(cfg, arch)))
            if name == "registered" or _values(settings) != _values(chosen[arch]) for seed in seeds]
    workers = cfg.compute.worker_count(len(runs))
    log.info("seed-spread-cells: %d trainings of %d windows per epoch in %d process(es)", len(runs),
             min(cfg.cells.windows_per_epoch, len(data.train)), workers)
    scored: dict[tuple[str, str], dict[int, dict]] = {(arch, name): {} for arch, name, _, _ in runs}
    for i, model in train_cell_models(cfg, data, [(settings, seed) for _, _, settings, seed in runs], workers):
        arch, name, _, seed = runs[i]
        with torch_threads(1):
            pred = model.predict_windows(test)
        up = band_means(pred, test.band, test.target_times(), data_cells.band, data_cells.area_km2, n_bands, months)
        scored[arch, name][seed] = {
            "val_rmse": validation_scores(model, data)["rmse"],
            "seen_test_rmse": group_scores(obs[~held], pred[~held])["overall"]["rmse"],
            "held_out_test_rmse": group_scores(obs[held], pred[held])["overall"]["rmse"],
            "bands_test_rmse": band_comparison(band_obs, {arch: up}, {}, None)["cell_models"][arch]["overall"]["rmse"],
            "weights_sha256": model.weights_sha256()}
        got = scored[arch, name][seed]
        log.info("seed-spread-cells %d/%d: cells-%s (%s) seed %d: test RMSE seen %.3f, held out %.3f, bands %.3f"
                 " degC", sum(map(len, scored.values())), len(runs), arch, name, seed, got["seen_test_rmse"],
                 got["held_out_test_rmse"], got["bands_test_rmse"])
    table = {"seeds": list(seeds), "test_years": [cfg.windows.test.start_year, cfg.windows.test.end_year],
             "cells": {"seen": data.seen, "held_out": int(hist.held_out.sum())},
             "architectures": {arch: cell_spread_row({s: scored[arch, "registered"][s] for s in seeds},
                                                     registered[arch], cfg.seed, band_rmse)
                               for arch in cfg.cells.architectures}}
    for arch, row in table["architectures"].items():
        row["settings"] = chosen[arch].to_dict()
        if (arch, "defaults") in scored:
            row["tuning"] = cell_tuning_effect({s: scored[arch, "defaults"][s] for s in seeds}, row)
    for arch, row in table["architectures"].items():
        if not row["reproduces_registered"]:
            log.warning("cells-%s: the run with seed %d did not give the registered weights (is the registered"
                        " model from other data or code? `dvc repro train-cells@%s`)", arch, cfg.seed, arch)

    text = cell_markdown(table)
    paths.metrics.mkdir(parents=True, exist_ok=True)
    json_file = paths.metric("cell_seed_spread.json")
    json_file.write_text(json.dumps(table, indent=2, allow_nan=False) + "\n")
    paths.metric("cell_seed_spread.md").write_text(text)
    use_store(cfg.mlflow)
    with start_run(run_name="seed-spread-cells", tags={"thawcast.stage": "seed-spread-cells",
                                                       "thawcast.units": "cells", "git_commit": git_commit(),
                                                       "synthetic_data": str(cfg.source.kind == "synthetic").lower()}):
        mlflow.log_params({"seeds": ",".join(map(str, seeds)), "architectures": ",".join(cfg.cells.architectures)})
        mlflow.log_metrics({f"cells_{arch}_{name}_{stat}": row[name][stat]
                            for arch, row in table["architectures"].items()
                            for name in ("seen_test_rmse", "held_out_test_rmse", "bands_test_rmse")
                            for stat in ("mean", "std")})
        mlflow.log_dict(table, "cell_seed_spread.json")
        mlflow.log_text(text, "cell_seed_spread.md")
    return json_file


def _values(settings) -> tuple:
    """What a training depends on in ``settings`` (not where they came from)."""
    return settings.hparams, settings.training
