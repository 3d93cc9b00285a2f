"""Cell models (issue "Every grid cell"): windows over cells, leakage, per-cell scores, averaging up, the stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from thawcast.analysis.cell_evaluation import band_means, per_cell_scores
from thawcast.analysis.metrics import scores
from thawcast.config import parse_config
from thawcast.errors import ConfigError, DataError
from thawcast.prep.cell_windows import (
    CellData,
    build_cell_history,
    cell_feature_names,
    open_cells,
    subsample,
)
from thawcast.prep.windows import target_years
from thawcast.variables import TARGETS

STATICS = ("clay_pct", "sand_pct")
DRIVERS = ("t_air", "r_thermal")


def _cells(n_cells=6, years=(2001, 2003), held=(4, 5), seed=0) -> CellData:
    """A hand-made cell store: ``n_cells`` cells, monthly drivers and soil temperatures from a seeded generator."""
    rng = np.random.default_rng(seed)
    time = pd.date_range(f"{years[0]}-01-01", f"{years[1]}-12-01", freq="MS")
    dyn = xr.Dataset({v: (("cell", "time"), rng.normal(0, 1, (n_cells, len(time))) + 5.0 * k)
                      for k, v in enumerate((*DRIVERS, *TARGETS))}, coords={"cell": np.arange(n_cells), "time": time})
    static = xr.Dataset({s: ("cell", rng.uniform(10, 60, n_cells)) for s in STATICS},
                        coords={"cell": np.arange(n_cells), "lat": ("cell", 60.0 + np.arange(n_cells)),
                                "lon": ("cell", np.full(n_cells, -150.0)), "band": ("cell", np.arange(n_cells) // 2)})
    held_out = np.isin(np.arange(n_cells), held)
    return CellData(dyn, static, held_out, np.ones(n_cells))


def _cfg(**cells):
    from conftest import TINY

    return parse_config({**TINY, "features": [*DRIVERS, *STATICS, "month_sin", "z"], "cells": {**TINY["cells"], **cells}})


def test_a_cell_model_sees_the_features_then_the_cells_position_then_z():
    assert cell_feature_names(("t_air", "clay_pct", "z")) == ("t_air", "clay_pct", "lat", "lon", "z")
    assert cell_feature_names(("t_air",)) == ("t_air", "lat", "lon")
    # the height where the static table has one (ERA5-Land's geopotential given), before the signal
    given = {"clay_pct", "lat", "lon", "elevation_m"}
    assert cell_feature_names(("t_air", "z"), given) == ("t_air", "lat", "lon", "elevation_m", "z")


def test_the_scalers_see_only_the_seen_cells_training_months():
    cfg = _cfg()
    data = _cells()
    ref = build_cell_history(cfg, data)
    validation = pd.Timestamp(cfg.windows.validation.start_year, 1, 1)
    dyn = data.dynamic.copy(deep=True)
    for v in dyn.data_vars:  # held-out cells in every month, and every cell from the validation years on
        dyn[v][data.held_out] = dyn[v][data.held_out] * 10 + 100
        dyn[v].loc[{"time": dyn["time"] >= validation}] = -50.0
    static = data.static.copy(deep=True)
    static["clay_pct"][data.held_out] = 99.0
    static["lat"][data.held_out] = 89.0
    moved = build_cell_history(cfg, CellData(dyn, static, data.held_out, data.area_km2))
    assert {k: s.to_dict() for k, s in moved.scalers.items()} == {k: s.to_dict() for k, s in ref.scalers.items()}
    assert moved.signal_ref == ref.signal_ref
    # the known answer: the training mean of t_air is that of the seen cells' training months
    fit = (data.dynamic["time"] < validation).values
    seen = data.dynamic["t_air"].values[~data.held_out][:, fit]
    assert ref.scalers["features"].mean[0] == pytest.approx(seen.mean())
    lat = ref.feature_names.index("lat")
    assert ref.scalers["features"].mean[lat] == pytest.approx(data.static["lat"].values[~data.held_out].mean())
    # positive control: a seen cell's training month does move the scaler
    dyn = data.dynamic.copy(deep=True)
    dyn["t_air"][0, 0] = 1e3
    assert build_cell_history(cfg, CellData(dyn, data.static, data.held_out, data.area_km2)).scalers[
        "features"].mean[0] != ref.scalers["features"].mean[0]


def test_training_and_validation_windows_are_the_seen_cells_in_their_years_only():
    cfg = _cfg()
    hist = build_cell_history(cfg, _cells())
    years = target_years(cfg.windows)
    for split in ("train", "validation", "test"):
        seen, out, every = (hist.windows(split, g) for g in ("seen", "held_out", "all"))
        assert not hist.held_out[seen.band].any() and hist.held_out[out.band].all()
        assert len(seen) + len(out) == len(every) and len(seen) == 4 * len(every) // 6
        t = seen.target_times().year
        assert t.min() >= years[split][0] and t.max() <= years[split][1]
    with pytest.raises(DataError, match="unknown group"):
        hist.windows("train", "unseen")
    with pytest.raises(DataError, match="all 3 cells are held out"):
        build_cell_history(cfg, _cells(n_cells=3, held=(0, 1, 2)))


def test_windows_of_chosen_cells_come_cell_by_cell_in_the_order_given():
    from thawcast.config import YearRange

    hist = build_cell_history(_cfg(), _cells())
    ws = hist.windows_in(YearRange(start_year=2002, end_year=2003), np.array([3, 1]))
    assert ws.band.tolist() == [3] * 24 + [1] * 24
    assert list(ws.target_times()[:24]) == list(pd.date_range("2002-01-01", periods=24, freq="MS"))
    assert np.array_equal(ws.last[:24], ws.last[24:])


def test_sampled_epochs_draw_fresh_windows_none_twice_and_lazy_batches_equal_gathered_ones():
    import torch

    from thawcast.learn.training import LazyWindows, TensorBatches, TrainingError, WindowTensors

    ws = build_cell_history(_cfg(), _cells()).windows("train")
    lazy, gathered = LazyWindows(ws), WindowTensors.from_windows(ws, unit_ids=False)
    a = TensorBatches(lazy, 8, shuffle=True, seed=3, per_epoch=20)
    b = TensorBatches(gathered, 8, shuffle=True, seed=3, per_epoch=20)
    assert len(a) == 3
    epochs = []
    for _ in range(2):
        xa, xb = list(a), list(b)
        assert [len(x[0]) for x in xa] == [8, 8, 4]
        for (x1, u1, y1), (x2, u2, y2) in zip(xa, xb, strict=True):
            assert torch.equal(x1, x2) and torch.equal(y1, y2) and not u1.any() and not u2.any()
        rows = torch.cat([x[0] for x in xa]).reshape(20, -1)
        assert len(torch.unique(rows, dim=0)) == 20  # no window twice within an epoch
        epochs.append(rows)
    assert not torch.equal(epochs[0], epochs[1])  # a fresh sample each epoch
    with pytest.raises(TrainingError, match="needs shuffle"):
        TensorBatches(lazy, 8, per_epoch=20)


@pytest.mark.parametrize("arch", ["tcn", "transformer", "conv_lstm", "gru", "bilstm"])
def test_every_architecture_trains_as_a_cell_model_and_the_same_seed_gives_the_same_weights(arch):
    """cells.architectures takes any of the five: each trains without a unit embedding on the seen cells, predicts
    every window of every cell (held-out ones included) in degC, and the same seed gives the same weights."""
    from thawcast.learn.cells import (
        CellTraining,
        default_cell_settings,
        train_cell_model,
        validation_scores,
    )

    cfg = _cfg(architectures=[arch], windows_per_epoch=64, max_epochs=2, batch_size=16)
    data = CellTraining.build(cfg, build_cell_history(cfg, _cells()))
    settings = default_cell_settings(cfg, arch)
    model, result = train_cell_model(settings, data, 3, cfg.cells.windows_per_epoch)
    assert model.unit_ids is False and result.epochs_run == 2 and data.seen == 4
    test = data.history.windows("test", "all")
    pred = model.predict_windows(test)
    assert pred.shape == (len(test), len(TARGETS)) and np.isfinite(pred).all()
    assert set(test.band.tolist()) == set(range(6))  # held-out cells 4 and 5 are predicted too
    assert np.isfinite(validation_scores(model, data)["rmse"])
    assert train_cell_model(settings, data, 3, cfg.cells.windows_per_epoch)[0].weights_sha256() == model.weights_sha256()


def test_a_subsample_keeps_windows_of_the_set_in_order_and_is_seeded():
    hist = build_cell_history(_cfg(), _cells())
    ws = hist.windows("train")
    a, b = subsample(ws, 7, seed=1), subsample(ws, 7, seed=1)
    assert len(a) == 7 and np.array_equal(a.band, b.band) and np.array_equal(a.last, b.last)
    pairs = set(zip(ws.band.tolist(), ws.last.tolist(), strict=True))
    assert set(zip(a.band.tolist(), a.last.tolist(), strict=True)) <= pairs
    assert np.all(np.diff(a.band * 10_000 + a.last) > 0)
    assert subsample(ws, None, 0) is ws and subsample(ws, 10 ** 9, 0) is ws


def test_per_cell_scores_are_each_cells_own_pooled_scores():
    rng = np.random.default_rng(3)
    cell = np.repeat([0, 2, 1], [5, 7, 6])
    obs, pred = rng.normal(size=(18, 2)), rng.normal(size=(18, 2))
    out = per_cell_scores(obs, pred, cell, 4)
    for c in range(3):
        for j in range(2):
            want = scores(obs[cell == c, j], pred[cell == c, j])
            assert [out[k][c, j] for k in ("rmse", "mae", "r2")] == pytest.approx([want[k] for k in ("rmse", "mae", "r2")])
    assert np.isnan(out["rmse"][3]).all()  # a cell without windows
    flat = per_cell_scores(np.ones((4, 1)), np.zeros((4, 1)), np.zeros(4, int), 1)
    assert flat["rmse"][0, 0] == 1.0 and np.isnan(flat["r2"][0, 0])  # constant observations: R2 undefined
    with pytest.raises(DataError, match="do not match"):
        per_cell_scores(obs, pred[:3], cell, 4)


def test_band_means_weigh_each_bands_cells_by_area_per_month():
    months = pd.date_range("2019-01-01", periods=2, freq="MS")
    cell = np.array([0, 1, 2, 0, 1, 2])
    times = months[[0, 0, 0, 1, 1, 1]]
    values = np.array([[1.0], [3.0], [10.0], [2.0], [6.0], [20.0]])
    out = band_means(values, cell, times, band_of_cell=np.array([0, 0, 1]), weight_of_cell=np.array([1.0, 3.0, 2.0]),
                     n_bands=3, months=months)
    assert out[0, :, 0] == pytest.approx([(1 + 9) / 4, (2 + 18) / 4])
    assert out[1, :, 0] == pytest.approx([10.0, 20.0]) and np.isnan(out[2]).all()
    with pytest.raises(DataError, match="outside the 1 months"):
        band_means(values, cell, times, np.array([0, 0, 1]), np.ones(3), 2, months[:1])
    with pytest.raises(DataError, match="negative"):
        band_means(values, cell, times, np.array([0, 0, 1]), -np.ones(3), 2, months)


def test_cell_training_settings_are_checked_and_scale_the_learning_rate():
    cfg = _cfg(batch_size=512)
    tc = cfg.cells.training(cfg.training)
    assert tc.batch_size == 512 and tc.learning_rate == pytest.approx(cfg.training.learning_rate * (512 / 32) ** 0.5)
    assert _cfg(learning_rate=0.01).cells.training(cfg.training).learning_rate == 0.01
    for bad, match in (({"architectures": ["lstm"]}, "unknown architecture"), ({"windows_per_epoch": 0}, "cells"),
                       ({"architectures": []}, "at least one")):
        with pytest.raises(ConfigError, match=match):
            _cfg(**bad)
    with pytest.raises(ConfigError, match="not in cells.architectures"):
        cfg.cells.require("tcn")


@pytest.fixture(scope="module")
def cell_run(trained, tmp_path_factory):
    """The cells stage, train-cells@gru and evaluate-cells on the tiny world, beside the session's band models."""
    from conftest import layout
    from thawcast.config import with_overrides
    from thawcast.stages import cells, evaluate_cells, project_cells, train_cells

    cfg, root, world = trained
    cfg = with_overrides(cfg, perfect_model={"enabled": False})  # no pseudo-reality here (test_dvc_pipeline has one)
    tmp = tmp_path_factory.mktemp("cells")
    paths = layout(tmp, raw=world / "raw", evaluation=root / "evaluation", bands=world / "bands",
                   scenarios=world / "scenarios")
    cells.run(cfg, paths)
    train_cells.run(cfg, "gru", paths)
    evaluate_cells.run(cfg, paths)
    project_cells.run(cfg, paths)
    return cfg, paths


