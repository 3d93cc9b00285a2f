"""Stage ``train@<arch>``: train one architecture, log it to MLflow, register it.

Inputs: ``data/windows/history.nc`` and ``scaler.json``; hyper-parameters from
``data/tuning/<arch>/best_params.json`` when the tune stage wrote one and the seed-spread
stage (``metrics/seed_spread.json``) found them better than the defaults on validation over
all seeds, otherwise from the ``models`` and ``training`` sections of ``params.yaml``.

Outputs (``data/models/<arch>/``), written only after the model is registered:

* ``registration.json``: registered model name, version, alias, run id and model URI,
  the hand-off every downstream stage depends on;
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
from thawcast.errors import DataError
from thawcast.models.packed import PackedModel
from thawcast.provenance import git_commit, staged_output
from thawcast.settings import select_settings
from thawcast.stages.windows import HISTORY_FILE, SCALER_FILE
from thawcast.tracking import Registration, data_version, register, registered_name, use_store
from thawcast.training import TrainingData, score_degc, train_model
from thawcast.variables import TARGETS
from thawcast.windows import load_scalers, open_windows

log = logging.getLogger(__name__)

REGISTRATION_FILE = "registration.json"


def run(cfg: Config, arch: str, windows_dir: Path = Path("data/windows"), tuning_dir: Path = Path("data/tuning"),
        out_dir: Path = Path("data/models"), lock: Path = Path("dvc.lock"),
        spread_file: Path = Path("metrics/seed_spread.json")) -> Path:
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    settings = select_settings(cfg, arch, tuning_dir, spread_file)
    log.info("%s: hyper-parameters from %s: %s", arch, settings.source, settings.hparams.model_dump())
    data = training_data(windows_dir)
    train, val = data.train, data.validation
    test = open_windows(windows_dir / HISTORY_FILE, "test")
    targets = data.targets
    name = registered_name(cfg.mlflow, arch)
    use_store(cfg.mlflow)
    versions = data_version([str(windows_dir)], lock)
    tags = {"thawcast.stage": "train", "thawcast.architecture": arch, "git_commit": git_commit(),
            "thawcast_version": __version__, "synthetic_data": str(cfg.source.kind == "synthetic").lower(),
            **{f"dvc.md5.{p}": h for p, h in versions.items()}}
    with mlflow.start_run(run_name=f"train-{arch}", tags=tags) as run:
        mlflow.log_params(settings.flat())
        mlflow.log_dict(config_to_dict(cfg), "config.json")
        mlflow.log_dict(settings.to_dict(), "settings.json")
        net, result = train_model(settings, data, cfg.seed,
                                  on_epoch=lambda epoch, row: mlflow.log_metrics(row, step=epoch))
        packed = PackedModel(net, targets.mean, targets.std, train.feature_names, train.length, TARGETS, arch)
        metrics = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                   "best_val_loss": result.best_val_loss, "train_seconds": result.seconds}
        for split, ws in (("val", val), ("test", test)):
            metrics.update({f"{split}_{k}": v for k, v in score_degc(net, ws, targets).items()})
        mlflow.log_metrics(metrics)
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
                      "scaling": "inputs z-scored with the windows stage's scaler.json (logged with this run)"})
        mlflow.log_artifact(str(windows_dir / SCALER_FILE))
    reg = register(info.model_uri, name, cfg.mlflow.alias, run.info.run_id, arch,
                   tags={"git_commit": tags["git_commit"], **{k: v for k, v in tags.items() if k.startswith("dvc.")}})
    with staged_output(out_dir / arch) as tmp:
        (tmp / REGISTRATION_FILE).write_text(json.dumps(reg.to_dict(), indent=2) + "\n")
        (tmp / "settings.json").write_text(json.dumps(settings.to_dict(), indent=2) + "\n")
        pd.DataFrame(result.history).to_csv(tmp / "history.csv", index=False)
    return out_dir / arch


def training_data(windows_dir: Path) -> TrainingData:
    """The training and validation splits and the target scaler (never the test split).

    Raises
    ------
    DataError
        The scaler was written for another feature order than the window file's.
    """
    history = windows_dir / HISTORY_FILE
    train, val = (open_windows(history, s) for s in ("train", "validation"))
    scalers = load_scalers(windows_dir / SCALER_FILE)
    if tuple(scalers["features"].names) + (("z",) if "signal" in scalers else ()) != train.feature_names:
        raise DataError(windows_dir / SCALER_FILE, "scaler features differ from the window file's feature order")
    return TrainingData(train, val, scalers["targets"])


def read_registration(models_dir: Path, arch: str) -> Registration:
    """The registration record the train stage wrote for ``arch``."""
    path = Path(models_dir) / arch / REGISTRATION_FILE
    if not path.exists():
        raise DataError(path, f"no registration record for {arch!r} (run the train@{arch} stage)")
    return Registration.from_dict(json.loads(path.read_text()))
