"""The extrapolation diagnostic: known answers, a statistical oracle, bad input."""

import numpy as np
import pandas as pd
import pytest

from thawcast.analysis import extrapolation as ex
from thawcast.errors import DataError
from thawcast.prep.windows import WindowSet, window_index

W = 6


def _windows(x: np.ndarray, signal: np.ndarray | None = None) -> WindowSet:
    """Every window of ``x [band, time, feature]`` (targets at every month from ``W`` on)."""
    times = pd.date_range("2001-01-01", periods=x.shape[1], freq="MS")
    band, last = window_index(times, x.shape[0], W, times[0].year, times[-1].year)
    return WindowSet(x=x.astype(np.float32), band=band, last=last, length=W, times=times,
                     feature_names=tuple(f"f{i}" for i in range(x.shape[2])), signal=signal)


def test_a_training_window_is_at_distance_zero_and_inside_the_range():
    rng = np.random.default_rng(0)
    train = _windows(rng.normal(size=(2, 60, 3)))
    env = ex.Envelope.fit(train)
    d = env.diagnose(train)
    np.testing.assert_allclose(d.distance, 0.0, atol=1e-6)
    assert not d.outside_share.any() and not d.outside_by_feature.any() and not d.extrapolating.any()
    assert env.names == ("f0", "f1", "f2")


def test_months_outside_the_training_range_are_counted_per_feature_and_per_window():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(1, 40, 3))
    env = ex.Envelope.fit(_windows(x))
    y = x.copy()
    y[0, 20:22, 1] = 5.0   # feature 1 above its training maximum in months 20 and 21
    y[0, 21, 2] = -5.0     # feature 2 below its minimum in month 21
    ws = _windows(y)
    d = env.diagnose(ws)
    first = ws.last - W + 1  # window j covers months first[j] .. last[j]
    covers = lambda m: (first <= m) & (m <= ws.last)
    np.testing.assert_allclose(d.outside_by_feature[:, 1], (covers(20).astype(int) + covers(21)) / W)
    np.testing.assert_allclose(d.outside_by_feature[:, 2], covers(21) / W)
    assert not d.outside_by_feature[:, 0].any()
    # months with any feature outside: 20 and 21 (21 counted once although two features are outside)
    np.testing.assert_allclose(d.outside_share, (covers(20).astype(int) + covers(21)) / W)
    # the further the windows move from the training set, the larger the distance
    moved = [env.diagnose(_windows(x + shift)).distance.mean() for shift in (0.5, 1.0, 2.0, 4.0)]
    assert np.all(np.diff(moved) > 0) and moved[-1] > 1.0


def test_windows_from_the_training_distribution_extrapolate_about_five_percent_of_the_time():
    """Oracle: for exchangeable windows the distance to the training set is distributed like the training
    windows' leave-one-out distance, so about 1 - 0.95 of new windows lie beyond 1."""
    rng = np.random.default_rng(2)

    def iid(n):  # independent windows: one band per window, exactly W months each
        return WindowSet(x=rng.normal(size=(n, W, 4)).astype(np.float32), band=np.arange(n), last=np.full(n, W - 1),
                         length=W, times=pd.date_range("2001-01-01", periods=W, freq="MS"),
                         feature_names=("a", "b", "c", "d"))

    env = ex.Envelope.fit(iid(1500))
    share = env.diagnose(iid(1500)).extrapolating.mean()
    assert 0.025 < share < 0.085
    # a climate shifted by one standard deviation in every input leaves the training set far more often
    shifted = iid(1500)
    shifted.x += 1.0
    assert env.diagnose(shifted).extrapolating.mean() > 0.5


def test_the_scenario_signal_is_a_feature_of_the_diagnostic():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 30, 2))
    z = rng.normal(size=(1, 30)).astype(np.float32)
    env = ex.Envelope.fit(_windows(x, z))
    assert env.names == ("f0", "f1", "signal")
    d = env.diagnose(_windows(x, z + 10.0))
    assert d.outside_by_feature[:, 2].min() == 1.0 and not d.outside_by_feature[:, :2].any()


