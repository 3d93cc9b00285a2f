"""Bias correction known answers (xsdba EQM/QDM), moisture split and spread diagnostics."""

import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from helpers import monthly
from thawcast.errors import DataError
from thawcast.prep import bias
from thawcast.prep.bias import adjust, mean_change, retained, spread
from thawcast.prep.moisture import LAYERS, layer_ratios, split, top10

YEARS = 20


def _temperature(rng, years=YEARS, start="2001-01-01"):
    n = 12 * years
    month = np.arange(n) % 12
    return monthly(-5 + 15 * np.sin(2 * np.pi * (month - 3) / 12) + rng.normal(0, 1.0, n), start)


def _trend(da):
    """Total linear change over the series (K)."""
    x = np.arange(da.sizes["time"])
    return float(np.polyfit(x, da.values, 1)[0] * (len(x) - 1))


@pytest.mark.parametrize("method", ["qdm", "eqm"])
def test_constant_offset_is_corrected_back(rng, method):
    ref = _temperature(rng)
    hist = ref + 2.0
    out = adjust(ref, hist, hist, variable="t_air", method=method, nquantiles=50)
    assert float(abs(out - ref).mean()) < 0.15
    assert abs(float((out - ref).mean())) < 0.05


def test_qdm_keeps_a_warming_that_eqm_flattens(rng):
    """The model is 2 K too warm and twice as variable as observed; its future is +3 K warmer.

    QDM keeps the model's +3 K change (Cannon et al. 2015); EQM maps the future onto the
    calibration distribution, so the twice-too-wide model spread halves the warming.
    """
    month = np.arange(12 * YEARS) % 12
    season = -5 + 15 * np.sin(2 * np.pi * (month - 3) / 12)
    noise = rng.normal(0.0, 1.0, (3, 12 * YEARS))
    ref = monthly(season + noise[0])
    hist = monthly(season + 2.0 + 2.0 * noise[1])
    sim = monthly(season + 2.0 + 2.0 * noise[2] + 3.0, "2031-01-01")
    model_change = float(sim.mean() - hist.mean())
    assert model_change == pytest.approx(3.0, abs=0.3)
    qdm = adjust(ref, hist, sim, variable="t_air", method="qdm", nquantiles=50)
    eqm = adjust(ref, hist, sim, variable="t_air", method="eqm", nquantiles=50)
    assert float(qdm.mean() - ref.mean()) == pytest.approx(model_change, abs=0.1)
    assert float(eqm.mean() - ref.mean()) < 0.7 * model_change
    # both shrink the model's too-wide monthly spread (2 K) towards the observed one (1 K)
    for out in (qdm, eqm):
        assert float(out.groupby("time.month").std().mean()) < 1.5


def test_a_shift_only_bias_keeps_the_trend_either_way(rng):
    """With a pure +2 K offset the correction is the same at every quantile: no method bends a trend."""
    ref = _temperature(rng)
    sim = monthly(_temperature(rng).values + 2.0 + np.linspace(0.0, 3.0, 12 * YEARS), "2031-01-01")
    for method in ("qdm", "eqm"):
        out = adjust(ref, ref + 2.0, sim, variable="t_air", method=method, nquantiles=50)
        assert _trend(out) == pytest.approx(_trend(sim), abs=0.2)


@pytest.mark.parametrize("method", ["qdm", "eqm"])
@pytest.mark.parametrize("variable", ["p_total", "p_snow"])
def test_precipitation_stays_non_negative(rng, method, variable):
    n = 12 * YEARS
    wet = rng.random((3, n)) > 0.35  # about a third of months dry (exact zeros)
    amount = rng.gamma(0.6, 2.0, (3, n))
    ref, hist = monthly(amount[0] * wet[0]), monthly(1.6 * amount[1] * wet[1])
    sim = monthly(2.5 * amount[2] * wet[2], "2031-01-01")
    out = adjust(ref, hist, sim, variable=variable, method=method, nquantiles=30)
    assert bool(out.notnull().all())
    assert float(out.min()) >= 0.0
    # multiplicative: the wet bias (x1.6) is divided out, the future wetting (x2.5/1.6) kept
    assert float(out.mean() / sim.mean()) == pytest.approx(1 / 1.6, rel=0.25)