def test_the_cell_stages_score_seen_and_held_out_cells_and_the_bands(cell_run):
    from thawcast.tracking.registry import load_registration, read_registration, use_store

    cfg, paths = cell_run
    use_store(cfg.mlflow, create=False)
    reg = read_registration(paths.cell_registration("gru"), "gru", "train-cells")
    model, _ = load_registration(reg)
    assert reg.registered_model == "thawcast-cells-gru" and model.weights_sha256() == reg.weights_sha256
    assert model.unit_ids is False and "lat" in model.feature_names
    metrics = json.loads(paths.metric("cells.json").read_text())
    with xr.open_dataset(paths.static_cells) as statics:
        held = statics["held_out"].values.astype(bool)
    assert metrics["cells"] == {"seen": int((~held).sum()), "held_out": int(held.sum())}
    assert set(metrics["summary"]["models"]) == {"gru", "climatology", "persistence", "seasonal_persistence", "ridge"}
    assert set(metrics["bands"]["band_models"]) >= {"gru", "tcn", "climatology"}
    # averaging the observed cells up lands closer to the band table than the model's cells do
    assert metrics["bands"]["aggregation_gap"]["overall"]["rmse"] < metrics["bands"]["cell_models"]["gru"][
        "overall"]["rmse"]
    with xr.open_dataset(paths.cell_scores) as ds:
        assert ds["lat"].attrs["standard_name"] == "latitude" and ds.sizes["cell"] == len(held)
        assert ds.attrs["thawcast_synthetic"] == "true"
        # every cell has as many test windows: the pooled RMSE of a group is the root mean of its per-cell squares
        for group, cells in (("seen", ~held), ("held_out", held)):
            for model in ("gru", "climatology"):
                per_cell = ds["rmse"].sel(model=model).values[cells]
                assert metrics["summary"]["models"][model][group]["overall"]["rmse"] == pytest.approx(
                    np.sqrt(np.mean(per_cell ** 2)), rel=1e-9)
                assert metrics["summary"]["models"][model][group]["per_layer"]["t_soil4"]["rmse"] == pytest.approx(
                    np.sqrt(np.mean(per_cell[:, 3] ** 2)), rel=1e-9)
    assert sorted(p.name for p in (paths.cell_evaluation / "figures").iterdir()) == ["rmse_map_gru.png",
                                                                                     "skill_map_gru.png"]
    assert "Grid cells: seen and held-out skill" in paths.metric("cells.md").read_text()
    # the kinds of ground split each side of the hold-out; with one kind only, its score is the side's
    ground = metrics["ground"]
    assert "the rest" in ground and "high ground (>= 2000 m)" in ground  # the tiny world has heights
    for side in ("seen", "held_out"):
        assert sum(g["cells"][side] for g in ground.values()) == metrics["cells"][side]
        only = [g for g in ground.values() if g["cells"][side] == metrics["cells"][side]]
        for g in only:
            assert g["rmse"][side]["gru"] == pytest.approx(
                metrics["summary"]["models"]["gru"][side]["overall"]["rmse"], rel=1e-12)
    assert "by kind of ground" in paths.metric("cells.md").read_text()


