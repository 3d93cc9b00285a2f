"""Optuna tuning: search-space config, budget and resume, the tune stage, leakage, SIGKILL recovery."""

import json
import multiprocessing
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import xarray as xr
import yaml
from optuna.trial import TrialState

from conftest import TINY, layout
from repo_copy import cli_env
from thawcast.config import parse_config
from thawcast.errors import ConfigError, DataError
from thawcast.layout import Layout
from thawcast.learn import tuning
from thawcast.learn.settings import resolve_settings
from thawcast.stages import compare_studies, tune
from thawcast.tracking.registry import use_store

#: Clock times and resume counts: logged to MLflow only, never to the DVC-tracked outputs.
CLOCK_FIELDS = {"wall_s", "session_s", "resumed_trials"}

TINY_TUNING = {"budget": {"n_trials": 3, "timeout_s": 120, "max_epochs": 3, "patience": 3},
               "sampler_startup_trials": 2, "pruner_startup_trials": 1, "pruner_warmup_epochs": 1,
               "space": {"common": {"learning_rate": {"low": 0.001, "high": 0.01, "log": True},
                                    "batch_size": {"choices": [16, 32]}},
                         "gru": {"hidden": {"choices": [4, 8]}, "layers": {"low": 1, "high": 2}}}}


def cfg_with(tuning_section=None, root: Path | None = None, **extra):
    raw = {**TINY, "tuning": tuning_section if tuning_section is not None else TINY_TUNING, **extra}
    if root is not None:
        raw["tuning"] = {**raw["tuning"], "storage": f"sqlite:///{root / 'optuna.db'}"}
        raw["mlflow"] = {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "artifacts": str(root / "artifacts")}
    return parse_config(raw)


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("space, match", [
    ({"common": {"learning_rate": {"low": 0.1, "high": 0.01}}}, "inverted range"),
    ({"common": {"learning_rate": {"low": 0.1, "high": 0.1}}}, "empty or inverted"),
    ({"common": {"batch_size": {"choices": []}}}, "choices is empty"),
    ({"gru": {"hiddden": {"choices": [8]}}}, "unknown parameter 'hiddden'"),
    ({"lstm": {"hidden": {"choices": [8]}}}, "unknown architecture"),
    ({"gru": {"layers": {"low": 1, "high": 2.5}}}, "integer bounds"),
    ({"common": {"learning_rate": {"low": 0.0, "high": 0.1, "log": True}}}, "log-scale range needs low > 0"),
    ({"transformer": {"d_model": {"choices": [16, 30]}, "heads": {"choices": [4]}}}, "not divisible"),
    ({"gru": {"hidden": {"low": 8, "high": 16, "choices": [8]}}}, "either choices or low/high"),
])
def test_bad_search_spaces_are_clear_errors(space, match):
    with pytest.raises(ConfigError, match=match):
        cfg_with({"space": space})


def test_a_budget_of_zero_trials_is_an_error():
    with pytest.raises(ConfigError, match="tunes nothing"):
        cfg_with({"budget": {"n_trials": 0}})


def test_suggestions_stay_inside_the_space_with_the_right_types():
    cfg = cfg_with()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        t = study.ask()
        p = tuning.suggest(t, tuning.band_search(cfg, "gru"))
        assert 0.001 <= p["learning_rate"] <= 0.01 and p["batch_size"] in (16, 32) and p["hidden"] in (4, 8)
        assert isinstance(p["layers"], int) and 1 <= p["layers"] <= 2
        study.tell(t, 0.0)
    assert {t.params["layers"] for t in study.trials} == {1, 2}


def test_defaults_are_the_first_trial_when_inside_the_space(tmp_path):
    cfg = cfg_with({**TINY_TUNING, "space": {"gru": {"hidden": {"choices": [8, 16]}}}})
    assert tuning.default_point(tuning.band_search(cfg, "gru")) == {"hidden": 8}  # TINY's gru.hidden is 8
    study = tuning.open_study(cfg, tuning.band_search(cfg, "gru"), "fp", optuna.storages.InMemoryStorage())
    assert study.get_trials(states=(TrialState.WAITING,))[0].system_attrs["fixed_params"] == {"hidden": 8}
    outside = cfg_with({**TINY_TUNING, "space": {"gru": {"hidden": {"choices": [32, 64]}}}})
    assert tuning.default_point(tuning.band_search(outside, "gru")) is None


