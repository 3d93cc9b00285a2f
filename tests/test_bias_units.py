"""Bias correction unit by unit: training checks and saved attributes, the zero threshold and the floor at 0,
QDM's blocks of years, the mean-bias fallback, the jitter stream, saving/loading and the spread diagnostics.

Known answers come from fits whose adjustment is exact by construction: ``hist == ref`` (every factor 0 or 1,
so the correction returns ``sim``) or ``hist == ref + 10`` (every additive factor -10). Block handling, the
fallback and the output attributes go through a stand-in adjustment that records what it is given.
"""

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import xsdba
from xsdba.processing import jitter_under_thresh

from helpers import monthly
from thawcast.errors import DataError
from thawcast.prep import bias


class _Stand:
    """A fitted adjustment's stand-in: a ``ds`` with thawcast's attributes and an ``adjust`` that records each
    series it is given and returns ``fn(series)``."""

    def __init__(self, variable, method, fn=lambda s: s.copy(), nq=7, r=None, h=None):
        month = np.arange(1, 13)
        zero = xr.DataArray(np.zeros(12), dims="month", coords={"month": month})
        self.ds = xr.Dataset({"ref_monthly_mean": zero if r is None else zero + r,
                              "hist_monthly_mean": zero if h is None else zero + h},
                             attrs={"thawcast_variable": variable, "thawcast_method": method,
                                    "thawcast_jitter_seed": 0, "thawcast_nquantiles": nq,
                                    "thawcast_jitter_draws_before_sim": 0})
        self.fn, self.calls = fn, []

    def adjust(self, sim):
        self.calls.append(sim)
        return self.fn(sim)

    def __str__(self):
        return "Stand"