def test_the_cell_seed_spread_reproduces_the_registered_run_and_weighs_the_band_lead(cell_run, caplog):
    """seed-spread-cells retrains the cell model with every seed: the registered seed's run gives the registered
    weights and evaluate-cells' scores exactly; the lead over a band model is its seeds' mean minus the band
    model's, with the two-sample standard error (checked by hand against a band seed spread written here)."""
    import logging

    from thawcast.learn.seeds import describe
    from thawcast.stages import seed_spread_cells

    cfg, paths = cell_run
    band = {"seeds": [7, 1], "choose_by_validation": True, "architectures": {
        "tcn": {"defaults": {"test_rmse": describe([1.0, 1.2])}},  # no study: its defaults are registered
        "gru": {"defaults": {"test_rmse": describe([9.0, 9.0])}, "tuned": {"test_rmse": describe([0.2, 0.4])},
                "choice": {"settings": "tuned"}}}}
    paths.metrics.mkdir(parents=True, exist_ok=True)
    paths.metric("seed_spread.json").write_text(json.dumps(band))
    with caplog.at_level(logging.WARNING):
        seed_spread_cells.run(cfg, paths)
    table = json.loads(paths.metric("cell_seed_spread.json").read_text())
    assert table["seeds"] == [cfg.seed, *cfg.robustness.seeds] == [7, 1]
    row = table["architectures"]["gru"]
    assert row["reproduces_registered"] is True and not [m for m in caplog.messages if "did not give" in m]
    cells = json.loads(paths.metric("cells.json").read_text())
    first = {k: row[k]["values"][0] for k in ("seen_test_rmse", "held_out_test_rmse", "bands_test_rmse")}
    assert first == {"seen_test_rmse": cells["summary"]["models"]["gru"]["seen"]["overall"]["rmse"],
                     "held_out_test_rmse": cells["summary"]["models"]["gru"]["held_out"]["overall"]["rmse"],
                     "bands_test_rmse": cells["bands"]["cell_models"]["gru"]["overall"]["rmse"]}
    assert row["seen_test_rmse"]["values"][1] != first["seen_test_rmse"]  # another seed, another model
    gaps = [h - s for h, s in zip(row["held_out_test_rmse"]["values"], row["seen_test_rmse"]["values"])]
    assert row["held_out_minus_seen"]["difference"] == pytest.approx(np.mean(gaps))
    assert row["held_out_minus_seen"]["standard_error"] == pytest.approx(np.std(gaps, ddof=1) / np.sqrt(2))
    up = row["bands_test_rmse"]["values"]
    tcn, gru = row["against_band_models"]["tcn"], row["against_band_models"]["gru"]
    assert tcn["settings"] == "defaults" and gru["settings"] == "tuned"
    assert tcn["difference"] == pytest.approx(np.mean(up) - 1.1)
    assert tcn["standard_error"] == pytest.approx(np.sqrt(np.var(up, ddof=1) / 2 + np.var([1.0, 1.2], ddof=1) / 2))
    assert gru["difference"] == pytest.approx(np.mean(up) - 0.3)
    text = paths.metric("cell_seed_spread.md").read_text()
    assert "| gru | tcn | defaults |" in text and "| gru | gru | tuned |" in text and "| yes |" in text