def test_bad_input_is_one_clear_error():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 20, 2))
    env = ex.Envelope.fit(_windows(x))
    with pytest.raises(DataError, match="features"):
        env.diagnose(_windows(rng.normal(size=(1, 20, 3))))
    one = _windows(x)
    one.band, one.last = one.band[:1], one.last[:1]
    with pytest.raises(DataError, match="at least 2 training windows"):
        ex.Envelope.fit(one)
    with pytest.raises(DataError, match="identical"):
        ex.Envelope.fit(_windows(np.zeros((1, 20, 2))))


def test_decade_summary_binned_errors_and_rank_correlation_known_answers():
    names = ("t_air", "p_snow")
    diag = ex.Diagnosis(distance=np.array([0.5, 1.5, 2.5, 4.0]), outside_share=np.array([0.0, 0.5, 0.5, 1.0]),
                        outside_by_feature=np.array([[0, 0], [0.5, 0], [0, 0.5], [1.0, 0.25]]), names=names)
    times = pd.DatetimeIndex(["2024-01-01", "2029-06-01", "2031-01-01", "2039-12-01"])
    s = ex.decade_summary(diag, times, [(2024, 2029), (2030, 2039)])
    assert s["2024-2029"] == {"distance_mean": 1.0, "distance_median": 1.0, "share_extrapolating": 0.5,
                              "outside_share_mean": 0.25, "top_features_outside": {"t_air": 0.25}}
    assert s["2030-2039"]["top_features_outside"] == {"t_air": 0.5, "p_snow": 0.375}
    with pytest.raises(DataError, match="2040-2049"):
        ex.decade_summary(diag, times, [(2040, 2049)])
    rows = ex.binned_errors(diag.distance, np.array([1.0, 2.0, -2.0, np.nan]))
    assert [r["n"] for r in rows] == [1, 0, 1, 1, 0]  # bins [0, 1), [1, 1.5), [1.5, 2), [2, 3), [3, inf)
    assert [r["rmse"] for r in rows] == [1.0, None, 2.0, 2.0, None]  # the NaN error is left out
    assert ex.rank_correlation(diag.distance, diag.distance**2) == pytest.approx(1.0)
    assert ex.rank_correlation(diag.distance, -diag.distance) == pytest.approx(-1.0)
    with pytest.raises(DataError, match="3 finite pairs"):
        ex.rank_correlation([1.0, 2.0], [1.0, np.nan])
    md = ex.markdown({"rcp85": s}, s["2024-2029"])
    assert "| rcp85 2030-2039 | 100% | 3.25 | 75% | t_air 50%, p_snow 38% | **EXTRAPOLATION** |" in md
    assert "| rcp85 2024-2029 | 50% | 1.00 | 25% | t_air 25% |  |" in md  # half is not most: not marked


def test_error_check_relates_the_distance_to_the_error_per_window_and_per_decade():
    times = pd.date_range("2024-01-01", "2039-12-01", freq="MS")
    bins = [(2024, 2029), (2030, 2039)]
    ramp = np.linspace(0.2, 3.0, len(times))
    distance = np.stack([ramp, 2 * ramp])[:, None, :]  # [scenario, band, month]
    error = np.repeat((0.5 * distance)[..., None], 4, axis=-1)  # the error grows with the distance, every layer
    out = ex.error_check(distance, error, times, bins, np.array([0.5, 1.5]), np.array([[0.3, 0.4]]))
    assert out["rank_correlation_windows"] == pytest.approx(1.0)
    assert out["rank_correlation_decades"] == pytest.approx(1.0)
    assert sum(b["n"] for b in out["bins"]) == distance.size
    assert out["bins"][0]["rmse"] < out["bins"][-1]["rmse"]
    assert out["test_years"] == {"distance_mean": 1.0, "share_extrapolating": 0.5,
                                 "rmse": pytest.approx(np.sqrt(0.125))}
    # too few scenario x decades for a rank correlation: None, not an error
    assert ex.error_check(distance[:1], error[:1], times, bins, np.ones(2), np.ones(2))[
        "rank_correlation_decades"] is None