@pytest.fixture(autouse=True)
def _global_stream_restored():
    """Several tests seed numpy's global stream (the one xsdba's jitter draws from): give the next test it back."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


@pytest.fixture(scope="module")
def temps():
    """Two bands of three years of air temperature, from -20 to +15 degC."""
    rng = np.random.default_rng(0)
    return monthly(rng.uniform(-20.0, 15.0, (2, 36)), bands=True)


@pytest.fixture(scope="module")
def identity_t_air(temps):
    return bias.train(temps, temps.copy(), variable="t_air", method="qdm", nquantiles=5)


@pytest.fixture(scope="module")
def wet():
    """Precipitation with dry months (exact zeros) in ref and hist, and its qdm fit (seed 5)."""
    rng = np.random.default_rng(1)
    amount = rng.gamma(1.0, 2.0, (3, 36)) * (rng.random((3, 36)) > 0.25)
    ref, hist, sim = (monthly(a) for a in amount)
    return ref, hist, sim, bias.train(ref, hist, variable="p_total", method="qdm", nquantiles=5, seed=5)


# --- small pieces -------------------------------------------------------------------------------------------------

def test_seeded_draws_from_the_seed_and_gives_the_global_stream_back_even_after_an_error():
    np.random.seed(123)
    expected_outside = np.random.random_sample(4)
    expected_inside = np.random.RandomState(9).random_sample(2)
    np.random.seed(123)
    first = np.random.random_sample(2)
    with bias._seeded(9):
        inside = np.random.random_sample(2)
    with pytest.raises(RuntimeError), bias._seeded(9):
        np.random.random_sample(5)
        raise RuntimeError
    rest = np.random.random_sample(2)
    np.testing.assert_array_equal(inside, expected_inside)
    # the global stream carries on as if the seeded blocks had not been there
    np.testing.assert_array_equal(np.concatenate([first, rest]), expected_outside)


def test_the_method_names_pick_xsdba_adjustments_and_an_unknown_one_is_a_clear_error():
    assert bias._adjuster("qdm") is xsdba.QuantileDeltaMapping
    assert bias._adjuster("eqm") is xsdba.EmpiricalQuantileMapping
    with pytest.raises(ValueError, match=r"^unknown bias-correction method 'dqm'; valid: \['qdm', 'eqm'\]$"):
        bias._adjuster("dqm")


def test_with_units_sets_the_unit_on_a_copy_and_keeps_the_other_attributes():
    da = monthly(np.ones(3))
    da.attrs = {"long_name": "x", "units": "K"}
    out = bias._with_units(da, "degC")
    assert out.attrs == {"long_name": "x", "units": "degC"}
    assert da.attrs == {"long_name": "x", "units": "K"}
    out[0] = 5.0
    assert float(da[0]) == 1.0


def test_only_multiplicative_amounts_have_a_zero_threshold():
    # 0.01 mm/day for precipitation and snowfall, 0.001 m3/m3 for soil water (ZERO_THRESHOLD's documented values)
    assert bias._threshold("p_total") == 0.01
    assert bias._threshold("p_snow") == 0.01
    assert bias._threshold("w1") == 0.001
    assert bias._threshold("w4") == 0.001
    # additive variables, even non-negative ones, never get one
    for name in ("t_air", "r_solar", "swe", "q_latent"):
        assert bias._threshold(name) is None


# --- train ----------------------------------------------------------------------------------------------------------

def test_train_refuses_series_over_different_months_naming_both_lengths(temps):
    with pytest.raises(DataError, match=r"^t_air: ref and hist must cover the same calibration months \(36 vs 24 "
                                        r"months\)$"):
        bias.train(temps, temps.isel(time=slice(0, 24)), variable="t_air", method="qdm", nquantiles=5)
    # same length, but hist starts a month later
    shifted = temps.assign_coords(time=pd.date_range("2001-02-01", periods=36, freq="MS"))
    with pytest.raises(DataError, match=r"\(36 vs 36 months\)$"):
        bias.train(temps, shifted, variable="t_air", method="qdm", nquantiles=5)
    # one month differs
    last = temps.assign_coords(time=[*temps["time"].values[:-1], np.datetime64("2010-01-01")])
    with pytest.raises(DataError, match="same calibration months"):
        bias.train(last, temps, variable="t_air", method="qdm", nquantiles=5)


def test_train_names_the_series_with_missing_values(temps):
    gap = temps.where(temps["time"] != temps["time"][7])
    msg = "^t_air: {} has missing values; quantile mapping needs complete series$"
    with pytest.raises(DataError, match=msg.format("ref")):
        bias.train(gap, temps, variable="t_air", method="qdm", nquantiles=5)
    with pytest.raises(DataError, match=msg.format("hist")):
        bias.train(temps, gap, variable="t_air", method="qdm", nquantiles=5)


def test_train_refuses_an_unknown_method(temps):
    with pytest.raises(ValueError, match="unknown bias-correction method 'foo'"):
        bias.train(temps, temps, variable="t_air", method="foo", nquantiles=5)


def test_train_saves_what_apply_needs_and_the_calibration_monthly_means():
    # value = month index + 10 * year index + 100 * band over two years: each month's mean is month + 5 + 100 band
    m, y = np.arange(24) % 12, np.arange(24) // 12
    ref = monthly([m + 10 * y, m + 10 * y + 100], bands=True)
    trained = bias.train(ref, 2 * ref - 3, variable="t_air", method="eqm", nquantiles=5, seed=4)
    ds = trained.ds
    assert {k: ds.attrs[k] for k in ds.attrs if k.startswith("thawcast_")} == {
        "thawcast_variable": "t_air", "thawcast_method": "eqm", "thawcast_jitter_seed": 4,
        "thawcast_nquantiles": 5, "thawcast_jitter_draws_before_sim": 0}  # additive: no jitter, no draws
    # five quantiles: the centres of five equal bins; grouped by the 12 calendar months; additive
    np.testing.assert_allclose(ds["quantiles"], [0.1, 0.3, 0.5, 0.7, 0.9])
    assert ds.attrs["group"] == "time.month" and ds.sizes["month"] == 12
    assert ds["af"].attrs["kind"] == "+"
    expected = np.arange(12) + 5 + 100 * np.arange(2)[:, None]
    np.testing.assert_allclose(ds["ref_monthly_mean"].transpose("band", "month"), expected)
    np.testing.assert_allclose(ds["hist_monthly_mean"].transpose("band", "month"), 2 * expected - 3)
    np.testing.assert_array_equal(ds["month"], np.arange(1, 13))


def test_train_of_an_amount_jitters_dry_months_reproducibly_and_counts_the_draws():
    # all values >= 1 mm/day except one dry January (band 0, 2001)
    m, y = np.arange(24) % 12, np.arange(24) // 12
    values = np.array([1.0 + m + 10 * y, 2.0 + m + 10 * y])
    values[0, 0] = 0.0
    ref = monthly(values, bands=True)
    np.random.seed(11)
    after = np.random.random_sample(3)
    np.random.seed(11)
    trained = bias.train(ref, 3 * ref, variable="p_total", method="qdm", nquantiles=5, seed=3)
    np.testing.assert_array_equal(np.random.random_sample(3), after)  # the global stream is left alone
    ds = trained.ds
    # ref and hist are 2 x 24 values each: 96 uniform draws come before sim's
    assert ds.attrs["thawcast_jitter_draws_before_sim"] == 96
    assert ds.attrs["thawcast_jitter_seed"] == 3 and ds["af"].attrs["kind"] == "*"
    # the dry January became a tiny amount in (0, 0.01): mean (jitter + 11) / 2 is just above 5.5
    jan = float(ds["ref_monthly_mean"].sel(band=0, month=1))
    assert 5.5 < jan < 5.505
    np.testing.assert_allclose(ds["ref_monthly_mean"].sel(month=2), [7.0, 8.0])
    np.testing.assert_allclose(ds["hist_monthly_mean"].sel(month=2), [21.0, 24.0])
    again = bias.train(ref, 3 * ref, variable="p_total", method="qdm", nquantiles=5, seed=3).ds
    other = bias.train(ref, 3 * ref, variable="p_total", method="qdm", nquantiles=5, seed=4).ds
    assert float(again["ref_monthly_mean"].sel(band=0, month=1)) == jan
    assert float(other["ref_monthly_mean"].sel(band=0, month=1)) != jan


def test_train_apply_and_load_silence_jsonpickles_deprecation_notice(tmp_path, temps):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trained = bias.train(temps, temps + 1.0, variable="t_air", method="qdm", nquantiles=5)
        bias.apply(trained, temps)
        bias.load(bias.save(trained, tmp_path / "a.nc"))
    assert not [w for w in caught if "jsonpickle" in str(w.message)]


# --- apply ----------------------------------------------------------------------------------------------------------

def test_an_identity_fit_returns_sim_with_the_dimension_order_and_attributes_of_the_variable(identity_t_air, temps):
    # hist == ref: every additive factor is exactly 0, so the correction is sim itself (negatives kept: t_air
    # may be below 0); sim comes time-first and goes out time-first
    sim = (temps.isel(time=slice(0, 24)) - 30.0).transpose("time", "band")
    out = bias.apply(identity_t_air, sim)
    assert out.dims == ("time", "band")
    np.testing.assert_allclose(out, sim, rtol=0, atol=1e-12)
    assert out.name == "t_air"
    assert set(out.attrs) == {"units", "long_name", "bias_correction", "bias_adjustment"}
    assert out.attrs["units"] == "degC" and out.attrs["long_name"] == "2 m air temperature"
    assert out.attrs["bias_correction"] == "qdm (additive, 5 quantiles, grouped by calendar month)"
    assert out.attrs["bias_adjustment"].startswith(
        "QuantileDeltaMapping(group=Grouper(name='time.month'), kind='+'")
    assert out.attrs["bias_adjustment"].endswith(".adjust(sim, )")


def test_apply_names_a_multiplicative_eqm_correction():
    ref = monthly(np.linspace(1.0, 5.0, 24))
    out = bias.apply(bias.train(ref, ref, variable="p_snow", method="eqm", nquantiles=4), ref)
    assert out.attrs["bias_correction"] == "eqm (multiplicative, 4 quantiles, grouped by calendar month)"
    assert out.attrs["units"] == "mm day-1" and out.attrs["long_name"] == "snowfall (water equivalent)"
    assert out.attrs["bias_adjustment"].startswith("EmpiricalQuantileMapping(group=Grouper(name='time.month'), "
                                                   "kind='*'")
    np.testing.assert_allclose(out, ref, rtol=1e-12)  # ratios all exactly 1


def _adjusted_by_the_quantile_mapping_alone(caplog, trained, sim):
    """``bias.apply(trained, sim)``, checking that no value went through the mean-bias fallback (a calendar month
    whose sim values are all alike leaves QDM's ranks undefined)."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="thawcast.prep.bias"):
        out = bias.apply(trained, sim)
    assert not [m for m in caplog.messages if "degenerate" in m]
    return out


@pytest.mark.parametrize(("variable", "small", "kept"), [("p_total", 0.005, 0.02), ("w1", 0.0005, 0.005)])
def test_amounts_under_the_zero_threshold_come_out_as_exact_zeros(caplog, variable, small, kept):
    """ref == hist, all over the threshold: the ratios are exactly 1, so sim comes back, except that what is under
    the threshold (0.01 mm/day, 0.001 m3/m3) -- jittered to a tiny random amount first -- is set to 0. Two years
    of sim, each calendar month's pair distinct, so that QDM ranks them (no fallback)."""
    thresh = {"p_total": 0.01, "w1": 0.001}[variable]
    ref = monthly(np.linspace(0.05, 0.7, 24) * (10.0 if variable == "p_total" else 1.0))
    trained = bias.train(ref, ref, variable=variable, method="qdm", nquantiles=5)
    first = [0.0, small, thresh, kept, 0.3, 0.4, 0.5, 0.6, 0.7, 0.0, small, 0.2]
    second = [0.25, 0.35, 0.45, 0.55, kept, thresh, small, 0.0, 0.15, 0.65, 0.75, small]
    out = _adjusted_by_the_quantile_mapping_alone(caplog, trained, monthly(first + second))
    expected = np.array(first + second)
    expected[expected < thresh] = 0.0
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)
    assert (out.values[[0, 1, 9, 10, 18, 19, 23]] == 0.0).all() and (out.values[expected > 0] > 0).all()