def test_constant_month_group_falls_back_without_nan(rng):
    ref = monthly(np.clip(_temperature(rng).values * 10, 0, None))
    dark = ref["time"].dt.month == 12
    ref = ref.where(~dark, 0.0)  # polar night: every December exactly 0
    hist = (ref * 1.05).where(~dark, 0.0)
    out = adjust(ref, hist, hist, variable="r_solar", method="qdm", nquantiles=20)
    assert bool(out.notnull().all())
    assert float(abs(out.where(dark, drop=True)).max()) == 0.0


def test_incomplete_inputs_are_errors(rng):
    ref = _temperature(rng)
    with pytest.raises(DataError, match="same calibration months"):
        adjust(ref, ref.isel(time=slice(0, -12)), ref, variable="t_air", method="qdm", nquantiles=10)
    with pytest.raises(DataError, match="missing values"):
        adjust(ref, ref.where(ref.time != ref.time[5]), ref, variable="t_air", method="qdm", nquantiles=10)


def test_moisture_split_recovers_fixed_layer_ratios(rng):
    t = pd.date_range("2001-01-01", periods=48, freq="MS")
    w1 = xr.DataArray(rng.uniform(0.2, 0.4, (2, 48)), dims=("band", "time"), coords={"band": [0, 1], "time": t})
    factors = {"w1": 1.0, "w2": 1.2, "w3": 1.5, "w4": 1.8}
    era = xr.Dataset({n: w1 * f for n, f in factors.items()})
    ratios = layer_ratios(era)
    top = top10(era)  # (0.07 w1 + 0.03 * 1.2 w1) / 0.1 = 1.06 w1
    np.testing.assert_allclose(top, 1.06 * w1)
    for n, f in factors.items():
        np.testing.assert_allclose(ratios.sel(layer=n), f / 1.06)
    layers = split(top, ratios)
    for n in LAYERS:
        np.testing.assert_allclose(layers[n], era[n])


def test_spread_diagnostic_known_answer():
    t = pd.date_range("2001-01-01", "2030-12-01", freq="MS")
    years = t.year.to_numpy() - 2001
    data = np.stack([0.03 * years, 0.10 * years])  # K per year
    da = xr.DataArray(data, dims=("scenario", "time"), coords={"scenario": ["rcp26", "rcp85"], "time": t})
    change = mean_change(da, slice("2001", "2018"), slice("2024", "2030"))
    # mean year index: calibration 8.5, projection 26 -> change = rate * 17.5
    np.testing.assert_allclose(change, [0.03 * 17.5, 0.10 * 17.5])
    assert spread(change, "rcp85", "rcp26") == pytest.approx(0.07 * 17.5)
    assert retained(0.5, 1.0) == 0.5
    assert retained(0.5, 0.0) is None


def test_qdm_in_blocks_keeps_a_warming_inside_one_longmonthly(rng):
    """One 30-year series (as the pipeline passes history + RCP): the last decade is +3 K warmer.

    Ranked over the whole series the warm decade sits in the upper quantiles, where a model
    twice too variable gets the largest downward correction, so much of the warming is lost;
    ranked within 10-year blocks it is kept.
    """
    n_cal, n_sim = 12 * YEARS, 12 * 30
    season = lambda n: -5 + 15 * np.sin(2 * np.pi * (np.arange(n) % 12 - 3) / 12)
    ref = monthly(season(n_cal) + rng.normal(0, 1, n_cal))
    hist = monthly(season(n_cal) + 2.0 + 2.0 * rng.normal(0, 1, n_cal))
    warm = np.where(np.arange(n_sim) >= 12 * 20, 3.0, 0.0)
    sim = monthly(season(n_sim) + 2.0 + 2.0 * rng.normal(0, 1, n_sim) + warm)
    last, first = slice("2021", "2030"), slice("2001", "2020")

    def kept(out):
        return float(out.sel(time=last).mean() - out.sel(time=first).mean())

    model = kept(sim)
    whole = adjust(ref, hist, sim, variable="t_air", method="qdm", nquantiles=50)
    blocks = adjust(ref, hist, sim, variable="t_air", method="qdm", nquantiles=50, period_years=10)
    assert blocks.sizes["time"] == n_sim and bool((blocks["time"] == sim["time"]).all())
    assert kept(blocks) == pytest.approx(model, abs=0.3)
    assert kept(whole) < 0.8 * model


