"""All-or-nothing stage outputs: leftovers of dead runs cleaned, a crash between the renames recovered, and an
output that cannot be written is one clear line with nothing changed."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from thawcast.errors import DataError
from thawcast.quality.provenance import staged_output


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(folder: Path, text: str) -> None:
    (folder / "out.txt").write_text(text)


def test_a_failing_block_leaves_the_previous_output_and_no_staging_folder(tmp_path):
    final = tmp_path / "models"
    with staged_output(final) as tmp:
        _write(tmp, "v1")
    with pytest.raises(RuntimeError), staged_output(final) as tmp:
        _write(tmp, "v2")
        raise RuntimeError("half-way")
    assert (final / "out.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_staging_folders_of_dead_runs_are_removed_and_a_live_runs_kept(tmp_path):
    final = tmp_path / "models"
    dead, live = _dead_pid(), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for pid in (dead, live.pid):
            (tmp_path / f".models.tmp-{pid}").mkdir()
            _write(tmp_path / f".models.tmp-{pid}", "partial")
        with staged_output(final) as tmp:
            _write(tmp, "v1")
        assert not (tmp_path / f".models.tmp-{dead}").exists()
        assert (tmp_path / f".models.tmp-{live.pid}" / "out.txt").read_text() == "partial"  # another run's
    finally:
        live.kill()
        live.wait()
    assert (final / "out.txt").read_text() == "v1"


def test_a_run_killed_between_its_two_renames_gets_its_previous_output_back(tmp_path):
    """Killed after ``final -> .old-<pid>`` and before ``.tmp-<pid> -> final``: the next run restores the last
    complete output before it starts, so a failure of that run leaves exactly it."""
    final, dead = tmp_path / "models", _dead_pid()
    old, partial = tmp_path / f".models.old-{dead}", tmp_path / f".models.tmp-{dead}"
    old.mkdir()
    _write(old, "v1")
    partial.mkdir()
    _write(partial, "v2-complete-but-not-moved")
    with pytest.raises(RuntimeError), staged_output(final):
        raise RuntimeError("this run fails too")
    assert (final / "out.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


@pytest.mark.parametrize("code", [errno.EACCES, errno.ENOSPC, errno.EROFS])
def test_an_output_that_cannot_be_written_is_one_clear_error_with_nothing_changed(tmp_path, monkeypatch, code):
    final = tmp_path / "models"
    with staged_output(final) as tmp:
        _write(tmp, "v1")
    real_rename = Path.rename

    def refuse(self, target):  # moving the new output in fails, as on a read-only, full or forbidden folder
        if self.name.startswith(".models.tmp-"):
            raise OSError(code, os.strerror(code), str(final))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse)
    with pytest.raises(DataError, match=f"{final}: cannot write .*{os.strerror(code)}") as info, \
            staged_output(final) as tmp:
        _write(tmp, "v2")
    assert "previous output is left as it was" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.undo()
    assert (final / "out.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_the_cli_prints_a_disk_or_permission_error_as_one_line(monkeypatch, capsys, tmp_path):
    from thawcast import cli
    from thawcast.stages import static

    def full_disk(cfg):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "data/static/soil.nc")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 42\n")
    monkeypatch.setattr(static, "run", full_disk)
    assert cli.main(["static"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("thawcast static: error: data/static/soil.nc: No space left on device (free disk space, or"
                   " check the folder's permissions, then run the stage again)")


def test_an_mlflow_run_left_running_by_a_killed_process_is_marked_killed_and_a_live_ones_kept(tmp_path):
    import mlflow

    from thawcast.config import MlflowConfig
    from thawcast.tracking.registry import use_store

    cfg = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifacts=tmp_path / "art")
    start = ("import os, signal, sys, time\n"
             "from thawcast.config import MlflowConfig\n"
             "from thawcast.tracking.registry import start_run, use_store\n"
             f"use_store(MlflowConfig(tracking_uri={cfg.tracking_uri!r}, artifacts={str(cfg.artifacts)!r}))\n"
             "run = start_run(run_name=sys.argv[1])\n"
             "print(run.info.run_id, flush=True)\n"
             "time.sleep(60) if sys.argv[1] == 'alive' else os.kill(os.getpid(), signal.SIGKILL)\n")
    use_store(cfg)  # the store exists before the two processes open it
    procs = {name: subprocess.Popen([sys.executable, "-c", start, name], stdout=subprocess.PIPE, text=True)
             for name in ("killed", "alive")}
    try:
        ids = {name: p.stdout.readline().strip() for name, p in procs.items()}
        procs["killed"].wait(60)
        assert procs["killed"].returncode == -9
        use_store(cfg)  # the next stage to start on this machine
        client = mlflow.MlflowClient()
        assert client.get_run(ids["killed"]).info.status == "KILLED"
        assert client.get_run(ids["alive"]).info.status == "RUNNING"  # a live process's run is left alone
    finally:
        procs["alive"].kill()
        procs["alive"].wait()
