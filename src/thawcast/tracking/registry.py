"""MLflow plumbing shared by the stages: store, experiments, data version, model registry.

Tracking lives in ``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``
(the ``mlflow`` section of ``params.yaml``); both paths are relative to the folder a
command runs in and are resolved to absolute ones here, once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from thawcast.config import MlflowConfig
from thawcast.errors import ConfigError, DataError, ServiceError, ThawcastError, first_line
from thawcast.layout import (
    CONNECT_TIMEOUT_S,
    POSTGRES_DRIVER,
    absolute_sqlite,
    connect_args,
    redacted,
)
from thawcast.quality.provenance import read_output_json, staged_output

log = logging.getLogger(__name__)


class RegistryError(ThawcastError):
    """A registered model, version or alias that the pipeline needs does not exist."""


def _mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


def _mlflow_pytorch():
    """``mlflow.pytorch`` without its Lightning autologging. On import it tries ``pytorch_lightning``, a second copy
    of Lightning beside ``lightning`` (3.5 s more in a stage that trains, 6-7 s in one that only loads models),
    only to offer ``autolog()``, which thawcast does not use; a missing ``pytorch_lightning`` is a case it handles."""
    if "mlflow.pytorch" not in sys.modules and "pytorch_lightning" not in sys.modules:
        _mlflow()
        sys.modules["pytorch_lightning"] = None  # importing it now raises ImportError
        try:
            import mlflow.pytorch
        finally:
            del sys.modules["pytorch_lightning"]
    import mlflow.pytorch

    return mlflow.pytorch


def tracking_uri(cfg: MlflowConfig) -> str:
    """The tracking URI, a relative SQLite path made absolute."""
    return absolute_sqlite(cfg.tracking_uri)


def is_server(uri: str) -> bool:
    """Whether ``uri`` names a tracking server (team mode) rather than a local store."""
    return uri.startswith(("http://", "https://"))


def use_store(cfg: MlflowConfig, experiment: str | None = None, *, create: bool = True) -> str:
    """Point MLflow at the configured store and experiment (created if new); return its id.

    A local store keeps a new experiment's artifacts under ``mlflow.artifacts``; a tracking server (team mode)
    chooses their place itself (``--artifacts-destination``, proxied), so ``mlflow.artifacts`` is not used.
    ``create=False`` (stages that read models the train stage registered): a local store or an experiment
    that does not exist is an error naming what was looked for, not a new empty store.

    Raises
    ------
    RegistryError
        ``create=False`` and no such local store or experiment.
    DataError
        A local store that cannot be read (corrupt, or not an MLflow database).
    """
    mlflow = _mlflow()
    name = experiment or cfg.experiment
    local = _local_store(cfg.tracking_uri)
    if not create and local is not None and not local.exists():
        raise RegistryError(f"no MLflow store at {local} (mlflow.tracking_uri: {cfg.tracking_uri}); the train stage"
                            " creates it: run that first, or fix the URI")
    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = _reach(uri, lambda: mlflow.get_experiment_by_name(name))
    if exp is None and not create:
        known = sorted(e.name for e in mlflow.search_experiments())
        raise RegistryError(f"the MLflow store {redacted(uri)} has no experiment {name!r} (it has {known or 'none'});"
                            " the train stage creates it: run that first, or fix mlflow.experiment")
    if exp is None and is_server(uri):
        exp_id = mlflow.create_experiment(name)
    elif exp is None:
        artifacts = Path(cfg.artifacts).resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        exp_id = mlflow.create_experiment(name, artifact_location=artifacts.as_uri())
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    mark_killed_runs(exp_id)
    return exp_id


#: Run tag naming the ``host:pid`` of the process running it (:func:`start_run`).
OWNER_TAG = "thawcast.process"


def start_run(**kwargs):
    """``mlflow.start_run(**kwargs)``, tagged with this process (:data:`OWNER_TAG`) so that a run whose process
    was killed can be found and closed (:func:`mark_killed_runs`). Use as ``with start_run(...) as run:``."""
    from thawcast.parallel import process_id

    run = _mlflow().start_run(**kwargs)
    _mlflow().set_tag(OWNER_TAG, process_id())
    return run


def mark_killed_runs(experiment_id: str) -> list[str]:
    """Set KILLED the RUNNING runs of the experiment whose process (on this host) is gone; return their ids.

    A process killed with SIGKILL (or out of memory) cannot end its run, which would stay RUNNING forever;
    the next stage started on this machine closes it, as Optuna's heartbeat does for trials. Runs of other
    hosts, and runs without the tag, are left alone.
    """
    from thawcast.parallel import dead_here

    client = _mlflow().MlflowClient()
    killed = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        if dead_here(run.data.tags.get(OWNER_TAG)):
            client.set_tag(run.info.run_id, "thawcast.killed", "its process died before the run ended")
            client.set_terminated(run.info.run_id, "KILLED")
            killed.append(run.info.run_id)
            log.warning("MLflow run %s (%s) was left RUNNING by a process that died: marked KILLED",
                        run.info.run_id, run.info.run_name)
    return killed


def _local_store(uri: str) -> Path | None:
    """The file of a local SQLite store (relative paths from the working folder), or None for other stores."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]).resolve() if uri.startswith(prefix) else None