def test_non_negative_variables_are_floored_at_zero_and_others_are_not(caplog, temps):
    # hist = ref + 10: every additive factor is -10, so sim - 10; solar radiation cannot go below 0. Two years
    # of sim with each month's pair distinct, so that QDM ranks them (no fallback).
    ref = temps.isel(band=0) + 100.0
    first = np.array([3.0] + [50.0] * 11)
    sim = monthly(np.concatenate([first, first + 5.0]), start="2001-01-01")
    solar = _adjusted_by_the_quantile_mapping_alone(
        caplog, bias.train(ref, ref + 10.0, variable="r_solar", method="qdm", nquantiles=5), sim)
    air = _adjusted_by_the_quantile_mapping_alone(
        caplog, bias.train(ref, ref + 10.0, variable="t_air", method="qdm", nquantiles=5), sim)
    np.testing.assert_allclose(air, sim - 10.0, atol=1e-9)
    assert float(air[0]) == pytest.approx(-7.0, abs=1e-9)  # t_air keeps its negatives
    np.testing.assert_allclose(solar, np.maximum(sim - 10.0, 0.0), atol=1e-9)
    assert float(solar[0]) == 0.0 and float(solar[12]) == 0.0 and float(air[12]) == pytest.approx(-2.0, abs=1e-9)


