"""Stage ``train@<arch>``: train one architecture, log it to MLflow, register it.

Inputs: ``data/windows/history.nc`` and ``scaler.json``; hyper-parameters from
``data/tuning/<arch>/best_params.json`` when the tune stage wrote one, otherwise from the
``models`` and ``training`` sections of ``params.yaml``.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from thawcast import __version__
from thawcast.config import Config, TrainingConfig, config_to_dict
from thawcast.errors import ConfigError, DataError
from thawcast.metrics import scores
from thawcast.models.hparams import HPARAMS
from thawcast.models.packed import PackedModel
from thawcast.models.registry import build_model
from thawcast.provenance import git_commit, staged_output
from thawcast.stages.windows import HISTORY_FILE, SCALER_FILE
from thawcast.tracking import Registration, data_version, register, registered_name, use_store
from thawcast.training import WindowTensors, fit, predict
from thawcast.variables import TARGETS
from thawcast.windows import load_scalers, open_windows

log = logging.getLogger(__name__)

BEST_PARAMS_FILE = "best_params.json"
REGISTRATION_FILE = "registration.json"
#: Training settings a tuning study may override (the rest stay as in params).
TUNABLE_TRAINING = ("learning_rate", "batch_size", "weight_decay")


@dataclass(frozen=True)
class ModelSettings:
    """Everything that decides one architecture's training run."""

    architecture: str
    hparams: object  # the architecture's typed params (thawcast.models.hparams)
    training: TrainingConfig
    band_embedding_dim: int
    source: str  # "params.yaml" or the best-params file

    def flat(self) -> dict[str, object]:
        """Flat ``{name: value}`` for MLflow params."""
        out = {"architecture": self.architecture, "band_embedding_dim": self.band_embedding_dim,
               "hparams_source": self.source}
        out.update({f"model.{k}": v for k, v in self.hparams.model_dump().items()})
        out.update({f"training.{k}": v for k, v in self.training.model_dump(exclude={"architectures"}).items()})
        return out

    def to_dict(self) -> dict:
        return {"architecture": self.architecture, "source": self.source,
                "band_embedding_dim": self.band_embedding_dim, "hparams": self.hparams.model_dump(),
                "training": self.training.model_dump(mode="json", exclude={"architectures"})}


def resolve_settings(cfg: Config, arch: str, tuning_dir: Path = Path("data/tuning")) -> ModelSettings:
    """The tuned settings of ``arch`` if ``<tuning_dir>/<arch>/best_params.json`` exists, else the defaults.

    The best-params file holds ``{"architecture", "hparams": {...}, "training": {...},
    "band_embedding_dim"}``; ``training`` may set only :data:`TUNABLE_TRAINING`.

    Raises
    ------
    ConfigError
        The architecture is unknown or the file is unreadable, for another architecture, or
        holds an unknown or invalid setting.
    """
    if arch not in cfg.training.architectures:
        raise ConfigError(f"architecture {arch!r} is not in training.architectures {list(cfg.training.architectures)}")
    path = Path(tuning_dir) / arch / BEST_PARAMS_FILE
    if not path.exists():
        return ModelSettings(arch, cfg.models.hparams(arch), cfg.training, cfg.models.band_embedding_dim,
                             "params.yaml")
    try:
        best = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable best-params file: {exc}") from None
    if best.get("architecture") != arch:
        raise ConfigError(f"{path}: written for architecture {best.get('architecture')!r}, not {arch!r}")
    extra = set(best.get("training", {})) - set(TUNABLE_TRAINING)
    if extra:
        raise ConfigError(f"{path}: training settings {sorted(extra)} cannot be tuned; tunable: {TUNABLE_TRAINING}")
    try:
        hparams = HPARAMS[arch].model_validate(best.get("hparams", {}))
        training = TrainingConfig.model_validate({**cfg.training.model_dump(), **best.get("training", {})})
        emb = int(best.get("band_embedding_dim", cfg.models.band_embedding_dim))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: invalid tuned settings: {exc}") from None
    if emb < 1:
        raise ConfigError(f"{path}: band_embedding_dim must be >= 1, got {emb}")
    return ModelSettings(arch, hparams, training, emb, str(path))


def _degc_scores(packed: PackedModel, ws, target_scaler) -> dict[str, float]:
    t = WindowTensors.from_windows(ws)
    pred = target_scaler.inverse(predict(packed.net, t))
    return scores(target_scaler.inverse(ws.targets()), pred)


def run(cfg: Config, arch: str, windows_dir: Path = Path("data/windows"), tuning_dir: Path = Path("data/tuning"),
        out_dir: Path = Path("data/models"), lock: Path = Path("dvc.lock")) -> Path:
    import lightning as L
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    settings = resolve_settings(cfg, arch, tuning_dir)
    log.info("%s: hyper-parameters from %s: %s", arch, settings.source, settings.hparams.model_dump())
    history = windows_dir / HISTORY_FILE
    train, val, test = (open_windows(history, s) for s in ("train", "validation", "test"))
    scalers = load_scalers(windows_dir / SCALER_FILE)
    if tuple(scalers["features"].names) + (("z",) if "signal" in scalers else ()) != train.feature_names:
        raise DataError(windows_dir / SCALER_FILE, "scaler features differ from the window file's feature order")
    tensors = {k: WindowTensors.from_windows(w) for k, w in (("train", train), ("validation", val))}
    n_bands = train.x.shape[0]

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    net = build_model(arch, train.n_features, n_bands, settings.hparams, settings.band_embedding_dim, len(TARGETS))
    targets = scalers["targets"]
    packed = PackedModel(net, targets.mean, targets.std, train.feature_names, train.length, TARGETS, arch)
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
        result = fit(net, tensors["train"], tensors["validation"], settings.training, cfg.seed,
                     on_epoch=lambda epoch, row: mlflow.log_metrics(row, step=epoch), label=arch)
        metrics = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                   "best_val_loss": result.best_val_loss, "train_seconds": result.seconds}
        for split, ws in (("val", val), ("test", test)):
            metrics.update({f"{split}_{k}": v for k, v in _degc_scores(packed, ws, targets).items()})
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


def read_registration(models_dir: Path, arch: str) -> Registration:
    """The registration record the train stage wrote for ``arch``."""
    path = Path(models_dir) / arch / REGISTRATION_FILE
    if not path.exists():
        raise DataError(path, f"no registration record for {arch!r} (run the train@{arch} stage)")
    return Registration.from_dict(json.loads(path.read_text()))