def _reach(uri: str, call):
    """``call()``, the first request to the store: a server that does not answer is one clear error, soon.

    MLflow retries a failing HTTP request for minutes by default; the first request here retries a few times
    over about ten seconds (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``/``..._TIMEOUT`` still win where set).
    """
    mlflow = _mlflow()
    if not is_server(uri) and _local_store(uri) is None:
        return _reach_database(uri, call)
    if not is_server(uri):
        import sqlalchemy.exc

        try:
            return call()
        except (sqlalchemy.exc.DatabaseError, mlflow.exceptions.MlflowException) as exc:
            cause = getattr(exc, "orig", None) or exc
            first = first_line(cause, type(exc).__name__)
            if isinstance(exc, sqlalchemy.exc.OperationalError):  # locked, unreadable folder, full disk
                advice = "check that the file and its folder can be read and written and no other program holds it"
            elif isinstance(exc, sqlalchemy.exc.DatabaseError):  # not a database at all
                advice = ("restore it, or move it aside (the next train stage makes a new one), or point"
                          " mlflow.tracking_uri elsewhere")
            elif "schema" in first.lower():
                advice = f"upgrade it with `mlflow db upgrade {uri}` (back it up first)"
            else:
                advice = "see the MLflow message; point mlflow.tracking_uri elsewhere to use another store"
            raise DataError(_local_store(uri) or uri, f"the MLflow store cannot be opened ({first}): {advice}"
                            ) from None
    patience = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved = {k: os.environ.get(k) for k in patience}
    os.environ.update({k: v for k, v in patience.items() if saved[k] is None})
    try:
        return call()
    except mlflow.exceptions.MlflowException as exc:
        first = first_line(exc, type(exc).__name__)
        raise ServiceError(f"mlflow.tracking_uri {uri}: the tracking server does not answer ({first[:300]}); start it "
                        "(README 'Team mode') or point mlflow.tracking_uri elsewhere") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def _reach_database(uri: str, call):
    """``call()`` on a database store (``postgresql://...``, MLflow without a tracking server): one connection
    first, with a connect timeout, because MLflow retries a database that does not answer for about two minutes
    and then names it with its password."""
    import sqlalchemy
    import sqlalchemy.exc

    where = f"mlflow.tracking_uri {redacted(uri)}"
    if uri.startswith("postgresql"):  # MLflow's own engine takes no connect_args; libpq reads this (a user's wins)
        os.environ.setdefault("PGCONNECT_TIMEOUT", str(CONNECT_TIMEOUT_S))
    try:
        sqlalchemy.create_engine(uri, connect_args=connect_args(uri)).connect().close()
        return call()
    except (ImportError, sqlalchemy.exc.NoSuchModuleError, sqlalchemy.exc.ArgumentError) as exc:
        raise ConfigError(f"{where}: not a database URL MLflow can use, or its driver is not installed"
                          f" ({first_line(exc, type(exc).__name__, 200)}); {POSTGRES_DRIVER}") from None
    except (sqlalchemy.exc.SQLAlchemyError, _mlflow().exceptions.MlflowException) as exc:
        cause = getattr(exc, "orig", None) or exc
        first = first_line(cause, type(exc).__name__)
        raise ServiceError(f"{where}: the database does not answer or refuses ({redacted(first)}); start it"
                           " (README 'Team mode') or point mlflow.tracking_uri elsewhere") from None


