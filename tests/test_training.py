"""The generic training loop: batching, determinism, best-epoch weights, failure on bad data."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, layout
from thawcast.config import TrainingConfig, parse_config
from thawcast.errors import ModelInputError
from thawcast.learn.settings import default_settings
from thawcast.learn.training import (
    LazyWindows,
    TensorBatches,
    TrainingData,
    TrainingError,
    WindowTensors,
    fit,
    predict,
    train_model,
)
from thawcast.models.registry import ARCHITECTURES, build_model
from thawcast.prep.windows import Scaler, WindowSet

W, F, BANDS, MONTHS = 6, 3, 2, 90


def toy_windows(seed=0, first=W - 1, last=MONTHS - 2) -> WindowSet:
    """Targets = mean of feature 0 over the window (+ band offset): a learnable known relation."""
    g = np.random.default_rng(seed)
    x = g.normal(size=(BANDS, MONTHS, F)).astype(np.float32)
    csum = np.concatenate([np.zeros((BANDS, 1)), np.cumsum(x[..., 0], axis=1)], axis=1)
    y = np.zeros((BANDS, MONTHS, 4), dtype=np.float32)
    for k in range(W, MONTHS):
        y[:, k, :] = ((csum[:, k] - csum[:, k - W]) / W)[:, None] + np.array([0.0, 0.5])[:, None]
    ks = np.arange(first, last + 1)
    return WindowSet(x=x, band=np.repeat(np.arange(BANDS), len(ks)), last=np.tile(ks, BANDS), length=W,
                     times=pd.date_range("2001-01-01", periods=MONTHS, freq="MS"), feature_names=("a", "b", "c"),
                     y=y)


def tiny_net(arch="gru"):
    torch.manual_seed(0)
    return build_model(arch, F, BANDS, {"hidden": 8, "layers": 1} if arch == "gru" else None, 2)


CFG = TrainingConfig(max_epochs=12, batch_size=16, learning_rate=0.01, patience=20, accelerator="cpu")


def test_batches_cover_every_window_once_and_shuffle_reproducibly():
    data = WindowTensors.from_windows(toy_windows())
    n = len(data)
    b1, b2 = TensorBatches(data, 16, shuffle=True, seed=3), TensorBatches(data, 16, shuffle=True, seed=3)
    e1, e1b = [torch.cat([y for _, _, y in b]) for b in (b1, b2)]
    e2 = torch.cat([y for _, _, y in b1])
    assert len(b1) == -(-n // 16) and e1.shape[0] == n
    assert torch.equal(e1, e1b)  # same seed, same order
    assert not torch.equal(e1, e2)  # a new permutation each pass
    key = lambda t: sorted(map(tuple, t.tolist()))
    assert key(e1) == key(e2) == key(data.y)  # every window exactly once
    plain = torch.cat([y for _, _, y in TensorBatches(data, 16)])
    assert torch.equal(plain, data.y)


def test_fit_learns_a_known_relation_and_keeps_the_best_epoch():
    train, val = (WindowTensors.from_windows(toy_windows(s)) for s in (0, 1))
    net = tiny_net()
    before = float(np.mean((predict(net, val) - val.y.numpy()) ** 2))
    result = fit(net, train, val, CFG, seed=0, label="toy")
    after = float(np.mean((predict(net, val) - val.y.numpy()) ** 2))
    assert result.epochs_run == CFG.max_epochs and len(result.history) == CFG.max_epochs
    assert after < 0.2 * before
    # the returned weights are those of the best validation epoch, not of the last one
    assert after == pytest.approx(result.best_val_loss, rel=1e-4)
    assert result.best_val_loss == min(h["val_loss"] for h in result.history)


def test_fit_is_deterministic_for_a_seed():
    train, val = (WindowTensors.from_windows(toy_windows(s)) for s in (0, 1))
    cfg = CFG.model_copy(update={"max_epochs": 3})
    runs = []
    for _ in range(2):
        net = tiny_net()
        r = fit(net, train, val, cfg, seed=5)
        runs.append((r.history, predict(net, val)))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_train_model_builds_the_same_model_from_a_seed_whatever_ran_before(arch):
    """train_model seeds the weights' initialisation and the batch order itself: whatever state the global
    RNGs are in, one seed gives one model, bit for bit, and another seed another model."""
    windows = toy_windows(0)
    data = TrainingData(windows, toy_windows(1), Scaler.fit(windows.y, ("a", "b", "c", "d")))
    base = default_settings(parse_config(TINY), arch)
    settings = replace(base, training=base.training.model_copy(update={"max_epochs": 2}))

    def weights(seed, noise):
        torch.manual_seed(noise)
        np.random.seed(noise)
        torch.rand(noise)  # a different amount of global randomness used before each run
        net, _ = train_model(settings, data, seed)
        return torch.cat([p.detach().flatten() for p in net.state_dict().values()])

    a = weights(5, noise=1)
    assert torch.equal(a, weights(5, noise=7))
    assert not torch.allclose(a, weights(6, noise=1))


def test_fit_trains_with_the_configured_threads_and_gives_the_process_its_own_back():
    train, val = (WindowTensors.from_windows(toy_windows(s)) for s in (0, 1))
    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit(tiny_net(), train, val, CFG.model_copy(update={"max_epochs": 2, "threads": 1}), seed=0,
            on_epoch=lambda epoch, row: seen.append(torch.get_num_threads()))
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_early_stopping_stops_when_validation_stops_improving():
    train, val = (WindowTensors.from_windows(toy_windows(s)) for s in (0, 1))
    cfg = CFG.model_copy(update={"max_epochs": 200, "patience": 2, "learning_rate": 0.05})
    r = fit(tiny_net(), train, val, cfg, seed=0)
    assert r.epochs_run < 200 and r.stopped_early
    assert r.epochs_run - 1 - r.best_epoch == 2  # stopped after `patience` epochs without improvement


def test_nan_in_windows_is_an_error_not_a_nan_loss():
    ws = toy_windows()
    ws.x[0, 10, 1] = np.nan
    with pytest.raises(ModelInputError, match="NaN"):
        fit(tiny_net(), WindowTensors.from_windows(ws), WindowTensors.from_windows(toy_windows(1)), CFG, seed=0)


def test_non_finite_loss_stops_training_with_a_clear_error():
    ws = toy_windows()
    ws.y[1, 40, 2] = np.inf  # a corrupt target
    with pytest.raises(TrainingError, match="diverged"):
        fit(tiny_net(), WindowTensors.from_windows(ws), WindowTensors.from_windows(toy_windows(1)), CFG, seed=0)


def test_band_outside_the_embedding_is_an_error():
    ws = toy_windows()
    data = WindowTensors.from_windows(ws)
    bad = WindowTensors(data.x, data.band + 5, data.y)
    with pytest.raises(ModelInputError, match="band index outside"):
        predict(tiny_net(), bad)


def test_empty_split_is_an_error():
    ws = toy_windows()
    empty = WindowSet(x=ws.x, band=ws.band[:0], last=ws.last[:0], length=W, times=ws.times,
                      feature_names=ws.feature_names, y=ws.y)
    with pytest.raises(TrainingError, match="empty"):
        WindowTensors.from_windows(empty)


def test_under_ddp_the_processes_split_each_global_batch_between_them(monkeypatch):
    from thawcast.learn import training

    data = WindowTensors.from_windows(toy_windows())
    n = len(data)  # 168 windows: 10 full batches of 16 and one of 8
    alone = [y for _, _, y in TensorBatches(data, 16, shuffle=True, seed=3)]
    shares = {}
    for rank in (0, 1):
        monkeypatch.setattr(training, "_rank_world", lambda rank=rank: (rank, 2))
        batches = TensorBatches(data, 16, shuffle=True, seed=3)
        shares[rank] = [y for _, _, y in batches]
        assert len(batches) == len(shares[rank]) == len(alone)  # every process takes the same number of steps
    key = lambda t: sorted(map(tuple, t.tolist()))
    for whole, a, b in zip(alone, shares[0], shares[1], strict=True):
        assert len(a) == len(b) == len(whole) // 2
        assert key(torch.cat([a, b])) == key(whole)  # together the two halves are exactly the one batch
    assert sum(len(a) + len(b) for a, b in zip(shares[0], shares[1])) == n
    monkeypatch.setattr(training, "_rank_world", lambda: (0, 3))  # 168 = 10 x 16 + 8: the last 8 still split
    assert len(TensorBatches(data, 16)) == 11 and len(TensorBatches(data, 80)) == 3
    monkeypatch.setattr(training, "_rank_world", lambda: (0, 16))  # a last batch of 8 < 16 processes: dropped
    assert len(TensorBatches(data, 16)) == len(list(TensorBatches(data, 16))) == 10


@pytest.mark.parametrize("units", ["bands", "cells"])
def test_two_cpu_processes_under_ddp_train_the_model_one_process_trains(units):
    """Same global batch (16 = 2 x 8), no dropout: the two processes' mean gradient is the one process's gradient,
    so losses and weights agree to float rounding (stated tolerance: 1e-5). Cell models too: batches gathered on
    request (LazyWindows), no unit embedding, an epoch a fresh sample of the windows."""
    if units == "bands":
        train, val = (WindowTensors.from_windows(toy_windows(s)) for s in (0, 1))
        n_units, embedding, per_epoch = BANDS, 2, None
    else:
        train, val = (LazyWindows(toy_windows(s)) for s in (0, 1))
        n_units, embedding, per_epoch = 1, 0, 64
    cfg = CFG.model_copy(update={"max_epochs": 3})
    nets, results = {}, {}
    for devices in (0, 1, 2):
        torch.manual_seed(0)
        nets[devices] = build_model("gru", F, n_units, {"hidden": 8, "layers": 1, "dropout": 0.0}, embedding)
    untrained = nets.pop(0)
    for devices in (1, 2):
        results[devices] = fit(nets[devices], train, val, cfg.model_copy(update={"devices": devices}), seed=0,
                               windows_per_epoch=per_epoch)
    assert results[2].device == "cpu x2 (DDP)" and results[1].device == "cpu"
    assert results[2].best_epoch == results[1].best_epoch and results[2].epochs_run == 3
    for one, two in zip(results[1].history, results[2].history, strict=True):
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-5)
        assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-5)
    for p, q in zip(nets[1].parameters(), nets[2].parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)
    assert any(not torch.allclose(p, q, atol=1e-3) for p, q in zip(untrained.parameters(), nets[2].parameters()))


def test_a_device_count_the_machine_cannot_run_is_one_clear_error():
    from thawcast.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    train, val = (WindowTensors.from_windows(toy_windows(s)) for s in (0, 1))
    with pytest.raises(ConfigError, match="training.devices 2 / accelerator gpu"):
        fit(tiny_net(), train, val, CFG.model_copy(update={"devices": 2, "accelerator": "gpu"}), seed=0)


def test_devices_the_machine_cannot_run_stop_a_stage_before_it_records_anything(trained, tmp_path):
    """train, tune, seed-spread and feature-ablation check the devices first: before, tune had recorded a
    failed trial and a failed MLflow run by the time the device error came."""
    import mlflow

    from thawcast.errors import ConfigError
    from thawcast.stages import feature_ablation, seed_spread, train, tune
    from thawcast.tracking.registry import tracking_uri, use_store

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg, _, world = trained
    gpu = cfg.model_copy(update={"training": cfg.training.model_copy(update={"accelerator": "gpu", "devices": 2})})
    paths = layout(tmp_path, windows=world / "windows")
    journal = tmp_path / "optuna.journal"
    cfg = cfg.model_copy(update={"tuning": cfg.tuning.model_copy(update={"storage": str(journal)})})
    gpu = gpu.model_copy(update={"tuning": cfg.tuning})
    experiments = [use_store(cfg.mlflow), use_store(cfg.mlflow, cfg.tuning.experiment)]
    client = mlflow.MlflowClient(tracking_uri(cfg.mlflow))  # not the URI an earlier test in this worker left

    def recorded():
        return len(client.search_runs(experiments)), journal.exists()

    before = recorded()
    tune.run(cfg.model_copy(update={"tuning": cfg.tuning.model_copy(update={"budget": cfg.tuning.budget.model_copy(
        update={"n_trials": 1, "max_epochs": 1})})}), "gru", layout(tmp_path / "control", windows=world / "windows"))
    assert recorded()[0] > before[0] and journal.exists()  # control: a tune that runs records both
    journal.unlink()
    before = recorded()
    for stage in (lambda: train.run(gpu, "gru", paths), lambda: seed_spread.run(gpu, paths),
                  lambda: feature_ablation.run(gpu, paths)):
        with pytest.raises(ConfigError, match="training.devices 2 / accelerator gpu"):
            stage()
    trial_gpu = cfg.model_copy(update={"training": cfg.training.model_copy(update={"accelerator": "gpu"})})
    with pytest.raises(ConfigError, match="training.devices 1 / accelerator gpu"):  # trials run on one device
        tune.run(trial_gpu, "gru", paths)
    assert recorded() == before  # no MLflow run in either experiment, no study storage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["control"]  # no stage output, not even a staging folder
    with pytest.raises(ConfigError, match="strategy ddp_spawn trains on several devices"):
        parse_config({**TINY, "training": {**TINY["training"], "strategy": "ddp_spawn"}})
