"""`dvc repro` end to end on a tiny profile, in a throw-away copy of the repository."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from repo_copy import run, tiny_repo


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny copy of the repository after one ``dvc repro``: (folder, params, environment, its output)."""
    work = tmp_path_factory.mktemp("dvc") / "repo"
    # two architectures exercise every foreach stage; all five are covered by the model contract tests
    params, env = tiny_repo(work, ["gru", "tcn"])
    # what `make repro` runs after the install: the stages side by side under make, then a plain `dvc repro`
    first = run(["make", "--no-print-directory", "pipeline"], work, env)
    assert first.returncode == 0, first.stderr[-3000:]
    return work, params, env, first


def test_dvc_repro_builds_every_stage_and_a_second_run_is_a_noop(built):
    work, params, env, first = built
    archs = params["training"]["architectures"]
    for stage in ("raw", "static", "bands", "scenarios", "windows", "tune",
                  "compare-studies", "seed-spread", "feature-ablation", *[f"train@{a}" for a in archs], "evaluate", "project", "thaw", "explain",
                  "compare-explanations", "tune-cells", "train-cells@gru", "evaluate-cells", "seed-spread-cells", "explain-cells",
                  "project-cells", "report"):
        assert f"Running stage '{stage}'" in first.stdout
    assert (work / "data" / "bands" / "era5land_bands.nc").exists()
    assert (work / "data" / "windows" / "history.nc").exists()
    metrics = run(["dvc", "metrics", "show", "--json"], work, env)
    assert metrics.returncode == 0 and "qdm_retained" in metrics.stdout
    shown = json.loads(metrics.stdout)
    evaluation = next(v["data"]["metrics/evaluation.json"]["data"] for v in shown.values())
    assert set(archs) | {"climatology", "persistence", "ridge"} <= set(evaluation["models"])
    assert (work / "data" / "evaluation" / "figures" / "rmse_by_model.png").exists()
    assert (work / "data" / "projections" / "projections.nc").exists()
    assert (work / "data" / "thaw" / "thaw_metrics.csv").exists()
    page = (work / "data" / "report" / "index.html").read_text()
    assert "Synthetic data" in page and "Exact versions" in page and "Grid cells: seed noise" in page
    # evaluation, SHAP, projections, ALT, the perfect-model skill by decade, the cell model's two skill maps, its
    # SHAP bar chart and its two projection maps
    assert page.count("data:image/png;base64,") == 4 + 3 * len(archs) + 5
    assert "Grid cells: what the cell models read" in page
    assert "Grid cells: one model across every cell" in page and "near-surface permafrost under each" in page
    cells = json.loads((work / "metrics" / "cell_projections.json").read_text())
    assert set(cells["perfect_model"]["gru"]) == {"rcp26", "rcp45", "rcp60", "rcp85"}  # the projected cells have a truth
    assert "How far to trust the projections" in page
    ablation = json.loads((work / "metrics" / "feature_ablation.json").read_text())
    assert "Snow: does it earn a place" in page and f"Decision: {ablation['decision']}" in page
    assert ablation["features"] == ["swe"] and ablation["difference"]["n_pairs"] == len(archs) * 2  # two seeds
    assert next(v["data"]["metrics/perfect_model.json"]["data"] for v in shown.values())["available"]
    pm = json.loads((work / "metrics" / "perfect_model.json").read_text())  # dvc shows numbers only
    assert set(pm["networks"]) == set(archs) and set(pm["scores"]) == {"rcp26", "rcp45", "rcp60", "rcp85"}
    period = next(v["data"]["metrics/projection_period.json"]["data"] for v in shown.values())
    assert period["members"]["n_series"] == 4 * len(archs) * 6 * 4
    studies = next(v["data"]["metrics/tuning.json"]["data"] for v in shown.values())
    assert set(studies) == set(archs)
    assert all(s["trials_complete"] + s["trials_pruned"] == params["tuning"]["budget"]["n_trials"]
               for s in studies.values())
    spread = next(v["data"]["metrics/seed_spread.json"]["data"] for v in shown.values())
    assert set(spread["architectures"]) == set(archs)
    assert all("tuning_effect" in row for row in spread["architectures"].values())
    for a in archs:  # each model was trained with the settings seed-spread chose on validation
        row = spread["architectures"][a]
        used = json.loads((work / "data" / "models" / a / "settings.json").read_text())
        chosen = row["choice"]["settings"]
        assert chosen == ("tuned" if row["choice"]["tuned_val_rmse"] < row["choice"]["defaults_val_rmse"]
                          else "defaults")
        assert used["hparams"] == row[chosen]["settings"]["hparams"]
        if chosen == "tuned":
            best = json.loads((work / "data" / "tuning" / a / "best_params.json").read_text())
            assert used["hparams"] == best["hparams"] and used["source"].endswith(f"{a}/best_params.json")
        else:
            assert used["source"].startswith("params.yaml (tuned settings rejected")
    # the cell model trains with its study's best settings
    tuned = json.loads((work / "metrics" / "cell_tuning.json").read_text())["architectures"]["gru"]
    assert tuned["trials_complete"] + tuned["trials_pruned"] == params["tuning"]["cells"]["budget"]["n_trials"]
    used = json.loads((work / "data" / "cell_models" / "gru" / "settings.json").read_text())
    assert used["hparams"] == tuned["settings"]["hparams"] and used["source"].endswith("cell_tuning.json")
    assert used["training"]["learning_rate"] == tuned["best_params"]["learning_rate"]
    assert "Grid cells: tuning the cell models" in page
    # every registered model's alias is on the version holding the weights its train stage recorded
    check = ("import json, mlflow; mlflow.set_tracking_uri('sqlite:///mlruns/mlflow.db'); c = mlflow.MlflowClient();"
             "print(json.dumps({m.name: c.get_model_version_by_alias(m.name, 'champion').tags"
             "['thawcast.weights_sha256'] for m in c.search_registered_models()}))")
    reg = run([sys.executable, "-c", check], work, env)
    assert reg.returncode == 0, reg.stderr[-2000:]
    aliases = json.loads(reg.stdout.strip().splitlines()[-1])
    for a in archs:
        recorded = json.loads((work / "data" / "models" / a / "registration.json").read_text())
        assert aliases[f"thawcast-{a}"] == recorded["weights_sha256"] and len(recorded["weights_sha256"]) == 64
        assert "version" not in recorded and "run_id" not in recorded
    second = run(["dvc", "repro"], work, env)
    assert second.returncode == 0
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout


