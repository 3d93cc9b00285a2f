"""The train and evaluate stages on the tiny world: MLflow runs, registry, hand-off files, failures."""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from conftest import TRAINED_ARCHS as ARCHS
from conftest import layout
from thawcast.catalogue import BASELINES
from thawcast.errors import ConfigError, DataError, ModelInputError
from thawcast.learn.settings import resolve_settings
from thawcast.models.packed import PackedModel
from thawcast.prep.windows import open_windows
from thawcast.stages import evaluate, train
from thawcast.tracking import registry
from thawcast.tracking.dvclock import data_version
from thawcast.tracking.registry import (
    WEIGHTS_TAG,
    Registration,
    RegistryError,
    load_registered,
    load_registration,
    read_registration,
    resolve_registration,
    use_store,
)


def _registration(root, arch):
    return read_registration(layout(root).registration(arch), arch)


def test_train_registers_a_version_with_the_champion_alias_and_writes_the_hand_off(trained):
    cfg, root, _ = trained
    record = json.loads(layout(root).registration("gru").read_text())
    # The hand-off names the model by its weights' digest: no version counter or run id.
    assert set(record) == {"architecture", "registered_model", "weights_sha256", "alias"}
    reg = _registration(root, "gru")
    assert reg.registered_model == "thawcast-gru" and reg.alias == "champion"
    assert len(reg.weights_sha256) == 64 and reg.label == f"thawcast-gru#{reg.weights_sha256[:12]}"
    use_store(cfg.mlflow)
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("thawcast-gru", "champion")
    assert champion.tags[WEIGHTS_TAG] == reg.weights_sha256
    assert str(resolve_registration(reg).version) == str(champion.version)
    run = client.get_run(champion.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["thawcast.architecture"] == "gru"
    assert any(v == "abc123.dir" for k, v in run.data.tags.items() if k.startswith("dvc.md5."))
    assert "git_commit" in run.data.tags
    assert run.data.params["model.hidden"] == "8" and run.data.params["hparams_source"] == "params.yaml"
    assert run.data.tags[WEIGHTS_TAG] == reg.weights_sha256
    epochs = client.get_metric_history(champion.run_id, "val_loss")
    assert len(epochs) == int(run.data.metrics["epochs_run"]) >= 1
    assert {"test_rmse", "val_rmse", "eval_test_rmse"} <= set(run.data.metrics)
    history = (root / "models" / "gru" / "history.csv").read_text().splitlines()
    assert len(history) == len(epochs) + 1


def test_registered_model_reproduces_the_logged_test_score(trained):
    cfg, root, world = trained
    reg = _registration(root, "tcn")
    use_store(cfg.mlflow)
    model, mv = load_registration(reg)
    assert isinstance(model, PackedModel) and model.weights_sha256() == reg.weights_sha256
    champion, champion_mv = load_registered(reg.registered_model, alias="champion")
    assert str(champion_mv.version) == str(mv.version) and champion.weights_sha256() == reg.weights_sha256
    test = open_windows(world / "windows" / "history.nc", "test")
    import xarray as xr

    with xr.open_dataset(world / "windows" / "history.nc") as ds:
        obs = ds["y_degc"].values[test.band, test.last + 1]
    with torch.no_grad():
        pred = model(PackedModel.pack(test.inputs(), test.band)).numpy()
    logged = mlflow.MlflowClient().get_run(mv.run_id).data.metrics["test_rmse"]
    assert np.sqrt(np.mean((pred - obs) ** 2)) == pytest.approx(logged, rel=1e-5)


def test_missing_registered_model_or_alias_is_a_clear_error(trained):
    cfg, _, _ = trained
    use_store(cfg.mlflow)
    with pytest.raises(RegistryError, match="'thawcast-nonet' does not exist.*thawcast-gru"):
        load_registered("thawcast-nonet", alias="champion")
    with pytest.raises(RegistryError, match="no alias 'retired'"):
        load_registered("thawcast-gru", alias="retired")
    with pytest.raises(RegistryError, match="no version 99"):
        load_registered("thawcast-gru", version=99)
    # A hand-off whose weights no registered version holds (another store, or a rebuilt one).
    with pytest.raises(RegistryError, match="no version of 'thawcast-gru' holds the weights 000000000000"):
        load_registration(Registration("gru", "thawcast-gru", "0" * 64, "champion"))


def test_retraining_adds_a_version_and_moves_the_alias(trained, tmp_path):
    cfg, root, world = trained
    use_store(cfg.mlflow)
    client = mlflow.MlflowClient()
    before = client.get_model_version_by_alias("thawcast-gru", "champion")
    latest = max(int(v.version) for v in client.search_model_versions("name='thawcast-gru'"))
    train.run(cfg, "gru", layout(tmp_path, windows=world / "windows", tuning=root / "tuning"))
    after = _registration(tmp_path, "gru")
    versions = client.search_model_versions("name='thawcast-gru'")
    assert max(int(v.version) for v in versions) == latest + 1
    champion = client.get_model_version_by_alias("thawcast-gru", "champion")
    assert int(champion.version) == latest + 1 and int(champion.version) > int(before.version)
    assert champion.tags[WEIGHTS_TAG] == after.weights_sha256
    # Same data, settings and seed: the same weights, so the DVC-tracked hand-off is byte-identical.
    assert layout(tmp_path).registration("gru").read_bytes() == layout(root).registration("gru").read_bytes()
    assert str(resolve_registration(after).version) == str(champion.version)


def _die(*args, **kwargs):
    raise RuntimeError("killed half way")


def _register_then_die(*args, **kwargs):
    train_register(*args, **kwargs)
    _die()


def _die_writing_history(path, *args, **kwargs):
    if path.name == "history.csv":  # the last output file the stage writes
        _die()
    return write_text(path, *args, **kwargs)


train_register = registry.register
write_text = Path.write_text
#: Where a train stage can die after it has started logging: after the model and metrics went to MLflow,
#: right after the new version was registered, and while the hand-off files were being written.
FAILURE_POINTS = {"after logging": (mlflow, "log_artifact", _die),
                  "after registering": (registry, "register", _register_then_die),
                  "during the final write": (Path, "write_text", _die_writing_history)}


@pytest.mark.parametrize("where", list(FAILURE_POINTS))
def test_a_run_that_dies_half_way_moves_no_alias_and_writes_nothing(trained, tmp_path, monkeypatch, where):
    cfg, root, world = trained
    use_store(cfg.mlflow)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id
    runs_before = {r.info.run_id for r in client.search_runs([exp])}
    versions_before = {v.version for v in client.search_model_versions("name='thawcast-tcn'")}
    champion = client.get_model_version_by_alias("thawcast-tcn", "champion").version

    monkeypatch.setattr(*FAILURE_POINTS[where])
    with pytest.raises(RuntimeError, match="half way"):
        train.run(cfg, "tcn", layout(tmp_path, windows=world / "windows", tuning=root / "tuning"))
    monkeypatch.undo()
    # nothing on disk, not even a staging folder; the alias downstream stages follow did not move
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
    assert client.get_model_version_by_alias("thawcast-tcn", "champion").version == champion
    (new_run,) = [r for r in client.search_runs([exp]) if r.info.run_id not in runs_before]
    assert "test_rmse" in new_run.data.metrics  # it did die after training, scoring and logging
    # what it registered was taken back: the registry holds no model that the DVC outputs do not name
    assert {v.version for v in client.search_model_versions("name='thawcast-tcn'")} == versions_before
    assert new_run.info.status == "FAILED"
    if where != "after logging":
        assert "failed before its outputs were in place" in new_run.data.tags["thawcast.failed"]


def test_a_version_registered_by_a_run_killed_before_the_alias_moved_is_never_used(trained):
    """kill -9 between registering and moving the alias leaves a version nobody takes back; with the same weights
    (same data, settings and seed) it must not take the place of the version the alias names."""
    cfg, root, _ = trained
    use_store(cfg.mlflow)
    client = mlflow.MlflowClient()
    reg = _registration(root, "tcn")
    champion = client.get_model_version_by_alias("thawcast-tcn", "champion")
    assert str(resolve_registration(reg).version) == str(champion.version)
    stray = train_register(f"models:/thawcast-tcn/{champion.version}", "thawcast-tcn", champion.run_id,
                           reg.weights_sha256)
    try:
        assert int(stray.version) > int(champion.version)
        assert str(resolve_registration(reg).version) == str(champion.version)
        client.delete_registered_model_alias("thawcast-tcn", "champion")  # control: without the alias, the newest
        assert str(resolve_registration(reg).version) == str(stray.version)
    finally:
        client.set_registered_model_alias("thawcast-tcn", "champion", champion.version)
        client.delete_model_version("thawcast-tcn", stray.version)


def test_tuned_best_params_override_the_defaults(tmp_path, tiny_cfg):
    paths = layout(tmp_path)
    f = paths.best_params("gru")
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps({"architecture": "gru", "hparams": {"hidden": 5, "layers": 2, "dropout": 0.0},
                             "training": {"learning_rate": 0.02, "batch_size": 8}, "band_embedding_dim": 3}))
    s = resolve_settings(tiny_cfg, "gru", f)
    assert (s.hparams.hidden, s.training.learning_rate, s.training.batch_size, s.band_embedding_dim) == (5, 0.02, 8, 3)
    assert s.training.max_epochs == tiny_cfg.training.max_epochs and s.source == str(f)
    assert resolve_settings(tiny_cfg, "tcn", paths.best_params("tcn")).source == "params.yaml"
    for bad, match in (({"architecture": "tcn"}, "written for architecture 'tcn'"),
                       ({"architecture": "gru", "training": {"max_epochs": 3}}, "cannot be tuned"),
                       ({"architecture": "gru", "hparams": {"hiden": 3}}, "unknown parameter"),
                       ({"architecture": "gru", "hparams": {"hidden": -1}}, "invalid settings for gru")):
        f.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=match):
            resolve_settings(tiny_cfg, "gru", f)
    with pytest.raises(ConfigError, match="not in training.architectures"):
        resolve_settings(tiny_cfg, "lstm", paths.best_params("lstm"))