def test_explain_cells_attributes_seen_and_held_out_windows_to_groups_of_inputs(cell_run):
    """explain-cells: explain.samples windows of seen cells and as many of held-out cells (by the cells stage's flags),
    each group's shares of the attribution add up to 1 over weather, soil, lithology, position and signal, and
    the report's table lists both groups."""
    from thawcast.stages import explain_cells

    cfg, paths = cell_run
    explain_cells.run(cfg, paths)
    table = json.loads(paths.metric("cell_shap.json").read_text())
    row = table["models"]["gru"]
    for group in ("seen", "held_out"):
        assert sum(row[group]["shares"].values()) == pytest.approx(1.0)
        assert row[group]["shares"]["position"] > 0 and row[group]["shares"]["weather"] > 0
        assert 0 <= row[group]["additivity_gap_degc"] < 1.0 and len(row[group]["top"]) == 5
    with xr.open_dataset(paths.cell_explain / "gru" / "shap_values.nc") as ds, \
            xr.open_dataset(paths.static_cells) as statics:
        held = statics["held_out"].values.astype(bool)
        assert (held[ds["cell"].values] == ds["held_out"].values.astype(bool)).all()
        assert int(ds["held_out"].sum()) == table["n_explained"]["held_out"] > 0
        assert ds.sizes["window"] == sum(table["n_explained"].values())
        assert "lat" in ds["feature"].values and ds.attrs["thawcast_synthetic"] == "true"
    years = pd.DatetimeIndex(ds["target_time"].values).year
    assert years.min() >= cfg.windows.test.start_year  # explained windows are test windows
    assert (paths.cell_explain / "gru" / "figures" / "shap_bar.png").exists()
    text = paths.metric("cell_shap.md").read_text()
    assert "| gru | seen |" in text and "| gru | held-out |" in text


