"""Several tuning workers on one study: exactly the budget, a killed worker loses nothing, dead trials failed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import TINY, layout
from repo_copy import cli_env
from thawcast.config import parse_config
from thawcast.errors import ConfigError
from thawcast.learn import tuning
from thawcast.stages import tune
from thawcast.tracking.registry import use_store

SLOW_TRIALS = {"budget": {"n_trials": 6, "timeout_s": 300, "max_epochs": 12, "patience": 12},
               "sampler_startup_trials": 2, "pruner_startup_trials": 1, "pruner_warmup_epochs": 12,
               "space": {"common": {"learning_rate": {"low": 0.001, "high": 0.01, "log": True}},
                         "gru": {"hidden": {"choices": [4, 8]}}}}


def _journal_trials(path: Path) -> list[optuna.trial.FrozenTrial]:
    """Every trial of every study in a journal file."""
    if not path.exists():
        return []
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return [t for s in storage.get_all_studies()
            for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials()]


def test_two_workers_run_exactly_the_budget_and_a_rerun_adds_none(tiny_pipeline, tmp_path):
    # trials of 1-2 s each, so that one worker cannot finish the whole budget before the other has started
    long = {"budget": {**SLOW_TRIALS["budget"], "max_epochs": 60, "patience": 60}, "pruner_warmup_epochs": 60}
    raw = {**TINY, "tuning": {**SLOW_TRIALS, **long, "workers": 2, "storage": str(tmp_path / "optuna.journal")},
           "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifacts": str(tmp_path / "art")}}
    cfg = parse_config(raw)
    paths = layout(tmp_path, windows=tiny_pipeline / "windows")
    tune.run(cfg, "gru", paths)
    trials = _journal_trials(tmp_path / "optuna.journal")
    counted = [t for t in trials if t.state in tuning.COUNTED]
    assert len(counted) == 6 and len({t.number for t in trials}) == len(trials)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    workers = {t.user_attrs["worker"] for t in counted}
    assert len(workers) == 2 and f"{socket.gethostname()}:{os.getpid()}" not in workers  # two other processes
    drawn = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(set(drawn)) == len(drawn), f"workers drew the same trial twice: {drawn}"
    summary = json.loads(paths.study_summary("gru").read_text())
    assert summary["trials_complete"] + summary["trials_pruned"] == 6
    assert "user_attrs_worker" not in (paths.study("gru") / "trials.csv").read_text()  # no pids in DVC outputs
    # every counted trial is one nested MLflow run under the study's run, whichever worker ran it
    use_store(cfg.mlflow, cfg.tuning.experiment)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(cfg.tuning.experiment).experiment_id
    (parent,) = client.search_runs([exp], "tags.`thawcast.stage` = 'tune'")
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(int(c.data.tags["optuna.trial"]) for c in children) == sorted(t.number for t in counted)
    assert parent.data.metrics["workers"] == 2
    tune.run(cfg, "gru", paths)  # resumed with the budget reached: not one trial more
    assert len(_journal_trials(tmp_path / "optuna.journal")) == len(trials)


def test_a_killed_worker_loses_no_completed_trial(tiny_pipeline, tmp_path):
    params = {**TINY, "tuning": {**SLOW_TRIALS, "budget": {**SLOW_TRIALS["budget"], "max_epochs": 40,
                                                            "patience": 40}, "pruner_warmup_epochs": 40}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "windows").symlink_to(tiny_pipeline / "windows")
    journal = tmp_path / "mlruns" / "optuna.journal"  # the default storage
    env = cli_env()
    cmd = [str(Path(sys.executable).parent / "thawcast"), "tune", "gru", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, victim = time.time() + 240, None
    while time.time() < deadline and proc.poll() is None and victim is None:
        trials = _journal_trials(journal)
        running = [t for t in trials if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
        if sum(t.state == TrialState.COMPLETE for t in trials) >= 2 and running:
            victim = running[0]
        time.sleep(0.1)
    assert victim is not None, "no running trial to kill: " + proc.stderr.read().decode()[-2000:]
    os.kill(int(victim.user_attrs["worker"].rpartition(":")[2]), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err.decode()[-2000:]  # the stage stops with one clear line
    assert "worker process died" in err.decode().splitlines()[-1]
    complete_before = {t.number: t.params for t in _journal_trials(journal) if t.state == TrialState.COMPLETE}
    assert not (tmp_path / "data" / "tuning" / "gru").exists()  # nothing half-written
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    after = {t.number: t for t in _journal_trials(journal)}
    assert sum(t.state in tuning.COUNTED for t in after.values()) == 6
    for n, p in complete_before.items():  # completed trials were kept, not rerun
        assert after[n].state == TrialState.COMPLETE and after[n].params == p
    assert after[victim.number].state == TrialState.FAIL  # the killed trial failed, not RUNNING for ever
    assert not [t for t in after.values() if t.state == TrialState.RUNNING]


def test_a_journal_trial_of_a_dead_worker_is_failed_and_a_live_or_remote_one_kept(tmp_path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j")))
    study = optuna.create_study(study_name="s", storage=storage)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    trials = {name: study.ask() for name in ("dead", "alive", "remote", "anonymous")}
    trials["dead"].set_user_attr("worker", f"{host}:{dead.pid}")
    trials["alive"].set_user_attr("worker", f"{host}:{os.getpid()}")
    trials["remote"].set_user_attr("worker", f"not-{host}:{dead.pid}")
    assert tuning.fail_orphaned_trials(study, grace_s=60) == [trials["dead"].number]
    time.sleep(0.05)
    assert tuning.fail_orphaned_trials(study, grace_s=0.01) == [trials["anonymous"].number]  # never named a worker
    states = {t.number: t.state for t in study.get_trials()}
    assert states[trials["alive"].number] == states[trials["remote"].number] == TrialState.RUNNING


def test_a_trial_left_running_under_this_pid_is_failed_when_this_process_is_between_trials(tmp_path):
    """A restarted container repeats pids: a RUNNING trial naming this very process cannot be running when this
    process runs none, so optimize's own check (idle) fails it; another process's check must not."""
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j")))
    study = optuna.create_study(study_name="s", storage=storage)
    stale = study.ask()
    stale.set_user_attr("worker", tuning.worker_id())
    assert tuning.fail_orphaned_trials(study, grace_s=60) == []  # its pid is alive: it could be running
    assert tuning.fail_orphaned_trials(study, grace_s=60, idle=True) == [stale.number]


def test_workers_need_a_storage_that_takes_them(tmp_path):
    with pytest.raises(ConfigError, match="SQLite .* does not"):
        parse_config({"tuning": {"workers": 2, "storage": "sqlite:///x.db"}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"tuning": {"storage": "sqlite:///x.db"}}))
    out = subprocess.run([str(Path(sys.executable).parent / "thawcast"), "tune", "gru", "--workers", "2"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) <= 3 and "concurrent writers" in out.stderr
    assert "--workers 2:" in out.stderr
    assert "Traceback" not in out.stderr


def test_one_process_draws_from_the_seed_and_workers_each_from_their_own(monkeypatch):
    cfg = parse_config({**TINY, "tuning": SLOW_TRIALS})

    def first_draw(shared: bool) -> dict:
        study = optuna.create_study(sampler=tuning.sampler(cfg, shared))
        return tuning.suggest(study.ask(), tuning.band_search(cfg, "gru"))

    assert first_draw(False) == first_draw(False)  # one worker: the same trials on every rebuild
    monkeypatch.setattr(tuning, "worker_id", lambda: "host-a:101")
    a = first_draw(True)
    assert first_draw(True) == a  # a worker's own seed is fixed for its life
    monkeypatch.setattr(tuning, "worker_id", lambda: "host-a:102")
    assert first_draw(True) != a  # a second worker draws other trials


def test_an_unreachable_tuning_database_or_tracking_server_is_one_clear_error(monkeypatch):
    from thawcast.config import MlflowConfig
    from thawcast.errors import ConfigError, ServiceError

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = parse_config({**TINY, "tuning": {"storage": f"postgresql+psycopg2://team@127.0.0.1:{port}/optuna"}})
    with pytest.raises(ServiceError, match=f"tuning.storage .*:{port}/optuna: the database does not answer"):
        tuning.storage(cfg, attempts=2)
    t0 = time.perf_counter()
    with pytest.raises(ServiceError, match=f"mlflow.tracking_uri http://127.0.0.1:{port}: the tracking server"):
        use_store(MlflowConfig(tracking_uri=f"http://127.0.0.1:{port}"))
    assert time.perf_counter() - t0 < 60  # not MLflow's default minutes of retries
    t0 = time.perf_counter()  # a database as the MLflow store, without a tracking server
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "unset after the test")  # so that monkeypatch restores its absence
    monkeypatch.delenv("PGCONNECT_TIMEOUT")
    with pytest.raises(ServiceError, match=rf"mlflow.tracking_uri postgresql\+psycopg2://team:\*\*\*@127.0.0.1:{port}/mlflow:"
                                           " the database does not answer") as err:
        use_store(MlflowConfig(tracking_uri=f"postgresql+psycopg2://team:secret@127.0.0.1:{port}/mlflow"))
    assert "secret" not in str(err.value)
    assert time.perf_counter() - t0 < 30  # MLflow alone retries for about two minutes
    with pytest.raises(ConfigError, match="postgresql\\+nodriver://team:\\*\\*\\*@.*driver is not installed"):
        use_store(MlflowConfig(tracking_uri="postgresql+nodriver://team:secret@127.0.0.1/mlflow"))
    # MLflow's own engine, which takes no connect timeout, gets libpq's from the environment
    assert os.environ["PGCONNECT_TIMEOUT"] == "10"
    # URLs that cannot work are refused where params are read, with the password hidden
    for setting, value, message in (
            ("tuning.storage", "postgresql+psycopg2://team:secret@127.0.0.1:5432x/optuna", "must be a number"),
            ("mlflow.tracking_uri", "postgresql+psycopg2://team:secret@127.0.0.1:port/mlflow", "must be a number"),
            ("mlflow.tracking_uri", "file:///srv/mlruns", "file store .* not supported"),
            ("mlflow.tracking_uri", "mlruns", "not a store thawcast can use"),
            ("mlflow.tracking_uri", "postgres://team:secret@127.0.0.1/mlflow", "not a store thawcast can use")):
        section, key = setting.split(".")
        with pytest.raises(ConfigError, match=rf"{setting}: .*{message}") as err:
            parse_config({section: {key: value}})
        assert "secret" not in str(err.value)


def test_studies_side_by_side_draw_the_same_trials_as_in_a_row(tiny_pipeline, tmp_path):
    """The tune stage runs the architectures' studies in compute.workers processes; each study, alone in its
    process, writes byte for byte what it writes when the studies run one after another."""
    outputs = {}
    for workers in (2, 1):
        root = tmp_path / f"workers{workers}"
        raw = {**TINY, "training": {**TINY["training"], "architectures": ["gru", "tcn"]},
               "tuning": {**SLOW_TRIALS, "budget": {**SLOW_TRIALS["budget"], "n_trials": 3, "max_epochs": 3},
                          "storage": str(root / "optuna.journal")},
               "compute": {"workers": workers},
               "mlflow": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "artifacts": str(root / "art")}}
        paths = layout(root, windows=tiny_pipeline / "windows")
        assert tune.run(parse_config(raw), paths=paths) == paths.tuning
        outputs[workers] = {f"{a}/{n}": (paths.study(a) / n).read_bytes() for a in ("gru", "tcn")
                            for n in ("best_params.json", "summary.json", "trials.csv")}
        pids = {t.user_attrs["worker"] for t in _journal_trials(root / "optuna.journal")}
        assert len(pids) == workers  # two processes, one study each; or this one process
    assert outputs[2] == outputs[1]


def test_optuna_dashboard_lists_the_studies_of_the_journal_the_workers_share(tmp_path):
    """`optuna-dashboard mlruns/optuna.journal` (README) opens the default storage: its API, called without a
    server, lists a study written through thawcast's storage with its trials."""
    import io
    from wsgiref.util import setup_testing_defaults

    import optuna_dashboard
    from optuna_dashboard._storage_url import get_storage

    journal = tmp_path / "optuna.journal"
    storage = tuning.storage(parse_config({**TINY, "tuning": {"storage": str(journal)}}))
    optuna.create_study(study_name="thawcast-gru", storage=storage).optimize(
        lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    app = optuna_dashboard.wsgi(get_storage(str(journal)))

    def get(path):
        environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
        setup_testing_defaults(environ)
        status = []
        body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
        assert status == ["200 OK"], (path, status, body[:300])
        return json.loads(body)

    (summary,) = get("/api/studies")["study_summaries"]
    assert summary["study_name"] == "thawcast-gru"
    trials = get(f"/api/studies/{summary['study_id']}")["trials"]
    assert sorted(t["number"] for t in trials) == [0, 1, 2]
