"""Optuna studies: search spaces from params, resumable storage with heartbeats, summaries, plots.

One study per architecture, named ``thawcast-<arch>-<fingerprint>``: the fingerprint hashes
everything that makes trials comparable (search space, epochs and patience per trial,
sampler and pruner settings, seed, the other training settings, the data version). A rerun
with the same fingerprint resumes the study (``load_if_exists``); changing any of those
starts a new one, so trials of an old search space are never mixed in. Raising
``n_trials`` or ``timeout_s`` keeps the fingerprint and adds trials.

The storage has a heartbeat: a trial whose process was killed (SIGKILL) stops beating,
and the next run marks it FAIL after ``grace_s`` instead of leaving it RUNNING forever.
Only COMPLETE and PRUNED trials count towards ``n_trials``.

This module knows nothing about MLflow or DVC (the ``tune`` stage wires those in).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from thawcast.config import Config, SearchDim
from thawcast.errors import ConfigError
from thawcast.layout import absolute_sqlite

log = logging.getLogger(__name__)

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


def suggest(trial: optuna.Trial, cfg: Config, arch: str) -> dict[str, object]:
    """Draw one value per dimension of ``arch``'s search space."""
    out = {}
    for name, dim in cfg.tuning.space_for(arch).items():
        out[name] = _suggest_one(trial, name, dim, cfg.tuning.is_int(arch, name))
    return out


def _suggest_one(trial: optuna.Trial, name: str, dim: SearchDim, is_int: bool):
    if dim.choices is not None:
        return trial.suggest_categorical(name, list(dim.choices))
    if is_int:
        return trial.suggest_int(name, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
    return trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)


def default_point(cfg: Config, arch: str) -> dict[str, object] | None:
    """The ``params.yaml`` defaults as a point of the search space (None if a default lies outside it).

    Enqueued as a study's first trial, so the tuned settings are never worse on validation
    than the defaults.
    """
    from thawcast.learn.settings import TUNABLE_TRAINING

    hp = cfg.models.hparams(arch).model_dump()
    values = {**hp, **{k: getattr(cfg.training, k) for k in TUNABLE_TRAINING},
              "band_embedding_dim": cfg.models.band_embedding_dim}
    point = {}
    for name, dim in cfg.tuning.space_for(arch).items():
        v = values[name]
        inside = v in dim.choices if dim.choices is not None else dim.low <= v <= dim.high
        if not inside:
            log.info("%s: default %s=%s lies outside the search space; not enqueued", arch, name, v)
            return None
        point[name] = v
    return point


def fingerprint(cfg: Config, arch: str, data_version: str) -> str:
    """Eight hex digits identifying what makes trials of ``arch`` comparable."""
    t = cfg.tuning
    spec = {
        "space": {k: v.model_dump() for k, v in t.space_for(arch).items()},
        "max_epochs": t.budget.max_epochs, "patience": t.budget.patience,
        "sampler_startup_trials": t.sampler_startup_trials, "pruner_startup_trials": t.pruner_startup_trials,
        "pruner_warmup_epochs": t.pruner_warmup_epochs, "seed": cfg.seed,
        "models": cfg.models.hparams(arch).model_dump(), "band_embedding_dim": cfg.models.band_embedding_dim,
        "training": cfg.training.model_dump(mode="json", exclude={"architectures", "max_epochs", "patience"}),
        "data": data_version,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]


def study_name(arch: str, fp: str) -> str:
    return f"thawcast-{arch}-{fp}"


def storage(cfg: Config, attempts: int = 5) -> optuna.storages.RDBStorage:
    """The RDB storage with a heartbeat (a relative SQLite path is made absolute, its folder created).

    Tuning workers started together on a new database race to create its schema; the loser of that race gets an
    IntegrityError (or a locked database) from Optuna's migration and simply retries on the schema the winner made.
    """
    url = absolute_sqlite(cfg.tuning.storage)

    def connect() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            # heartbeats are "experimental" in Optuna 5; they are what recovers killed trials
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=cfg.tuning.heartbeat_s,
                                              grace_period=cfg.tuning.grace_s)

    for attempt in range(1, attempts):
        try:
            return connect()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as err:
            log.info("optuna storage busy (%s); retrying", type(err).__name__)
            time.sleep(0.2 * attempt)
    return connect()  # the last attempt raises what it gets


def open_study(cfg: Config, arch: str, fp: str, store: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create or resume the study of ``arch`` (seeded TPE, median pruner), enqueuing the defaults if new."""
    t = cfg.tuning
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name(arch, fp), storage=store or storage(cfg), direction="minimize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=t.sampler_startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=t.pruner_startup_trials,
                                           n_warmup_steps=t.pruner_warmup_epochs))
    if not study.trials:
        study.set_user_attr("architecture", arch)
        study.set_user_attr("fingerprint", fp)
        point = default_point(cfg, arch)
        if point is not None:
            study.enqueue_trial(point, user_attrs={"source": "params.yaml defaults"})
    return study


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state (lower-case names), stale RUNNING ones included as they are."""
    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def counted(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED))


