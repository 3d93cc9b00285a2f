"""Optuna studies: search spaces from params, resumable storage shared by workers, summaries, plots.

One study per architecture, named ``thawcast-<arch>-<fingerprint>``: the fingerprint hashes
everything that makes trials comparable (search space, epochs and patience per trial,
sampler and pruner settings, seed, the other training settings, the data version). A rerun
with the same fingerprint resumes the study (``load_if_exists``); changing any of those
starts a new one, so trials of an old search space are never mixed in. Raising
``n_trials`` or ``timeout_s`` keeps the fingerprint and adds trials.

Several worker processes may run one study (``tuning.workers``, or one process per machine on a shared
storage): :func:`optimize` runs exactly ``n_trials`` counted trials in total, whatever the number of
workers. Only COMPLETE and PRUNED trials count. A trial whose worker was killed (SIGKILL) is marked FAIL on
the next start instead of staying RUNNING forever: through Optuna's heartbeat on a database storage, through
its worker's process id on a journal file (:func:`fail_orphaned_trials`).

This module knows nothing about MLflow or DVC (the ``tune`` stage wires those in).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from thawcast.config import Config, SearchDim, TuningBudget, is_int_param
from thawcast.errors import ConfigError, DataError, ServiceError, first_line
from thawcast.layout import POSTGRES_DRIVER, Layout, absolute_sqlite, connect_args, redacted
from thawcast.learn.settings import TUNABLE_TRAINING, ModelSettings, settings_from
from thawcast.parallel import dead_here, process_id

log = logging.getLogger(__name__)

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
#: Trial user attribute naming the ``host:pid`` of the worker that runs it.
WORKER_ATTR = "worker"


@dataclass(frozen=True)
class Search:
    """What one study searches, and what else its trials depend on.

    ``label`` names the study (``thawcast-<label>-<fingerprint>``): the architecture for a band model,
    ``cells-<arch>`` for a cell model. ``defaults`` holds the ``params.yaml`` value of every name the space may
    hold; ``comparable`` the settings besides the space and the budget that make trials comparable (they enter the
    fingerprint)."""

    label: str
    arch: str
    space: dict[str, SearchDim]
    budget: TuningBudget
    defaults: dict[str, object]
    comparable: dict[str, object]


@dataclass(frozen=True)
class StudyKind:
    """What a kind of study tunes, with the same machinery (storage, resume, workers, pruning, MLflow) for each: the
    band models (``tracking.studies.BAND_STUDIES``, stage ``tune``) or the cell models
    (``stages.tune_cells.CELL_STUDIES``, stage ``tune-cells``). Module-level functions only, so that a spawned
    worker receives it by reference.

    ``space_key`` names the search space in ``params.yaml``; ``search`` gives an architecture's :class:`~thawcast.learn.tuning.Search`; ``defaults`` its ``params.yaml``
    settings, which a trial's drawn params override (with the budget's epochs); ``load`` what every trial trains
    and is scored on (read once per process); ``fit`` trains one trial and returns its validation RMSE (degC) and
    fit; ``data`` the stage folder whose DVC hash enters the fingerprint; a study
    with ``folder`` writes ``data/tuning/<arch>/`` (the band studies) besides returning its record.
    """

    units: str
    stage: str
    objective: str
    space_key: str
    search: Callable[[Config, str], Search]
    defaults: Callable[[Config, str], ModelSettings]
    load: Callable[[Config, Layout], object]
    fit: Callable[..., tuple[float, object]]
    data: Callable[[Layout], Path]
    folder: bool
    unit_embedding: bool

    def trial_settings(self, cfg: Config, arch: str, params: dict) -> ModelSettings:
        """Settings of one trial: the drawn ``params`` over the defaults, with the budget's epochs, on one device (the
        pruning callback reports from one process; parallel trials come from ``tuning.workers``)."""
        base, b = self.defaults(cfg, arch), self.search(cfg, arch).budget
        training = base.training.model_copy(update={"max_epochs": b.max_epochs, "patience": b.patience,
                                                    "devices": 1, "strategy": "auto"})
        settings = settings_from(cfg, arch, params, "trial", training)
        return settings if self.unit_embedding else replace(settings, band_embedding_dim=0)


def band_search(cfg: Config, arch: str) -> Search:
    """The study of a band model: ``tuning.space`` and ``tuning.budget`` over ``models`` and ``training``."""
    hp = cfg.models.hparams(arch).model_dump()
    defaults = {**hp, **{k: getattr(cfg.training, k) for k in TUNABLE_TRAINING},
                "band_embedding_dim": cfg.models.band_embedding_dim}
    comparable = {"models": hp, "band_embedding_dim": cfg.models.band_embedding_dim,
                  "training": cfg.training.model_dump(mode="json", exclude=_PER_TRIAL)}
    return Search(arch, arch, cfg.tuning.space_for(arch), cfg.tuning.budget, defaults, comparable)


def cell_search(cfg: Config, arch: str) -> Search:
    """The study of a cell model: ``tuning.cells`` over ``models`` and the ``cells`` training settings; the
    features and the splits decide which windows its trials see (the cells and their hold-out come with the
    data)."""
    hp = cfg.models.hparams(arch).model_dump()
    training = cfg.cells.training(cfg.training)
    comparable = {"models": hp, "training": training.model_dump(mode="json", exclude=_PER_TRIAL),
                  # the cells and their hold-out are in the data version (the cells stage's DVC hash)
                  "cells": cfg.cells.model_dump(mode="json", include={"windows_per_epoch", "validation_windows"}),
                  "features": list(cfg.feature_names), "windows": cfg.windows.model_dump(mode="json")}
    return Search(f"cells-{arch}", arch, cfg.tuning.cells.space_for(arch), cfg.tuning.cells.budget,
                  {**hp, **{k: getattr(training, k) for k in TUNABLE_TRAINING}}, comparable)


#: Training settings a trial sets itself (from the budget, on one device): not part of what trials compare.
_PER_TRIAL = {"architectures", "max_epochs", "patience", "devices", "strategy"}


def suggest(trial: optuna.Trial, search: Search) -> dict[str, object]:
    """Draw one value per dimension of the search space."""
    return {name: _suggest_one(trial, name, dim, is_int_param(search.arch, name))
            for name, dim in search.space.items()}


def _suggest_one(trial: optuna.Trial, name: str, dim: SearchDim, is_int: bool):
    if dim.choices is not None:
        return trial.suggest_categorical(name, list(dim.choices))
    if is_int:
        return trial.suggest_int(name, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
    return trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)


def default_point(search: Search) -> dict[str, object] | None:
    """The ``params.yaml`` defaults as a point of the search space (None if a default lies outside it).

    Enqueued as a study's first trial, so the tuned settings are never worse on validation
    than the defaults.
    """
    point = {}
    for name, dim in search.space.items():
        v = search.defaults[name]
        inside = v in dim.choices if dim.choices is not None else dim.low <= v <= dim.high
        if not inside:
            log.info("%s: default %s=%s lies outside the search space; not enqueued", search.label, name, v)
            return None
        point[name] = v
    return point


def fingerprint(cfg: Config, search: Search, data_version: str) -> str:
    """Eight hex digits identifying what makes trials of ``search`` comparable."""
    t = cfg.tuning
    spec = {
        "space": {k: v.model_dump() for k, v in search.space.items()},
        "max_epochs": search.budget.max_epochs, "patience": search.budget.patience,
        "sampler_startup_trials": t.sampler_startup_trials, "pruner_startup_trials": t.pruner_startup_trials,
        "pruner_warmup_epochs": t.pruner_warmup_epochs, "seed": cfg.seed, **search.comparable,
        "data": data_version,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]


def study_name(label: str, fp: str) -> str:
    return f"thawcast-{label}-{fp}"


def storage(cfg: Config, attempts: int = 5) -> optuna.storages.BaseStorage:
    """The study storage: a journal file (its folder created), or a database with a heartbeat.

    A journal file (``tuning.storage`` is a path) takes several worker processes on one machine or a shared file
    system. A database URL gets Optuna's heartbeat; a relative SQLite path is made absolute. Tuning workers started
    together on a new database race to create its schema; the loser of that race gets an IntegrityError (or a
    locked database) from Optuna's migration and simply retries on the schema the winner made.
    """
    if cfg.tuning.journal:
        path = Path(cfg.tuning.storage).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        _check_journal(path)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    url = absolute_sqlite(cfg.tuning.storage)

    def connect() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            # heartbeats are "experimental" in Optuna 5; they are what recovers killed trials
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=cfg.tuning.heartbeat_s,
                                              grace_period=cfg.tuning.grace_s,
                                              engine_kwargs={"connect_args": connect_args(url)})

    for attempt in range(1, attempts + 1):
        try:
            return connect()
        except ImportError:  # Optuna's wording for a missing database driver
            raise ConfigError(f"tuning.storage {redacted(cfg.tuning.storage)}: its database driver is not installed"
                              f" ({POSTGRES_DRIVER})") from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as err:
            if attempt == attempts:
                cause = err.orig if getattr(err, "orig", None) is not None else err
                raise ServiceError(f"tuning.storage {redacted(url)}: the database does not answer or refuses"
                                   f" ({first_line(cause, type(err).__name__)})") from None
            log.info("optuna storage busy (%s); retrying", type(err).__name__)
            time.sleep(0.2 * attempt)
        except sqlalchemy.exc.DatabaseError as err:  # OperationalError and IntegrityError are caught above
            first = first_line(err.orig or err, type(err).__name__)
            if url.startswith("sqlite:///"):  # a local file that is no database
                raise DataError(url.removeprefix("sqlite:///"), f"{CORRUPT} ({first})") from None
            raise ServiceError(f"tuning.storage {redacted(url)}: the database refuses ({first})") from None
    raise AssertionError("unreachable")


def _check_journal(path: Path, waits: int = 5) -> None:
    """An existing journal file must hold Optuna's JSON operations, one per line, and end with a complete one.

    Optuna appends its next operation to the end of the file, so a last line cut short (a writer killed in the
    middle of it) would glue the two into a line no one can read. Another worker may be writing that line at
    this moment: it is read again a few times over about a second before it counts as cut short.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    for attempt in range(waits):
        *complete, last = path.read_bytes().split(b"\n")
        if not last:
            break
        time.sleep(0.05 * 2 ** attempt)
    else:
        raise DataError(path, f"{CORRUPT} (its last line is cut short: {last[:60]!r})")
    for line in complete:
        try:
            ok = isinstance(op := json.loads(line), dict) and "op_code" in op
        except (UnicodeDecodeError, json.JSONDecodeError):
            ok = False
        if not ok:
            raise DataError(path, f"{CORRUPT} (a line is not an Optuna journal operation: {line[:60]!r})")


