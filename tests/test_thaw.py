"""Thaw metrics: known answers and physical oracles."""

import numpy as np
import pytest

from thawcast.analysis.thaw import (
    LAYER_MID_CM,
    active_layer_thickness,
    alt_is_lower_bound,
    dominant_period_months,
    months_above_zero,
    thawing_degree_months,
    trend_per_decade,
    zero_curtain_months,
)
from thawcast.errors import DataError
from thawcast.variables import TARGETS


def test_layer_mid_depths_are_the_era5_land_ones():
    assert LAYER_MID_CM == (3.5, 17.5, 64.0, 194.5)


def test_alt_interpolates_the_zero_crossing_between_mid_depths():
    # +2 degC at 17.5 cm, -2 degC at 64 cm: crossing half way, at 40.75 cm
    assert active_layer_thickness(np.array([5.0, 2.0, -2.0, -4.0])) == pytest.approx(40.75)
    # a linear profile T = 10 - z/10 crosses 0 at z = 100 cm exactly
    z = np.array(LAYER_MID_CM)
    assert active_layer_thickness(10 - z / 10) == pytest.approx(100.0)


def test_alt_edges_no_thaw_all_thaw_nan_and_talik():
    profiles = np.array([[-1.0, -2.0, -3.0, -4.0],   # nothing thaws
                         [8.0, 6.0, 3.0, 0.5],       # everything thaws: lower bound at the deepest mid-depth
                         [4.0, np.nan, -1.0, -2.0],  # missing value
                         [3.0, -1.0, 2.0, -1.0]])    # a warm layer below a frozen one: deepest crossing counts
    alt = active_layer_thickness(profiles)
    assert alt[0] == 0.0 and alt[1] == 194.5 and np.isnan(alt[2])
    assert alt[3] == pytest.approx(64.0 + (194.5 - 64.0) * 2 / 3)
    assert list(alt_is_lower_bound(profiles)) == [False, True, False, False]


def test_alt_deepens_monotonically_as_the_profile_warms():
    base = np.array([6.0, 3.0, -1.0, -3.0])
    alts = [float(active_layer_thickness(base + dt)) for dt in np.linspace(0, 3, 13)]
    assert np.all(np.diff(alts) >= 0)
    assert alts[-1] > alts[0]


def test_alt_rejects_bad_shapes():
    with pytest.raises(DataError, match="layers"):
        active_layer_thickness(np.zeros(3))
    with pytest.raises(DataError, match="increase"):
        active_layer_thickness(np.zeros(4), depths_cm=(1, 2, 2, 3))


def test_monthly_counts_and_degree_months():
    year = np.array([-10, -8, -4, -0.2, 0.1, 3, 8, 9, 5, 0.3, -3, -9.0])
    assert months_above_zero(year) == 6
    assert thawing_degree_months(year) == pytest.approx(0.1 + 3 + 8 + 9 + 5 + 0.3)
    # zero curtain: |T| <= 0.5 and change <= 0.5: only 0.1 (after -0.2) qualifies; -0.2 changed by 3.8
    assert zero_curtain_months(year) == 1
    flat = np.full(12, 0.05)
    assert zero_curtain_months(flat) == 12
    both = np.stack([year, flat])
    assert list(months_above_zero(both)) == [6, 12]


def test_trend_per_decade():
    years = np.arange(2001, 2031)
    assert trend_per_decade(years, 0.03 * years + 5) == pytest.approx(0.3)
    assert np.isnan(trend_per_decade(np.array([2001.0]), np.array([1.0])))
    # a constant series (an ALT pinned at the deepest mid-depth) has exactly no trend
    assert trend_per_decade(years, np.full(years.shape, 194.5)) == 0.0


def test_dominant_period_finds_the_annual_cycle_not_harmonics_or_noise():
    t = np.arange(84)
    g = np.random.default_rng(0)
    series = 10 * np.sin(2 * np.pi * t / 12) + 3 * np.sin(2 * np.pi * t / 6) + 0.05 * t + g.normal(0, 1, 84)
    assert dominant_period_months(series) == pytest.approx(12.0)
    biennial = 10 * np.sin(2 * np.pi * t / 24)
    assert dominant_period_months(biennial) == pytest.approx(24.0, rel=0.05)
    with pytest.raises(DataError, match="at least 24"):
        dominant_period_months(series[:12])