@pytest.mark.slow
def test_a_rebuild_from_nothing_changes_no_tracked_byte(built):
    """Bit-reproducible: commit the build, then rebuild from nothing (no data, cache, MLflow store or
    Optuna study, as on a fresh clone). Every stage runs again and git sees no change at all."""
    work, _params, env, _first = built
    tracked = ["dvc.lock", *sorted(str(p.relative_to(work)) for p in (work / "metrics").glob("*.*"))]
    assert run(["git", "add", "-A", *tracked], work, env).returncode == 0
    assert run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "built"], work,
                env).returncode == 0
    before = {f: (work / f).read_bytes() for f in tracked}
    for folder in ("data/raw", "data/static", "data/bands", "data/scenarios", "data/windows", "data/tuning",
                   "data/models", "data/evaluation", "data/projections", "data/thaw", "data/explain",
                   "data/report", "mlruns/artifacts", ".dvc/cache", ".dvc/tmp"):
        shutil.rmtree(work / folder, ignore_errors=True)
    for db in ("mlruns/mlflow.db", "mlruns/optuna.journal", "mlruns/optuna.db"):
        (work / db).unlink(missing_ok=True)
    third = run(["dvc", "repro"], work, env)
    assert third.returncode == 0, third.stderr[-3000:]
    # every stage with an output under data/ ran again (a stage whose only outputs are git-tracked metrics
    # is up to date when its inputs came out identical, which is the point)
    for stage in data_stages(work):
        assert f"Running stage '{stage}'" in third.stdout, stage
    changed = [f for f in tracked if (work / f).read_bytes() != before[f]]
    assert not changed, (f"a rebuild from nothing changed {changed}; dvc.lock entries that differ: "
                         f"{lock_changes(before['dvc.lock'], (work / 'dvc.lock').read_bytes())}")
    status = run(["git", "status", "--porcelain"], work, env)
    assert status.stdout.strip() == "", status.stdout


def lock_changes(old: bytes, new: bytes) -> list[str]:
    """``stage: path`` of every dependency or output whose hash differs between two ``dvc.lock`` texts."""
    def entries(text):
        return {f"{name}: {e['path']}": e.get("md5") or e.get("hash")
                for name, st in yaml.safe_load(text)["stages"].items()
                for e in [*st.get("deps", []), *st.get("outs", [])]}
    a, b = entries(old), entries(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def data_stages(work: Path) -> list[str]:
    """Stages in ``dvc.lock`` (``train@gru`` ...) with an output under ``data/``."""
    stages = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    return [name for name, st in stages.items() if any(o["path"].startswith("data/") for o in st.get("outs", []))]
