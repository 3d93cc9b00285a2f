"""The train and evaluate stages on the tiny world: MLflow runs, registry, hand-off files, failures."""

import json

import mlflow
import numpy as np
import pytest
import torch

from conftest import TRAINED_ARCHS as ARCHS
from thawcast.errors import ConfigError, DataError, ModelInputError
from thawcast.models.packed import PackedModel
from thawcast.settings import BEST_PARAMS_FILE, resolve_settings
from thawcast.stages import evaluate, train
from thawcast.tracking import RegistryError, data_version, load_registered, use_store
from thawcast.windows import open_windows


def test_train_registers_a_version_with_the_champion_alias_and_writes_the_hand_off(trained):
    cfg, root, _ = trained
    reg = train.read_registration(root / "models", "gru")
    assert reg.registered_model == "thawcast-gru" and reg.alias == "champion"
    use_store(cfg.mlflow)
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("thawcast-gru", "champion").version) == reg.version
    run = client.get_run(reg.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["thawcast.architecture"] == "gru"
    assert any(v == "abc123.dir" for k, v in run.data.tags.items() if k.startswith("dvc.md5."))
    assert "git_commit" in run.data.tags
    assert run.data.params["model.hidden"] == "8" and run.data.params["hparams_source"] == "params.yaml"
    epochs = client.get_metric_history(reg.run_id, "val_loss")
    assert len(epochs) == int(run.data.metrics["epochs_run"]) >= 1
    assert {"test_rmse", "val_rmse", "eval_test_rmse"} <= set(run.data.metrics)
    history = (root / "models" / "gru" / "history.csv").read_text().splitlines()
    assert len(history) == len(epochs) + 1


def test_registered_model_reproduces_the_logged_test_score(trained):
    cfg, root, world = trained
    reg = train.read_registration(root / "models", "tcn")
    use_store(cfg.mlflow)
    model, mv = load_registered(reg.registered_model, alias="champion")
    assert str(mv.version) == reg.version and isinstance(model, PackedModel)
    test = open_windows(world / "windows" / "history.nc", "test")
    import xarray as xr

    with xr.open_dataset(world / "windows" / "history.nc") as ds:
        obs = ds["y_degc"].values[test.band, test.last + 1]
    with torch.no_grad():
        pred = model(PackedModel.pack(test.inputs(), test.band)).numpy()
    logged = mlflow.MlflowClient().get_run(reg.run_id).data.metrics["test_rmse"]
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


def test_retraining_adds_a_version_and_moves_the_alias(trained, tmp_path):
    cfg, root, world = trained
    before = train.read_registration(root / "models", "gru")
    train.run(cfg, "gru", world / "windows", root / "tuning", tmp_path / "models", tmp_path / "no.lock")
    after = train.read_registration(tmp_path / "models", "gru")
    assert int(after.version) == int(before.version) + 1
    use_store(cfg.mlflow)
    assert str(mlflow.MlflowClient().get_model_version_by_alias("thawcast-gru", "champion").version) == after.version


def test_a_run_that_dies_half_way_registers_nothing_and_writes_nothing(trained, tmp_path, monkeypatch):
    cfg, root, world = trained
    use_store(cfg.mlflow)
    client = mlflow.MlflowClient()
    n_versions = len(client.search_model_versions("name='thawcast-tcn'"))

    def boom(*args, **kwargs):
        raise RuntimeError("killed half way")

    monkeypatch.setattr(train, "train_model", boom)
    with pytest.raises(RuntimeError, match="half way"):
        train.run(cfg, "tcn", world / "windows", root / "tuning", tmp_path / "models", tmp_path / "no.lock")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
    assert len(client.search_model_versions("name='thawcast-tcn'")) == n_versions
    failed = client.search_runs([client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id],
                                "attributes.status = 'FAILED'")
    assert len(failed) >= 1


def test_tuned_best_params_override_the_defaults(tmp_path, tiny_cfg):
    f = tmp_path / "gru" / BEST_PARAMS_FILE
    f.parent.mkdir()
    f.write_text(json.dumps({"architecture": "gru", "hparams": {"hidden": 5, "layers": 2, "dropout": 0.0},
                             "training": {"learning_rate": 0.02, "batch_size": 8}, "band_embedding_dim": 3}))
    s = resolve_settings(tiny_cfg, "gru", tmp_path)
    assert (s.hparams.hidden, s.training.learning_rate, s.training.batch_size, s.band_embedding_dim) == (5, 0.02, 8, 3)
    assert s.training.max_epochs == tiny_cfg.training.max_epochs and s.source == str(f)
    assert resolve_settings(tiny_cfg, "tcn", tmp_path).source == "params.yaml"
    for bad, match in (({"architecture": "tcn"}, "written for architecture 'tcn'"),
                       ({"architecture": "gru", "training": {"max_epochs": 3}}, "cannot be tuned"),
                       ({"architecture": "gru", "hparams": {"hiden": 3}}, "unknown parameter"),
                       ({"architecture": "gru", "hparams": {"hidden": -1}}, "invalid settings for gru")):
        f.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=match):
            resolve_settings(tiny_cfg, "gru", tmp_path)
    with pytest.raises(ConfigError, match="not in training.architectures"):
        resolve_settings(tiny_cfg, "lstm", tmp_path)