def test_dominant_period_is_not_fooled_by_a_century_trend():
    """A deep layer to 2100: a small annual cycle on a warming of 8 K over 77 years (the trend's own
    periodogram peak sits at the record length; the line is removed before the cycle is looked for)."""
    t = np.arange(924)
    deep = 0.8 * np.sin(2 * np.pi * t / 12) + 8.0 * t / 924
    assert dominant_period_months(deep) == pytest.approx(12.0)
    no_line = np.abs(np.fft.rfft(deep - deep.mean(), n=8 * 924)) ** 2  # what the check did before
    assert 1.0 / np.fft.rfftfreq(8 * 924)[1 + np.argmax(no_line[1:])] > 900
    accelerating = 0.5 * np.sin(2 * np.pi * t / 12) + 6.0 * (t / 924) ** 2.5  # RCP-like: slow, then fast
    assert dominant_period_months(accelerating) == pytest.approx(12.0)
    line = accelerating - np.polyval(np.polyfit(t, accelerating, 1), t)  # a line is not enough
    power = np.abs(np.fft.rfft(line, n=8 * 924)) ** 2
    assert 1.0 / np.fft.rfftfreq(8 * 924)[1 + np.argmax(power[1:])] > 100
    biennial = 2.0 * np.sin(2 * np.pi * t / 24) + 1.0 * np.sin(2 * np.pi * t / 12) + 6.0 * (t / 924) ** 2.5
    assert dominant_period_months(biennial) == pytest.approx(24.0, rel=0.02)  # the paper's fault still shows


def test_yearly_metrics_on_a_known_profile():
    import pandas as pd
    import xarray as xr

    from thawcast.analysis.thaw import yearly_metrics

    months = pd.date_range("2024-01-01", periods=24, freq="MS")
    season = -np.cos(2 * np.pi * (months.month.to_numpy() - 1) / 12)  # -1 in January, +1 in July
    amp = np.array([10.0, 6.0, 2.0, 0.5])
    mean = np.array([0.0, -1.0, -1.0, -2.0])
    shift = np.array([0.0, 1.0])[np.repeat([0, 1], 12)]  # the second year is 1 degC warmer
    t = mean[:, None] + amp[:, None] * season[None, :] + shift[None, :]
    da = xr.DataArray(t[None], dims=("band", "layer", "time"),
                      coords={"band": [0], "layer": ["t_soil1", "t_soil2", "t_soil3", "t_soil4"], "time": months})
    m = yearly_metrics(da)
    # annual maxima, year 1: 10, 5, 1, -1.5 -> crossing between 64 and 194.5 cm at 1/2.5 of the way
    assert float(m["alt_cm"].sel(band=0, year=2024)) == pytest.approx(64 + 130.5 * 1 / 2.5)
    # year 2: 11, 6, 2, -0.5 -> 4/5 of the way
    assert float(m["alt_cm"].sel(band=0, year=2025)) == pytest.approx(64 + 130.5 * 2 / 2.5)
    assert int(m["months_above_zero"].sel(band=0, layer="t_soil4", year=2024)) == 0
    expected_tdm = np.clip(t[0, :12], 0, None).sum()
    assert float(m["thawing_degree_months"].sel(band=0, layer="t_soil1", year=2024)) == pytest.approx(expected_tdm)
    with pytest.raises(DataError, match="whole calendar years"):
        yearly_metrics(da.isel(time=slice(1, 13)))