class Budget:
    """Optuna callback: stop once ``n_trials`` count, or after as many failures in this session."""

    def __init__(self, n_trials: int) -> None:
        self.n_trials, self.failed = n_trials, 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.failed += trial.state == TrialState.FAIL
        if counted(study) >= self.n_trials:
            study.stop()
        elif self.failed >= self.n_trials:
            log.error("%d trials failed in this run; stopping the study", self.failed)
            study.stop()


def fail_orphaned_trials(study: optuna.Study, grace_s: float) -> list[int]:
    """Fail RUNNING trials that never sent a heartbeat and started more than ``grace_s`` ago.

    Optuna starts a trial's heartbeat only after ``study.ask()`` has created it and sampled its
    parameters, and ``fail_stale_trials`` looks only at trials with a heartbeat; a worker killed
    in between leaves a trial RUNNING for ever. A live worker's trial has a heartbeat within
    milliseconds, so one without any after ``grace_s`` is dead. Returns the failed trial numbers.
    """
    # Optuna keeps heartbeats only in its (internal) RDB tables.
    from optuna.storages._rdb import models

    backend = getattr(study._storage, "_backend", study._storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return []
    now = datetime.now()  # Optuna stamps datetime_start with naive local time
    running = {t._trial_id: t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if t.datetime_start is not None and (now - t.datetime_start).total_seconds() > grace_s}
    if not running:
        return []
    session = backend.scoped_session()
    try:
        beating = {h.trial_id for h in session.query(models.TrialHeartbeatModel)
                   .filter(models.TrialHeartbeatModel.trial_id.in_(list(running)))}
    finally:
        backend.scoped_session.remove()
    failed = []
    for trial_id, trial in running.items():
        if trial_id not in beating and study._storage.set_trial_state_values(trial_id, TrialState.FAIL):
            failed.append(trial.number)
    if failed:
        log.warning("%s: trials %s died before their first heartbeat; marked FAIL", study.study_name, failed)
    return failed


def optimize(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int, timeout_s: float,
             catch: tuple[type[Exception], ...] = (), grace_s: float = 30.0) -> int:
    """Run trials until ``n_trials`` count (complete + pruned), the timeout, or too many failures.

    Trials of killed workers are failed first: by Optuna's heartbeat, or by :func:`fail_orphaned_trials`
    when the worker died before the trial's first heartbeat. Returns the number of counted trials
    before this call (those resumed, not rerun).
    """
    if n_trials < 1:
        raise ConfigError(f"a budget of {n_trials} trials tunes nothing")
    fail_orphaned_trials(study, grace_s)
    done = counted(study)
    if done >= n_trials:
        log.info("%s: %d of %d trials already done; nothing to run", study.study_name, done, n_trials)
        return done
    log.info("%s: %d of %d trials done; running the rest (timeout %.0f s)", study.study_name, done, n_trials,
             timeout_s)
    study.optimize(objective, timeout=timeout_s, callbacks=[Budget(n_trials)], catch=catch,
                   gc_after_trial=False, show_progress_bar=False)
    return done


def summary(study: optuna.Study) -> dict:
    """Best value and params, the defaults' value and trials per state (nothing that depends on the clock)."""
    c = counts(study)
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial if c["complete"] else None
    default = [t.value for t in trials if t.state == TrialState.COMPLETE and "source" in t.user_attrs]
    return {"study": study.study_name, "best_value": best.value if best else None,
            "default_value": default[0] if default else None,
            "best_trial": best.number if best else None, "best_params": best.params if best else {},
            "trials_complete": c["complete"], "trials_pruned": c["pruned"], "trials_failed": c["fail"],
            "trials_running": c["running"]}


def wall_seconds(study: optuna.Study) -> float:
    """Sum of the finished trials' durations (s)."""
    return sum((t.datetime_complete - t.datetime_start).total_seconds() for t in study.get_trials(deepcopy=False)
               if t.datetime_complete is not None and t.datetime_start is not None)


def trials_table(study: optuna.Study):
    """One row per trial: number, state, value, params (no clock times or run ids, so a rebuilt study's
    table is byte-identical)."""
    df = study.trials_dataframe()
    drop = [c for c in df.columns if c in ("datetime_start", "datetime_complete", "duration")
            or c.startswith(("user_attrs_mlflow", "system_attrs"))]
    return df.drop(columns=drop)


def plots(study: optuna.Study, out: Path, seed: int = 0) -> dict[str, Path]:
    """Optimisation history, parameter importances and parallel coordinates as PNG.

    Importances come from fANOVA's random forest, seeded with ``seed`` so the same study
    draws the same figure. A plot that needs more than the study has (importances need two
    complete trials with varying values) is skipped with a log line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, fn in (("optimization_history", ovm.plot_optimization_history),
                     ("param_importances", lambda s: ovm.plot_param_importances(
                         s, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))),
                     ("parallel_coordinate", ovm.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
                # a parameter every trial drew the same value for gets a flat axis: harmless
                warnings.filterwarnings("ignore", message=".*identical low and high ylims.*")
                ax = fn(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(9, 5.5)
            fig.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            made[name] = out / f"{name}.png"
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            log.info("%s: no %s plot (%s)", study.study_name, name, exc)
            plt.close("all")
    return made
