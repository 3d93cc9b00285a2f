"""Features, scenario signal, sliding windows, splits and leakage-free scaling."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import TINY, layout
from thawcast.catalogue import FEATURES
from thawcast.config import parse_config
from thawcast.errors import ConfigError, DataError
from thawcast.prep.features import calendar_features, monthly_matrix, scenario_signal
from thawcast.prep.windows import (
    SPLITS,
    Scaler,
    WindowSet,
    build_history,
    build_scenario,
    fit_months,
    open_windows,
    window_index,
)
from thawcast.stages import windows as stage


# ---------------------------------------------------------------- scenario signal (eqs. 2.1-2.2)
def test_scenario_signal_hand_computed():
    r = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # window means (w=3) end at t=2,3,4: 2, 3, 4 -> z~ = (m - 2) / 2 = 0, 0.5, 1 -> |z~| z~ = 0, 0.25, 1
    z = scenario_signal(r, 3, mu=2.0, sigma=2.0)
    np.testing.assert_allclose(z, [np.nan, np.nan, 0.0, 0.25, 1.0])
    # below the mean the sign is kept: mean 0 -> z~ = -2 -> z = -4
    np.testing.assert_allclose(scenario_signal(np.zeros((2, 3)), 3, mu=2.0, sigma=1.0)[:, -1], [-4.0, -4.0])


def test_scenario_signal_needs_spread():
    with pytest.raises(DataError, match="no spread"):
        scenario_signal(np.ones(5), 3, mu=1.0, sigma=0.0)


def test_calendar_features():
    cal = calendar_features(pd.date_range("2001-01-01", periods=12, freq="MS"))
    np.testing.assert_allclose(cal["month_sin"][[0, 3, 6]], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(cal["month_cos"][[0, 6]], [1.0, -1.0])
    assert cal["year"][0] == 2001


def test_every_feature_is_documented_with_a_unit():
    for f in FEATURES.values():
        assert f.unit and f.description and f.kind in {"dynamic", "calendar", "static", "signal"}


# ---------------------------------------------------------------- window index and gather
def test_window_counts_and_alignment(rng):
    times = pd.date_range("2001-01-01", "2003-12-01", freq="MS")
    band, last = window_index(times, n_bands=2, length=6, first_target=2001, last_target=2002)
    # targets 2001-07 .. 2002-12 (the first 6 months have no full window): 18 per band
    assert len(band) == 36 and (band == 0).sum() == 18
    x = rng.normal(size=(2, len(times), 3)).astype(np.float32)
    y = rng.normal(size=(2, len(times), 4)).astype(np.float32)
    signal = rng.normal(size=(2, len(times))).astype(np.float32)
    ws = WindowSet(x=x, band=band, last=last, length=6, times=times, feature_names=("a", "b", "c", "z"),
                   signal=signal, y=y)
    assert ws.target_times()[0] == pd.Timestamp("2001-07-01")
    assert ws.target_times()[-1] == pd.Timestamp("2002-12-01")
    inputs, targets = ws.inputs(), ws.targets()
    assert inputs.shape == (36, 6, 4) and ws.n_features == 4
    for i in (0, 7, 35):
        b, k = band[i], last[i]
        np.testing.assert_array_equal(inputs[i, :, :3], x[b, k - 5:k + 1])
        np.testing.assert_array_equal(inputs[i, :, 3], np.full(6, signal[b, k]))
        np.testing.assert_array_equal(targets[i], y[b, k + 1])
        # target month = last input month + 1
        assert ws.target_times()[i] == times[k] + pd.DateOffset(months=1)


def test_windows_are_views_not_copies(rng):
    times = pd.date_range("2001-01-01", periods=240, freq="MS")
    x = rng.normal(size=(6, 240, 10)).astype(np.float32)
    band, last = window_index(times, 6, 24, 2001, 2020)
    ws = WindowSet(x=x, band=band, last=last, length=24, times=times, feature_names=tuple("abcdefghij"))
    assert np.shares_memory(ws._view, x)
    held = sum(a.nbytes for a in (ws.x, ws.band, ws.last))
    assert held < 2 * x.nbytes  # x plus two int64 indices; a materialised [N, w, F] copy is ~20x x
    assert len(ws) * 24 * 10 * 4 > 15 * x.nbytes


def test_bad_window_indices_are_errors(rng):
    times = pd.date_range("2001-01-01", periods=12, freq="MS")
    x = rng.normal(size=(2, 12, 3))
    with pytest.raises(DataError, match="out of range"):
        WindowSet(x=x, band=np.array([0]), last=np.array([2]), length=6, times=times, feature_names=("a", "b", "c"))
    with pytest.raises(DataError, match="band index"):
        WindowSet(x=x, band=np.array([2]), last=np.array([6]), length=6, times=times, feature_names=("a", "b", "c"))


# ---------------------------------------------------------------- scaler
def test_scaler_round_trip_and_constant_columns(rng):
    values = np.stack([rng.normal(5, 3, 500), np.full(500, 7.0)], axis=-1)
    sc = Scaler.fit(values, ("a", "const"))
    scaled = sc.transform(values)
    np.testing.assert_allclose(scaled[:, 0].mean(), 0, atol=1e-12)
    np.testing.assert_allclose(scaled[:, 0].std(), 1, atol=1e-12)
    np.testing.assert_array_equal(scaled[:, 1], 0.0)
    assert sc.constant.tolist() == [False, True]
    np.testing.assert_allclose(sc.inverse(scaled), values)
    again = Scaler.from_dict(json.loads(json.dumps(sc.to_dict())))
    np.testing.assert_allclose(again.transform(values), scaled)
    with pytest.raises(DataError, match="NaN"):
        Scaler.fit(np.array([[1.0], [np.nan]]), ("a",))


# ---------------------------------------------------------------- history windows on the tiny world
@pytest.fixture(scope="module")
def tiny_inputs(tiny_world):
    era = xr.load_dataset(tiny_world / "bands" / "era5land_bands.nc")
    static = xr.load_dataset(tiny_world / "static" / "static_bands.nc")
    return era, static


def test_splits_are_chronological_and_disjoint(tiny_inputs, tiny_cfg):
    hist = build_history(tiny_cfg, *tiny_inputs)
    ws = hist.windows
    targets = {s: set(ws.target_times(hist.split == i)) for i, s in enumerate(SPLITS)}
    assert not (targets["train"] & targets["validation"] or targets["train"] & targets["test"]
                or targets["validation"] & targets["test"])
    # tiny: w=6, train 2001 (targets from 2001-07), validation 2002, test 2003
    assert min(targets["train"]) == pd.Timestamp("2001-07-01") and max(targets["train"]) == pd.Timestamp("2001-12-01")
    assert {t.year for t in targets["validation"]} == {2002}
    assert {t.year for t in targets["test"]} == {2003}
    n_bands = ws.x.shape[0]
    assert [(hist.split == i).sum() for i in range(3)] == [6 * n_bands, 12 * n_bands, 12 * n_bands]
    assert ws.n_features == len(tiny_cfg.feature_names)


def test_scaler_never_sees_validation_or_test_values(tiny_inputs, tiny_cfg):
    era, static = tiny_inputs
    clean = build_history(tiny_cfg, era, static)
    poisoned = era.copy(deep=True)
    late = poisoned["time"].dt.year >= tiny_cfg.windows.validation.start_year
    for v in poisoned.data_vars:
        poisoned[v] = poisoned[v].where(~late, poisoned[v] + 1000.0)
    dirty = build_history(tiny_cfg, poisoned, static)
    for key in clean.scalers:
        np.testing.assert_allclose(dirty.scalers[key].mean, clean.scalers[key].mean)
        np.testing.assert_allclose(dirty.scalers[key].std, clean.scalers[key].std)
    assert dirty.signal_ref == clean.signal_ref
    # and the check has teeth: poisoning a training month does move the scaler
    early = poisoned.copy(deep=True)
    early["t_air"] = era["t_air"].where(era["time"] != era["time"][3], 1000.0)
    moved = build_history(tiny_cfg, early, static)
    assert not np.allclose(moved.scalers["features"].mean, clean.scalers["features"].mean)


def test_fit_months_are_the_training_split_only(tiny_cfg):
    times = pd.date_range("2001-01-01", "2003-12-01", freq="MS")
    assert set(times[fit_months(times, tiny_cfg.windows)].year) == {2001}


def test_missing_static_or_dynamic_feature(tiny_inputs):
    era, static = tiny_inputs
    with pytest.raises(DataError, match="'r_solar' is missing"):
        monthly_matrix(era.drop_vars("r_solar"), static, ("r_solar",))
    with pytest.raises(DataError, match="'clay_pct' is missing"):
        monthly_matrix(era, static.drop_vars("clay_pct"), ("clay_pct",))


# ---------------------------------------------------------------- the stage outputs
def test_window_files(tiny_pipeline, tiny_cfg):
    out = tiny_pipeline / "windows"
    scaler = json.loads((out / "scaler.json").read_text())
    assert scaler["fit_on"] == "training split months 2001-2001"
    assert scaler["feature_order"] == list(tiny_cfg.feature_names)
    train = open_windows(out / "history.nc", "train")
    assert train.inputs(np.arange(3)).shape == (3, 6, len(tiny_cfg.feature_names))
    with xr.open_dataset(out / "history.nc") as ds:
        assert ds.attrs["thawcast_synthetic"] == "true"
        np.testing.assert_allclose(train.targets(), (ds["y_degc"].values[train.band, train.last + 1]
                                                     - [scaler["targets"][t]["mean"] for t in ds["target"].values])
                                   / [scaler["targets"][t]["std"] for t in ds["target"].values], atol=1e-4)
    for rcp in tiny_cfg.rcp_experiments:
        ws = open_windows(out / f"{rcp}.nc")
        months = pd.date_range("2024-01-01", "2030-12-01", freq="MS")
        for b in range(ws.x.shape[0]):
            assert list(ws.target_times(ws.band == b)) == list(months)  # every projection month
        assert not np.isnan(ws.inputs()).any()
    with pytest.raises(DataError, match="no splits"):
        open_windows(out / "rcp85.nc", "train")
    with pytest.raises(DataError, match="unknown split"):
        open_windows(out / "history.nc", "holdout")


def test_scenario_windows_must_cover_the_projection(tiny_pipeline, tiny_cfg):
    cfg = parse_config({**TINY, "projection": {"start_year": 2024, "end_year": 2030}})
    static = xr.load_dataset(tiny_pipeline / "static" / "static_bands.nc")
    era = xr.load_dataset(tiny_pipeline / "bands" / "era5land_bands.nc")
    hist = build_history(cfg, era, static)
    scen = xr.load_dataset(tiny_pipeline / "scenarios" / "rcp85.nc").sel(time=slice(None, "2029-12"))
    with pytest.raises(DataError, match="need months 2023-07..2030-12"):
        build_scenario(cfg, scen, static, hist, "rcp85")


def test_unknown_feature_and_bad_splits_are_config_errors():
    with pytest.raises(ConfigError, match="unknown feature"):
        parse_config({**TINY, "features": ["t_air", "soil_magic"]})
    with pytest.raises(ConfigError, match="last years of train"):
        parse_config({**TINY, "windows": {**TINY["windows"], "validation": {"start_year": 2001, "end_year": 2001}}})
    with pytest.raises(ConfigError, match="start after train"):
        parse_config({**TINY, "windows": {**TINY["windows"], "test": {"start_year": 2002, "end_year": 2003}}})


def test_windows_validation_failure_keeps_previous_outputs(tiny_pipeline, tiny_cfg, tmp_path):
    import shutil

    from thawcast.errors import ValidationFailed

    scen = tmp_path / "scenarios"
    shutil.copytree(tiny_pipeline / "scenarios", scen)
    ds = xr.load_dataset(scen / "rcp45.nc")
    ds["t_air"][0, -30] = np.nan  # inside a projection window's inputs
    ds.to_netcdf(scen / "rcp45.nc")
    out = tmp_path / "windows"
    shutil.copytree(tiny_pipeline / "windows", out)
    before = (out / "history.nc").read_bytes()
    with pytest.raises(ValidationFailed, match="nan_inputs"):
        stage.run(tiny_cfg, layout(tmp_path, bands=tiny_pipeline / "bands", static=tiny_pipeline / "static"))
    assert (out / "history.nc").read_bytes() == before
    report = json.loads((tmp_path / "reports" / "windows.json").read_text())
    assert not report["success"] and any("rcp45" in f for f in report["failures"])
