"""A throw-away git copy of the repository on the tiny profile, for tests that run ``dvc repro`` or the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from conftest import REPO, TINY

#: Environment variables MLflow exports whenever a process sets its store (so that its subprocesses inherit it): a
#: subprocess of a test would otherwise inherit the store of whichever test ran before in this interpreter.
MLFLOW_EXPORTS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
#: What an outer ``make test`` exports to its children (jobserver, -s, -k): a ``make`` run by a test must not take it.
MAKE_EXPORTS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")


def cli_env() -> dict[str, str]:
    """This environment for a ``thawcast``/``dvc``/``make`` subprocess: this interpreter's ``bin`` first on PATH, no
    store that an earlier test's MLflow calls exported and no flags of the ``make`` that runs the tests."""
    env = {k: v for k, v in os.environ.items() if k not in MLFLOW_EXPORTS + MAKE_EXPORTS}
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def tiny_repo(work: Path, archs: list[str], edit: Callable[[dict], None] | None = None) -> tuple[dict, dict]:
    """Copy the git-tracked files to ``work`` with the tiny profile, ``archs`` and ``edit(params)`` applied,
    drop ``dvc.lock`` and commit it all to a new git repository. Returns the params and the environment to run
    commands in (this interpreter's ``bin`` first on PATH)."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).exists():
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, work / f)
    params = yaml.safe_load((work / "params.yaml").read_text())
    for key, value in TINY.items():
        params[key] = {**params[key], **value} if isinstance(value, dict) else value
    params["training"]["architectures"] = list(archs)
    if edit is not None:
        edit(params)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    (work / "dvc.lock").unlink(missing_ok=True)
    env = cli_env()
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        assert run(cmd, work, env).returncode == 0
    return params, env