def test_the_thaw_summary_and_its_tables_on_known_yearly_metrics():
    """Two bands, three years: band 0's ALT deepens 2 cm a year (+20 cm per decade), band 1's stays; layer-1
    months above 0 and thawing degree-months known; one scenario whose members span 10 cm around the mean."""
    import xarray as xr

    from thawcast.analysis.thaw import long_table, markdown, summarise

    years, layers = [2001, 2002, 2003], list(TARGETS)
    alt = np.array([[50.0, 52.0, 54.0], [100.0, 100.0, 100.0]])
    per_layer = np.zeros((2, 4, 3))
    per_layer[:, 0] = [[4.0, 5.0, 6.0], [2.0, 2.0, 2.0]]
    coords = {"band": [0, 1], "layer": layers, "year": years}
    obs = xr.Dataset({"alt_cm": (("band", "year"), alt), "months_above_zero": (("band", "layer", "year"), per_layer),
                      "thawing_degree_months": (("band", "layer", "year"), 3 * per_layer),
                      "zero_curtain_months": (("band", "layer", "year"), 0 * per_layer)}, coords=coords)
    ens = xr.Dataset({"alt_cm_mean": (("scenario", "band", "year"), alt[None] + 1),
                      "alt_cm_min": (("scenario", "band", "year"), alt[None] - 4),
                      "alt_cm_max": (("scenario", "band", "year"), alt[None] + 6),
                      "months_above_zero_mean": (("scenario", "band", "layer", "year"), per_layer[None] + 1),
                      "thawing_degree_months_mean": (("scenario", "band", "layer", "year"), 2 * per_layer[None])},
                     coords={**coords, "scenario": ["rcp85"]})
    air = {"observed": xr.DataArray([0.5, 0.25], dims="band"), "rcp85": xr.DataArray([0.75, 1.0], dims="band")}
    s = summarise(obs, ens, ["south", "north"], air)
    assert s["observed"]["south"] == {
        "alt_mean_cm": 52.0, "alt_share_years_at_bound": 0.0, "alt_trend_cm_per_decade": 20.0,
        "months_above_zero_layer1": 5.0,
        "thawing_degree_months_layer1": 15.0, "thawing_degree_months_layer1_trend_per_decade": 30.0,
        "t_air_trend_degC_per_decade": 0.5}
    assert s["rcp85"]["north"] == {
        "alt_mean_cm": 101.0, "alt_share_years_at_bound": 0.0, "alt_model_min_cm": 96.0, "alt_model_max_cm": 106.0,
        "alt_trend_cm_per_decade": 0.0, "months_above_zero_layer1": 3.0, "thawing_degree_months_layer1": 4.0,
        "thawing_degree_months_layer1_trend_per_decade": 0.0, "t_air_trend_degC_per_decade": 1.0}
    md = markdown(s, "2001-2003", "2024-2030")
    assert "| south | 52.0 (+20.0) | 53.0 [48.0-58.0] (+20.0) |" in md
    assert "| north | 2.0 | 6.0 | 3.0 | 4.0 |" in md
    assert "| south | +20.0 / +30.0 / +0.50 | +20.0 / +20.0 / +0.75 |" in md
    assert "ERA5-Land 2001-2003" in md and "architectures 2024-2030" in md
    # Years at the 194.5 cm bound: their share is shown and no ALT trend is given (a capped series).
    capped = obs.copy(deep=True)
    capped["alt_cm"][1] = [150.0, 194.5, 194.5]
    north = summarise(capped, ens, ["south", "north"], air)["observed"]["north"]
    assert north["alt_trend_cm_per_decade"] is None and north["alt_share_years_at_bound"] == pytest.approx(0.667)
    assert "| north | 179.7 (n/a; bound 67%) |" in markdown(summarise(capped, ens, ["south", "north"], air),
                                                           "2001-2003", "2024-2030")
    rows = long_table(obs, source="observed")
    assert len(rows) == 2 * 3 + 3 * 2 * 4 * 3 and set(rows["source"]) == {"observed"}
    one = rows[(rows.metric == "thawing_degree_months") & (rows.band == 0) & (rows.layer == "t_soil1")]
    assert one.sort_values("year")["value"].tolist() == [12.0, 15.0, 18.0]
    assert (rows.loc[rows.metric == "alt_cm", "layer"] == "").all()
