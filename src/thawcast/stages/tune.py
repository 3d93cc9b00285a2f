"""Stage ``tune``: an Optuna study per architecture (``thawcast tune [<arch>]``), tracked in MLflow.

Objective: validation RMSE in degC of the best epoch (early stopping within the trial).
The test years are never loaded. Pruning: Optuna's median pruner through the Lightning
pruning callback on the per-epoch validation loss.

MLflow (experiment ``tuning.experiment``): the study is a parent run (resumed when the
study resumes), each trial a nested run with its params, per-epoch losses, final value and
``optuna.state`` (COMPLETE / PRUNED / FAIL); trials killed in an earlier run are marked
KILLED. The parent run gets the study's plots and summary.

Workers: ``tuning.workers`` (or ``thawcast tune <arch> --workers N``) processes run trials of the study side by
side, exactly ``n_trials`` counted trials in total; more processes pointed at the same storage from other
machines join the same study. One worker (the default) draws the same trials on every rebuild.

Outputs (``data/tuning/<arch>/``): ``best_params.json`` (what ``train@<arch>`` reads),
``summary.json``, ``trials.csv`` and the plots (PNG).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from thawcast.config import Config
from thawcast.errors import ModelInputError
from thawcast.layout import Layout
from thawcast.learn.settings import ModelSettings, settings_from, write_best_params
from thawcast.learn.training import load_training_data
from thawcast.quality.provenance import git_commit, staged_output
from thawcast.tracking.dvclock import data_version
from thawcast.tracking.registry import start_run, use_store

log = logging.getLogger(__name__)


def trial_settings(cfg: Config, arch: str, params: dict) -> ModelSettings:
    """Settings of one trial: the drawn params over the defaults, with the tuning budget's epochs, on one device
    (the pruning callback reports from one process; parallel trials come from ``tuning.workers``)."""
    b = cfg.tuning.budget
    training = cfg.training.model_copy(update={"max_epochs": b.max_epochs, "patience": b.patience,
                                               "devices": 1, "strategy": "auto"})
    return settings_from(cfg, arch, params, "trial", training)


def run(cfg: Config, arch: str | None = None, paths: Layout | None = None) -> Path:
    """Tune ``arch``, or every architecture of ``training.architectures`` (the DVC stage): their studies run side
    by side in ``compute.workers`` processes (each study in one, so each draws the same trials as alone), or one
    after another when each study has several ``tuning.workers`` of its own or the storage is SQLite (one
    writer at a time)."""
    from thawcast.parallel import side_by_side

    paths = paths or Layout.at()
    if arch is not None:
        return tune_one(cfg, arch, paths)
    archs = cfg.training.architectures
    n = cfg.compute.worker_count(len(archs)) if cfg.tuning.workers == 1 and cfg.tuning.concurrent else 1
    log.info("tuning %s: %d stud%s at a time%s", ", ".join(archs), n, "y" if n == 1 else "ies",
             "" if cfg.tuning.concurrent else " (the SQLite storage takes one writer)")
    use_store(cfg.mlflow, cfg.tuning.experiment)  # a new store's schema, made once before the studies share it
    for i, out in side_by_side(_study, [(cfg, a, paths) for a in archs], n):
        log.info("study of %s done: %s", archs[i], out)
    return paths.tuning


def tune_one(cfg: Config, arch: str, paths: Layout) -> Path:
    """One architecture's study: trials until the budget, then ``data/tuning/<arch>/``."""
    import mlflow
    from optuna.trial import TrialState

    from thawcast.learn import tuning
    from thawcast.learn.training import TrainingError, check_devices

    cfg.training.require(arch)
    check_devices(trial_settings(cfg, arch, {}).training)  # before a trial or a run is recorded
    train_data = load_training_data(paths.history, paths.scaler)  # also the input check, before any study exists
    data = data_version([str(paths.windows)], paths.lock)[str(paths.windows)]
    fp = tuning.fingerprint(cfg, arch, data)
    study = tuning.open_study(cfg, arch, fp)
    budget = cfg.tuning.budget

    use_store(cfg.mlflow, cfg.tuning.experiment)
    client = mlflow.MlflowClient()
    parent_id = study.user_attrs.get("mlflow_parent_run_id")
    if parent_id is not None:
        try:
            client.get_run(parent_id)
        except mlflow.exceptions.MlflowException:
            parent_id = None
    tags = {"thawcast.stage": "tune", "thawcast.architecture": arch, "optuna.study": study.study_name,
            "optuna.storage": cfg.tuning.storage, "git_commit": git_commit(), f"dvc.md5.{paths.windows}": data}

    t0 = time.perf_counter()
    with start_run(run_id=parent_id, run_name=f"tune-{arch}", tags=tags) as parent:
        if parent_id is None:
            if "mlflow_parent_run_id" not in study.user_attrs:  # another machine's store may hold the first one
                study.set_user_attr("mlflow_parent_run_id", parent.info.run_id)
            mlflow.log_params({"n_trials": budget.n_trials, "timeout_s": budget.timeout_s,
                               "max_epochs": budget.max_epochs, "patience": budget.patience,
                               "fingerprint": fp, "sampler": "TPE", "pruner": "median"})
            mlflow.log_dict({k: v.model_dump() for k, v in cfg.tuning.space_for(arch).items()}, "search_space.json")
        tuning.fail_orphaned_trials(study, cfg.tuning.grace_s)
        resumed = tuning.counted(study)
        workers = cfg.tuning.workers
        if workers == 1:
            if any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
                study.sampler = tuning.sampler(cfg, shared=True)  # other machines' workers are on this study
            work(cfg, arch, study, train_data, parent.info.run_id)
        else:
            from thawcast.parallel import log_to_console, map_processes

            log.info("%s: %d worker processes on %s", study.study_name, workers, cfg.tuning.storage)
            job = (cfg, arch, paths, fp, parent.info.run_id)
            for i, ran in map_processes(_worker, [job] * workers, workers, initializer=log_to_console,
                                        setting="tuning.workers (--workers)"):
                log.info("%s: worker %d ran %d trial(s)", study.study_name, i, ran)
        _mark_killed(client, study)
        summ = tuning.summary(study)
        summ.update(architecture=arch, fingerprint=fp, n_trials_budget=budget.n_trials)
        # Clock times, resume counts and workers go to MLflow only: the DVC-tracked summary stays byte-identical
        # when the same study is rebuilt.
        timing = {"wall_s": tuning.wall_seconds(study), "session_s": time.perf_counter() - t0,
                  "resumed_trials": resumed, "workers": workers}
        if summ["best_value"] is None:
            raise TrainingError(f"{study.study_name}: no trial completed ({summ}); nothing to write")
        if summ["trials_complete"] + summ["trials_pruned"] < budget.n_trials:
            log.warning("%s: only %d of %d trials within timeout_s %.0f", study.study_name,
                        summ["trials_complete"] + summ["trials_pruned"], budget.n_trials, budget.timeout_s)
        best = settings_from(cfg, arch, study.best_params, study.study_name)
        with staged_output(paths.study(arch)) as tmp:
            write_best_params(tmp / paths.best_params(arch).name, best, value=summ["best_value"], trial=summ["best_trial"],
                              study=study.study_name, objective="validation RMSE (degC)")
            (tmp / paths.study_summary(arch).name).write_text(json.dumps(summ, indent=2, default=str) + "\n")
            tuning.trials_table(study).to_csv(tmp / "trials.csv", index=False)
            figures = tuning.plots(study, tmp / "figures", seed=cfg.seed)
            mlflow.log_metrics({"best_value": summ["best_value"], "trials_complete": summ["trials_complete"],
                                "trials_pruned": summ["trials_pruned"], "trials_failed": summ["trials_failed"],
                                **timing})
            mlflow.log_dict({**summ, **timing}, "summary.json")
            for path in figures.values():
                mlflow.log_artifact(str(path), "figures")
    log.info("%s: best validation RMSE %.4f degC (trial %d) from %d complete / %d pruned trials", arch,
             summ["best_value"], summ["best_trial"], summ["trials_complete"], summ["trials_pruned"])
    return paths.study(arch)