@pytest.mark.parametrize(("method", "variable"), [("qdm", "p_total"), ("eqm", "t_air"), ("qdm", "w1")])
def test_a_saved_adjustment_reloads_and_reproduces_the_correction_exactly(rng, tmp_path, method, variable):
    """Train once, save the xsdba dataset, reload it: the same corrected series, bit for bit, with xsdba's
    own provenance string. Multiplicative variables with dry months exercise the jitter replay."""
    n = 12 * YEARS
    if variable == "t_air":
        ref = _temperature(rng)
        hist, sim = ref + 1.5, _temperature(rng, start="2021-01-01") + 3.0
    else:
        scale = 0.05 if variable == "w1" else 2.0
        ref = monthly(np.where(rng.random(n) < 0.2, 0.0, rng.gamma(1.0, scale, n)))
        hist = ref * 1.4
        sim = monthly(np.where(rng.random(n) < 0.2, 0.0, rng.gamma(1.0, scale, n)) * 1.4, "2021-01-01")
    ref, hist, sim = (d.rename(variable) for d in (ref, hist, sim))  # named, as in the stage
    trained = bias.train(ref, hist, variable=variable, method=method, nquantiles=20, seed=5)
    direct = bias.apply(trained, sim, period_years=10)
    path = bias.save(trained, tmp_path / f"{method}_{variable}.nc")
    # the same fit, trained again (xsdba stamps its jitter step with the clock), writes the same bytes
    time.sleep(1.1)
    twin = bias.train(ref, hist, variable=variable, method=method, nquantiles=20, seed=5)
    assert bias.save(twin, tmp_path / "twin.nc").read_bytes() == path.read_bytes()
    # ... and whether an array keeps xsdba's clock-stamped history depends on the clock (two stamps that fall in
    # different seconds conflict and are dropped): no saved array carries one.
    with xr.open_dataset(path) as saved:
        assert not [v for v in saved.variables if "history" in saved[v].attrs]
    again = bias.apply(bias.load(path), sim, period_years=10)
    np.testing.assert_array_equal(again.values, direct.values)
    assert again.attrs["bias_adjustment"] == direct.attrs["bias_adjustment"]
    assert direct.attrs["bias_adjustment"].startswith(
        "QuantileDeltaMapping(" if method == "qdm" else "EmpiricalQuantileMapping(")
    # train + apply is exactly the one-call adjust (same jitter stream for ref, hist, then sim)
    one_call = adjust(ref, hist, sim, variable=variable, method=method, nquantiles=20, seed=5, period_years=10)
    np.testing.assert_array_equal(one_call.values, direct.values)
    # and the correction did something: the 1.4x / +1.5 K bias is gone from the calibration months
    fitted = bias.apply(trained, hist)
    assert abs(float(fitted.mean() - ref.mean())) < 0.1 * abs(float(hist.mean() - ref.mean()))


def test_loading_a_file_that_is_no_adjustment_is_one_clear_error(tmp_path):
    path = tmp_path / "other.nc"
    monthly(np.ones(24)).to_dataset(name="x").to_netcdf(path)
    with pytest.raises(DataError, match="not a saved thawcast bias adjustment"):
        bias.load(path)


def test_the_scenarios_stage_saves_every_fitted_adjustment(tiny_cfg, tiny_pipeline):
    from thawcast.catalogue import BIAS_METHODS
    from thawcast.layout import Layout
    from thawcast.variables import ERA5_FEATURES

    paths = Layout.at(tiny_pipeline).replace(scenarios=tiny_pipeline / "scenarios")
    for method in BIAS_METHODS:
        for v in ERA5_FEATURES:
            trained = bias.load(paths.adjustment(method, v))
            assert trained.ds.attrs["thawcast_variable"] == v and trained.ds.attrs["thawcast_method"] == method
    with xr.open_dataset(paths.scenario("rcp85")) as ds:
        assert ds["t_air"].attrs["bias_adjustment"].startswith("QuantileDeltaMapping(")