#: What a study storage that cannot be read is, and what to do about it.
CORRUPT = ("not a readable Optuna storage (corrupt or another file?): move it aside (tuning then starts the studies"
           " afresh) or restore it from a backup")


def sampler(cfg: Config, shared: bool = False) -> optuna.samplers.TPESampler:
    """The TPE sampler, seeded with ``seed``; ``shared``: one of several processes on the study, seeded with
    ``seed`` and this process (workers seeded alike would draw the same trials, e.g. the same random start-up
    points)."""
    seed = cfg.seed
    if shared:
        seed = int.from_bytes(hashlib.sha256(f"{cfg.seed}:{worker_id()}".encode()).digest()[:4], "little")
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.tuning.sampler_startup_trials)


def open_study(cfg: Config, search: Search, fp: str, store: optuna.storages.BaseStorage | None = None,
               shared: bool = False) -> optuna.Study:
    """Create or resume the study of ``search`` (seeded TPE, median pruner), enqueuing the defaults if new.
    ``shared``: this process is one of several workers on the study (:func:`sampler`)."""
    t = cfg.tuning
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(  # a journal was checked line by line when its storage was opened
        study_name=study_name(search.label, fp), storage=store or storage(cfg), direction="minimize", load_if_exists=True,
        sampler=sampler(cfg, shared),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=t.pruner_startup_trials,
                                           n_warmup_steps=t.pruner_warmup_epochs))
    if not study.trials:
        study.set_user_attr("architecture", search.arch)
        study.set_user_attr("fingerprint", fp)
        point = default_point(search)
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