def test_the_cell_projections_are_gridded_products_of_every_rcp_and_period(cell_run):
    cfg, paths = cell_run
    with xr.open_dataset(paths.cell_projection_file) as ds, xr.open_dataset(paths.static_cells) as statics:
        assert ds["lat"].attrs["standard_name"] == "latitude" and ds["lon"].attrs["axis"] == "X"
        assert list(ds["scenario"].values) == list(cfg.rcp_experiments)
        assert list(ds["period"].values) == [str(p) for p in cfg.cells.projection_periods]
        projected = np.isfinite(ds["observed_alt"].values)
        assert 0 < projected.sum() < statics.sizes["cell"]  # one cell in 3 along rows and columns
        for name in ("alt", "permafrost", "t_soil"):
            assert np.array_equal(np.isfinite(ds[name].values).any(axis=tuple(range(ds[name].ndim - 2))), projected)
        assert ds.attrs["thawcast_synthetic"] == "true"
        # the observed decade's products are those of the observed soil temperatures at the projected cells
        from thawcast.analysis.cell_projection import period_products
        from thawcast.prep.cell_windows import open_cells

        data = open_cells(paths.cell_store, paths.static_cells)
        rows, cols = np.nonzero(projected)
        lat, lon = ds["lat"].values[rows], ds["lon"].values[cols]
        pick = [int(np.flatnonzero((np.abs(data.static["lat"].values - a) < 1e-6)
                                   & (np.abs(data.static["lon"].values - o) < 1e-6))[0]) for a, o in zip(lat, lon)]
        ref = cfg.cells.reference_years
        span = data.dynamic.isel(cell=pick).sel(time=slice(str(ref.start_year), str(ref.end_year)))
        truth = period_products(np.stack([span[t].transpose("cell", "time").values for t in TARGETS], -1))
        np.testing.assert_allclose(ds["observed_alt"].values[rows, cols], truth["alt"], rtol=1e-5)
        assert np.array_equal(ds["observed_permafrost"].values[rows, cols], truth["permafrost"].astype(float))
    metrics = json.loads(paths.metric("cell_projections.json").read_text())
    per = metrics["models"]["gru"]["scenarios"]
    assert set(per) == set(cfg.rcp_experiments) and "perfect_model" not in metrics
    assert sorted(p.name for p in (paths.cell_projections / "figures").iterdir()) == [
        "alt_2029-2030.png", "permafrost_2029-2030.png"]


def test_a_cell_model_trained_on_other_scalers_is_refused(cell_run, tmp_path):
    import shutil

    from thawcast.stages import evaluate_cells

    cfg, paths = cell_run
    other = paths.replace(cell_models=tmp_path / "cell_models", cell_evaluation=tmp_path / "out",
                          metrics=tmp_path / "metrics")
    shutil.copytree(paths.cell_models, other.cell_models)
    scaler = json.loads((other.cell_model("gru") / "scaler.json").read_text())
    scaler["features"]["lat"]["mean"] += 1.0
    (other.cell_model("gru") / "scaler.json").write_text(json.dumps(scaler))
    with pytest.raises(DataError, match=r"trained with other scalers .* rerun `dvc repro train-cells@gru`"):
        evaluate_cells.run(cfg, other)
    assert not other.cell_evaluation.exists() and not other.metric("cells.json").exists()


def _write_cells(folder, data: CellData):
    """``cells.nc`` and ``static_cells.nc`` as the cells stage lays them out."""
    values = data.dynamic.to_array("variable").transpose("cell", "time", "variable").astype("float32")
    store = xr.Dataset({"values": values}).assign_coords(lat=data.static["lat"], lon=data.static["lon"],
                                                         area_km2=("cell", data.area_km2))
    store.to_netcdf(folder / "cells.nc")
    data.static.assign(held_out=("cell", data.held_out.astype(np.int8))).to_netcdf(folder / "static_cells.nc")
    return folder / "cells.nc", folder / "static_cells.nc"


def test_the_cells_stages_outputs_read_back_and_bad_ones_are_one_error_each(tmp_path):
    from thawcast.prep.cell_windows import open_cells

    data = _cells()
    store, static = _write_cells(tmp_path, data)
    back = open_cells(store, static)
    assert np.array_equal(back.held_out, data.held_out) and np.array_equal(back.band, data.band)
    np.testing.assert_allclose(back.dynamic["t_soil2"].values, data.dynamic["t_soil2"].values, rtol=1e-6)
    with pytest.raises(DataError, match=r"not found: run the cells stage \(`dvc repro cells`\)"):
        open_cells(tmp_path / "nothing.nc", static)
    shifted = data.static.assign_coords(lat=data.static["lat"] + 0.25)
    shifted.assign(held_out=("cell", data.held_out.astype(np.int8))).to_netcdf(tmp_path / "other.nc")
    with pytest.raises(DataError, match="its 6 cells are not the 6 cells of cells.nc"):
        open_cells(store, tmp_path / "other.nc")
    data.static.to_netcdf(tmp_path / "no_flags.nc")
    with pytest.raises(DataError, match="no held_out flags"):
        open_cells(store, tmp_path / "no_flags.nc")


# ---------------------------------------------------------------- projections
def test_disaggregation_moves_the_band_scenario_onto_each_cells_climate():
    from thawcast.config import YearRange
    from thawcast.prep.cell_scenarios import disaggregate

    time = pd.date_range("2001-01-01", "2002-12-01", freq="MS")
    month = time.month.to_numpy()
    band_obs = xr.Dataset({"t_air": (("band", "time"), np.tile(month, (2, 1)).astype(float)),
                           "p_total": (("band", "time"), np.where(month == 1, 0.0, 2.0)[None].repeat(2, 0)),
                           "w1": (("band", "time"), np.full((2, 24), 0.3))}, coords={"band": [0, 1], "time": time})
    cell_obs = xr.Dataset({"t_air": (("cell", "time"), np.tile(month, (3, 1)) + np.array([[0.0], [5.0], [-1.0]])),
                           "p_total": (("cell", "time"), np.where(month == 1, 1.0, 3.0)[None].repeat(3, 0)),
                           "w1": (("cell", "time"), np.full((3, 24), 0.1))}, coords={"cell": [0, 1, 2], "time": time})
    future = pd.date_range("2050-01-01", periods=2, freq="MS")
    scen = xr.Dataset({"t_air": (("band", "time"), [[10.0, 20.0], [30.0, 40.0]]),
                       "p_total": (("band", "time"), [[5.0, 4.0], [5.0, 4.0]]),
                       "w1": (("band", "time"), [[0.0, 0.5], [0.0, 0.5]])}, coords={"band": [0, 1], "time": future})
    out = disaggregate(scen, band_obs, cell_obs, np.array([0, 1, 1]), YearRange(start_year=2001, end_year=2002),
                       ["t_air", "p_total", "w1"])
    assert out["t_air"].values.tolist() == [[10.0, 20.0], [35.0, 45.0], [29.0, 39.0]]  # + cell - band climate
    # January: the band's climatology is 0, so the cell's own (1.0); February: 4 x 3 / 2
    assert out["p_total"].values.tolist() == [[1.0, 6.0]] * 3
    np.testing.assert_allclose(out["w1"].values, [[0.0, 0.3]] * 3)  # 0 - 0.2 floored at 0
    with pytest.raises(DataError, match="'r_solar' is missing from the band scenario, band observations"):
        disaggregate(scen, band_obs, cell_obs, np.array([0, 1, 1]), YearRange(start_year=2001, end_year=2002),
                     ["r_solar"])
    with pytest.raises(DataError, match="no fitting month for calendar month 1"):
        disaggregate(scen, band_obs, cell_obs, np.array([0, 1, 1]), YearRange(start_year=2003, end_year=2004),
                     ["t_air"])


