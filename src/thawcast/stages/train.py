"""Stage ``train@<arch>``: train one architecture, log it to MLflow, register it.

Inputs: ``data/windows/history.nc`` and ``scaler.json``; hyper-parameters from
``data/tuning/<arch>/best_params.json`` when the tune stage wrote one and the seed-spread
stage (``metrics/seed_spread.json``) found them better than the defaults on validation over
all seeds, otherwise from the ``models`` and ``training`` sections of ``params.yaml``.

Outputs (``data/models/<arch>/``), written after the model is registered; the alias moves to the
new version only once they are in place:

* ``registration.json``: registered model name, alias and the SHA-256 of the weights, the
  hand-off every downstream stage depends on (the MLflow version is found by that digest's tag;
  no version counter or run id, so a rebuild of the same model writes the same file);
* ``history.csv``: train/validation loss per epoch;
* ``settings.json``: the hyper-parameters and training settings actually used.

A run that fails part way is marked FAILED in MLflow, registers nothing and leaves no
output folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from thawcast import __version__
from thawcast.config import Config, config_to_dict
from thawcast.layout import Layout
from thawcast.learn.settings import select_settings
from thawcast.learn.training import check_devices, load_training_data, score_degc, train_model
from thawcast.models.packed import PackedModel
from thawcast.prep.windows import open_windows
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


def run(cfg: Config, arch: str, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    cfg.training.require(arch)
    check_devices(cfg.training)  # before anything is logged
    settings = select_settings(cfg, arch, paths.best_params(arch), paths.metric("seed_spread.json"))
    log.info("%s: hyper-parameters from %s: %s", arch, settings.source, settings.hparams.model_dump())
    data = load_training_data(paths.history, paths.scaler)
    train, val = data.train, data.validation
    test = open_windows(paths.history, "test")
    targets = data.targets
    name = registered_name(cfg.mlflow, arch)
    use_store(cfg.mlflow)
    versions = data_version([str(paths.windows)], paths.lock)
    tags = {"thawcast.stage": "train", "thawcast.architecture": arch, "git_commit": git_commit(),
            "thawcast_version": __version__, "synthetic_data": str(cfg.source.kind == "synthetic").lower(),
            **{f"dvc.md5.{p}": h for p, h in versions.items()}}
    with start_run(run_name=f"train-{arch}", tags=tags) as run:
        mlflow.log_params(settings.flat())
        mlflow.log_dict(config_to_dict(cfg), "config.json")
        mlflow.log_dict(settings.to_dict(), "settings.json")
        net, result = train_model(settings, data, cfg.seed,
                                  on_epoch=lambda epoch, row: mlflow.log_metrics(row, step=epoch))
        packed = PackedModel(net, targets.mean, targets.std, train.feature_names, train.length, TARGETS, arch)
        digest = packed.weights_sha256()
        metrics = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                   "best_val_loss": result.best_val_loss, "train_seconds": result.seconds}
        for split, ws in (("val", val), ("test", test)):
            metrics.update({f"{split}_{k}": v for k, v in score_degc(net, ws, targets).items()})
        mlflow.log_metrics(metrics)
        mlflow.set_tag("thawcast.weights_sha256", digest)
        log.info("%s: validation RMSE %.3f degC, test RMSE %.3f degC", arch, metrics["val_rmse"], metrics["test_rmse"])
        info = log_packed_model(packed, train, {
            "band_channel": "last input channel: integer band index, same at every step",
            "scaling": "inputs z-scored with the windows stage's scaler.json (logged with this run)"})
        mlflow.log_artifact(str(paths.scaler))
    publish(Registration(arch, name, digest, cfg.mlflow.alias), info.model_uri, run.info.run_id, tags,
            paths.model(arch), {"settings.json": json.dumps(settings.to_dict(), indent=2) + "\n",
                                "history.csv": pd.DataFrame(result.history).to_csv(index=False)})
    return paths.model(arch)

