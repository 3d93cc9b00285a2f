"""Stage ``train-cells@<arch>``: one network across every seen grid cell, logged to MLflow and registered
(``thawcast-cells-<arch>``; issue "Every grid cell").

The network is the bands' architecture with no unit embedding: it tells cells apart by their attributes (HWSD soil,
lithology shares, latitude and longitude, :func:`~thawcast.prep.cell_windows.cell_feature_names`), so it applies to
cells it never saw. It trains on the training years of the seen cells, an epoch being a fresh sample of
``cells.windows_per_epoch`` windows gathered batch by batch (no ``[N, 24, F]`` copy), in batches of
``cells.batch_size`` with the learning rate scaled to them; early stopping watches a fixed sample of the seen cells'
validation windows. The held-out cells and the test years reach neither the fit nor the scaler. Hyper-parameters,
learning rate, batch size and weight decay are the ``tune-cells`` study's best (``metrics/cell_tuning.json``) where
there is one, else ``params.yaml``'s (``models.<arch>``, ``cells``).

Outputs (``data/cell_models/<arch>/``), written once the model is registered; the alias moves last:

* ``registration.json``: the registered model and its weights' digest (the hand-off evaluate-cells reads);
* ``scaler.json``: the scalers the model's inputs and outputs were fitted with (seen cells, training years);
* ``settings.json``, ``history.csv``: the settings used and the loss per epoch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from thawcast import __version__
from thawcast.catalogue import CELL_ATTRIBUTES
from thawcast.config import Config, config_to_dict
from thawcast.layout import Layout
from thawcast.learn.cells import CellTraining, cell_settings, train_cell_model, validation_scores
from thawcast.learn.training import check_devices
from thawcast.prep.cell_windows import build_cell_history, cell_scaler_text, open_cells
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

log = logging.getLogger(__name__)


def cell_model_name(cfg: Config, arch: str) -> str:
    """The registered name of a cell model: ``thawcast-cells-gru`` with the default prefix."""
    return registered_name(cfg.mlflow, f"cells-{arch}")


def run(cfg: Config, arch: str, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    cfg.cells.require(arch)
    settings = cell_settings(cfg, arch, paths.metric("cell_tuning.json"))
    training = settings.training
    check_devices(training)  # before anything is logged
    hist = build_cell_history(cfg, open_cells(paths.cell_store, paths.static_cells))
    data = CellTraining.build(cfg, hist)
    train, val = data.train, data.validation
    log.info("cells-%s: %d training windows of %d seen cells (%d held out), %d per epoch in batches of %d,"
             " learning rate %.2g; %d validation windows", arch, len(train), data.seen, hist.held_out.sum(),
             min(cfg.cells.windows_per_epoch, len(train)), training.batch_size, training.learning_rate, len(val))
    log.info("cells-%s: settings from %s: %s", arch, settings.source, settings.hparams.model_dump())
    name = cell_model_name(cfg, arch)
    use_store(cfg.mlflow)
    versions = data_version([str(paths.cells)], paths.lock)
    tags = {"thawcast.stage": "train-cells", "thawcast.architecture": arch, "thawcast.units": "cells",
            "git_commit": git_commit(), "thawcast_version": __version__,
            "synthetic_data": str(cfg.source.kind == "synthetic").lower(),
            **{f"dvc.md5.{p}": h for p, h in versions.items()}}
    with start_run(run_name=f"train-cells-{arch}", tags=tags) as run:
        mlflow.log_params({**settings.flat(), "cells.windows_per_epoch": cfg.cells.windows_per_epoch,
                           "cells.validation_windows": len(val), "cells.seen": data.seen})
        mlflow.log_dict(config_to_dict(cfg), "config.json")
        mlflow.log_dict(settings.to_dict(), "settings.json")
        packed, result = train_cell_model(settings, data, cfg.seed, cfg.cells.windows_per_epoch,
                                          on_epoch=lambda epoch, row: mlflow.log_metrics(row, step=epoch))
        digest = packed.weights_sha256()
        val_scores = validation_scores(packed, data)
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
                            f" {', '.join(a for a in CELL_ATTRIBUTES if a in hist.feature_names)} and the"
                            " statics)",
            "scaling": "inputs z-scored with scaler.json (logged with this run): the seen cells' training years"})
    publish(Registration(arch, name, digest, cfg.mlflow.alias), info.model_uri, run.info.run_id, tags,
            paths.cell_model(arch), {"scaler.json": scaler,
                                     "settings.json": json.dumps(settings.to_dict(), indent=2) + "\n",
                                     "history.csv": pd.DataFrame(result.history).to_csv(index=False)})
    return paths.cell_model(arch)