def test_permafrost_needs_two_consecutive_frozen_years_at_depth_and_alt_follows_the_profile():
    from thawcast.analysis.cell_projection import (
        annual_max,
        extent,
        near_surface_permafrost,
        period_products,
    )

    deepest = np.array([[-1.0, 1.0, -1.0, 1.0], [1.0, -0.5, 0.0, 2.0], [np.nan, np.nan, 1, 1], [-2, -2, -2, -2]])
    assert near_surface_permafrost(deepest).tolist() == [False, True, False, True]
    monthly = np.zeros((1, 24, 4))
    monthly[0, :, :] = [-5.0, -5.0, -5.0, -5.0]
    monthly[0, 6, :] = [2.0, 1.0, -1.0, -2.0]  # a July that thaws the top two layers of the first year only
    assert annual_max(monthly)[0, :, 0].tolist() == [2.0, -5.0]
    p = period_products(monthly)
    alt_first = 17.5 + (64.0 - 17.5) * 1.0 / (1.0 + 1.0)  # zero crossing between layers 2 and 3
    assert p["alt"][0] == pytest.approx(alt_first / 2) and p["permafrost"][0] and p["alt_lower_bound_share"][0] == 0
    with pytest.raises(DataError, match="13 months are not whole years"):
        annual_max(np.zeros((1, 13, 4)))
    e = extent(np.array([True, False, True]), np.array([1.0, 3.0, 2.0]), np.array([0, 0, 1]), 3,
               band_area_km2=np.array([8.0, 6.0, 5.0]))
    assert e["share"] == [0.25, 1.0, None] and e["km2"] == [2.0, 6.0, None]
    assert e["km2_all"] == 8.0 and e["share_all"] == pytest.approx(8.0 / 14.0)  # the bands' whole area, not the sample's
    own = extent(np.array([True, False, True]), np.array([1.0, 3.0, 2.0]), np.array([0, 0, 1]), 2)
    assert own["share_all"] == pytest.approx(0.5) and own["km2_all"] == 3.0


def test_the_projected_cells_are_the_ones_the_pseudo_reality_simulates():
    from thawcast.ingest.synthetic.world import era5_grid, pseudo_reality_cells
    from thawcast.prep.cell_windows import grid_sample as sample

    cfg = parse_config({})
    lat, lon = era5_grid(cfg)
    land = np.ones((lat.size, lon.size), dtype=bool)
    land[:3] = False  # the cells start above the grid's first rows, as on the default (sea and the band edge)
    rows, cols = np.nonzero(land)
    truth = pseudo_reality_cells(land, 3)[rows, cols]
    picked = sample(lat[rows], lon[cols], (lat[::-1], lon), 3)  # grid given north to south, as in the files
    assert picked.sum() > 10 and np.array_equal(picked, truth)
    assert sample(lat[rows], lon[cols], (lat, lon), 1).all()


# ---------------------------------------------------------------- summaries and tables, by hand
def _two_cells():
    """Cell 0 seen, cell 1 held out, three windows each; a network and the climatology baseline."""
    obs = np.array([[1.0, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6], [0, 0, 0, 0], [1, 1, 1, 1], [5, 5, 5, 5]])
    net = obs + np.array([[0.5], [-0.5], [0.5], [1.0], [-1.0], [1.0]])
    clim = obs + 2.0
    cell = np.repeat([0, 1], 3)
    return obs, {"gru": net, "climatology": clim}, cell


def test_the_cell_summary_pools_each_group_and_reduces_against_each_baseline():
    from thawcast.analysis.cell_evaluation import summary

    obs, preds, cell = _two_cells()
    held_cell = np.array([False, True])
    per_cell = {n: per_cell_scores(obs, p, cell, 2) for n, p in preds.items()}
    out = summary(obs, preds, held_cell[cell], per_cell, held_cell, ["gru"])
    assert out["models"]["gru"]["seen"]["overall"]["rmse"] == pytest.approx(0.5)
    assert out["models"]["gru"]["held_out"]["overall"]["rmse"] == pytest.approx(1.0)
    assert out["models"]["gru"]["held_out"]["per_layer"]["t_soil2"]["mae"] == pytest.approx(1.0)
    assert out["models"]["climatology"]["seen"]["median_cell_rmse"]["t_soil4"] == pytest.approx(2.0)
    assert out["models"]["gru"]["held_out"]["median_cell_rmse"]["t_soil1"] == pytest.approx(1.0)
    assert out["rmse_reduction_held_out"] == {"gru": {"climatology": pytest.approx(0.5)}}