def store_write_failure(exc: BaseException) -> str | None:
    """One line for an MLflow store that refused a write half way through a stage (a read-only or locked SQLite
    file, a full disk: MLflow raises its own exception from the database's), or None for any other error."""
    import sqlalchemy.exc

    cause = exc.__cause__ or exc.__context__
    if not (isinstance(exc, _mlflow().exceptions.MlflowException)
            and isinstance(cause, sqlalchemy.exc.OperationalError)):
        return None
    first = first_line(cause.orig or cause, "OperationalError", 200)
    return (f"the MLflow store refused a write ({first}): check that the store named by mlflow.tracking_uri and"
            " its folder can be written, the disk has room and no other program holds it, then run the stage again")


def registered_name(cfg: MlflowConfig, architecture: str) -> str:
    return f"{cfg.model_prefix}{architecture}"


#: Model-version tag holding the digest of the registered weights (:meth:`PackedModel.weights_sha256`).
WEIGHTS_TAG = "thawcast.weights_sha256"


@dataclass(frozen=True)
class Registration:
    """The hand-off a train stage writes: which registered model it produced, named by its weights' digest.

    No version number or run id: those count up with every rebuild, while the digest is the
    same for the same model, so the DVC-tracked hand-off is reproducible. The MLflow version
    is found by its :data:`WEIGHTS_TAG` tag (:func:`resolve_registration`).
    """

    architecture: str
    registered_model: str
    weights_sha256: str
    alias: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Registration:
        try:
            return cls(**{k: str(d[k]) for k in cls.__dataclass_fields__})
        except KeyError as exc:
            raise RegistryError(f"registration record lacks {exc}") from None

    @property
    def label(self) -> str:
        """``thawcast-gru#1a2b3c4d5e6f``: model name and short weights digest, for logs and tables."""
        return f"{self.registered_model}#{self.weights_sha256[:12]}"


def register(model_uri: str, name: str, run_id: str, weights_sha256: str, tags: Mapping[str, str] | None = None):
    """Register ``model_uri`` as a new version of ``name`` tagged with its weights digest; return the version.

    The alias is not moved here (:func:`set_alias` does that once the stage's outputs are in place).
    """
    mlflow = _mlflow()
    mv = mlflow.register_model(model_uri, name, tags={**dict(tags or {}), WEIGHTS_TAG: weights_sha256,
                                                      "run_id": run_id})
    log.info("registered %s version %s (weights %s)", name, mv.version, weights_sha256[:12])
    return mv


def set_alias(name: str, alias: str, version: str | int) -> None:
    """Point ``name@alias`` at ``version``."""
    _mlflow().MlflowClient().set_registered_model_alias(name, alias, str(version))
    log.info("%s@%s -> version %s", name, alias, version)


def discard_run_versions(name: str, run_id: str, why: str) -> None:
    """Delete the versions of ``name`` that run ``run_id`` registered and mark the run FAILED: a stage that failed
    after registering leaves no model the DVC outputs do not name. Best effort: where the store refuses, the
    failure is logged and such a version stays unused (:func:`resolve_registration` follows the alias)."""
    client = _mlflow().MlflowClient()
    try:
        for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
            client.delete_model_version(name, mv.version)
            log.warning("deleted %s version %s: %s", name, mv.version, why)
        client.set_tag(run_id, "thawcast.failed", why)
        client.set_terminated(run_id, "FAILED")
    except (_mlflow().exceptions.MlflowException, OSError) as exc:  # the stage's own failure is the one to show
        log.warning("could not remove what run %s registered as %s (%s); unused, it can stay", run_id, name, exc)