def work(cfg: Config, arch: str, study, train_data, parent_run_id: str) -> int:
    """One worker's share of the study: trials until the study has ``n_trials`` (see ``tuning.optimize``), each a
    nested MLflow run under ``parent_run_id``. Returns the trials this worker ran."""
    import mlflow
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

    from thawcast.learn import tuning
    from thawcast.learn.training import MONITOR, TrainingError, score_degc, train_model

    budget = cfg.tuning.budget
    ran = []

    def objective(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        params = tuning.suggest(trial, cfg, arch)
        settings = trial_settings(cfg, arch, params)
        run = start_run(run_name=f"trial-{trial.number}", nested=True, parent_run_id=parent_run_id,
                               tags={"optuna.trial": str(trial.number), "thawcast.architecture": arch})
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        mlflow.log_params(params)
        t0 = time.perf_counter()
        try:
            net, result = train_model(settings, train_data, cfg.seed,
                                      callbacks=[PyTorchLightningPruningCallback(trial, monitor=MONITOR)],
                                      on_epoch=lambda epoch, row: mlflow.log_metrics(row, step=epoch),
                                      label=f"{arch} trial {trial.number}")
            value = score_degc(net, train_data.validation, train_data.targets)["rmse"]
        except optuna.TrialPruned:
            mlflow.set_tag("optuna.state", "PRUNED")
            mlflow.log_metric("seconds", time.perf_counter() - t0)
            mlflow.end_run("FINISHED")
            log.info("%s trial %d pruned", arch, trial.number)
            raise
        except BaseException as exc:
            mlflow.set_tag("optuna.state", "FAIL")
            mlflow.set_tag("error", str(exc)[:500])
            mlflow.end_run("FAILED")
            raise
        mlflow.log_metrics({"value": value, "val_rmse": value, "best_epoch": result.best_epoch,
                            "seconds": time.perf_counter() - t0})
        mlflow.set_tag("optuna.state", "COMPLETE")
        mlflow.end_run("FINISHED")
        log.info("%s trial %d: validation RMSE %.4f degC %s", arch, trial.number, value, params)
        return value

    tuning.optimize(study, objective, budget.n_trials, budget.timeout_s, catch=(TrainingError, ModelInputError),
                    grace_s=cfg.tuning.grace_s)
    return len(ran)


def _study(job: tuple[Config, str, Layout]) -> Path:
    """A spawned process running one architecture's whole study (:func:`tune_one`)."""
    return tune_one(*job)


def _worker(job: tuple[Config, str, Layout, str, str]) -> int:
    """A spawned tuning worker: opens the same study and MLflow store, then :func:`work`."""
    from thawcast.learn import tuning

    cfg, arch, paths, fp, parent_run_id = job
    use_store(cfg.mlflow, cfg.tuning.experiment)
    study = tuning.open_study(cfg, arch, fp, shared=True)
    return work(cfg, arch, study, load_training_data(paths.history, paths.scaler), parent_run_id)


def _mark_killed(client, study) -> None:
    """Nested runs of trials that died with their process (failed by heartbeat or dead worker) are set KILLED in
    MLflow."""
    from mlflow.exceptions import MlflowException
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id is None:
            continue
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_tag(run_id, "optuna.state", "FAIL")
                client.set_terminated(run_id, "KILLED")
        except MlflowException:  # a missing run is nothing to repair
            log.debug("no MLflow run %s to mark killed", run_id)
