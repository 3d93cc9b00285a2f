"""Optuna studies tracked in MLflow: the band models' (stage ``tune``) and the cell models' (stage ``tune-cells``).

Objective: validation RMSE in degC of the best epoch (early stopping within the trial), on the band windows'
validation years or on the seen cells' validation sample (:class:`StudyKind`). The test years (and the held-out
cells) never reach a trial's fit or score. Pruning: Optuna's median pruner through the Lightning pruning callback on the per-epoch validation loss.

MLflow (experiment ``tuning.experiment``): the study is a parent run (resumed when the study resumes), each trial a
nested run with its params, per-epoch losses, final value and ``optuna.state`` (COMPLETE / PRUNED / FAIL); trials
killed in an earlier run are marked KILLED. The parent run gets the study's plots and summary.

Workers: ``tuning.workers`` processes run trials of one study side by side, exactly ``n_trials`` counted trials in
total; more processes pointed at the same storage from other machines join the same study. One worker (the
default) draws the same trials on every rebuild. The storage-level logic (slots, orphaned trials, fingerprints) is
:mod:`thawcast.learn.tuning`'s.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

from thawcast.config import Config
from thawcast.errors import ConfigError, ModelInputError
from thawcast.layout import Layout, redacted
from thawcast.learn import tuning
from thawcast.learn.settings import ModelSettings, best_params_record, default_settings
from thawcast.learn.training import (
    FitResult,
    TrainingData,
    load_training_data,
    score_degc,
    train_model,
)
from thawcast.learn.tuning import StudyKind
from thawcast.quality.provenance import git_commit, staged_output
from thawcast.tracking.dvclock import data_version
from thawcast.tracking.registry import start_run, use_store

log = logging.getLogger(__name__)


def _band_fit(cfg: Config, settings: ModelSettings, data: TrainingData, callbacks: list, on_epoch,
              label: str) -> tuple[float, FitResult]:
    net, result = train_model(settings, data, cfg.seed, callbacks=callbacks, on_epoch=on_epoch, label=label)
    return score_degc(net, data.validation, data.targets)["rmse"], result


def _band_data(cfg: Config, paths: Layout) -> TrainingData:
    return load_training_data(paths.history, paths.scaler)


def _windows(paths: Layout) -> Path:
    return paths.windows


#: The band models' studies: validation RMSE (degC) on the band windows' validation years.
BAND_STUDIES = StudyKind("bands", "tune", "validation RMSE (degC)", "tuning.space", tuning.band_search,
                         default_settings, _band_data, _band_fit, _windows, folder=True, unit_embedding=True)


def tune_all(cfg: Config, archs: tuple[str, ...], paths: Layout, kind: StudyKind = BAND_STUDIES) -> list[dict]:
    """The studies of ``archs`` (of ``kind``), ``compute.workers`` at a time; their records in the order of
    ``archs``."""
    from thawcast.parallel import side_by_side

    n = cfg.compute.worker_count(len(archs)) if cfg.tuning.workers == 1 and cfg.tuning.concurrent else 1
    log.info("tuning the %s models of %s: %d stud%s at a time%s", kind.units[:-1], ", ".join(archs), n,
             "y" if n == 1 else "ies", "" if cfg.tuning.concurrent else " (the SQLite storage takes one writer)")
    use_store(cfg.mlflow, cfg.tuning.experiment)  # a new store's schema, made once before the studies share it
    records: dict[int, dict] = {}
    for i, record in side_by_side(_study, [(cfg, a, paths, kind) for a in archs], n):
        log.info("study of %s done: %s", archs[i], record["study"])
        records[i] = record
    return [records[i] for i in range(len(archs))]


def tune_one(cfg: Config, arch: str, paths: Layout, kind: StudyKind = BAND_STUDIES) -> dict:
    """One architecture's study (of ``kind``: its band model or its cell model): trials until the budget. A band
    study writes ``data/tuning/<arch>/``; both return the study's record (its summary with the best settings as
    ``best_params`` and, under ``settings``, in the best-params format)."""
    import mlflow
    from optuna.trial import TrialState

    from thawcast.learn.training import TrainingError, check_devices

    what = kind.search(cfg, arch)
    if not what.space:
        raise ConfigError(f"{kind.space_key} has no dimension for {arch} (nor under common): every trial would be the"
                          f" params.yaml settings; give {kind.space_key}.{arch} or .common at least one")
    check_devices(kind.trial_settings(cfg, arch, {}).training)  # before a trial or a run is recorded
    data_path = kind.data(paths)
    train_data = kind.load(cfg, paths)  # also the input check, before any study exists
    data = data_version([str(data_path)], paths.lock)[str(data_path)]
    fp = tuning.fingerprint(cfg, what, data)
    study = tuning.open_study(cfg, what, fp)
    budget = what.budget

    use_store(cfg.mlflow, cfg.tuning.experiment)
    client = mlflow.MlflowClient()
    parent_id = study.user_attrs.get("mlflow_parent_run_id")
    if parent_id is not None:
        try:
            client.get_run(parent_id)
        except mlflow.exceptions.MlflowException:
            parent_id = None
    tags = {"thawcast.stage": kind.stage, "thawcast.architecture": arch, "thawcast.units": kind.units,
            "optuna.study": study.study_name, "optuna.storage": redacted(cfg.tuning.storage),
            "git_commit": git_commit(), f"dvc.md5.{data_path}": data}

    t0 = time.perf_counter()
    with start_run(run_id=parent_id, run_name=f"tune-{what.label}", tags=tags) as parent:
        if parent_id is None:
            if "mlflow_parent_run_id" not in study.user_attrs:  # another machine's store may hold the first one
                study.set_user_attr("mlflow_parent_run_id", parent.info.run_id)
            mlflow.log_params({"n_trials": budget.n_trials, "timeout_s": budget.timeout_s,
                               "max_epochs": budget.max_epochs, "patience": budget.patience,
                               "fingerprint": fp, "sampler": "TPE", "pruner": "median"})
            mlflow.log_dict({k: v.model_dump() for k, v in what.space.items()}, "search_space.json")
        tuning.fail_orphaned_trials(study, cfg.tuning.grace_s)
        resumed = tuning.counted(study)
        workers = cfg.tuning.workers
        if workers == 1:
            if any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
                study.sampler = tuning.sampler(cfg, shared=True)  # other machines' workers are on this study
            work(cfg, arch, study, train_data, parent.info.run_id, kind)
        else:
            from thawcast.parallel import log_to_console, map_processes

            log.info("%s: %d worker processes on %s", study.study_name, workers, redacted(cfg.tuning.storage))
            job = (cfg, arch, paths, fp, parent.info.run_id, kind)
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
        record = best_params_record(kind.trial_settings(cfg, arch, study.best_params), value=summ["best_value"],
                                    trial=summ["best_trial"], study=study.study_name, objective=kind.objective)
        with staged_output(paths.study(arch)) if kind.folder else tempfile.TemporaryDirectory() as out:
            out = Path(out)
            if kind.folder:
                (out / paths.best_params(arch).name).write_text(json.dumps(record, indent=2) + "\n")
                (out / paths.study_summary(arch).name).write_text(json.dumps(summ, indent=2, default=str) + "\n")
            tuning.trials_table(study).to_csv(out / "trials.csv", index=False)
            figures = tuning.plots(study, out / "figures", seed=cfg.seed)
            mlflow.log_metrics({"best_value": summ["best_value"], "trials_complete": summ["trials_complete"],
                                "trials_pruned": summ["trials_pruned"], "trials_failed": summ["trials_failed"],
                                **timing})
            mlflow.log_dict({**summ, **timing}, "summary.json")
            if not kind.folder:
                mlflow.log_artifact(str(out / "trials.csv"))
            for path in figures.values():
                mlflow.log_artifact(str(path), "figures")
    log.info("%s: best validation RMSE %.4f degC (trial %d) from %d complete / %d pruned trials", what.label,
             summ["best_value"], summ["best_trial"], summ["trials_complete"], summ["trials_pruned"])
    return {**summ, "best_params": study.best_params, "settings": record}


def work(cfg: Config, arch: str, study, train_data, parent_run_id: str, kind: StudyKind = BAND_STUDIES) -> int:
    """One worker's share of the study: trials until the study has ``n_trials`` (see ``tuning.optimize``), each a
    nested MLflow run under ``parent_run_id``. Returns the trials this worker ran."""
    import mlflow
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

    from thawcast.learn.training import MONITOR, TrainingError

    what = kind.search(cfg, arch)
    ran = []

    def objective(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        params = tuning.suggest(trial, what)
        settings = kind.trial_settings(cfg, arch, params)
        run = start_run(run_name=f"trial-{trial.number}", nested=True, parent_run_id=parent_run_id,
                        tags={"optuna.trial": str(trial.number), "thawcast.architecture": arch,
                              "thawcast.units": kind.units})
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        mlflow.log_params(params)
        t0 = time.perf_counter()
        try:
            value, result = kind.fit(cfg, settings, train_data,
                                      [PyTorchLightningPruningCallback(trial, monitor=MONITOR)],
                                      lambda epoch, row: mlflow.log_metrics(row, step=epoch),
                                      f"{what.label} trial {trial.number}")
        except optuna.TrialPruned:
            mlflow.set_tag("optuna.state", "PRUNED")
            mlflow.log_metric("seconds", time.perf_counter() - t0)
            mlflow.end_run("FINISHED")
            log.info("%s trial %d pruned", what.label, trial.number)
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
        log.info("%s trial %d: validation RMSE %.4f degC %s", what.label, trial.number, value, params)
        return value

    tuning.optimize(study, objective, what.budget.n_trials, what.budget.timeout_s,
                    catch=(TrainingError, ModelInputError), grace_s=cfg.tuning.grace_s)
    return len(ran)


def _study(job: tuple[Config, str, Layout, StudyKind]) -> dict:
    """A spawned process running one architecture's whole study (:func:`tune_one`)."""
    return tune_one(*job)


def _worker(job: tuple[Config, str, Layout, str, str, StudyKind]) -> int:
    """A spawned tuning worker: opens the same study and MLflow store, then :func:`work`."""
    cfg, arch, paths, fp, parent_run_id, kind = job
    use_store(cfg.mlflow, cfg.tuning.experiment)
    study = tuning.open_study(cfg, kind.search(cfg, arch), fp, shared=True)
    return work(cfg, arch, study, kind.load(cfg, paths), parent_run_id, kind)


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