def worker_id() -> str:
    """``host:pid`` of this process: the trial attribute by which a dead worker's trials are found."""
    return process_id()


def fail_orphaned_trials(study: optuna.Study, grace_s: float, idle: bool = False) -> list[int]:
    """Fail RUNNING trials whose worker is dead; returns their numbers.

    - Database storage: Optuna's heartbeat fails trials whose beat stopped (``fail_stale_trials``). Optuna starts
      a trial's heartbeat only after ``study.ask()`` has created it and sampled its parameters, so a worker killed
      in between leaves a trial without any beat: one older than ``grace_s`` is failed too.
    - Journal file (no heartbeat): each trial names its worker's ``host:pid`` (:func:`worker_id`); a trial of a
      process that no longer runs on this host is failed, one without a worker older than ``grace_s`` too.
      Trials of workers on other hosts are left to those hosts. ``idle=True`` says this process runs no trial
      now, so a RUNNING trial naming it belongs to an earlier process that had the same pid (a restarted
      container repeats pids) and is failed too.
    """
    backend = getattr(study._storage, "_backend", study._storage)
    now = datetime.now()  # Optuna stamps datetime_start with naive local time
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []

    def old(t: optuna.trial.FrozenTrial) -> bool:
        return t.datetime_start is not None and (now - t.datetime_start).total_seconds() > grace_s

    if isinstance(backend, optuna.storages.RDBStorage):
        # Optuna keeps heartbeats only in its (internal) RDB tables.
        from optuna.storages._rdb import models

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        now_failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        failed = [t.number for t in running if t.number in now_failed]  # not those that finished meanwhile
        still = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        running = [t for t in running if t.number in still]
        session = backend.scoped_session()
        try:
            beating = {h.trial_id for h in session.query(models.TrialHeartbeatModel)
                       .filter(models.TrialHeartbeatModel.trial_id.in_([t._trial_id for t in running]))}
        finally:
            backend.scoped_session.remove()
        dead = [t for t in running if t._trial_id not in beating and old(t)]
    else:
        me = worker_id()
        dead = []
        for t in running:
            worker = t.user_attrs.get(WORKER_ATTR)
            if (worker is None and old(t)) or dead_here(worker) or (idle and worker == me):
                dead.append(t)
        failed = []
    for t in dead:
        if study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
            failed.append(t.number)
    if failed:
        log.warning("%s: trials %s belonged to dead workers; marked FAIL", study.study_name, sorted(failed))
    return failed