def resolve_registration(reg: Registration):
    """The registered version of ``reg.registered_model`` whose weights digest is ``reg.weights_sha256``: the one
    ``reg.alias`` names where it holds those weights, else the newest (a version registered again with the same
    weights by a run killed before it moved the alias must not take the alias's place).

    Raises
    ------
    RegistryError
        No version of that model carries those weights (the store was rebuilt or is another one).
    """
    client = _mlflow().MlflowClient()
    found = client.search_model_versions(f"name = '{reg.registered_model}' and tags.`{WEIGHTS_TAG}` = "
                                         f"'{reg.weights_sha256}'")
    if not found:
        raise RegistryError(f"no version of {reg.registered_model!r} holds the weights {reg.weights_sha256[:12]}"
                            f" that the stage which trained it recorded; rerun that stage (dvc repro)")
    try:
        aliased = str(client.get_model_version_by_alias(reg.registered_model, reg.alias).version)
    except _mlflow().exceptions.MlflowException:  # no such alias (yet)
        aliased = None
    return (next((mv for mv in found if str(mv.version) == aliased), None)
            or max(found, key=lambda mv: int(mv.version)))


def load_registration(reg: Registration):
    """Load the model a train stage's hand-off names (CPU, eval mode) and its MLflow model version."""
    mv = resolve_registration(reg)
    return load_registered(reg.registered_model, version=mv.version)[0], mv


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
    uri = f"models:/{name}/{mv.version}"
    model = _mlflow_pytorch().load_model(uri, map_location="cpu")
    model.eval()
    return model, mv


def read_registration(path: Path, arch: str, stage: str = "train") -> Registration:
    """The registration record (``registration.json``) the ``stage@arch`` stage wrote."""
    record = read_output_json(path, f"{stage}@{arch}")
    try:
        return Registration.from_dict(record)
    except RegistryError as exc:
        raise DataError(path, f"{exc}: rerun the {stage}@{arch} stage (`dvc repro {stage}@{arch}`)") from None


def log_packed_model(packed, train, metadata: dict):
    """Log ``packed`` (a :class:`~thawcast.models.packed.PackedModel`) to the active MLflow run as ``model``:
    signature and input example from two windows of ``train`` (a ``WindowSet``), pinned requirements, and
    ``metadata`` beside the architecture, features, window and digest."""
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    from thawcast import __version__
    from thawcast.models.packed import PackedModel

    example = PackedModel.pack(train.inputs(slice(0, 2)), train.band[:2] if packed.unit_ids else np.zeros(2))
    with torch.no_grad():
        signature = infer_signature(example.numpy(), packed(example).numpy())
    return _mlflow_pytorch().log_model(
        packed, name="model", serialization_format="pickle", signature=signature, input_example=example.numpy(),
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
                          f"thawcast=={__version__}"],
        metadata={"architecture": packed.architecture, "feature_order": list(packed.feature_names),
                  "window_length_months": packed.window_length, "targets": list(packed.target_names), "units": "degC",
                  "weights_sha256": packed.weights_sha256(), **metadata})


def publish(reg: Registration, model_uri: str, run_id: str, tags: dict[str, str], out: Path,
            files: dict[str, str]) -> None:
    """Register the logged model, write the stage's output folder ``out`` (``registration.json`` and ``files``,
    ``{name: text}``), then move the alias to the new version. A failure on the way takes back every version the
    run registered and leaves no output folder."""
    try:  # the alias moves last, once the hand-off is in place
        mv = register(model_uri, reg.registered_model, run_id, reg.weights_sha256,
                      tags={"git_commit": tags["git_commit"], **{k: v for k, v in tags.items() if k.startswith("dvc.")}})
        with staged_output(out) as tmp:
            (tmp / "registration.json").write_text(json.dumps(reg.to_dict(), indent=2) + "\n")
            for name, text in files.items():
                (tmp / name).write_text(text)
        set_alias(reg.registered_model, reg.alias, mv.version)
    except BaseException as exc:
        discard_run_versions(reg.registered_model, run_id, f"the {tags['thawcast.stage']} stage failed before"
                             f" its outputs were in place ({type(exc).__name__}: {exc})"[:500])
        raise
