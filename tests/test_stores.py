"""Stores a user can break: a corrupt or missing MLflow store, a mistyped experiment, a corrupt Optuna journal or
database. Each reaches the user as the CLI's one line (exit 2) naming the store, and nothing is created."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY
from repo_copy import cli_env
from thawcast.cli import main
from thawcast.config import parse_config
from thawcast.tracking.registry import use_store

NOT_A_DATABASE = b"this is not a database " * 20


def _project(tmp_path, tiny_pipeline=None, **sections) -> None:
    """A project folder: the tiny params with ``sections`` merged in, and the tiny windows when given."""
    params = {**TINY, **{k: {**TINY.get(k, {}), **v} for k, v in sections.items()}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    if tiny_pipeline is not None:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "windows").symlink_to(tiny_pipeline / "windows")


def _one_line(capsys, code: int, *expected: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_a_stage_that_reads_models_creates_no_store_where_none_is(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path, mlflow={"tracking_uri": "sqlite:///mlrunz/mlflow.db"})
    line = _one_line(capsys, main(["project"]), f"no MLflow store at {tmp_path / 'mlrunz' / 'mlflow.db'}",
                     "sqlite:///mlrunz/mlflow.db", "the train stage creates it")
    assert not (tmp_path / "mlrunz").exists(), line
    # positive control: a stage that writes (train) may create it
    cfg = parse_config({**TINY, "mlflow": {"tracking_uri": "sqlite:///mlrunz/mlflow.db"}})
    use_store(cfg.mlflow)
    assert (tmp_path / "mlrunz" / "mlflow.db").exists()


def test_a_corrupt_mlflow_store_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path)
    store = tmp_path / "mlruns" / "mlflow.db"
    store.parent.mkdir()
    store.write_bytes(NOT_A_DATABASE)
    _one_line(capsys, main(["project"]), f"{store}: the MLflow store cannot be opened", "not a database",
              "move it aside")
    assert store.read_bytes() == NOT_A_DATABASE  # left as it was


def test_a_mistyped_experiment_lists_the_ones_there(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path, mlflow={"experiment": "thawcast-trainin"})
    use_store(parse_config({**TINY, "mlflow": {"experiment": "thawcast-training"}}).mlflow)
    _one_line(capsys, main(["project"]),
              "has no experiment 'thawcast-trainin'", "'thawcast-training'")


@pytest.mark.parametrize("storage", ["mlruns/optuna.journal", "sqlite:///mlruns/optuna.db"])
def test_a_corrupt_optuna_storage_is_named(tmp_path, monkeypatch, capsys, tiny_pipeline, storage):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path, tiny_pipeline, tuning={"storage": storage})
    path = tmp_path / storage.removeprefix("sqlite:///")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(NOT_A_DATABASE)
    _one_line(capsys, main(["tune", "gru"]), f"{path}: not a readable Optuna storage", "move it aside")
    assert path.read_bytes() == NOT_A_DATABASE
    assert not (tmp_path / "data" / "tuning").exists()
    if storage.startswith("sqlite"):
        return
    # moved aside, tuning starts afresh (a new process, as the user's next command)
    shutil.move(path, tmp_path / "broken")
    again = subprocess.run([str(Path(sys.executable).parent / "thawcast"), "tune", "gru"], cwd=tmp_path,
                           env=cli_env(), capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "data" / "tuning" / "gru" / "best_params.json").exists()


@pytest.mark.parametrize("fault", ["a bad line between good ones", "a last line cut short"])
def test_a_journal_with_a_bad_line_is_refused_before_optuna_writes_to_it(tmp_path, fault):
    from thawcast.errors import DataError
    from thawcast.learn import tuning

    cfg = parse_config({**TINY, "tuning": {**TINY["tuning"], "storage": str(tmp_path / "optuna.journal")}})
    study = tuning.open_study(cfg, tuning.band_search(cfg, "gru"), "fp")  # a sound journal: one study, the defaults enqueued
    study.enqueue_trial({"hidden": 4})
    good = (tmp_path / "optuna.journal").read_bytes()
    lines = good.split(b"\n")
    assert len(lines) >= 3 and lines[-1] == b""
    bad = (b"\n".join([lines[0], b"{not json", *lines[1:]]) if fault.startswith("a bad line")
           else good + b'{"op_code": 4, "worker_id": "x"')
    (tmp_path / "optuna.journal").write_bytes(bad)
    with pytest.raises(DataError, match="not a readable Optuna storage"):
        tuning.open_study(cfg, tuning.band_search(cfg, "gru"), "fp")
    assert (tmp_path / "optuna.journal").read_bytes() == bad  # nothing appended
    (tmp_path / "optuna.journal").write_bytes(good)
    assert len(tuning.open_study(cfg, tuning.band_search(cfg, "gru"), "fp").trials) == 2  # the sound one opens, both trials waiting

