"""Stage ``train-cells@<arch>``: one network across every seen grid cell, logged to MLflow and registered
(``thawcast-cells-<arch>``; issue "Every grid cell").

The network is the bands' architecture with no unit embedding: it tells cells apart by their attributes (HWSD soil,
lithology shares, latitude and longitude, :func:`~thawcast.prep.cell_windows.cell_feature_names`), so it applies to
cells it never saw. It trains on the training years of the seen cells, an epoch being a fresh sample of
``cells.windows_per_epoch`` windows gathered batch by batch (no ``[N, 24, F]`` copy), in batches of
``cells.batch_size`` with the learning rate scaled to them; early stopping watches a fixed sample of the seen cells'
validation windows. The held-out cells and the test years reach neither the fit nor the scaler.

Outputs (``data/cell_models/<arch>/``), written once the model is registered; the alias moves last:

* ``registration.json``: the registered model and its weights' digest (the hand-off evaluate-cells reads);
* ``scaler.json``: the scalers the model's inputs and outputs were fitted with (seen cells, training years);
* ``settings.json``, ``history.csv``: the settings used and the loss per epoch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import pandas as pd

from thawcast import __version__
from thawcast.analysis.metrics import scores
from thawcast.catalogue import CELL_ATTRIBUTES
from thawcast.config import Config, config_to_dict
from thawcast.layout import Layout
from thawcast.learn.settings import ModelSettings
from thawcast.learn.training import LazyWindows, WindowTensors, check_devices, fit
from thawcast.models.packed import PackedModel
from thawcast.models.registry import build_model
from thawcast.prep.cell_windows import build_cell_history, cell_scaler_text, open_cells, subsample
from thawcast.quality.provenance import git_commit
from thawcast.tracking.dvclock import data_version
from thawcast.tracking.registry import (
    Registration,
    log_packed_model,
    publish,
    registered_name,
    start_run,
    use_store,
)
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)


def cell_model_name(cfg: Config, arch: str) -> str:
    """The registered name of a cell model: ``thawcast-cells-gru`` with the default prefix."""
    return registered_name(cfg.mlflow, f"cells-{arch}")


def run(cfg: Config, arch: str, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    cfg.cells.require(arch)
    training = cfg.cells.training(cfg.training)
    check_devices(training)  # before anything is logged
    hist = build_cell_history(cfg, open_cells(paths.cell_store, paths.static_cells))
    train = hist.windows("train", "seen")
    val = subsample(hist.windows("validation", "seen"), cfg.cells.validation_windows, cfg.seed)
    seen = int((~hist.held_out).sum())
    log.info("cells-%s: %d training windows of %d seen cells (%d held out), %d per epoch in batches of %d,"
             " learning rate %.2g; %d validation windows", arch, len(train), seen, hist.held_out.sum(),
             min(cfg.cells.windows_per_epoch, len(train)), training.batch_size, training.learning_rate, len(val))
    settings = ModelSettings(arch, cfg.models.hparams(arch), training, 0, "params.yaml (models, cells)")
    name = cell_model_name(cfg, arch)
    use_store(cfg.mlflow)
    versions = data_version([str(paths.cells)], paths.lock)
    tags = {"thawcast.stage": "train-cells", "thawcast.architecture": arch, "thawcast.units": "cells",
            "git_commit": git_commit(), "thawcast_version": __version__,
            "synthetic_data": str(cfg.source.kind == "synthetic").lower(),
            **{f"dvc.md5.{p}": h for p, h in versions.items()}}
    with start_run(run_name=f"train-cells-{arch}", tags=tags) as run:
        mlflow.log_params({**settings.flat(), "cells.windows_per_epoch": cfg.cells.windows_per_epoch,
                           "cells.validation_windows": len(val), "cells.seen": seen})
        mlflow.log_dict(config_to_dict(cfg), "config.json")
        mlflow.log_dict(settings.to_dict(), "settings.json")
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        net = build_model(arch, train.n_features, 1, settings.hparams, 0, len(TARGETS))
        result = fit(net, LazyWindows(train), WindowTensors.from_windows(val, unit_ids=False), training, cfg.seed,
                     on_epoch=lambda epoch, row: mlflow.log_metrics(row, step=epoch), label=f"cells-{arch}",
                     windows_per_epoch=cfg.cells.windows_per_epoch)
        targets = hist.scalers["targets"]
        packed = PackedModel(net, targets.mean, targets.std, hist.feature_names, hist.length, TARGETS, arch,
                             unit_ids=False)
        digest = packed.weights_sha256()
        val_scores = scores(hist.y_degc[val.band, val.last + 1], packed.predict_windows(val))
        metrics = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                   "best_val_loss": result.best_val_loss, "train_seconds": result.seconds,
                   **{f"val_{k}": v for k, v in val_scores.items()}}
        mlflow.log_metrics(metrics)
        mlflow.set_tag("thawcast.weights_sha256", digest)
        log.info("cells-%s: validation RMSE %.3f degC on the seen cells", arch, val_scores["rmse"])
        scaler = cell_scaler_text(hist)
        mlflow.log_text(scaler, "scaler.json")
        info = log_packed_model(packed, train, {
            "band_channel": "last input channel: 0 (a cell model tells cells apart by their attributes:"
                            f" {', '.join(CELL_ATTRIBUTES)} and the statics)",
            "scaling": "inputs z-scored with scaler.json (logged with this run): the seen cells' training years"})
    publish(Registration(arch, name, digest, cfg.mlflow.alias), info.model_uri, run.info.run_id, tags,
            paths.cell_model(arch), {"scaler.json": scaler,
                                     "settings.json": json.dumps(settings.to_dict(), indent=2) + "\n",
                                     "history.csv": pd.DataFrame(result.history).to_csv(index=False)})
    return paths.cell_model(arch)
