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


def test_trend_intervals_cover_the_true_slope_with_autocorrelated_noise():
    """Monte Carlo oracle: 400 series of 77 years, trend 0.3 per decade plus AR(1) noise (r = 0.6). The
    95% interval with the effective sample size covers the true slope about 95% of the time; the plain
    OLS interval (no correction) would cover it far less often, which is why the correction is there."""
    from thawcast.analysis.thaw import trend_with_uncertainty

    rng = np.random.default_rng(7)
    years = np.arange(2024, 2101)
    covered, widths = 0, []
    for _ in range(400):
        e = np.zeros(len(years))
        for i in range(1, len(years)):
            e[i] = 0.6 * e[i - 1] + rng.normal()
        slope, ci = trend_with_uncertainty(years, 0.03 * (years - 2024) + e)
        covered += abs(slope - 0.3) <= ci
        widths.append(ci)
    assert 0.88 <= covered / 400 <= 0.99
    line = trend_with_uncertainty(years, 2.0 + 0.05 * years)
    assert line[0] == pytest.approx(0.5) and line[1] == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(trend_with_uncertainty(years[:3], years[:3])[0])


def test_first_crossing_year_uses_a_running_mean():
    from thawcast.analysis.thaw import first_crossing_year

    years = np.arange(2024, 2044)
    alt = np.linspace(50.0, 90.0, 20)  # 2.1 cm a year: the 5-year mean reaches 64 cm in the year the series does
    assert first_crossing_year(years, alt, 64.0) == years[np.argmax(alt >= 64.0)]
    spike = np.full(20, 50.0)
    spike[5] = 80.0  # one warm year (2029) is not a crossing: the 5-year means reach 56 cm at most ...
    assert first_crossing_year(years, spike, 64.0) is None
    spike[5:] = 80.0  # ... a lasting change is, at the centre of the first 5-year mean past the depth:
    assert first_crossing_year(years, spike, 64.0) == 2029  # 2027-2031 average (2 x 50 + 3 x 80) / 5 = 68
    assert first_crossing_year(years, np.full(20, 194.5), 194.5) == 2026  # already there: the first centred year
    with pytest.raises(DataError, match="5 years"):
        first_crossing_year(years[:3], alt[:3], 64.0)


def test_decadal_summary_spread_bound_permafrost_and_crossing():
    import pandas as pd
    import xarray as xr

    from thawcast.analysis.thaw import decadal_markdown, decadal_summary, yearly_metrics

    months = pd.date_range("2024-01-01", "2043-12-01", freq="MS")
    season = -np.cos(2 * np.pi * (months.month.to_numpy() - 1) / 12)
    amp, mean = np.array([10.0, 6.0, 2.0, 0.5]), np.array([0.0, -1.0, -1.0, -2.0])
    warm = np.where(months.year.to_numpy() >= 2034, 3.0, 0.0)  # from 2034 every layer thaws (bound, no permafrost)
    t = mean[:, None] + amp[:, None] * season[None, :]
    members = np.stack([t, t + warm[None, :]])[None, :, None]  # [scenario, model, band, layer, time]
    da = xr.DataArray(members, dims=("scenario", "model", "band", "layer", "time"),
                      coords={"scenario": ["rcp85"], "model": ["a", "b"], "band": [0], "layer": list(TARGETS),
                              "time": months})
    ym = yearly_metrics(da)
    assert ym["near_surface_permafrost"].sel(model="a").all()  # deepest annual max -1.5 degC
    assert not ym["near_surface_permafrost"].sel(model="b", year=2040) and ym["near_surface_permafrost"].sel(
        model="b", year=2030)
    s = decadal_summary(ym, ["north"], [(2024, 2033), (2034, 2043)])["rcp85"]["north"]
    cold = 64 + 130.5 / 2.5
    late = s["decades"]["2034-2043"]
    assert late["alt_cm"] == pytest.approx((cold + 194.5) / 2) and late["alt_min_cm"] == pytest.approx(cold)
    assert late["alt_max_cm"] == pytest.approx(194.5) and late["alt_share_at_bound"] == 0.5
    assert late["near_surface_permafrost_share"] == 0.5
    assert s["decades"]["2024-2033"]["near_surface_permafrost_share"] == 1.0
    assert s["alt_trend_cm_per_decade"] is None  # member b sits at the bound: no trend of a capped series
    assert s["alt_first_reaches_cm"]["64"] == 2026 and s["alt_first_reaches_cm"]["194.5"] is None
    assert "| north | 116 [116-116] | 155 [116-194] b 50% |" in decadal_markdown({"rcp85": {"north": s}}, 2024)