def test_apply_refuses_a_sim_with_missing_values(identity_t_air, temps):
    with pytest.raises(DataError, match="^t_air: sim has missing values; quantile mapping needs complete series$"):
        bias.apply(identity_t_air, temps.where(temps < 10.0))


def test_sim_jitter_continues_the_stream_that_jittered_ref_and_hist(wet):
    """apply replays the seeded stream: ref's draws, hist's, then sim's (so a reloaded fit gives the same)."""
    ref, hist, sim, trained = wet
    seen = []

    class Spy:
        ds = trained.ds

        def adjust(self, s):
            seen.append(s)
            return trained.adjust(s)

    np.random.seed(2)
    after = np.random.random_sample(3)
    np.random.seed(2)
    bias.apply(Spy(), sim)
    np.testing.assert_array_equal(np.random.random_sample(3), after)  # the global stream is left alone
    units = {"units": "mm day-1"}
    np.random.seed(5)
    jitter_under_thresh(ref.assign_attrs(units), thresh="0.01 mm day-1")
    jitter_under_thresh(hist.assign_attrs(units), thresh="0.01 mm day-1")
    expected = jitter_under_thresh(sim.assign_attrs(units), thresh="0.01 mm day-1")
    assert (sim == 0).sum() > 3
    np.testing.assert_array_equal(seen[0].values, expected.values)
    assert seen[0].attrs["units"] == "mm day-1"