def test_fingerprint_tracks_what_makes_trials_comparable():
    base = cfg_with()
    fp = tuning.fingerprint(base, tuning.band_search(base, "gru"), "data1")
    more = cfg_with({**TINY_TUNING, "budget": {**TINY_TUNING["budget"], "n_trials": 9, "timeout_s": 999}})
    assert tuning.fingerprint(more, tuning.band_search(more, "gru"), "data1") == fp  # a bigger budget resumes the same study
    assert tuning.fingerprint(base, tuning.band_search(base, "gru"), "data2") != fp  # new data: new study
    wider = cfg_with({**TINY_TUNING, "space": {**TINY_TUNING["space"], "gru": {"hidden": {"choices": [4, 8, 16]}}}})
    assert tuning.fingerprint(wider, tuning.band_search(wider, "gru"), "data1") != fp
    assert tuning.fingerprint(base, tuning.band_search(base, "tcn"), "data1") != fp


def test_budget_counts_complete_and_pruned_not_failed_and_resume_runs_only_the_rest(tmp_path):
    cfg = cfg_with(root=tmp_path)
    calls = []

    def objective(trial):
        calls.append(trial.number)
        tuning.suggest(trial, tuning.band_search(cfg, "gru"))
        if trial.number == 1:
            raise optuna.TrialPruned()
        if trial.number == 2:
            raise ValueError("a failing trial")
        return float(trial.number)

    study = tuning.open_study(cfg, tuning.band_search(cfg, "gru"), "fp")
    assert tuning.optimize(study, objective, 2, 60, catch=(ValueError,)) == 0
    assert tuning.counted(study) == 2 and calls == [0, 1]
    again = tuning.open_study(cfg, tuning.band_search(cfg, "gru"), "fp")  # as a new process would
    assert tuning.optimize(again, objective, 4, 60, catch=(ValueError,)) == 2
    c = tuning.counts(again)
    assert (c["complete"], c["pruned"], c["fail"]) == (3, 1, 1)  # the failed trial did not count
    assert calls == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="tunes nothing"):
        tuning.optimize(again, objective, 0, 60)