def test_evaluate_scores_networks_and_baselines_on_the_same_windows(trained):
    cfg, root, world = trained
    paths = layout(root)
    m = json.loads(paths.metric("evaluation.json").read_text())
    assert set(m["models"]) == {*ARCHS, *BASELINES}
    n_test = len(open_windows(world / "windows" / "history.nc", "test"))
    assert m["n_test_windows"] == n_test
    for net in ARCHS:
        for base in BASELINES:
            expect = 1 - m["models"][net]["overall"]["rmse"] / m["models"][base]["overall"]["rmse"]
            assert m["rmse_reduction"][net][base] == pytest.approx(expect)
        assert set(m["models"][net]["per_band_layer"]) == set(cfg.study_area.band_labels)
    assert m["best_network"] in ARCHS
    assert m["best_network_beats_climatology"] == (
        m["models"][m["best_network"]]["overall"]["rmse"] < m["models"]["climatology"]["overall"]["rmse"])
    # The scores name the registered models by their weights' digest, as train recorded them.
    assert m["registered"] == {a: _registration(root, a).label for a in ARCHS}
    table = paths.metric("evaluation.md").read_text()
    assert all(f"| {n} |" in table for n in m["models"])
    figs = root / "evaluation" / "figures"
    for name in [f"observed_vs_predicted_{a}.png" for a in ARCHS] + ["rmse_by_model.png"]:
        assert (figs / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import xarray as xr

    with xr.open_dataset(paths.test_predictions) as ds:
        assert ds.sizes["window"] == n_test and set(ds["model"].values) == set(m["models"])
        assert ds.attrs["thawcast_synthetic"] == "true"
        assert json.loads(ds.attrs["registered_models"]) == m["registered"]
        gru = ds["predicted"].sel(model="gru").values
        assert np.sqrt(np.mean((gru - ds["observed"].values) ** 2)) == pytest.approx(
            m["models"]["gru"]["overall"]["rmse"])


def test_evaluate_logs_to_the_training_runs_and_its_own_run(trained):
    cfg, root, _ = trained
    use_store(cfg.mlflow)
    client = mlflow.MlflowClient()
    reg = _registration(root, "gru")
    exp = client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id
    runs = client.search_runs([exp], "tags.`thawcast.stage` = 'evaluate'")
    assert runs and "climatology_test_rmse" in runs[0].data.metrics
    assert runs[0].data.params["model.gru"] == reg.label
    # The version evaluate scored (a retrained identical model may since have registered a newer one
    # with the same digest) holds the recorded weights, and its training run got the figures.
    mv = client.get_model_version("thawcast-gru", runs[0].data.params["version.gru"])
    assert mv.tags[WEIGHTS_TAG] == reg.weights_sha256
    arts = [a.path for a in client.list_artifacts(mv.run_id, "figures")]
    assert "figures/observed_vs_predicted_gru.png" in arts


def test_evaluate_refuses_models_trained_on_other_features(trained):
    cfg, _, world = trained
    use_store(cfg.mlflow)
    model, _ = load_registered("thawcast-gru", alias="champion")
    test = open_windows(world / "windows" / "history.nc", "test")
    model.feature_names = ("t_air", *model.feature_names[1:-1], "w9")
    with pytest.raises(ModelInputError, match=r"other features.*missing \['w9'\], unexpected \['z'\]"):
        model.check_windows(test, "thawcast-gru")
    model.feature_names = tuple(reversed(test.feature_names))
    with pytest.raises(ModelInputError, match="another order"):
        model.check_windows(test, "thawcast-gru")


def test_evaluate_without_a_trained_model_names_the_missing_stage(trained, tmp_path):
    cfg, _, world = trained
    with pytest.raises(DataError, match=r"run the train@gru stage"):
        evaluate.run(cfg, layout(tmp_path, windows=world / "windows"))
    assert not (tmp_path / "evaluation").exists() and not (tmp_path / "metrics").exists()


def test_data_version_reads_dvc_lock(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  windows:\n    outs:\n    - path: data/windows\n      md5: f00.dir\n")
    assert data_version(["data/windows", "data/other"], lock) == {"data/windows": "f00.dir", "data/other": "unknown"}
    assert data_version(["data/windows"], tmp_path / "none.lock") == {"data/windows": "unknown"}


def test_a_broken_dvc_lock_is_one_clear_error(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text("stages:\n<<<<<<< HEAD\n  windows: [\n")
    with pytest.raises(DataError, match="not a DVC lock file.*merge conflict"):
        data_version(["data/windows"], lock)


def test_models_load_without_mlflows_second_copy_of_lightning():
    """mlflow.pytorch imports pytorch_lightning only for autolog(); the registry keeps it out (6-7 s per stage that
    loads models) and takes its stand-in for that module out of sys.modules again."""
    code = ("import sys; from thawcast.tracking.registry import _mlflow_pytorch; m = _mlflow_pytorch();"
            " assert callable(m.load_model) and callable(m.log_model);"
            " print(sys.modules.get('pytorch_lightning', 'absent'), 'lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["absent", "False"]