def test_qdm_blocks_are_whole_calendar_years_from_the_first_in_order_with_a_short_last_block():
    sim = monthly(np.arange(60.0), start="2001-01-01")  # 2001..2005
    stand = _Stand("t_air", "qdm")
    out = bias.apply(stand, sim, period_years=2)
    years = [sorted(set(c["time"].dt.year.values.tolist())) for c in stand.calls]
    assert years == [[2001, 2002], [2003, 2004], [2005]]
    assert [c.sizes["time"] for c in stand.calls] == [24, 24, 12]
    np.testing.assert_array_equal(out["time"], sim["time"])
    np.testing.assert_array_equal(out, sim)
    assert all(c.attrs["units"] == "degC" for c in stand.calls)
    # a series starting mid-year: blocks still count calendar years from its first year
    mid = monthly(np.arange(36.0), start="2001-07-01")  # 2001-07 .. 2004-06
    stand = _Stand("t_air", "qdm")
    bias.apply(stand, mid, period_years=2)
    assert [c.sizes["time"] for c in stand.calls] == [18, 18]
    assert str(stand.calls[1]["time"].values[0])[:7] == "2003-01"


def test_period_years_is_for_qdm_only_and_zero_means_the_whole_series():
    sim = monthly(np.arange(60.0))
    for method, period in (("eqm", 2), ("qdm", 0)):
        stand = _Stand("t_air", method)
        bias.apply(stand, sim, period_years=period)
        assert len(stand.calls) == 1 and stand.calls[0].sizes["time"] == 60


def test_provenance_is_the_adjustments_own_or_else_names_the_adjustment():
    sim = monthly(np.arange(12.0))
    assert bias.apply(_Stand("t_air", "eqm"), sim).attrs["bias_adjustment"] == "Stand.adjust(sim)"
    tagged = _Stand("t_air", "eqm", fn=lambda s: s.assign_attrs(bias_adjustment="EQM(x).adjust(sim)"))
    out = bias.apply(tagged, sim)
    assert out.attrs["bias_adjustment"] == "EQM(x).adjust(sim)"
    assert out.attrs["bias_correction"] == "eqm (additive, 7 quantiles, grouped by calendar month)"


