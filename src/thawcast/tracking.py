"""MLflow plumbing shared by the stages: store, experiments, data version, model registry.

Tracking lives in ``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``
(the ``mlflow`` section of ``params.yaml``); both paths are relative to the folder a
command runs in and are resolved to absolute ones here, once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from thawcast.config import MlflowConfig
from thawcast.errors import ThawcastError

log = logging.getLogger(__name__)


class RegistryError(ThawcastError):
    """A registered model, version or alias that the pipeline needs does not exist."""


def _mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


def absolute_sqlite(url: str) -> str:
    """``sqlite:///relative/path.db`` made absolute (its folder created); other URLs unchanged."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/"):
        db = Path(url[len(prefix):]).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        url = prefix + str(db)
    return url


def tracking_uri(cfg: MlflowConfig) -> str:
    """The tracking URI, a relative SQLite path made absolute."""
    return absolute_sqlite(cfg.tracking_uri)


def use_store(cfg: MlflowConfig, experiment: str | None = None) -> str:
    """Point MLflow at the configured store and experiment (created if new); return its id."""
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_registry_uri(tracking_uri(cfg))
    name = experiment or cfg.experiment
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        artifacts = Path(cfg.artifacts).resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        exp_id = mlflow.create_experiment(name, artifact_location=artifacts.as_uri())
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def registered_name(cfg: MlflowConfig, architecture: str) -> str:
    return f"{cfg.model_prefix}{architecture}"


def data_version(paths: Iterable[str | Path], lock: Path = Path("dvc.lock")) -> dict[str, str]:
    """The md5 ``dvc.lock`` records for each path as an upstream stage's output.

    Under ``dvc repro`` the lock is updated stage by stage, so the entries of a stage's
    inputs are current when it runs. Paths not found get ``"unknown"``.
    """
    wanted = {str(Path(p)) for p in paths}
    found = dict.fromkeys(sorted(wanted), "unknown")
    if not lock.exists():
        return found
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    for stage in stages.values():
        for out in stage.get("outs", []) or []:
            path = str(Path(out.get("path", "")))
            if path in wanted:
                found[path] = str(out.get("md5") or out.get("hash") or "unknown")
    return found


@dataclass(frozen=True)
class Registration:
    """The hand-off a train stage writes: which registered model version it produced."""

    architecture: str
    registered_model: str
    version: str
    alias: str
    run_id: str
    model_uri: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Registration:
        try:
            return cls(**{k: str(d[k]) for k in cls.__dataclass_fields__})
        except KeyError as exc:
            raise RegistryError(f"registration record lacks {exc}") from None


def register(model_uri: str, name: str, alias: str, run_id: str, architecture: str,
             tags: Mapping[str, str] | None = None) -> Registration:
    """Register ``model_uri`` as a new version of ``name`` and point ``alias`` at it."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    mv = mlflow.register_model(model_uri, name, tags=dict(tags or {}))
    client.set_registered_model_alias(name, alias, mv.version)
    log.info("registered %s version %s (alias %s)", name, mv.version, alias)
    return Registration(architecture, name, str(mv.version), alias, run_id, model_uri)


def resolve_version(name: str, alias: str | None = None, version: str | int | None = None):
    """The :class:`mlflow.entities.model_registry.ModelVersion` for ``name@alias`` or ``name/version``.

    Raises
    ------
    RegistryError
        Naming the model, alias or version that is missing and what exists instead.
    """
    from mlflow.exceptions import MlflowException

    client = _mlflow().MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models())
        raise RegistryError(f"registered model {name!r} does not exist (registered: {known or 'none'});"
                            " run the train stage first") from None
    try:
        if version is not None:
            return client.get_model_version(name, str(version))
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        raise RegistryError(f"registered model {name!r} has no {what}") from None


def load_registered(name: str, alias: str | None = None, version: str | int | None = None):
    """Load a registered :class:`~thawcast.models.packed.PackedModel` (CPU, eval mode) and its version."""
    mv = resolve_version(name, alias, version)
    import mlflow.pytorch

    uri = f"models:/{name}/{mv.version}"
    model = mlflow.pytorch.load_model(uri, map_location="cpu")
    model.eval()
    return model, mv
