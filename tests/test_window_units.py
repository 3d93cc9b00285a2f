"""Unit tests of the window machinery on small hand-made arrays: the scaler's constant-column rule and its file,
split years, the window index and its bounds, batches, NaN counts, the NetCDF layout and reading it back,
scenario (forcing) windows on the history's scaling, and the per-window and scaling frames."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import TINY
from thawcast.config import WindowsConfig, YearRange, parse_config
from thawcast.errors import DataError
from thawcast.prep.windows import (
    History,
    Scaler,
    WindowSet,
    build_history,
    build_scenario,
    fit_months,
    forcing_windows,
    load_scalers,
    load_signal_reference,
    nan_per_window,
    open_windows,
    save_scalers,
    scaling_frame,
    target_years,
    to_dataset,
    window_frame,
    window_index,
)
from thawcast.variables import TARGETS

# train targets 2001-2007 (validation is its last three years), validation 2008-2010, test 2012-2013
WCFG = WindowsConfig.model_validate({"length_months": 6, "train": {"start_year": 2001, "end_year": 2010},
                                     "validation": {"start_year": 2008, "end_year": 2010},
                                     "test": {"start_year": 2012, "end_year": 2013}})


def small_set(signal=True, y=True):
    """Two bands, six months (2001-10 .. 2002-03), one feature ``t_air`` = 10 * band + month index, w = 3,
    four windows: (band 0, last 2), (0, 4), (1, 2), (1, 3)."""
    times = pd.date_range("2001-10-01", periods=6, freq="MS")
    x = (10.0 * np.arange(2)[:, None, None] + np.arange(6)[None, :, None]).astype(np.float32)
    sig = (100.0 + 10.0 * np.arange(2)[:, None] + np.arange(6)[None, :]) if signal else None
    targ = (np.arange(2)[:, None, None] * 1000.0 + np.arange(6)[None, :, None] * 10.0 + np.arange(4)) if y else None
    return WindowSet(x=x, band=np.array([0, 0, 1, 1]), last=np.array([2, 4, 2, 3]), length=3, times=times,
                     feature_names=("t_air", "z") if signal else ("t_air",), signal=sig, y=targ)


# ---------------------------------------------------------------- scaler
def test_scaler_fit_pools_leading_axes_and_transform_inverse_are_hand_computed():
    # column a: 1, 3, 5, 7 -> mean 4, std sqrt(5); column b: 2, 2, 6, 6 -> mean 4, std 2
    values = np.array([[[1.0, 2.0], [3.0, 2.0]], [[5.0, 6.0], [7.0, 6.0]]])
    sc = Scaler.fit(values, ["a", "b"])
    assert sc.names == ("a", "b")
    np.testing.assert_allclose(sc.mean, [4.0, 4.0], rtol=1e-15)
    np.testing.assert_allclose(sc.std, [np.sqrt(5.0), 2.0], rtol=1e-15)
    assert sc.constant.tolist() == [False, False]
    hand = Scaler(("a", "b"), np.array([1.0, 2.0]), np.array([2.0, 4.0]), np.array([False, False]))
    np.testing.assert_array_equal(hand.transform([[3.0, 10.0]]), [[1.0, 2.0]])  # (3-1)/2, (10-2)/4
    np.testing.assert_array_equal(hand.inverse([[1.0, 2.0]]), [[3.0, 10.0]])  # 1*2+1, 2*4+2


def test_scaler_refuses_empty_or_non_finite_training_values_naming_the_columns():
    with pytest.raises(DataError, match="^no training rows to fit the scaler on$"):
        Scaler.fit(np.zeros((0, 2)), ("a", "b"))
    with pytest.raises(DataError, match=re.escape("training values of ['b'] contain NaN or inf; cannot fit the scaler")):
        Scaler.fit(np.array([[1.0, 2.0], [3.0, np.inf]]), ("a", "b"))
    with pytest.raises(DataError, match=re.escape("training values of ['a', 'b'] contain NaN")):
        Scaler.fit(np.array([[np.nan, 2.0], [3.0, np.nan]]), ("a", "b"))


def test_scaler_constant_rule_is_std_at_most_1e_12_of_max_1_and_abs_mean():
    cols = {
        "zeros": [0.0, 0.0],  # std 0: constant
        "at_the_limit": [-1e-12, 1e-12],  # std exactly 1e-12 (sqrt of 1e-24): constant, the rule is <=, not <
        "tiny_at_zero": [-5e-13, 5e-13],  # std 5e-13 <= 1e-12 * 1: constant
        "small_at_zero": [-1.5e-12, 1.5e-12],  # std 1.5e-12 > 1e-12 * 1: not constant
        "big_negative": [-1e6 - 1e-7, -1e6 + 1e-7],  # std ~1e-7 <= 1e-12 * 1e6 (|mean|): constant
        "big_varying": [-1e6 - 1e-5, -1e6 + 1e-5],  # std ~1e-5 > 1e-6: not constant
        "moving": [0.0, 1e-9],  # std 5e-10: not constant
    }
    sc = Scaler.fit(np.array(list(cols.values())).T, tuple(cols))
    assert dict(zip(cols, sc.constant.tolist(), strict=True)) == {
        "zeros": True, "at_the_limit": True, "tiny_at_zero": True, "small_at_zero": False, "big_negative": True, "big_varying": False,
        "moving": False}
    # constant columns get std 1 (so they scale to 0), the others keep theirs
    np.testing.assert_array_equal(sc.std[[0, 1, 2, 4]], 1.0)
    np.testing.assert_allclose(sc.std[[3, 6]], [1.5e-12, 5e-10], rtol=1e-9)


def test_scaler_statistics_are_taken_in_float64_and_returned_as_floats():
    # float32 accumulation would lose the three 1s next to 2**24 (mean 4194304); float64 gives 16777219 / 4
    sc = Scaler.fit(np.array([[16777216.0], [1.0], [1.0], [1.0]], dtype=np.float32), ("a",))
    assert sc.mean.dtype == np.float64 and sc.mean[0] == 4194304.75
    # a hand-written scaler file with integer statistics still gives float values back
    ints = Scaler.from_dict({"a": {"mean": 1, "std": 2, "constant": False}})
    back = ints.inverse(np.array([1, 2]))
    assert back.dtype == np.float64 and back.tolist() == [3.0, 5.0]
    # names, means, stds and flags must pair up one to one
    with pytest.raises(ValueError, match="zip"):
        Scaler(("a", "b"), np.array([1.0]), np.array([1.0]), np.array([False])).to_dict()


def test_scaler_file_layout_and_reading_it_back(tmp_path):
    path = tmp_path / "scaler.json"
    sc = Scaler(("a",), np.array([1.0]), np.array([2.0]), np.array([False]))
    const = Scaler(("c",), np.array([3.0]), np.array([1.0]), np.array([True]))
    save_scalers(path, {"features": sc, "signal": const}, {"fit_on": "x"})
    # meta first, then one block per scaler, indented by 2, with a final newline
    assert path.read_text() == (
        '{\n  "fit_on": "x",\n'
        '  "features": {\n    "a": {\n      "mean": 1.0,\n      "std": 2.0,\n      "constant": false\n    }\n  },\n'
        '  "signal": {\n    "c": {\n      "mean": 3.0,\n      "std": 1.0,\n      "constant": true\n    }\n  }\n}\n')
    back = load_scalers(path)
    assert list(back) == ["features", "signal"]  # only the scalers in the file, not "targets"
    assert back["signal"].names == ("c",) and back["signal"].constant.tolist() == [True]
    np.testing.assert_array_equal(back["features"].mean, [1.0])
    np.testing.assert_array_equal(back["features"].std, [2.0])
    assert sc.to_dict() == {"a": {"mean": 1.0, "std": 2.0, "constant": False}}
    assert type(sc.to_dict()["a"]["mean"]) is float and type(sc.to_dict()["a"]["constant"]) is bool


def test_a_damaged_scaler_file_names_the_problem_and_the_fix(tmp_path):
    path = tmp_path / "scaler.json"
    path.write_text(json.dumps({"features": {"a": {"mean": 1.0}}}))
    with pytest.raises(DataError, match=re.escape(f"{path}: not a scaler file (KeyError: 'std'): rerun the windows"
                                                  " stage (`dvc repro windows`)")):
        load_scalers(path)
    with pytest.raises(DataError, match=re.escape("not found: rerun the windows stage (`dvc repro windows`)")):
        load_scalers(tmp_path / "missing.json")
    path.write_text(json.dumps({"targets": 3}))
    with pytest.raises(DataError, match=re.escape("not a scaler file (TypeError: ")):
        load_scalers(path)


def test_signal_reference_is_nan_where_the_file_lacks_it(tmp_path):
    path = tmp_path / "scaler.json"
    path.write_text(json.dumps({"fit_on": "x"}))
    mean, std = load_signal_reference(path)
    assert np.isnan(mean) and np.isnan(std)
    path.write_text(json.dumps({"signal_reference": {"mean": 250.5}}))
    mean, std = load_signal_reference(path)
    assert mean == 250.5 and np.isnan(std)
    with pytest.raises(DataError, match=re.escape("not found: rerun the windows stage (`dvc repro windows`)")):
        load_signal_reference(tmp_path / "missing.json")
    path.write_text(json.dumps({"signal_reference": {"mean": 250.5, "std": 12.25}}))
    assert load_signal_reference(path) == (250.5, 12.25)


# ---------------------------------------------------------------- split years and the window index
def test_target_years_train_stops_the_year_before_validation():
    assert target_years(WCFG) == {"train": (2001, 2007), "validation": (2008, 2010), "test": (2012, 2013)}
    assert list(target_years(WCFG)) == ["train", "validation", "test"]  # the split codes 0, 1, 2


def test_fit_months_are_exactly_the_training_target_years():
    times = pd.date_range("2000-01-01", "2013-12-01", freq="MS")
    mask = fit_months(times, WCFG)
    assert isinstance(mask, np.ndarray) and mask.dtype == bool
    assert mask.sum() == 7 * 12  # 2001..2007 inclusive
    assert times[mask][0] == pd.Timestamp("2001-01-01") and times[mask][-1] == pd.Timestamp("2007-12-01")
    assert not mask[11] and mask[12] and mask[95] and not mask[96]  # 2000-12 | 2001-01 ... 2007-12 | 2008-01


def test_window_index_keeps_the_first_target_with_a_full_window_and_orders_band_major():
    times = pd.date_range("2001-01-01", "2002-12-01", freq="MS")
    # w=3: target index k needs inputs k-3..k-1, so 2001 targets are k=3..11 (9 per band), last input k-1
    band, last = window_index(times, 2, 3, 2001, 2001)
    assert band.dtype == np.int64 and last.dtype == np.int64
    np.testing.assert_array_equal(band, [0] * 9 + [1] * 9)
    np.testing.assert_array_equal(last, list(range(2, 11)) * 2)
    # 2002 only: k = 12..23 (the inclusive last year)
    band, last = window_index(times, 1, 3, 2002, 2002)
    np.testing.assert_array_equal(last, range(11, 23))
    # w=12: k=12 (2002-01) is the first target with 12 months before it
    band, last = window_index(times, 2, 12, 2001, 2002)
    np.testing.assert_array_equal(last, list(range(11, 23)) * 2)
    band, last = window_index(times, 2, 12, 2001, 2001)  # no 2001 target has a full window
    assert len(band) == len(last) == 0 and band.dtype == np.int64


# ---------------------------------------------------------------- WindowSet
def test_window_set_refuses_bad_shapes_and_indices_with_the_bounds_in_the_message():
    times = pd.date_range("2001-01-01", periods=12, freq="MS")
    x = np.zeros((2, 12, 3))

    def make(band, last, data=x):
        return WindowSet(x=data, band=np.array(band), last=np.array(last), length=6, times=times,
                         feature_names=("a", "b", "c"))

    with pytest.raises(DataError, match=re.escape("features must be [band, time, feature], got shape (2, 12)")):
        make([0], [5], np.zeros((2, 12)))
    with pytest.raises(DataError, match="^band and last index arrays differ in length$"):
        make([0, 1], [5])
    for last in ([4], [12], [5, 12]):  # w=6 needs last >= 5; 12 months end at index 11
        with pytest.raises(DataError, match="^window index out of range for 12 months and w=6$"):
            make([0] * len(last), last)
    for band in ([-1], [2], [0, 2]):
        with pytest.raises(DataError, match=r"^band index outside 0\.\.1$"):
            make(band, [5] * len(band))
    # the edges themselves are fine, and so is an empty set
    assert len(make([0, 1], [5, 11])) == 2
    empty = make(np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert len(empty) == 0 and empty.inputs().shape == (0, 6, 3)


def test_inputs_are_a_fresh_contiguous_batch_in_x_s_dtype_with_the_signal_last():
    ws = small_set()
    got = ws.inputs()
    assert got.shape == (4, 3, 2) and got.dtype == np.float32 and ws.n_features == 2
    # window (band 1, last 3): months 1..3 -> t_air 11, 12, 13; z of that window 100 + 10 + 3 = 113 at every step
    np.testing.assert_array_equal(got[3], [[11, 113], [12, 113], [13, 113]])
    np.testing.assert_array_equal(got[1, :, 0], [2, 3, 4])  # band 0, last 4
    np.testing.assert_array_equal(ws.inputs(np.array([2]))[0, :, 0], [10, 11, 12])
    bare = small_set(signal=False)
    plain = bare.inputs()
    assert plain.shape == (4, 3, 1) and bare.n_features == 1 and plain.flags.c_contiguous
    assert not np.shares_memory(plain, bare.x)
    np.testing.assert_array_equal(plain[3, :, 0], [11, 12, 13])


def test_targets_are_the_month_after_the_window_and_scenario_sets_have_none():
    ws = small_set()
    # y = 1000 band + 10 month + target index; window (1, last 3) targets month 4
    np.testing.assert_array_equal(ws.targets(np.array([3]))[0], [1040, 1041, 1042, 1043])
    assert list(ws.target_times().strftime("%Y-%m")) == ["2002-01", "2002-03", "2002-01", "2002-02"]
    with pytest.raises(DataError, match=r"^these windows have no targets \(scenario windows\)$"):
        small_set(y=False).targets()


def test_to_grid_keeps_a_window_targeting_the_first_month_of_the_grid():
    ws = small_set()
    months = pd.date_range("2002-01-01", periods=2, freq="MS")  # 2002-01, 2002-02; 2002-03 is left out
    grid = ws.to_grid(np.array([[1.0], [2.0], [3.0], [4.0]]), months)
    np.testing.assert_array_equal(grid[..., 0], [[1.0, np.nan], [3.0, 4.0]])


# ---------------------------------------------------------------- NaN counts and the per-window frame
def test_nan_per_window_is_the_rolling_nan_count_from_the_first_month():
    x = np.zeros((2, 6, 2))
    x[0, 0, 1] = x[0, 2, 0] = x[0, 2, 1] = x[0, 4, 1] = np.nan  # band 0 per month: 1, 0, 2, 0, 1, 0
    x[1, 5, 0] = np.nan
    # w=3: windows ending at 2, 3, 4, 5 of band 0 hold 1+0+2, 0+2+0, 2+0+1, 0+1+0; band 1's last one 1
    got = nan_per_window(x, 3, np.array([2, 3, 4, 5, 5, 4]), np.array([0, 0, 0, 0, 1, 1]))
    np.testing.assert_array_equal(got, [3, 2, 3, 1, 1, 0])
    assert got.dtype.kind == "i"  # counts, not floats
    # a [band, time] array counts one per NaN month
    got = nan_per_window(x[..., 1], 3, np.array([2, 5]), np.array([0, 0]))
    np.testing.assert_array_equal(got, [2, 1])
    assert got.dtype.kind == "i"


def test_window_frame_rows_for_split_windows_and_for_scenario_windows():
    ws = small_set()
    x = ws.x.copy()
    x[1, 2, 0] = np.nan  # band 1, 2001-12: inside windows (1, last 2) and (1, last 3)
    ws.x = x
    ws.signal[0, 4] = np.nan  # the signal of window (0, last 4)
    y = np.zeros((2, 6, 4))
    y[1, 4, :2] = np.nan  # target month of window (1, last 3): two of four targets missing
    frame = window_frame(ws, np.array([0, 1, 2, 1]), y)
    assert list(frame.columns) == ["split", "kind", "band", "target", "target_year", "lead_months", "span_months",
                                   "n_features", "nan_inputs", "nan_targets"]
    assert list(frame["split"]) == ["train", "validation", "test", "validation"]
    assert list(frame["kind"]) == list(frame["split"])
    assert list(frame["band"]) == [0, 0, 1, 1]
    assert list(frame["target"]) == ["2002-01", "2002-03", "2002-01", "2002-02"]
    assert list(frame["target_year"]) == [2002] * 4
    # every window is 3 consecutive months (some across New Year) and its target the month after
    assert list(frame["lead_months"]) == [1] * 4 and list(frame["span_months"]) == [3] * 4
    assert list(frame["n_features"]) == [2] * 4
    assert list(frame["nan_inputs"]) == [0, 1, 1, 1] and list(frame["nan_targets"]) == [0, 0, 0, 2]
    scen = window_frame(ws, "rcp45")
    assert list(scen["split"]) == ["rcp45"] * 4 and list(scen["kind"]) == ["scenario"] * 4
    assert list(scen["nan_targets"]) == [0] * 4 and list(scen["nan_inputs"]) == [0, 1, 1, 1]
    assert scen["nan_targets"].dtype.kind == "i" and frame["nan_targets"].dtype.kind == "i"  # counts


def test_scaling_frame_reports_the_training_months_and_training_windows_only():
    times = pd.date_range("2001-01-01", periods=4, freq="MS")
    x = np.zeros((2, 4, 2), dtype=np.float32)
    x[..., 0] = [[1, 3, 100, 100], [5, 7, 100, 100]]  # fit months 0, 1: 1, 3, 5, 7 -> mean 4, std sqrt(5)
    y = np.stack([x[..., 0] + i for i in range(4)], axis=-1)  # target i: mean 4 + i, std sqrt(5)
    signal = np.array([[0, 2, 99, 99], [0, -4, 99, 99]], dtype=np.float32)  # training windows: 2, -4
    ws = WindowSet(x=x, band=np.array([0, 0, 1, 1]), last=np.array([1, 2, 1, 2]), length=2, times=times,
                   feature_names=("t_air", "year", "z"), signal=signal, y=y)
    feats = Scaler(("t_air", "year"), np.zeros(2), np.ones(2), np.array([False, True]))
    hist = History(ws, np.array([0, 1, 0, 1]), y, {"features": feats}, (0.0, 1.0), np.array([True, True, False, False]))
    frame = scaling_frame(hist)
    assert list(frame.columns) == ["column", "train_mean", "train_std", "constant"]
    assert list(frame["column"]) == ["t_air", "year", *TARGETS, "z"]
    np.testing.assert_allclose(frame["train_mean"], [4, 0, 4, 5, 6, 7, -1], rtol=1e-15)  # z: (2 - 4) / 2
    np.testing.assert_allclose(frame["train_std"], [5 ** 0.5, 0, *[5 ** 0.5] * 4, 3], rtol=1e-15)  # z: |2 - -1|
    assert list(frame["constant"]) == [False, True, False, False, False, False, False]
    no_signal = History(WindowSet(x=x, band=ws.band, last=ws.last, length=2, times=times,
                                  feature_names=("t_air", "year"), y=y), hist.split, y, hist.scalers, hist.signal_ref,
                        hist.fit)
    assert list(scaling_frame(no_signal)["column"]) == ["t_air", "year", *TARGETS]
    # a features scaler that does not match the monthly features is an error, not a shorter frame
    short = History(ws, hist.split, y, {"features": Scaler(("t_air",), np.zeros(1), np.ones(1), np.array([False]))},
                    hist.signal_ref, hist.fit)
    with pytest.raises(ValueError, match="zip"):
        scaling_frame(short)


def test_scaling_frame_means_are_accumulated_in_float64():
    # float32 accumulation loses the three 1s next to 2**24 (mean 4194304); float64 gives 16777219 / 4
    times = pd.date_range("2001-01-01", periods=2, freq="MS")
    x = np.array([[[16777216.0], [1.0]], [[1.0], [1.0]]], dtype=np.float32)
    ws = WindowSet(x=x, band=np.array([0]), last=np.array([0]), length=1, times=times, feature_names=("t_air",),
                   y=np.zeros((2, 2, 4), dtype=np.float32))
    hist = History(ws, np.array([0]), ws.y, {"features": Scaler(("t_air",), np.zeros(1), np.ones(1), np.array([False]))},
                   (0.0, 1.0), np.array([True, True]))
    assert scaling_frame(hist).loc[0, "train_mean"] == 4194304.75


# ---------------------------------------------------------------- the NetCDF layout and reading it back
def test_window_file_variables_dimensions_and_attributes(tmp_path):
    ws = small_set()
    y_degc = ws.y - 5.0
    ds = to_dataset(ws, np.array([0, 1, 2, 1]), y_degc, TARGETS, {"note": "n", "window_length_months": 99})
    assert set(ds.data_vars) == {"x", "window_band", "window_last", "z", "y", "y_degc", "window_split"}
    assert {v: ds[v].dims for v in ds.data_vars} == {
        "x": ("band", "time", "feature"), "window_band": ("window",), "window_last": ("window",),
        "z": ("band", "time"), "y": ("band", "time", "target"), "y_degc": ("band", "time", "target"),
        "window_split": ("window",)}
    assert set(ds.coords) == {"band", "time", "feature", "target"}
    assert dict(ds.sizes) == {"band": 2, "time": 6, "feature": 1, "window": 4, "target": 4}
    assert list(ds["feature"].values) == ["t_air"] and list(ds["target"].values) == list(TARGETS)
    assert list(ds["band"].values) == [0, 1] and list(ds["time"].values) == list(ws.times.values)
    assert {v: ds[v].attrs.get("long_name") for v in ds.data_vars} == {
        "x": "scaled monthly features (z-score, training fit)",
        "window_band": "band index of the window",
        "window_last": "time index of the window's last input month",
        "z": "scaled scenario signal of the window ending at this month (eqs. 2.1-2.2)",
        "y": "scaled soil temperature targets",
        "y_degc": "soil temperature",
        "window_split": None}
    assert ds["y_degc"].attrs["units"] == "degC" and "units" not in ds["y"].attrs
    np.testing.assert_array_equal(ds["y_degc"].values, y_degc)
    np.testing.assert_array_equal(ds["y"].values, ws.y)
    np.testing.assert_array_equal(ds["z"].values, ws.signal)
    np.testing.assert_array_equal(ds["window_last"].values, [2, 4, 2, 3])
    np.testing.assert_array_equal(ds["window_band"].values, [0, 0, 1, 1])
    split = ds["window_split"]
    assert split.dtype == np.int8 and split.values.tolist() == [0, 1, 2, 1]
    assert split.attrs["flag_values"].dtype == np.int8 and split.attrs["flag_values"].tolist() == [0, 1, 2]
    assert split.attrs["flag_meanings"] == "train validation test"
    # the window length and feature order are the set's, whatever the caller's attrs said
    assert ds.attrs == {"note": "n", "window_length_months": 3, "feature_order": "t_air z"}
    # scenario windows: no signal here, no targets, no splits
    bare = to_dataset(small_set(signal=False, y=False), None, None, TARGETS, {})
    assert set(bare.data_vars) == {"x", "window_band", "window_last"} and "target" not in bare.coords
    assert bare.attrs == {"window_length_months": 3, "feature_order": "t_air"}


def test_open_windows_reads_one_split_or_all_and_refuses_bad_requests(tmp_path):
    ws = small_set()
    path = tmp_path / "history.nc"
    to_dataset(ws, np.array([0, 1, 2, 1]), ws.y, TARGETS, {}).to_netcdf(path)
    val = open_windows(path, "validation")
    np.testing.assert_array_equal(val.band, [0, 1])
    np.testing.assert_array_equal(val.last, [4, 3])
    assert val.length == 3 and type(val.length) is int and val.feature_names == ("t_air", "z")
    assert isinstance(val.times, pd.DatetimeIndex) and list(val.times) == list(ws.times)
    np.testing.assert_array_equal(val.inputs(), ws.inputs(np.array([1, 3])))
    np.testing.assert_array_equal(val.targets(), ws.targets(np.array([1, 3])))
    every = open_windows(path)
    np.testing.assert_array_equal(every.last, [2, 4, 2, 3])
    np.testing.assert_array_equal(every.signal, ws.signal)
    with pytest.raises(DataError, match=re.escape(f"{path}: unknown split 'holdout'; valid: ['train', 'validation',"
                                                  " 'test']")):
        open_windows(path, "holdout")
    scen = tmp_path / "rcp45.nc"
    to_dataset(small_set(signal=False, y=False), None, None, TARGETS, {}).to_netcdf(scen)
    read = open_windows(scen)
    assert read.signal is None and read.y is None and read.feature_names == ("t_air",)
    np.testing.assert_array_equal(read.inputs(), small_set(signal=False).inputs())
    with pytest.raises(DataError, match=re.escape(f"{scen}: this file has no splits (scenario windows)")):
        open_windows(scen, "train")
    with pytest.raises(DataError, match="unknown split"):  # the split name is checked before the file's splits
        open_windows(scen, "holdout")
    missing = tmp_path / "none.nc"
    with pytest.raises(DataError, match=re.escape(f"{missing}: window file not found (run the windows stage)")):
        open_windows(missing)


# ---------------------------------------------------------------- scenario windows on the history's scaling
FORCING_NAMES = ("t_air", "r_thermal", "year", "z")
# history's scalers, by hand: t_air (x - 1) / 2, r_thermal (x - 2) / 4, year (x - 2020) / 1; z (x - 0.5) / 2
FORCING_SCALERS = {
    "features": Scaler(("t_air", "r_thermal", "year"), np.array([1.0, 2.0, 2020.0]), np.array([2.0, 4.0, 1.0]),
                       np.zeros(3, bool)),
    "signal": Scaler(("z",), np.array([0.5]), np.array([2.0]), np.array([False])),
}
SIGNAL_REF = (1.0, 2.0)  # training mean and std of r_thermal


def forcing_table(start="2023-07-01", end="2025-12-01", drop=()):
    """Two bands: t_air = 10 * band + month index, r_thermal 5 (band 0) and -3 (band 1) every month."""
    times = pd.date_range(start, end, freq="MS")
    table = xr.Dataset({"t_air": (("band", "time"), 10.0 * np.arange(2)[:, None] + np.arange(len(times))),
                        "r_thermal": (("band", "time"), np.repeat([[5.0], [-3.0]], len(times), axis=1))},
                       coords={"band": [0, 1], "time": times})
    return table.drop_vars(list(drop)), xr.Dataset(coords={"band": [0, 1]})


def test_forcing_windows_are_every_month_of_the_years_scaled_with_the_history_s_scalers():
    table, static = forcing_table()  # exactly the 6 input months before 2024 and every month to 2025-12
    ws = forcing_windows(FORCING_NAMES, 6, YearRange(start_year=2024, end_year=2025), table, static,
                         FORCING_SCALERS, SIGNAL_REF, "rcp45")
    assert ws.length == 6 and ws.feature_names == FORCING_NAMES and ws.y is None
    assert ws.x.dtype == np.float32 and ws.signal.dtype == np.float32 and ws.x.shape == (2, 30, 3)
    assert list(ws.times) == list(pd.DatetimeIndex(table["time"].values))
    months = pd.date_range("2024-01-01", "2025-12-01", freq="MS")
    assert len(ws) == 2 * 24
    for b in range(2):
        assert list(ws.target_times(ws.band == b)) == list(months)
    assert ws.last[0] == 5  # the first window's inputs are 2023-07 .. 2023-12
    # t_air of band 1 at month index 3: (10 + 3 - 1) / 2 = 6; r_thermal (5 - 2) / 4 and (-3 - 2) / 4;
    # year 2023 -> 3, 2025 -> 5
    assert ws.x[1, 3, 0] == 6.0
    np.testing.assert_array_equal(ws.x[:, 10, 1], [0.75, -1.25])
    np.testing.assert_array_equal(ws.x[0, [0, 29], 2], [3.0, 5.0])
    # z: window mean of r_thermal 5 -> z~ = (5 - 1) / 2 = 2 -> z = 4 -> (4 - 0.5) / 2 = 1.75;
    # -3 -> z~ = -2 -> z = -4 -> (-4 - 0.5) / 2 = -2.25; no full 6-month window before month index 5
    assert np.isnan(ws.signal[:, :5]).all()
    np.testing.assert_array_equal(ws.signal[:, 5:], np.repeat([[1.75], [-2.25]], 25, axis=1))
    np.testing.assert_array_equal(ws.inputs(np.array([0]))[0, :, 3], [1.75] * 6)


def test_forcing_windows_on_a_longer_table_still_target_only_the_years():
    table, static = forcing_table("2022-01-01", "2026-06-01")
    ws = forcing_windows(FORCING_NAMES[:3], 6, YearRange(start_year=2024, end_year=2024), table, static,
                         FORCING_SCALERS, SIGNAL_REF, "rcp45")
    assert ws.signal is None and ws.n_features == 3
    assert list(ws.target_times(ws.band == 1)) == list(pd.date_range("2024-01-01", "2024-12-01", freq="MS"))
    assert ws.last[0] == 23  # 2023-12 is month index 23 of a table from 2022-01


def test_forcing_windows_need_the_input_months_before_and_every_month_of_the_years():
    years = YearRange(start_year=2024, end_year=2025)
    for start, end, cover in (("2023-08-01", "2025-12-01", "2023-08..2025-12"),
                              ("2023-07-01", "2025-11-01", "2023-07..2025-11")):
        table, static = forcing_table(start, end)
        with pytest.raises(DataError, match=re.escape(f"rcp45: windows for the years 2024-2025 need months"
                                                      f" 2023-07..2025-12; the drivers cover {cover}")):
            forcing_windows(FORCING_NAMES, 6, years, table, static, FORCING_SCALERS, SIGNAL_REF, "rcp45")


def test_forcing_windows_need_r_thermal_for_the_signal():
    table, static = forcing_table(drop=("r_thermal",))
    with pytest.raises(DataError, match=re.escape("rcp45: 'r_thermal' is needed for the scenario signal z but is"
                                                  " missing")):
        forcing_windows(("t_air", "z"), 6, YearRange(start_year=2024, end_year=2025), table, static,
                        FORCING_SCALERS, SIGNAL_REF, "rcp45")


# ---------------------------------------------------------------- history edge cases
def history_tables(start="2001-01-01", end="2003-12-01", n_bands=2):
    """Random t_air, r_thermal and targets (a seeded normal) for ``n_bands`` bands."""
    times = pd.date_range(start, end, freq="MS")
    g = np.random.default_rng(0)
    era = xr.Dataset({v: (("band", "time"), g.normal(size=(n_bands, len(times))))
                      for v in ("t_air", "r_thermal", *TARGETS)}, coords={"band": np.arange(n_bands), "time": times})
    return era, xr.Dataset(coords={"band": np.arange(n_bands)})


def test_history_without_the_signal_has_no_signal_scaler_and_a_nan_reference():
    cfg = parse_config({**TINY, "features": ["t_air"]})
    era, static = history_tables("2000-01-01", "2004-12-01")  # trimmed to the period 2001-2003
    hist = build_history(cfg, era, static)
    assert list(hist.windows.times) == list(pd.date_range("2001-01-01", "2003-12-01", freq="MS"))
    assert hist.fit.tolist() == [True] * 12 + [False] * 24  # the training targets' year 2001
    t_air = era["t_air"].sel(time=slice("2001-01", "2001-12")).values
    np.testing.assert_allclose(hist.scalers["features"].mean, [t_air.mean()], rtol=1e-12)
    assert hist.windows.signal is None and set(hist.scalers) == {"features", "targets"}
    assert np.isnan(hist.signal_ref).all()
    assert [(hist.split == i).sum() for i in range(3)] == [2 * 6, 2 * 12, 2 * 12]  # w=6: train targets 2001-07..12


def test_history_with_no_training_target_after_the_first_window_is_an_error():
    cfg = parse_config({**TINY, "features": ["t_air"], "windows": {**TINY["windows"], "length_months": 12}})
    with pytest.raises(DataError, match=re.escape("windows: no training windows: the training years (2001, 2001)"
                                                  " leave no target month after the first 12 input months")):
        build_history(cfg, *history_tables())


def test_history_names_the_era5_land_band_table_when_it_falls_short():
    cfg = parse_config({**TINY, "features": ["t_air"]})
    with pytest.raises(DataError, match=re.escape("ERA5-Land bands: requested years 2001-2003 are outside the data,"
                                                  " which cover 2001-01 to 2002-12")):
        build_history(cfg, *history_tables(end="2002-12-01"))
    era, static = history_tables()
    with pytest.raises(DataError, match=re.escape("ERA5-Land bands: dynamic feature 't_air' is missing")):
        build_history(cfg, era.drop_vars("t_air"), static)


def test_history_with_the_signal_but_no_r_thermal_names_what_is_missing():
    # z is computed from r_thermal: without it the history is refused naming the table (it was a bare KeyError)
    cfg = parse_config({**TINY, "features": ["t_air", "z"]})
    era, static = history_tables()
    with pytest.raises(DataError, match=re.escape("ERA5-Land bands: 'r_thermal' is needed for the scenario signal z"
                                                  " but is missing")):
        build_history(cfg, era.drop_vars("r_thermal"), static)


def test_of_split_keeps_the_split_s_windows_over_the_same_monthly_arrays():
    ws = small_set()
    hist = History(ws, np.array([0, 1, 2, 1]), ws.y, {}, (0.0, 1.0), np.ones(6, bool))
    val = hist.of_split("validation")  # windows 1 and 3: (band 0, last 4), (band 1, last 3)
    np.testing.assert_array_equal(val.band, [0, 1])
    np.testing.assert_array_equal(val.last, [4, 3])
    assert val.x is ws.x and val.signal is ws.signal and val.y is ws.y and val.times is ws.times
    assert val.length == 3 and val.feature_names == ("t_air", "z")
    np.testing.assert_array_equal(hist.of_split("test").last, [2])


def signal_history():
    """Three bands; R_thermal 4, 1, 1 W m-2 through 2001 and 2 (the 2001 mean) from 2002 on."""
    cfg = parse_config({**TINY, "features": ["t_air", "z"]})
    era, static = history_tables(n_bands=3)
    r = np.full((3, 36), 2.0)
    r[:, :12] = [[4.0], [1.0], [1.0]]
    era["r_thermal"] = (("band", "time"), r)
    return cfg, era, static, build_history(cfg, era, static)


def test_history_signal_is_scaled_by_the_training_windows_z():
    _cfg, era, _static, hist = signal_history()
    # 2001 R_thermal: mean 2, std sqrt((4 + 1 + 1) / 3) = sqrt(2)
    assert hist.signal_ref == pytest.approx((2.0, 2 ** 0.5), rel=1e-12)
    # training windows end in 2001: z~ = 2 / sqrt(2) -> z = 2 (band 0); z~ = -1 / sqrt(2) -> z = -0.5 (bands 1, 2)
    # -> z scaler mean (2 - 0.5 - 0.5) / 3 = 1/3, std sqrt(((5/3)^2 + 2 (5/6)^2) / 3) = 5 / (3 sqrt(2))
    sig = hist.scalers["signal"]
    assert sig.names == ("z",)
    np.testing.assert_allclose([sig.mean[0], sig.std[0]], [1 / 3, 5 / (3 * 2 ** 0.5)], rtol=1e-12)
    ws = hist.windows
    assert ws.signal.dtype == np.float32 and ws.feature_names == ("t_air", "z") and ws.n_features == 2
    assert np.isnan(ws.signal[:, :5]).all()  # no full 6-month window yet
    # scaled: (2 - 1/3) / (5 / (3 sqrt 2)) = sqrt(2); (-0.5 - 1/3) / ... = -sqrt(2) / 2
    np.testing.assert_allclose(ws.signal[:, 5:12], np.repeat([[2 ** 0.5], [-(2 ** 0.5) / 2], [-(2 ** 0.5) / 2]], 7,
                                                             axis=1), rtol=1e-6)
    # window 2001-10 .. 2002-03 of band 0: mean R 3 -> z~ = 1 / sqrt(2) -> z = 0.5 -> (0.5 - 1/3) ... = sqrt(2) / 10;
    # windows within 2002-2003: R = mu -> z = 0 -> -(1/3) (3 sqrt 2 / 5) = -sqrt(2) / 5
    np.testing.assert_allclose(ws.signal[0, 14], 2 ** 0.5 / 10, rtol=1e-6)
    np.testing.assert_allclose(ws.signal[:, 17:], -(2 ** 0.5) / 5, rtol=1e-6)
    j = np.flatnonzero((ws.band == 0) & (ws.last == 14))
    np.testing.assert_array_equal(ws.inputs(j)[0, :, 1], [ws.signal[0, 14]] * 6)
    # the targets: raw degC kept as float32, the scaled ones float32 too; the monthly features float32
    soil = np.stack([era[t].values for t in TARGETS], axis=-1)
    assert hist.y_degc.dtype == np.float32 and ws.y.dtype == np.float32 and ws.x.dtype == np.float32
    np.testing.assert_array_equal(hist.y_degc, soil.astype(np.float32))
    fit = soil[:, :12]
    np.testing.assert_allclose(ws.y, (soil - fit.mean(axis=(0, 1))) / fit.std(axis=(0, 1)), rtol=1e-5, atol=1e-5)
    assert hist.fit.tolist() == [True] * 12 + [False] * 24 and len(ws.times) == 36


def test_scenario_windows_take_the_projection_years_and_the_history_s_scaling():
    cfg, _era, static, hist = signal_history()
    times = pd.date_range("2023-07-01", "2030-12-01", freq="MS")  # w = 6 input months before 2024, to 2030
    scen = xr.Dataset({"t_air": (("band", "time"), np.tile(np.arange(len(times), dtype=float), (3, 1))),
                       "r_thermal": (("band", "time"), np.full((3, len(times)), 2.0))},
                      coords={"band": np.arange(3), "time": times})
    ws = build_scenario(cfg, scen, static, hist, "rcp45")
    assert len(ws) == 3 * 7 * 12 and ws.length == 6 and ws.y is None
    assert ws.target_times()[0] == pd.Timestamp("2024-01-01") and ws.target_times()[-1] == pd.Timestamp("2030-12-01")
    feat = hist.scalers["features"]
    np.testing.assert_allclose(ws.x[0, :, 0], (np.arange(len(times)) - feat.mean[0]) / feat.std[0], rtol=1e-5)
    # R_thermal at the training mean: z = 0, scaled as in history: -sqrt(2) / 5
    np.testing.assert_allclose(ws.signal[:, 5:], -(2 ** 0.5) / 5, rtol=1e-6)
    with pytest.raises(DataError, match=re.escape("rcp45: windows for the years 2024-2030 need months 2023-07..2030-12;"
                                                  " the drivers cover 2023-07..2030-11")):
        build_scenario(cfg, scen.isel(time=slice(None, -1)), static, hist, "rcp45")
    with pytest.raises(DataError, match=re.escape("rcp45: dynamic feature 't_air' is missing")):
        build_scenario(cfg, scen.drop_vars("t_air"), static, hist, "rcp45")