def test_band_comparison_and_the_cells_table_say_which_unit_wins():
    from thawcast.analysis.cell_evaluation import band_comparison, cells_markdown, summary

    obs, preds, cell = _two_cells()
    held_cell = np.array([False, True])
    per_cell = {n: per_cell_scores(obs, p, cell, 2) for n, p in preds.items()}
    band_obs = np.zeros((2, 1, 4))
    comp = band_comparison(band_obs, {"gru": band_obs + 0.25}, {"gru": band_obs + 1.0, "climatology": band_obs - 2.0},
                           band_obs + 0.1)
    assert comp["cell_models"]["gru"]["overall"]["rmse"] == pytest.approx(0.25)
    assert comp["band_models"]["climatology"]["per_layer"]["t_soil3"]["rmse"] == pytest.approx(2.0)
    assert comp["aggregation_gap"]["overall"]["rmse"] == pytest.approx(0.1)
    metrics = {"summary": summary(obs, preds, held_cell[cell], per_cell, held_cell, ["gru"]), "bands": comp}
    text = cells_markdown(metrics, ["gru"], "2019-2023", 1, 1)
    assert "every window of 1 seen and 1 held-out cells" in text
    table = [line for line in text.splitlines() if line.startswith(("| gru | network", "| climatology | baseline"))]
    # held out: observations 0, 1, 5 in every layer (mean 2, SST 4 x 14 = 56); squared errors 4 x 3 (gru), 4 x 12
    assert table == ["| gru | network | 0.500 | 1.000 | 0.786 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 |",
                     "| climatology | baseline | 2.000 | 2.000 | 0.143 | 2.000 | 2.000 | 2.000 | 2.000 | 2.000 |"]
    assert "| gru | +50.0% |" in text
    rows = [line.split(" | ")[0].lstrip("| ") for line in text.splitlines()[-6:] if line.startswith("| ")]
    assert rows[-4:] == ["gru (cells, averaged up)", "gru (band model)", "climatology (band baseline)",
                         "observed cells averaged up (aggregation gap)"]


def test_the_extent_table_prints_shares_and_no_value_for_a_band_without_cells():
    from thawcast.analysis.cell_projection import extent_markdown

    e = {"share": [0.25, None], "km2": [2.0, None], "share_all": 0.5, "km2_all": 1500.0}
    text = extent_markdown({"rcp45": {"2091-2100": e}}, {"period": "2014-2023", "extent": e},
                           {"period": "2014-2023", "extent": e}, ["a", "b"], "gru")
    lines = text.splitlines()
    assert lines[0] == "| scenario | period | a | b | all bands | all bands (1000 km2) |"
    assert lines[2:] == ["| observed (ERA5-Land) | 2014-2023 | 25% | n/a | 50.0% | 2 |",
                         "| gru from ERA5-Land drivers | 2014-2023 | 25% | n/a | 50.0% | 2 |",
                         "| rcp45 | 2091-2100 | 25% | n/a | 50.0% | 2 |"]


def test_a_cell_models_scalers_are_checked_against_these_cells(tmp_path):
    from thawcast.prep.cell_windows import cell_scaler_text, check_scaler

    hist = build_cell_history(_cfg(), _cells())
    text = json.loads(cell_scaler_text(hist))
    assert text["fit_on"] == "the 4 seen cells' training months 2001-2001"
    assert text["feature_order"] == list(hist.feature_names) and text["feature_units"]["lat"] == "degrees_north"
    assert text["features"]["t_air"]["mean"] == pytest.approx(hist.scalers["features"].mean[0])
    path = tmp_path / "scaler.json"
    path.write_text(cell_scaler_text(hist))
    check_scaler(hist, path, "gru")
    other = build_cell_history(_cfg(), _cells(held=(3, 5)))
    with pytest.raises(DataError, match=r"cells-gru was trained with other scalers.*train-cells@gru"):
        check_scaler(other, path, "gru")
    with pytest.raises(DataError, match="other scalers"):
        check_scaler(hist, tmp_path / "missing.json", "gru")


def test_cells_are_read_off_a_grid_at_their_centres():
    from thawcast.prep.cell_windows import at_cells

    grid = xr.Dataset({"v": (("time", "lat", "lon"), np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4))},
                      coords={"time": [0, 1], "lat": [60.0, 60.5, 61.0], "lon": [-150.0, -149.5, -149.0, -148.5]})
    out = at_cells(grid, np.array([60.5, 61.0]), np.array([-148.5, -150.0]))
    assert out["v"].transpose("cell", "time").values.tolist() == [[7.0, 19.0], [8.0, 20.0]]
    with pytest.raises(KeyError):
        at_cells(grid, np.array([60.25]), np.array([-150.0]))  # not a grid point


def _tuned(cfg, paths, root: Path, cells_folder: Path | None = None) -> dict:
    """tune-cells on its own journal and metrics folder under ``root``; its table."""
    from thawcast.config import with_overrides
    from thawcast.stages import tune_cells

    cfg = with_overrides(cfg, tuning={"storage": str(root / "optuna.journal")})
    own = paths.replace(metrics=root / "metrics", **({"cells": cells_folder} if cells_folder else {}))
    tune_cells.run(cfg, own)
    return json.loads(own.metric("cell_tuning.json").read_text())


def _trials(cfg, root: Path, study: str) -> list[tuple[str, float | None, dict]]:
    """Every trial (state, value, params) of the study ``_tuned`` ran under ``root``."""
    import optuna

    from thawcast.config import with_overrides
    from thawcast.learn import tuning

    storage = tuning.storage(with_overrides(cfg, tuning={"storage": str(root / "optuna.journal")}))
    return [(t.state.name, t.value, t.params) for t in optuna.load_study(study_name=study, storage=storage).trials]


