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

import numpy as np
import pandas as pd
import torch

from thawcast import __version__
from thawcast.config import Config, config_to_dict
from thawcast.layout import Layout
from thawcast.learn.settings import select_settings
from thawcast.learn.training import check_devices, load_training_data, score_degc, train_model
from thawcast.models.packed import PackedModel
from thawcast.prep.windows import open_windows
from thawcast.quality.provenance import git_commit, staged_output
from thawcast.tracking.dvclock import data_version
from thawcast.tracking.registry import (
    Registration,
    discard_run_versions,
    register,
    registered_name,
    set_alias,
    start_run,
    use_store,
)
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)


def run(cfg: Config, arch: str, paths: Layout | None = None) -> Path:
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

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
        example = PackedModel.pack(train.inputs(slice(0, 2)), train.band[:2])
        with torch.no_grad():
            signature = infer_signature(example.numpy(), packed(example).numpy())
        info = mlflow.pytorch.log_model(
            packed, name="model", serialization_format="pickle", signature=signature,
            input_example=example.numpy(),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
                              f"thawcast=={__version__}"],
            metadata={"architecture": arch, "feature_order": list(train.feature_names),
                      "band_channel": "last input channel: integer band index, same at every step",
                      "window_length_months": train.length, "targets": list(TARGETS), "units": "degC",
                      "scaling": "inputs z-scored with the windows stage's scaler.json (logged with this run)",
                      "weights_sha256": digest})
        mlflow.log_artifact(str(paths.scaler))
    reg = Registration(arch, name, digest, cfg.mlflow.alias)
    try:  # the alias moves last, once the hand-off is in place; a failure takes back what was registered
        mv = register(info.model_uri, name, run.info.run_id, digest,
                      tags={"git_commit": tags["git_commit"], **{k: v for k, v in tags.items() if k.startswith("dvc.")}})
        with staged_output(paths.model(arch)) as tmp:
            (tmp / paths.registration(arch).name).write_text(json.dumps(reg.to_dict(), indent=2) + "\n")
            (tmp / "settings.json").write_text(json.dumps(settings.to_dict(), indent=2) + "\n")
            pd.DataFrame(result.history).to_csv(tmp / "history.csv", index=False)
        set_alias(name, cfg.mlflow.alias, mv.version)
    except BaseException as exc:
        discard_run_versions(name, run.info.run_id, f"the train stage failed before its outputs were in place"
                             f" ({type(exc).__name__}: {exc})"[:500])
        raise
    return paths.model(arch)