def test_months_the_adjustment_leaves_undefined_get_the_monthly_mean_bias(caplog):
    """xsdba returns NaN for a calendar month with no spread; apply shifts (additive) or scales (multiplicative)
    those values by that month's calibration bias instead."""
    sim = monthly([np.arange(24.0) + 1.0, np.arange(24.0) + 2.0], bands=True).transpose("time", "band")
    december = sim["time"].dt.month == 12

    def undefined_in_december(s):
        return (s + 0.5).where(s["time"].dt.month != 12)

    # additive: December's ref mean 1, hist mean 3 -> sim - 2; other months +0.5 from the adjustment
    with caplog.at_level(logging.DEBUG, logger="thawcast.prep.bias"):
        out = bias.apply(_Stand("t_air", "eqm", fn=undefined_in_december, r=1.0, h=3.0), sim)
    # two Decembers in two bands
    assert caplog.messages == ["t_air: 4 degenerate values corrected by the monthly mean bias"]
    assert out.dims == ("time", "band")
    np.testing.assert_allclose(out.where(december, drop=True), sim.where(december, drop=True) - 2.0)
    np.testing.assert_allclose(out.where(~december, drop=True), sim.where(~december, drop=True) + 0.5)
    # multiplicative: ratio 1 / 4 (ref 1, hist 4)
    out = bias.apply(_Stand("p_total", "eqm", fn=undefined_in_december, r=1.0, h=4.0), sim)
    np.testing.assert_allclose(out.where(december, drop=True), sim.where(december, drop=True) / 4.0)


def test_mean_bias_fallback_shifts_or_scales_by_the_month_and_keeps_a_dry_months_amount():
    month = np.arange(1, 13)
    r = xr.DataArray(np.where(month == 2, 5.0, 2.0), dims="month", coords={"month": month})
    # hist means: February dry (0), March small but wet (0.5), the rest 8
    h = xr.DataArray(np.select([month == 2, month == 3], [0.0, 0.5], 8.0), dims="month", coords={"month": month})
    sim = monthly([[4.0, 8.0, 12.0], [1.0, 2.0, 3.0]], bands=True).transpose("time", "band")  # Jan, Feb, Mar
    add = bias._mean_bias_fallback(r, h, sim, "+")
    # + : sim + (r - h): Jan -6, Feb +5, Mar +1.5
    np.testing.assert_allclose(add, [[-2.0, -5.0], [13.0, 7.0], [13.5, 4.5]])
    assert add.dims == ("time", "band") and "month" not in add.coords
    mul = bias._mean_bias_fallback(r, h, sim, "*")
    # * : sim * r / h: Jan x 1/4, Mar x 4, and February, whose hist mean is 0, x 1
    np.testing.assert_allclose(mul, [[1.0, 0.25], [8.0, 2.0], [48.0, 12.0]])
    assert mul.dims == ("time", "band") and "month" not in mul.coords


def test_adjust_is_train_then_apply_with_every_setting_passed_on(wet):
    """Dry months make the low quantiles' ratios depend on the jitter (so on the seed); a fitted ratio that varies
    across quantiles makes ranking within 1-year blocks differ from ranking over the 3 years."""
    ref, hist, sim, trained = wet
    one_call = bias.adjust(ref, hist, sim, variable="p_total", method="qdm", nquantiles=5, seed=5, period_years=1)
    np.testing.assert_array_equal(one_call, bias.apply(trained, sim, period_years=1))
    assert one_call.attrs["bias_correction"] == "qdm (multiplicative, 5 quantiles, grouped by calendar month)"
    assert not np.array_equal(one_call, bias.apply(trained, sim))
    seed0 = bias.train(ref, hist, variable="p_total", method="qdm", nquantiles=5, seed=0)
    assert not np.array_equal(one_call, bias.apply(seed0, sim, period_years=1))
    # the defaults: seed 0, whole series
    defaults = bias.adjust(ref, hist, sim, variable="p_total", method="qdm", nquantiles=5)
    np.testing.assert_array_equal(defaults, bias.apply(seed0, sim))
    assert bias.train(ref, hist, variable="p_total", method="qdm", nquantiles=5).ds.attrs["thawcast_jitter_seed"] == 0


