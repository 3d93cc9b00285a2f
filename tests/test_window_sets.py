"""Window sets built from in-memory band tables with known values: scaling by the training months, window
contents, scenario windows on history's scaling, the NetCDF round trip and the per-window frame."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import TINY
from thawcast.catalogue import FEATURES
from thawcast.config import parse_config
from thawcast.errors import DataError
from thawcast.prep.features import monthly_names
from thawcast.prep.windows import (
    SPLITS,
    WindowSet,
    build_history,
    build_scenario,
    open_windows,
    scaling_frame,
    to_dataset,
    window_frame,
)
from thawcast.variables import TARGETS

CFG = parse_config(TINY)  # 6-month windows; training targets 2001, validation 2002, test 2003
N_BANDS, W = 3, 6
NAMES = monthly_names(CFG.feature_names)


def band_tables(start="2001-01-01", end="2003-12-01", seed=0, shift=0.0):
    """ERA5-Land-like band tables: every dynamic feature and target as band offset + noise (+ ``shift``),
    and the static features per band."""
    times = pd.date_range(start, end, freq="MS")
    g = np.random.default_rng(seed)
    dynamic = [n for n in NAMES if FEATURES[n].kind == "dynamic"] + list(TARGETS)
    offset = 5.0 * np.arange(N_BANDS)[:, None]
    era = xr.Dataset({v: (("band", "time"), offset + g.normal(size=(N_BANDS, len(times))) + shift)
                      for v in dynamic}, coords={"band": np.arange(N_BANDS), "time": times})
    static = xr.Dataset({n: ("band", np.arange(N_BANDS) * 10.0 + i) for i, n in enumerate(NAMES)
                         if FEATURES[n].kind == "static"}, coords={"band": np.arange(N_BANDS)})
    return era, static


@pytest.fixture(scope="module")
def history():
    era, static = band_tables()
    return era, static, build_history(CFG, era, static)


def test_features_are_the_raw_months_scaled_by_the_training_months_statistics(history):
    era, _static, hist = history
    ws = hist.windows
    i = NAMES.index("t_air")
    fit = era["t_air"].values[:, :12]  # training split: target months of 2001, so input months of 2001 only
    np.testing.assert_allclose(ws.x[..., i], (era["t_air"].values - fit.mean()) / fit.std(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hist.scalers["features"].mean[i], fit.mean())
    # the calendar year is constant over the training months: flagged, scaled to 0 there and 1 a year later
    y = NAMES.index("year")
    assert hist.scalers["features"].constant[y] and not hist.scalers["features"].constant[i]
    np.testing.assert_allclose(ws.x[:, :12, y], 0.0)
    np.testing.assert_allclose(ws.x[:, 12:24, y], 1.0)
    # targets: raw degC kept, scaled with the training months' statistics
    soil = era["t_soil3"].values
    np.testing.assert_array_equal(hist.y_degc[..., 2], soil.astype(np.float32))
    np.testing.assert_allclose(ws.y[..., 2], (soil - soil[:, :12].mean()) / soil[:, :12].std(), rtol=1e-5, atol=1e-6)
    assert hist.signal_ref == pytest.approx((era["r_thermal"].values[:, :12].mean(),
                                             era["r_thermal"].values[:, :12].std()))


def test_each_window_is_six_input_months_and_the_next_month_s_target(history):
    era, _static, hist = history
    ws = hist.windows
    counts = [(hist.split == i).sum() for i in range(len(SPLITS))]
    assert counts == [6 * N_BANDS, 12 * N_BANDS, 12 * N_BANDS]  # targets 2001-07..12, all 2002, all 2003
    j = np.flatnonzero((ws.band == 2) & (ws.target_times() == pd.Timestamp("2002-03-01")))
    assert len(j) == 1 and hist.split[j[0]] == SPLITS.index("validation")
    inputs = ws.inputs(j)[0]  # [w, feature]: September 2001 .. February 2002 of band 2
    months = pd.DatetimeIndex(era["time"].values)
    first = months.get_loc(pd.Timestamp("2001-09-01"))
    np.testing.assert_array_equal(inputs[:, :-1], ws.x[2, first:first + W])
    np.testing.assert_array_equal(inputs[:, -1], ws.signal[2, first + W - 1])  # z of the window, every step
    np.testing.assert_array_equal(ws.targets(j)[0], ws.y[2, months.get_loc(pd.Timestamp("2002-03-01"))])


def test_scenario_windows_use_history_s_scaling_and_cover_every_projection_month(history):
    _era, static, hist = history
    scen, _ = band_tables("2023-01-01", "2030-12-01", seed=1, shift=2.0)
    ws = build_scenario(CFG, scen, static, hist, "test scenario")
    i = NAMES.index("t_air")
    scaler = hist.scalers["features"]
    np.testing.assert_allclose(ws.x[..., i], (scen["t_air"].values - scaler.mean[i]) / scaler.std[i], rtol=1e-5,
                               atol=1e-6)
    months = pd.date_range("2024-01-01", "2030-12-01", freq="MS")
    assert len(ws) == N_BANDS * len(months)
    for b in range(N_BANDS):
        assert list(ws.target_times(ws.band == b)) == list(months)
    short, _ = band_tables("2023-08-01", "2030-12-01", seed=1)  # needs July 2023 for January 2024's window
    with pytest.raises(DataError, match="need months 2023-07..2030-12"):
        build_scenario(CFG, short, static, hist, "short scenario")


def test_window_files_round_trip_split_by_split(history, tmp_path):
    _era, _static, hist = history
    path = tmp_path / "history.nc"
    to_dataset(hist.windows, hist.split, hist.y_degc, TARGETS, {"note": "test"}).to_netcdf(path)
    for code, split in enumerate(SPLITS):
        got, keep = open_windows(path, split), hist.split == code
        np.testing.assert_array_equal(got.band, hist.windows.band[keep])
        np.testing.assert_array_equal(got.last, hist.windows.last[keep])
        np.testing.assert_array_equal(got.inputs(), hist.windows.inputs(keep))
        np.testing.assert_array_equal(got.targets(), hist.windows.targets(keep))
        assert got.length == W and got.feature_names == hist.windows.feature_names
    everything = open_windows(path)
    assert len(everything) == len(hist.windows)
    np.testing.assert_array_equal(everything.signal, hist.windows.signal)
    with xr.open_dataset(path) as ds:
        np.testing.assert_array_equal(ds["y_degc"].values, hist.y_degc)
        assert ds.attrs["note"] == "test" and ds.attrs["window_length_months"] == W
        assert ds.attrs["feature_order"].split() == list(hist.windows.feature_names)
        assert list(ds["feature"].values) == list(NAMES) and list(ds["target"].values) == list(TARGETS)
        assert ds["y_degc"].attrs["units"] == "degC"
        # CF flags: the split codes say which split they are
        assert ds["window_split"].attrs["flag_meanings"].split() == list(SPLITS)
        assert list(ds["window_split"].attrs["flag_values"]) == [0, 1, 2]
        assert all(ds[v].attrs.get("long_name") for v in ("x", "y", "y_degc", "z", "window_band", "window_last"))
    scenario = tmp_path / "rcp.nc"
    to_dataset(replace(hist.windows, y=None), None, None, TARGETS, {}).to_netcdf(scenario)
    with pytest.raises(DataError, match="no splits"):
        open_windows(scenario, "test")
    with pytest.raises(DataError, match="not found"):
        open_windows(tmp_path / "missing.nc")


def test_the_window_frame_counts_missing_inputs_and_targets_per_window():
    era, static = band_tables()
    era["t_air"].values[1, 20] = np.nan  # band 1, September 2002 (not a training month)
    era["t_soil2"].values[0, 30] = np.nan  # band 0, July 2003: one window's target
    hist = build_history(CFG, era, static)
    ws = hist.windows
    frame = window_frame(ws, hist.split, hist.y_degc)
    covers = (ws.band == 1) & (ws.last >= 20) & (ws.last <= 20 + W - 1)
    assert covers.sum() == W
    np.testing.assert_array_equal(frame["nan_inputs"], covers.astype(int))
    aims = (ws.band == 0) & (ws.last + 1 == 30)
    np.testing.assert_array_equal(frame["nan_targets"], aims.astype(int))
    assert (frame["lead_months"] == 1).all() and (frame["span_months"] == W).all()
    assert list(frame["split"].unique()) == list(SPLITS)
    assert frame.loc[aims, "target"].item() == "2003-07" and frame.loc[aims, "target_year"].item() == 2003


def test_the_scaling_frame_reports_zero_mean_unit_std_on_the_training_months(history):
    _era, _static, hist = history
    frame = scaling_frame(hist).set_index("column")
    assert list(frame.index) == [*NAMES, *TARGETS, "z"]
    moving = frame[~frame["constant"]]
    np.testing.assert_allclose(moving["train_mean"], 0.0, atol=1e-6)
    np.testing.assert_allclose(moving["train_std"], 1.0, rtol=1e-5)
    assert frame.loc["year", "constant"] and frame.loc["year", "train_std"] == 0.0


def test_of_split_is_the_split_s_windows_as_the_stage_s_file_would_give_them(history, tmp_path):
    """The in-memory split (the feature-ablation stage's) equals the one read back from the window file."""
    from thawcast.prep.windows import open_windows, to_dataset

    _era, _static, hist = history
    path = tmp_path / "history.nc"
    to_dataset(hist.windows, hist.split, hist.y_degc, TARGETS, {}).to_netcdf(path)
    for code, name in enumerate(SPLITS):
        mine, read = hist.of_split(name), open_windows(path, name)
        assert len(mine) == int((hist.split == code).sum()) > 0
        np.testing.assert_array_equal(mine.band, read.band)
        np.testing.assert_array_equal(mine.last, read.last)
        np.testing.assert_array_equal(mine.inputs(), read.inputs())
        np.testing.assert_array_equal(mine.targets(), read.targets())
        assert mine.feature_names == read.feature_names and mine.length == read.length


def test_scalers_and_signal_reference_round_trip_through_their_file(history, tmp_path):
    from thawcast.prep.windows import load_scalers, load_signal_reference, save_scalers

    _era, _static, hist = history
    path = tmp_path / "scaler.json"
    save_scalers(path, hist.scalers, {"signal_reference": {"mean": hist.signal_ref[0], "std": hist.signal_ref[1]}})
    back = load_scalers(path)
    assert set(back) == set(hist.scalers) == {"features", "targets", "signal"}
    for k, s in hist.scalers.items():
        assert back[k].names == s.names
        np.testing.assert_array_equal(back[k].mean, s.mean)
        np.testing.assert_array_equal(back[k].std, s.std)
        np.testing.assert_array_equal(back[k].constant, s.constant)
    assert load_signal_reference(path) == hist.signal_ref
    with pytest.raises(DataError, match=r"nope.json: not found: rerun the windows stage"):
        load_scalers(tmp_path / "nope.json")


def test_to_grid_puts_each_window_s_value_at_its_target_month(history):
    _era, _static, hist = history
    ws = hist.of_split("test")
    values = np.stack([ws.band * 100.0 + ws.last, -ws.band.astype(float)], axis=1)
    months = ws.times[12:]
    grid = ws.to_grid(values, months)
    assert grid.shape == (ws.x.shape[0], len(months), 2)
    pos = months.get_indexer(ws.target_times())
    np.testing.assert_array_equal(grid[ws.band, pos], values)
    filled = np.zeros(grid.shape[:2], bool)
    filled[ws.band, pos] = True
    assert np.isnan(grid[~filled]).all()  # no window targets those months


def test_a_pickled_window_set_carries_its_arrays_not_its_windows():
    """Worker processes receive window sets pickled: the sliding-window view is made again on arrival (pickled, it
    was a copy w times the size of the features: 6.9 GB per worker for the default grid cells)."""
    import pickle

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 120, 30)).astype(np.float32)
    ws = WindowSet(x=x, band=np.repeat(np.arange(50), 90), last=np.tile(np.arange(23, 113), 50), length=24,
                   times=pd.date_range("2001-01-01", periods=120, freq="MS"), feature_names=tuple(map(str, range(30))),
                   y=rng.normal(size=(50, 120, 4)).astype(np.float32))
    data = pickle.dumps((ws, ws.subset(slice(0, 10))))
    assert len(data) < 1.2 * (x.nbytes + ws.y.nbytes + ws.band.nbytes + ws.last.nbytes)  # shared arrays once
    back, part = pickle.loads(data)
    np.testing.assert_array_equal(back.inputs(), ws.inputs())
    np.testing.assert_array_equal(part.targets(), ws.targets(slice(0, 10)))
    assert back.x is part.x  # still one array under both