def test_tune_cells_starts_from_the_defaults_and_its_best_is_what_train_cells_trains(cell_run, tmp_path):
    """A study of the cell GRU: the budget's trials, the params.yaml settings first, the best no worse than them;
    its value is the validation RMSE of a cell model trained with the best settings for the budget's epochs
    (recomputed here), and cell_settings hands train-cells those settings with cells' epochs and no embedding."""
    from thawcast.learn.cells import (
        CellTraining,
        cell_settings,
        train_cell_model,
        validation_scores,
    )
    from thawcast.stages.tune_cells import CELL_STUDIES

    cfg, paths = cell_run
    row = _tuned(cfg, paths, tmp_path)["architectures"]["gru"]
    assert row["trials_complete"] + row["trials_pruned"] == cfg.tuning.cells.budget.n_trials == 3
    assert row["default_value"] is not None and row["best_value"] <= row["default_value"]
    assert set(row["best_params"]) == {"learning_rate", "hidden"}
    settings = cell_settings(cfg, "gru", tmp_path / "metrics" / "cell_tuning.json")
    assert settings.hparams.hidden == row["best_params"]["hidden"] and settings.band_embedding_dim == 0
    assert settings.training.learning_rate == row["best_params"]["learning_rate"]
    assert (settings.training.max_epochs, settings.training.batch_size) == (cfg.cells.max_epochs, cfg.cells.batch_size)
    data = CellTraining.build(cfg, build_cell_history(cfg, open_cells(paths.cell_store, paths.static_cells)))
    again, _ = train_cell_model(CELL_STUDIES.trial_settings(cfg, "gru", row["best_params"]), data, cfg.seed,
                                cfg.cells.windows_per_epoch)
    assert validation_scores(again, data)["rmse"] == row["best_value"]
    assert "# Tuning studies of the cell models" in (tmp_path / "metrics" / "cell_tuning.md").read_text()


def test_tune_cells_never_reads_the_held_out_cells_or_the_test_years(cell_run, tmp_path):
    """Leakage: every soil temperature and driver of the held-out cells and of the test years shifted by 50 gives
    the identical study (trial by trial)."""
    import shutil

    cfg, paths = cell_run
    with xr.open_dataset(paths.static_cells) as statics:
        held = xr.DataArray(statics["held_out"].values.astype(bool), dims="cell")

    def shifted(name: str, where) -> Path:
        folder = tmp_path / name / "cells"
        shutil.copytree(paths.cells, folder)
        with xr.open_dataset(paths.cell_store) as ds:
            ds = ds.load()
        for key, var in ds.data_vars.items():
            if {"cell", "time"} <= set(var.dims) and np.issubdtype(var.dtype, np.floating):
                ds[key] = var.where(~where(ds["time"].dt.year), var + 50.0).transpose(*var.dims).astype(var.dtype)
        ds.to_netcdf(folder / paths.cell_store.name)
        return folder

    clean = _tuned(cfg, paths, tmp_path / "clean")["architectures"]["gru"]
    hidden = shifted("hidden", lambda year: (year >= cfg.windows.test.start_year) | held)
    corrupt = _tuned(cfg, paths, tmp_path / "hidden", hidden)["architectures"]["gru"]
    assert corrupt["best_value"] == clean["best_value"] and corrupt["best_params"] == clean["best_params"]
    assert corrupt["default_value"] == clean["default_value"]
    trials = _trials(cfg, tmp_path / "clean", clean["study"])
    assert len(trials) == cfg.tuning.cells.budget.n_trials and _trials(cfg, tmp_path / "hidden", corrupt["study"]) == trials
    # positive control: the same shift of the seen cells' validation year does change the study
    seen = shifted("seen", lambda year: (year == cfg.windows.validation.end_year) & ~held)
    assert _tuned(cfg, paths, tmp_path / "seen", seen)["architectures"]["gru"]["default_value"] != clean["default_value"]


def test_cell_settings_refuse_a_record_without_the_architecture_and_a_study_with_nothing_to_tune(cell_run, tmp_path):
    from thawcast.config import with_overrides
    from thawcast.learn.cells import cell_settings, default_cell_settings
    from thawcast.stages import tune_cells

    cfg, paths = cell_run
    assert cell_settings(cfg, "gru", tmp_path / "none.json") == default_cell_settings(cfg, "gru")
    record = tmp_path / "cell_tuning.json"
    record.write_text(json.dumps({"architectures": {"tcn": {}}}))
    with pytest.raises(ConfigError, match="no study of gru"):
        cell_settings(cfg, "gru", record)
    record.write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable cell tuning record"):
        cell_settings(cfg, "gru", record)
    record.write_text(json.dumps({"architectures": {"gru": {"settings": {"architecture": "gru",
                                                                         "hparams": {"hidden": -3}}}}}))
    with pytest.raises(ConfigError, match="invalid settings for gru"):
        cell_settings(cfg, "gru", record)
    from thawcast.config import CellTuning

    empty = cfg.model_copy(update={"tuning": cfg.tuning.model_copy(update={"cells": CellTuning()})})
    with pytest.raises(ConfigError, match="tuning.cells.space has no dimension for gru"):
        tune_cells.run(empty, paths.replace(metrics=tmp_path / "metrics"))
    with pytest.raises(ConfigError, match=r"tuning.cells.space.gru: unknown parameter 'band_embedding_dim'"):
        with_overrides(cfg, tuning={"cells": {"space": {"gru": {"band_embedding_dim": {"choices": [2, 4]}}}}})