def test_evaluate_scores_networks_and_baselines_on_the_same_windows(trained):
    cfg, root, world = trained
    m = json.loads((root / "metrics" / evaluate.METRICS_FILE).read_text())
    assert set(m["models"]) == {*ARCHS, *evaluate.BASELINES}
    n_test = len(open_windows(world / "windows" / "history.nc", "test"))
    assert m["n_test_windows"] == n_test
    for net in ARCHS:
        for base in evaluate.BASELINES:
            expect = 1 - m["models"][net]["overall"]["rmse"] / m["models"][base]["overall"]["rmse"]
            assert m["rmse_reduction"][net][base] == pytest.approx(expect)
        assert set(m["models"][net]["per_band_layer"]) == set(cfg.study_area.band_labels)
    assert m["best_network"] in ARCHS
    assert m["best_network_beats_climatology"] == (
        m["models"][m["best_network"]]["overall"]["rmse"] < m["models"]["climatology"]["overall"]["rmse"])
    table = (root / "metrics" / evaluate.TABLE_FILE).read_text()
    assert all(f"| {n} |" in table for n in m["models"])
    figs = root / "evaluation" / "figures"
    for name in [f"observed_vs_predicted_{a}.png" for a in ARCHS] + ["rmse_by_model.png"]:
        assert (figs / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import xarray as xr

    with xr.open_dataset(root / "evaluation" / evaluate.PREDICTIONS_FILE) as ds:
        assert ds.sizes["window"] == n_test and set(ds["model"].values) == set(m["models"])
        assert ds.attrs["thawcast_synthetic"] == "true"
        gru = ds["predicted"].sel(model="gru").values
        assert np.sqrt(np.mean((gru - ds["observed"].values) ** 2)) == pytest.approx(
            m["models"]["gru"]["overall"]["rmse"])


def test_evaluate_logs_to_the_training_runs_and_its_own_run(trained):
    cfg, root, _ = trained
    use_store(cfg.mlflow)
    client = mlflow.MlflowClient()
    reg = train.read_registration(root / "models", "gru")
    arts = [a.path for a in client.list_artifacts(reg.run_id, "figures")]
    assert "figures/observed_vs_predicted_gru.png" in arts
    exp = client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id
    runs = client.search_runs([exp], "tags.`thawcast.stage` = 'evaluate'")
    assert runs and "climatology_test_rmse" in runs[0].data.metrics


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
        evaluate.run(cfg, world / "windows", tmp_path / "models", tmp_path / "ev", tmp_path / "m")
    assert not (tmp_path / "ev").exists()


def test_data_version_reads_dvc_lock(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  windows:\n    outs:\n    - path: data/windows\n      md5: f00.dir\n")
    assert data_version(["data/windows", "data/other"], lock) == {"data/windows": "f00.dir", "data/other": "unknown"}
    assert data_version(["data/windows"], tmp_path / "none.lock") == {"data/windows": "unknown"}
