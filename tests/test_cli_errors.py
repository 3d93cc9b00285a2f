"""Every error a user can cause reaches them as one line from the CLI (exit 2, no traceback) naming the file or
key and what to do (issue 16): a table of damaged stage outputs, stores and config values, each tried on its own
copy of a project the stages built."""

import re
import shutil

import pytest
import yaml

from conftest import TINY, TRAINED_ARCHS
from thawcast import cli


@pytest.fixture(scope="module")
def project(trained, tmp_path_factory):
    """A project folder as the CLI sees it (params.yaml, data/, dvc.lock, mlruns/) built from the trained
    fixture: two registered models, their hand-offs and the tiny world's windows."""
    cfg, root, world = trained
    proj = tmp_path_factory.mktemp("cli_project")
    shutil.copytree(root / "models", proj / "data" / "models")
    shutil.copytree(world / "windows", proj / "data" / "windows")
    shutil.copy2(root / "dvc.lock", proj / "dvc.lock")
    (proj / "mlruns").mkdir()
    shutil.copy2(root / "mlflow.db", proj / "mlruns" / "mlflow.db")
    params = {**TINY, "training": {**TINY["training"], "architectures": list(TRAINED_ARCHS)},
              "mlflow": {"tracking_uri": "sqlite:///mlruns/mlflow.db", "artifacts": str(cfg.mlflow.artifacts)}}
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    return proj


def _write(rel, text):
    return lambda proj: (proj / rel).write_text(text)


def _truncate(rel):
    def cut(proj):
        data = (proj / rel).read_bytes()
        (proj / rel).write_bytes(data[: len(data) // 2])
    return cut


def _param(**changes):
    def edit(proj):
        params = yaml.safe_load((proj / "params.yaml").read_text())
        for key, value in changes.items():
            section, _, name = key.partition("__")
            params[section][name] = value
        (proj / "params.yaml").write_text(yaml.safe_dump(params))
    return edit


A = TRAINED_ARCHS[0]
REG = f"data/models/{A}/registration.json"
#: (case, the damage, the command, what the one line must say)
CASES = [
    ("hand-off not JSON", _write(REG, "{"), ["evaluate"],
     rf"{REG}: not readable JSON .*: rerun the train@{A} stage"),
    ("hand-off a list", _write(REG, "[]"), ["evaluate"],
     rf"{REG}: holds a JSON list, not the dict the train@{A} stage writes"),
    ("hand-off without the digest", _write(REG, f'{{"architecture": "{A}"}}'), ["evaluate"],
     rf"{REG}: registration record lacks 'registered_model'.*rerun the train@{A} stage"),
    ("scaler not JSON", _write("data/windows/scaler.json", "{'features': "), ["train", A],
     r"data/windows/scaler.json: not readable JSON .*: rerun the windows stage"),
    ("scaler of another shape", _write("data/windows/scaler.json", '{"features": {"t_air": 1}}'), ["train", A],
     r"data/windows/scaler.json: not a scaler file \(TypeError"),
    ("window file cut short", _truncate("data/windows/history.nc"), ["train", A],
     r"data/windows/history.nc: not a readable NetCDF file"),
    ("dvc.lock with merge markers", _write("dvc.lock", "<<<<<<< HEAD\nschema: '2.0'\n=======\n>>>>>>> main\n"),
     ["train", A], r"dvc.lock: not a DVC lock file .*a merge conflict\? Resolve it"),
    ("MLflow store not a database", _write("mlruns/mlflow.db", "not sqlite"), ["evaluate"],
     r"mlruns/mlflow.db: the MLflow store cannot be opened"),
    ("epochs out of domain", _param(training__max_epochs=0), ["train", A], r"training.max_epochs"),
    ("an architecture not configured", lambda proj: None, ["train", "lstm"], r"architecture 'lstm' is not in"),
]


@pytest.mark.parametrize("case,damage,command,says", CASES, ids=[c[0] for c in CASES])
def test_a_user_error_is_one_line_naming_what_to_fix(project, tmp_path, monkeypatch, capsys, case, damage, command,
                                                     says):
    proj = tmp_path / "proj"
    shutil.copytree(project, proj, symlinks=True)
    damage(proj)
    monkeypatch.chdir(proj)
    capsys.readouterr()
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    head = f"thawcast {command[0]}: error: "
    assert head in err, err[-2000:]
    message = err[err.rindex(head):]  # the end of the output: a config error lists each bad key on a line
    assert re.search(says, message), message


def test_an_mlflow_store_that_refuses_a_write_half_way_is_one_line(tmp_path, monkeypatch, capsys):
    """MLflow wraps the database's refusal (a read-only or locked SQLite file, a full disk) in its own exception
    while a stage logs; that reaches the user as one line, and any other exception still as a traceback."""
    import sqlite3

    import mlflow
    import sqlalchemy.exc

    from thawcast.stages import static
    from thawcast.tracking.registry import store_write_failure

    def refused(*args, **kwargs):
        try:
            raise sqlalchemy.exc.OperationalError("INSERT INTO metrics", {}, sqlite3.OperationalError(
                "attempt to write a readonly database"))
        except sqlalchemy.exc.OperationalError as exc:
            raise mlflow.exceptions.MlflowException("(sqlite3.OperationalError) attempt to write ...") from exc

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 42\n")
    monkeypatch.setattr(static, "run", refused)
    assert cli.main(["static"]) == 2
    assert capsys.readouterr().err.strip() == (
        "thawcast static: error: the MLflow store refused a write (attempt to write a readonly database): check"
        " that the store named by mlflow.tracking_uri and its folder can be written, the disk has room and no other"
        " program holds it, then run the stage again")
    assert store_write_failure(mlflow.exceptions.MlflowException("no such model")) is None  # not the store's
    monkeypatch.setattr(static, "run", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # a bug stays a traceback
        cli.main(["static"])


def test_first_line_of_a_library_message_or_its_fallback():
    from thawcast.errors import first_line

    assert first_line(ValueError("  bad thing\nTraceback noise\nmore"), "ValueError") == "bad thing"
    assert first_line(ValueError(""), "ValueError") == "ValueError"  # says nothing: the fallback
    assert first_line("x" * 500, "?") == "x" * 300 and first_line("x" * 500, "?", 20) == "x" * 20