# --- save / load ------------------------------------------------------------------------------------------------

def test_save_makes_its_folder_drops_clock_stamps_in_the_file_only_and_load_gives_the_method_back(tmp_path, wet):
    trained = wet[3]
    assert "history" in trained.ds["af"].attrs  # xsdba's clock-stamped jitter step
    path = bias.save(trained, str(tmp_path / "a" / "b" / "qdm.nc"))
    assert path == tmp_path / "a" / "b" / "qdm.nc" and path.is_file()
    with xr.open_dataset(path) as saved:
        assert not [v for v in saved.variables if "history" in saved[v].attrs]
        assert saved.attrs["thawcast_variable"] == "p_total"
    assert "history" in trained.ds["af"].attrs  # the fit in memory keeps it
    assert isinstance(bias.load(path), xsdba.QuantileDeltaMapping)
    ref = monthly(np.linspace(-5.0, 5.0, 24))
    eqm = bias.train(ref, ref, variable="t_air", method="eqm", nquantiles=3)
    assert isinstance(bias.load(bias.save(eqm, tmp_path / "eqm.nc")), xsdba.EmpiricalQuantileMapping)


@pytest.mark.parametrize("attrs", [{"thawcast_method": "qdm"}, {"thawcast_variable": "t_air"}])
def test_load_needs_both_the_method_and_the_variable(tmp_path, attrs):
    path = tmp_path / "half.nc"
    monthly(np.ones(12)).to_dataset(name="af").assign_attrs(attrs).to_netcdf(path)
    with pytest.raises(DataError) as err:
        bias.load(path)
    assert str(err.value) == (f"{path}: not a saved thawcast bias adjustment"
                              " (no thawcast_method/thawcast_variable attrs)")


# --- spread diagnostics -----------------------------------------------------------------------------------------

def test_mean_change_pools_bands_and_time_per_scenario():
    t = pd.date_range("2001-01-01", "2004-12-01", freq="MS")
    late = (t.year >= 2003).astype(float)
    # band 0 warms by 1 (rcp26) or 2 (rcp85), band 1 by 3 or 6: pooled changes 2 and 4
    # (rcp85 also starts 1 warmer: only changes count)
    data = np.stack([np.stack([k * late, 3 * k * late + 7]) + k for k in (1.0, 2.0)])
    da = xr.DataArray(data, dims=("scenario", "band", "time"),
                      coords={"scenario": ["rcp26", "rcp85"], "band": [0, 1], "time": t})
    change = bias.mean_change(da, slice("2001", "2002"), slice("2003", "2004"))
    assert change.dims == ("scenario",)
    np.testing.assert_allclose(change, [2.0, 4.0])
    assert bias.spread(change, "rcp85", "rcp26") == 2.0
    assert bias.spread(change, "rcp26", "rcp85") == -2.0
    assert isinstance(bias.spread(change, "rcp85", "rcp26"), float)
    # no scenario dimension: one pooled number
    single = bias.mean_change(da.sel(scenario="rcp85"), slice("2001", "2002"), slice("2003", "2004"))
    assert single.dims == () and float(single) == 4.0


def test_retained_is_the_share_of_the_raw_spread_or_none_when_there_is_none():
    assert bias.retained(1.0, 4.0) == 0.25
    assert bias.retained(1.0, -4.0) == -0.25  # a reversed raw spread still divides
    assert bias.retained(3.0, 1e-11) == pytest.approx(3e11)
    assert bias.retained(3.0, 1e-12) is None  # "~0": at or under 1e-12
    assert bias.retained(3.0, -1e-13) is None
    assert bias.retained(3.0, float("inf")) is None
    assert bias.retained(3.0, float("nan")) is None
    assert isinstance(bias.retained(1, 2), float)