class SurplusTrial(Exception):
    """A worker asked for a trial when the study's last slot had just gone to another worker."""


def optimize(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int, timeout_s: float,
             catch: tuple[type[Exception], ...] = (), grace_s: float = 30.0, poll_s: float = 1.0) -> int:
    """Run trials until exactly ``n_trials`` count (complete + pruned) in the study, the timeout, or too many
    failures; any number of workers may run this on one study at once.

    Trials of dead workers are failed first (:func:`fail_orphaned_trials`) and do not count. A worker starts a
    trial only while counted plus running trials are fewer than ``n_trials``, so the total does not overshoot;
    two workers that ask for the last slot in the same instant both get a trial, and the one numbered later
    fails at once (user attribute ``surplus``). A worker with no free slot waits for the running trials, so
    that every worker returns with the whole study done. Returns the counted trials before this call.
    """
    if n_trials < 1:
        raise ConfigError(f"a budget of {n_trials} trials tunes nothing")
    fail_orphaned_trials(study, grace_s, idle=True)
    done = counted(study)
    if done >= n_trials:
        log.info("%s: %d of %d trials already done; nothing to run", study.study_name, done, n_trials)
        return done
    log.info("%s: %d of %d trials done; running the rest (timeout %.0f s)", study.study_name, done, n_trials,
             timeout_s)
    me = worker_id()

    def slotted(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, me)
        taken = study.get_trials(deepcopy=False, states=(*COUNTED, TrialState.RUNNING))
        if sum(t.number < trial.number for t in taken) >= n_trials:
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number}: all {n_trials} trials are taken")
        return objective(trial)

    failures: list[int] = []

    def failed(_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.FAIL and not trial.user_attrs.get("surplus"):
            failures.append(trial.number)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fail_orphaned_trials(study, grace_s, idle=True)  # between trials: nothing of this process runs
        state = counts(study)
        if state["complete"] + state["pruned"] >= n_trials:
            break
        if len(failures) >= n_trials:
            log.error("%d trials failed in this run; stopping the study", len(failures))
            break
        if state["complete"] + state["pruned"] + state["running"] >= n_trials:
            time.sleep(poll_s)  # the last slots are running elsewhere; one may still fail and free a slot
            continue
        study.optimize(slotted, n_trials=1, callbacks=[failed], catch=(*catch, SurplusTrial),
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
            or c.startswith(("user_attrs_mlflow", f"user_attrs_{WORKER_ATTR}", "system_attrs"))]
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