# ---------------------------------------------------------------- the stage
@pytest.fixture(scope="module")
def tuned(tiny_pipeline, tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    cfg = cfg_with(root=root)
    tune.run(cfg, "gru", layout(root, windows=tiny_pipeline / "windows"))  # no dvc.lock under root
    return cfg, root, tiny_pipeline


def _summary(root) -> dict:
    return json.loads(layout(root).study_summary("gru").read_text())


def test_tune_writes_best_params_that_train_reads(tuned):
    cfg, root, _ = tuned
    paths = layout(root)
    best = json.loads(paths.best_params("gru").read_text())
    summary = _summary(root)
    assert summary["trials_complete"] + summary["trials_pruned"] == 3
    assert best["value"] == pytest.approx(summary["best_value"])
    assert not CLOCK_FIELDS & set(summary)
    trials = (paths.study("gru") / "trials.csv").read_text().splitlines()
    assert len(trials) == 1 + 3 and "params_hidden" in trials[0]
    assert not any(c.startswith(("datetime", "duration", "user_attrs_mlflow")) for c in trials[0].split(","))
    s = resolve_settings(cfg, "gru", paths.best_params("gru"))
    assert s.hparams.hidden == summary["best_params"]["hidden"]
    assert s.training.learning_rate == pytest.approx(summary["best_params"]["learning_rate"])
    assert s.training.max_epochs == cfg.training.max_epochs  # trial epochs do not leak into training
    assert summary["default_value"] is not None and summary["best_value"] <= summary["default_value"]
    for name in ("optimization_history", "parallel_coordinate"):
        assert (root / "tuning" / "gru" / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_study_is_a_parent_run_with_one_nested_run_per_trial(tuned):
    cfg, root, _ = tuned
    use_store(cfg.mlflow, cfg.tuning.experiment)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(cfg.tuning.experiment).experiment_id
    parents = client.search_runs([exp], "tags.`thawcast.stage` = 'tune'")
    assert len(parents) == 1
    pid = parents[0].info.run_id
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{pid}'")
    assert len(children) == 3
    assert {c.data.tags["optuna.state"] for c in children} <= {"COMPLETE", "PRUNED"}
    done = [c for c in children if c.data.tags["optuna.state"] == "COMPLETE"]
    assert done and all("value" in c.data.metrics and "learning_rate" in c.data.params for c in done)
    assert len(client.get_metric_history(done[0].info.run_id, "val_loss")) >= 1
    arts = {a.path for a in client.list_artifacts(pid, "figures")}
    assert "figures/optimization_history.png" in arts
    assert parents[0].data.metrics["best_value"] == pytest.approx(_summary(root)["best_value"])
    assert CLOCK_FIELDS <= set(parents[0].data.metrics)  # the clock times are in MLflow


def test_rerun_with_unchanged_settings_reuses_every_trial(tuned):
    cfg, root, world = tuned
    study = layout(root).study("gru")
    before = {f.name: f.read_bytes() for f in (study / n for n in ("best_params.json", "summary.json", "trials.csv"))}
    tune.run(cfg, "gru", layout(root, windows=world / "windows"))
    summary = _summary(root)
    assert summary["trials_complete"] + summary["trials_pruned"] == 3
    # The rebuilt study's DVC-tracked outputs are byte-identical ...
    assert {n: (study / n).read_bytes() for n in before} == before
    # ... and the resume count went to the study's MLflow parent run, which was resumed, not duplicated.
    use_store(cfg.mlflow, cfg.tuning.experiment)
    client = mlflow.MlflowClient()
    parents = client.search_runs([client.get_experiment_by_name(cfg.tuning.experiment).experiment_id],
                                 "tags.`thawcast.stage` = 'tune'")
    assert len(parents) == 1 and parents[0].data.metrics["resumed_trials"] == 3


def test_tuning_never_sees_the_test_years(tuned, tmp_path):
    """Corrupting every test-year value (inputs and targets) leaves the study's results unchanged."""
    cfg, root, world = tuned
    windows = tmp_path / "windows"
    shutil.copytree(world / "windows", windows)
    with xr.open_dataset(windows / "history.nc") as ds:
        ds = ds.load()
    test_months = ds["time"].dt.year.values >= cfg.windows.test.start_year
    assert test_months.any()
    for var in ("x", "y", "y_degc"):
        ds[var].values[:, test_months] = ds[var].values[:, test_months] * 3 + 1000
    ds.to_netcdf(windows / "history.nc")
    other = cfg_with(root=tmp_path)
    tune.run(other, "gru", layout(tmp_path, windows=windows))
    a, b = _summary(root), _summary(tmp_path)
    assert b["best_value"] == pytest.approx(a["best_value"], rel=1e-9)
    assert b["best_params"] == a["best_params"]
    # positive control: the same corruption of the validation year's months does change the study
    control = tmp_path / "control"
    shutil.copytree(world / "windows", control / "windows")
    with xr.open_dataset(control / "windows" / "history.nc") as ds:
        ds = ds.load()
    validation_months = ds["time"].dt.year.values == cfg.windows.validation.end_year
    assert validation_months.any() and not (validation_months & test_months).any()
    for var in ("x", "y", "y_degc"):
        ds[var].values[:, validation_months] = ds[var].values[:, validation_months] * 3 + 1000
    ds.to_netcdf(control / "windows" / "history.nc")
    tune.run(cfg_with(root=control), "gru", layout(control, windows=control / "windows"))
    assert _summary(control)["best_value"] != pytest.approx(a["best_value"], rel=1e-3)


def test_compare_studies_table(tuned, tmp_path):
    cfg, root, _ = tuned
    only_gru = cfg.model_copy(update={"training": cfg.training.model_copy(update={"architectures": ("gru",)})})
    paths = layout(root).replace(metrics=tmp_path)
    compare_studies.run(only_gru, paths)
    table = json.loads(paths.metric("tuning.json").read_text())
    assert set(table) == {"gru"} and table["gru"]["trials_complete"] >= 1
    assert not CLOCK_FIELDS & set(table["gru"])
    md = paths.metric("tuning.md").read_text()
    assert "| gru |" in md and f"{table['gru']['best_value']:.4f}" in md
    with pytest.raises(DataError, match="run `thawcast tune tcn`"):
        compare_studies.run(cfg.model_copy(update={"training": cfg.training.model_copy(
            update={"architectures": ("gru", "tcn")})}), paths)


# ---------------------------------------------------------------- SIGKILL and resume
def _states(db: Path, name_prefix: str) -> list[tuple[int, str, dict]]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    names = [s.study_name for s in storage.get_all_studies() if s.study_name.startswith(name_prefix)]
    if not names:
        return []
    study = optuna.load_study(study_name=names[0], storage=storage)
    return [(t.number, t.state.name, t.params) for t in study.get_trials(deepcopy=False)]


def _count(db: Path, name_prefix: str, state: str) -> int:
    """Trials in ``state``, read without touching the schema: the tuning process may still be creating it, and
    optuna's RDBStorage would race it to write the alembic version row."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            (count,) = con.execute(
                "SELECT COUNT(*) FROM trials JOIN studies ON trials.study_id = studies.study_id "
                "WHERE studies.study_name LIKE ? AND trials.state = ?", (name_prefix + "%", state)).fetchone()
    except sqlite3.OperationalError:  # tables not created yet, or the database is locked for a moment
        return 0
    return count


def test_killed_tuning_resumes_reusing_completed_trials(tiny_pipeline, tmp_path):
    budget = 5
    params = {**TINY, "tuning": {**TINY_TUNING, "budget": {"n_trials": budget, "timeout_s": 300, "max_epochs": 40,
                                                           "patience": 40},
                                 "pruner_warmup_epochs": 40, "heartbeat_s": 1, "grace_s": 2,
                                 "storage": "sqlite:///mlruns/optuna.db"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "windows").symlink_to(tiny_pipeline / "windows")
    env = cli_env()
    cmd = [str(Path(sys.executable).parent / "thawcast"), "tune", "gru"]
    db = tmp_path / "mlruns" / "optuna.db"
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        # killed mid-trial: two trials done and a third running
        if _count(db, "thawcast-gru", "COMPLETE") >= 2 and _count(db, "thawcast-gru", "RUNNING") == 1:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "tuning finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _states(db, "thawcast-gru")
    complete_before = {n: p for n, s, p in before if s == "COMPLETE"}
    running_before = [n for n, s, _ in before if s == "RUNNING"]
    assert len(complete_before) >= 2 and len(complete_before) < budget and len(running_before) == 1
    assert not (tmp_path / "data" / "tuning" / "gru").exists()  # nothing half-written
    time.sleep(3)  # past the heartbeat grace period
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    after = _states(db, "thawcast-gru")
    states = {n: s for n, s, _ in after}
    assert sum(s in ("COMPLETE", "PRUNED") for s in states.values()) == budget
    for n, p in complete_before.items():  # completed trials were kept, not rerun
        assert states[n] == "COMPLETE" and {m: q for m, _, q in after}[n] == p
    for n in running_before:  # the trial killed mid-way was failed through the heartbeat
        assert states[n] == "FAIL"
    assert "RUNNING" not in states.values()
    summary = json.loads(Layout.at(tmp_path).study_summary("gru").read_text())
    assert np.isfinite(summary["best_value"]) and not CLOCK_FIELDS & set(summary)
    # The resumed study's parent run (params.yaml's default store under tmp_path) records what was reused.
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(parse_config(params).tuning.experiment).experiment_id
    parents = client.search_runs([exp], "tags.`thawcast.stage` = 'tune'")
    assert len(parents) == 1 and parents[0].data.metrics["resumed_trials"] == len(complete_before)


def _open_storage(cfg, barrier, results):
    barrier.wait()
    try:
        tuning.storage(cfg)
        results.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the parent, which asserts on it
        results.put(repr(err))


def test_workers_started_together_on_a_new_database_all_open_it(tmp_path):
    """Unguarded, 4 workers racing to create a new Optuna database lose the race 7 times in 10 on this stack
    (IntegrityError on alembic_version, or a locked database); with the retry every worker opens it."""
    ctx = multiprocessing.get_context("fork")
    for i in range(5):
        cfg = parse_config({**TINY, "tuning": {**TINY_TUNING, "storage": f"sqlite:///{tmp_path}/race{i}.db"}})
        barrier, results = ctx.Barrier(4), ctx.Queue()
        workers = [ctx.Process(target=_open_storage, args=(cfg, barrier, results)) for _ in range(4)]
        for w in workers:
            w.start()
        outcomes = [results.get(timeout=60) for _ in workers]
        for w in workers:
            w.join()
        assert outcomes == ["ok"] * 4


def test_a_trial_killed_before_its_first_heartbeat_is_failed_on_resume(tmp_path):
    """Optuna starts the heartbeat after study.ask(); a worker killed in between left the trial RUNNING for ever."""
    store = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="s", storage=store)
    orphan = study.ask()  # RUNNING, never a heartbeat: its worker "died" here
    alive = study.ask()
    store.record_heartbeat(alive._trial_id)  # a live worker's trial beats within milliseconds
    assert tuning.fail_orphaned_trials(study, grace_s=60) == []  # too young to judge
    time.sleep(0.05)
    assert tuning.fail_orphaned_trials(study, grace_s=0.01) == [orphan.number]
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {orphan.number: TrialState.FAIL, alive.number: TrialState.RUNNING}
