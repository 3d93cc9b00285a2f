"""Thaw metrics and their tables: edges, dataset layout, summaries and the Markdown text, worked out by hand."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import t as student

from thawcast.analysis.thaw import (
    active_layer_thickness,
    decadal_markdown,
    decadal_summary,
    dominant_period_months,
    first_crossing_year,
    long_table,
    markdown,
    months_above_zero,
    summarise,
    thawing_degree_months,
    trend_per_decade,
    trend_with_uncertainty,
    trends,
    yearly_metrics,
    zero_curtain_months,
)
from thawcast.errors import DataError
from thawcast.variables import TARGETS


# ---------------------------------------------------------------- per-year metrics
def test_alt_of_a_batch_of_profiles_and_other_depths():
    profiles = np.array([[[0.0, -1.0, -2.0, -3.0],    # the top layer at exactly 0 degC does not thaw
                          [2.0, -2.0, -3.0, -4.0]],   # crossing half way from 3.5 to 17.5 cm
                         [[4.0, 2.0, 1.0, 0.0],       # 0 degC at 194.5 cm: crossing exactly at 194.5, not a bound
                          [1.0, np.nan, 1.0, 1.0]]])  # one NaN layer: NaN
    alt = active_layer_thickness(profiles)
    assert alt.shape == (2, 2)
    assert alt[0, 0] == 0.0 and alt[0, 1] == pytest.approx(10.5) and alt[1, 0] == pytest.approx(194.5)
    assert np.isnan(alt[1, 1])
    # other depths, 0.5 and 1 cm apart: +3 at 0.5 cm, -1 at 1.5 cm -> 3/4 of the way
    assert active_layer_thickness(np.array([6.0, 3.0, -1.0]), depths_cm=(0.0, 0.5, 1.5)) == pytest.approx(1.25)
    for short in (np.zeros(3), np.zeros((2, 3))):
        with pytest.raises(DataError, match=r"^profile has 3 layers, depths give 4$"):
            active_layer_thickness(short)
    for depths in ((3.0, 2.0, 1.0), (1.0, 2.0, 2.0)):  # falling, or two layers at one depth
        with pytest.raises(DataError, match=r"^layer depths must increase$"):
            active_layer_thickness(np.zeros(3), depths_cm=depths)


def test_counts_and_degree_months_along_another_axis():
    year = np.array([-3.0, 0.0, 0.5, 2.0, 4.0, -1.0])
    cols = np.stack([year, -year], axis=1)  # months on axis 0
    # above 0: 0.5, 2, 4 (0 is not above) / 3 and 1 in the negated column
    assert list(months_above_zero(cols, axis=0)) == [3, 2]
    assert thawing_degree_months(cols, axis=0) == pytest.approx([6.5, 4.0])
    assert thawing_degree_months(np.array([1, 2, -3])) == pytest.approx(3.0)  # integers are fine


SERIES = np.array([0.5, 0.0, -0.5, -1.0, 0.25, 0.5, 2.0, 2.0, 0.5, 0.5, 0.5, 0.5])


def test_zero_curtain_defaults_are_inclusive_half_degree_bands():
    # |T| <= 0.5 and |change| <= 0.5: months 1 (first: |T| alone), 2 (change 0.5), 3 (change 0.5), 6 (change
    # 0.25), 10, 11, 12 (change 0); not 4 (|T| = 1), 5 (change 1.25), 7, 8 (|T| = 2), 9 (change 1.5)
    assert zero_curtain_months(SERIES) == 7


def test_zero_curtain_band_and_change_are_separate_arguments_and_axis_moves():
    # |T| <= 1 and change <= 0.25: months 1, 6, 10, 11, 12 (month 4 is -1 but changed by 0.5)
    assert zero_curtain_months(SERIES, band_c=1.0, max_change_c=0.25) == 5
    # |T| <= 0.25 and change <= 1: only month 2 (0 after 0.5); month 5 (0.25) changed by 1.25
    assert zero_curtain_months(SERIES, band_c=0.25, max_change_c=1.0) == 1
    both = np.stack([SERIES, np.full(12, 0.1)], axis=1)  # months on axis 0
    assert list(zero_curtain_months(both, axis=0)) == [7, 12]


def test_trend_per_decade_uses_only_finite_pairs_and_needs_two_distinct_years():
    # two points: (2000, 1) and (2010, 3): 2 per decade
    assert trend_per_decade(np.array([2000, 2010]), np.array([1.0, 3.0])) == pytest.approx(2.0)
    years = np.array([2000.0, 2005.0, np.nan, 2010.0])
    values = np.array([1.0, np.nan, 50.0, 3.0])  # only 2000 and 2010 are complete pairs
    assert trend_per_decade(years, values) == pytest.approx(2.0)
    assert np.isnan(trend_per_decade(np.array([2000, 2000, 2000]), np.array([1.0, 2.0, 3.0])))
    assert trend_per_decade(np.array([2000, 2001]), np.array([1.0, 2.0])) == pytest.approx(10.0)  # one year apart
    # a constant series on uneven years (their mean 2002.33 is not exact in floating point) has exactly no trend
    assert trend_per_decade(np.array([2001, 2002, 2004]), np.full(3, 194.5)) == 0.0


def test_trend_interval_is_the_ols_one_when_residuals_alternate():
    # years 0..4, values 0 1 0 1 0: slope 0; residuals -0.4 0.6 -0.4 0.6 -0.4 (SSR 1.2) alternate (r1 < 0), so
    # n_eff = n = 5; se = sqrt(1.2 / 3 / 10) = 0.2 per year; t(0.975, 3) = 3.1824 -> 6.365 per decade
    slope, ci = trend_with_uncertainty(np.arange(5), np.array([0.0, 1.0, 0.0, 1.0, 0.0]))
    assert slope == pytest.approx(0.0, abs=1e-12) and ci == pytest.approx(3.1824463 * 0.2 * 10, rel=1e-6)
    # four points are enough: 0 1 0 1 has slope 0.2 a year; residuals -0.2 0.6 -0.6 0.2 (SSR 0.8, r1 < 0);
    # se = sqrt(0.8 / 2 / 5); t(0.975, 2) = 4.3027
    slope, ci = trend_with_uncertainty(np.arange(2000, 2004), np.array([0.0, 1.0, 0.0, 1.0]))
    assert slope == pytest.approx(2.0) and ci == pytest.approx(4.3026527 * np.sqrt(0.08) * 10, rel=1e-6)
    # NaN years or values are dropped: the same answer with two incomplete pairs added
    slope2, ci2 = trend_with_uncertainty(np.array([2000, 2001, 2002, 2003, np.nan, 2005]),
                                         np.array([0.0, 1.0, 0.0, 1.0, 7.0, np.nan]))
    assert (slope2, ci2) == pytest.approx((slope, ci))
    # two years with two values each: slope (mean 5 - mean 1) = 4 a year; residuals -1 1 -1 1 (SSR 4, r1 < 0);
    # se = sqrt(4 / 2 / 1)
    slope, ci = trend_with_uncertainty(np.array([2000, 2000, 2001, 2001]), np.array([0.0, 2.0, 4.0, 6.0]))
    assert slope == pytest.approx(40.0) and ci == pytest.approx(4.3026527 * np.sqrt(2.0) * 10, rel=1e-6)


def test_trend_interval_widens_with_the_effective_sample_size_of_autocorrelated_residuals():
    # years 0..5, values 0 0 1 1 0 0: slope 0, residuals (-1 -1 2 2 -1 -1) / 3, SSR 4/3, lag-1 sum 2/9 -> r1 = 1/6;
    # n_eff = 6 (5/6) / (7/6) = 30/7; se = sqrt(4/3 / (16/7) / 17.5) = sqrt(1/30)
    slope, ci = trend_with_uncertainty(np.arange(6), np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0]))
    assert slope == pytest.approx(0.0, abs=1e-12)
    assert ci == pytest.approx(student.ppf(0.975, 30 / 7 - 2) * np.sqrt(1 / 30) * 10, rel=1e-9)
    # r1 does not depend on the scale: half the values (SSR 1/3), half the interval
    half = trend_with_uncertainty(np.arange(6), np.array([0.0, 0.0, 0.5, 0.5, 0.0, 0.0]))
    assert half[1] == pytest.approx(ci / 2, rel=1e-9)
    # a parabola's residuals from a line are one bump: r1 = 3/4 over 20 years, n_eff = 20/7 > 2: an interval
    years = np.arange(2000, 2020)
    slope, ci = trend_with_uncertainty(years, (years - 2009.5) ** 2 + 0.5 * years)
    assert slope == pytest.approx(5.0) and np.isfinite(ci) and ci > 0
    # one slow cosine over 40 years: r1 near cos(2 pi / 40), n_eff far below 2: the slope but no interval
    years = np.arange(2000, 2040)
    slope, ci = trend_with_uncertainty(years, np.cos(2 * np.pi * (years - 1999.5) / 40) + 0.05 * years)
    assert slope == pytest.approx(0.5, abs=1e-9) and np.isnan(ci)


def test_trend_interval_needs_four_points_in_more_than_one_year():
    assert all(np.isnan(trend_with_uncertainty(np.arange(3), np.array([0.0, 1.0, 3.0]))))
    assert all(np.isnan(trend_with_uncertainty(np.full(6, 2030), np.arange(6.0))))
    # NaN pairs do not count: 5 years, 2 of them NaN
    assert all(np.isnan(trend_with_uncertainty(np.arange(5), np.array([0.0, np.nan, 1.0, np.nan, 3.0]))))


def test_first_crossing_year_edges():
    years = np.arange(2000, 2005)
    # exactly 5 years: one 5-year mean (60 + 62 + 64 + 66 + 68) / 5 = 64 at the centre year 2002
    assert first_crossing_year(years, np.array([60.0, 62.0, 64.0, 66.0, 68.0]), 64.0) == 2002
    assert first_crossing_year(years, np.array([60.0, 62.0, 64.0, 66.0, 68.0]), 64.5) is None
    # 3-year means of 0 0 0 3 3 3: 0 1 2 3 -> 2 is reached first over 2002-2004, centred on 2003
    assert first_crossing_year(np.arange(2000, 2006), np.array([0.0, 0, 0, 3, 3, 3]), 2.0, smooth=3) == 2003
    with pytest.raises(DataError, match=r"^need at least 5 years for a 5-year running mean, got 4$"):
        first_crossing_year(years[:4], np.zeros(4), 64.0)
    with pytest.raises(DataError, match=r"^need at least 7 years for a 7-year running mean, got 5$"):
        first_crossing_year(years, np.zeros(5), 64.0, smooth=7)


def test_dominant_period_input_checks_and_the_shortest_record():
    t = np.arange(24)
    assert dominant_period_months(np.cos(2 * np.pi * t / 12)) == pytest.approx(12.0)  # two full cycles suffice
    assert dominant_period_months(list(np.cos(2 * np.pi * t / 12))) == pytest.approx(12.0)  # any sequence
    msg = r"^need a finite 1-D monthly series of at least 24 months, got shape "
    with pytest.raises(DataError, match=msg + r"\(23,\)$"):
        dominant_period_months(np.ones(23))
    with pytest.raises(DataError, match=msg + r"\(2, 24\)$"):
        dominant_period_months(np.ones((2, 24)))
    bad = np.cos(2 * np.pi * np.arange(36) / 12)
    bad[5] = np.nan
    with pytest.raises(DataError, match=msg + r"\(36,\)$"):
        dominant_period_months(bad)


def test_dominant_period_removes_exactly_a_cubic_and_pads_eightfold():
    t = np.arange(120)
    s = t / 120
    cycle = np.cos(2 * np.pi * t / 12)
    # a cubic trend 1000 times the cycle's amplitude vanishes entirely (a quadratic fit would leave it)
    assert dominant_period_months(cycle + 1000 * (s**3 - s**2)) == pytest.approx(12.0)
    # a quartic one does not: what remains of it owns a long period
    assert dominant_period_months(cycle + 1000 * s**4) > 24
    # 24 months in 84 (3.5 cycles): 8 x 84 = 672 = 28 x 24, so 1/24 lies on the padded frequency grid
    assert dominant_period_months(np.cos(2 * np.pi * np.arange(84) / 24)) == pytest.approx(24.0, rel=1e-9)


def _temps(dims=("layer", "time", "band")):
    """Two bands, two years (2030, 2031): each month at a layer's winter value, July at its annual maximum."""
    maxima = np.array([[[5.0, 2.0, -0.25, -1.0], [4.0, 3.0, 2.0, 0.5]],        # south: 2030, 2031
                       [[3.0, 1.0, 0.5, 0.0], [-1.0, -1.0, -1.0, -1.0]]])     # north
    winter = np.array([-10.0, -6.0, -0.25, -1.0])
    v = np.broadcast_to(winter[None, None, :, None], (2, 2, 4, 12)).copy()  # [band, year, layer, month]
    v[..., 6] = maxima
    v[1, 1] = -2.0  # north 2031: -2 all year except July (-1)
    v[1, 1, :, 6] = -1.0
    data = np.moveaxis(v, 3, 2).reshape(2, 24, 4)  # [band, time, layer]
    da = xr.DataArray(data, dims=("band", "time", "layer"),
                      coords={"band": ["south", "north"], "layer": list(TARGETS),
                              "time": pd.date_range("2030-01-01", periods=24, freq="MS")})
    return da.transpose(*dims)


def test_yearly_metrics_dims_coords_and_attributes():
    m = yearly_metrics(_temps())
    assert list(m["year"].values) == [2030, 2031] and list(m["band"].values) == ["south", "north"]
    assert list(m["layer"].values) == list(TARGETS)
    for name in ("alt_cm", "alt_lower_bound", "near_surface_permafrost"):
        assert m[name].dims == ("band", "year")
    for name in ("months_above_zero", "thawing_degree_months", "zero_curtain_months"):
        assert m[name].dims == ("band", "layer", "year")
    assert m["alt_cm"].attrs == {"units": "cm",
                                 "long_name": "active-layer thickness (annual max profile zero crossing)"}
    assert m["alt_lower_bound"].attrs == {"long_name": "every layer thaws: ALT is at least the deepest mid-depth"}
    assert m["months_above_zero"].attrs == {"units": "months"}
    assert m["zero_curtain_months"].attrs == {"units": "months"}
    assert m["thawing_degree_months"].attrs == {"units": "degC month"}
    assert m["near_surface_permafrost"].attrs == {
        "long_name": "the deepest layer's annual maximum is at or below 0 degC"}
    # a year label per calendar year, 13 of them
    months = pd.date_range("2030-01-01", periods=156, freq="MS")
    thirteen = xr.DataArray(np.zeros((4, 156)), dims=("layer", "time"), coords={"layer": list(TARGETS), "time": months})
    assert yearly_metrics(thirteen)["year"].values.tolist() == list(range(2030, 2043))
    # without a leading dimension
    one = yearly_metrics(_temps().sel(band="south").transpose("layer", "time"))
    assert one["alt_cm"].dims == ("year",) and one["months_above_zero"].dims == ("layer", "year")


def test_yearly_metrics_values_per_band_year_and_layer():
    m = yearly_metrics(_temps())
    # south 2030 maxima 5, 2, -0.25, -4: crossing 2/2.25 of the way from 17.5 to 64 cm
    assert m["alt_cm"].values[0] == pytest.approx([17.5 + 46.5 * 2 / 2.25, 194.5])
    # north 2030 maxima 3, 1, 0.5, 0: the crossing is exactly at 194.5 cm but 194.5 cm does not thaw
    assert m["alt_cm"].values[1] == pytest.approx([194.5, 0.0])
    assert m["alt_lower_bound"].values.tolist() == [[False, True], [False, False]]
    assert m["near_surface_permafrost"].values.tolist() == [[True, False], [True, True]]
    # one warm month per layer where its maximum is above 0
    assert m["months_above_zero"].sel(band="south").values.tolist() == [[1, 1], [1, 1], [0, 1], [0, 1]]
    assert m["thawing_degree_months"].sel(band="south", year=2031).values == pytest.approx([4.0, 3.0, 2.0, 0.5])
    # south 2030 layer 3 sits at -0.25 all year: 12 zero-curtain months by default; layer 4 at -1 is outside
    # the 0.5 degC band, and its 0.5 degC in July 2031 came by a change of 1.5 degC: none
    assert int(m["zero_curtain_months"].sel(band="south", layer="t_soil3", year=2030)) == 12
    assert m["zero_curtain_months"].sel(band="south", layer="t_soil4").values.tolist() == [0, 0]
    assert int(m["zero_curtain_months"].sel(band="south", layer="t_soil1", year=2030)) == 0


def test_yearly_metrics_passes_the_zero_curtain_band_and_change():
    def layer3(year, **kw):
        return int(yearly_metrics(_temps(), **kw)["zero_curtain_months"].sel(band="south", layer="t_soil3",
                                                                             year=year))

    assert layer3(2030, zero_band_c=0.2, zero_max_change_c=1.0) == 0  # |-0.25| is outside a 0.2 band
    assert layer3(2030, zero_band_c=1.0, zero_max_change_c=0.0) == 12  # and it never changes
    # 2031: -0.25, 2.0 in July, -0.25: a 3 degC band and 3 degC change take in July and August too
    assert layer3(2031, zero_band_c=3.0, zero_max_change_c=3.0) == 12


def test_yearly_metrics_rejects_partial_years_with_the_months_named():
    da = _temps()
    with pytest.raises(DataError, match=r"^need whole calendar years of months, got 2030-02..2031-01$"):
        yearly_metrics(da.isel(time=slice(1, 13)))
    with pytest.raises(DataError, match=r"^need whole calendar years of months, got 2030-01..2031-01$"):
        yearly_metrics(da.isel(time=slice(0, 13)))


# ---------------------------------------------------------------- summaries
def test_long_table_columns_labels_and_a_fresh_index():
    m = yearly_metrics(_temps())
    rows = long_table(m, source="rcp85", model="tcn")
    assert set(rows.columns) == {"band", "year", "layer", "value", "metric", "source", "model"}
    assert rows.index.tolist() == list(range(len(rows)))
    # 2 bands x 2 years of ALT, then 2 x 4 layers x 2 years of each of the three per-layer metrics
    assert rows["metric"].value_counts().to_dict() == {"alt_cm": 4, "months_above_zero": 16,
                                                       "thawing_degree_months": 16, "zero_curtain_months": 16}
    assert set(rows["source"]) == {"rcp85"} and set(rows["model"]) == {"tcn"}
    zc = rows[(rows.metric == "zero_curtain_months") & (rows.band == "south") & (rows.layer == "t_soil3")]
    # 2030: -0.25 all year; 2031: July at 2.0 and August (a 2.25 degC change back) drop out
    assert zc.sort_values("year")["value"].tolist() == [12, 10]
    alt = rows[rows.metric == "alt_cm"]
    assert alt[alt.band == "north"].sort_values("year")["value"].tolist() == pytest.approx([194.5, 0.0])
    assert (alt["layer"] == "").all()  # ALT has no layer
    assert set(long_table(m).columns) == {"band", "year", "layer", "value", "metric"}


def test_trends_per_decade_for_every_other_index():
    years = [2000, 2002, 2004, 2010]
    rising, falling, one = [2.0 * y for y in years], [-0.5 * y for y in years], [np.nan, 1.0, np.nan, np.nan]
    values = xr.DataArray(np.array([rising, falling, one]).T,
                          dims=("year", "band"), coords={"year": years, "band": [0, 1, 2]})
    out = trends(values)
    assert out.dims == ("band",)
    assert out.values[:2] == pytest.approx([20.0, -5.0]) and np.isnan(out.values[2])


def _summary_inputs():
    """Two bands, 2001-2003; band 1's ALT sits at the bound in two years (one within 1e-6 cm of it)."""
    coords = {"band": [0, 1], "layer": list(TARGETS), "year": [2001, 2002, 2003]}
    alt = np.array([[50.0, 50.0, 51.0], [194.0, 194.4999995, 194.5]])
    months = np.full((2, 4, 3), 100.0)  # layers 2-4 carry 100, which layer 1 must not pick up
    months[:, 0] = [[1.0, 2.0, 2.0], [6.0, 6.0, 6.0]]
    tdm = np.full((2, 4, 3), 100.0)
    tdm[:, 0] = [[1.0, 2.0, 4.0], [30.0, 30.0, 30.0]]
    obs = xr.Dataset({"alt_cm": (("band", "year"), alt), "months_above_zero": (("band", "layer", "year"), months),
                      "thawing_degree_months": (("band", "layer", "year"), tdm)}, coords=coords)
    plus = np.array([1.0, 2.0])[:, None, None, None]  # rcp45: ALT x 1, months + 1, TDM x 1; rcp85: x 2, + 2, x 2
    mean_alt = np.stack([np.array([[40.0, 41.0, 42.0]] * 2)] * 2) * plus[:, 0]  # both bands, 1 cm a year (x 2)
    ens = xr.Dataset({"alt_cm_mean": (("scenario", "band", "year"), mean_alt),
                      "alt_cm_min": (("scenario", "band", "year"), np.full((2, 2, 3), 10.0) + plus[:, 0]),
                      "alt_cm_max": (("scenario", "band", "year"), np.full((2, 2, 3), 90.0) + plus[:, 0]),
                      "months_above_zero_mean": (("scenario", "band", "layer", "year"), months[None] + plus),
                      "thawing_degree_months_mean": (("scenario", "band", "layer", "year"), tdm[None] * plus)},
                     coords={**coords, "scenario": ["rcp45", "rcp85"]})
    air = {"observed": xr.DataArray([0.1, 0.2], dims="band"), "rcp45": xr.DataArray([0.3, 0.4], dims="band"),
           "rcp85": xr.DataArray([0.5, 0.6], dims="band")}
    return obs, ens, air


def test_summarise_rounds_to_three_decimals_and_counts_years_at_the_bound():
    obs, ens, air = _summary_inputs()
    s = summarise(obs, ens, ["south", "north"], air)
    assert list(s) == ["observed", "rcp45", "rcp85"] and list(s["rcp85"]) == ["south", "north"]
    # south: ALT 50 50 51 (mean 50.333, slope 0.5 cm a year), layer-1 months 1 2 2, TDM 1 2 4 (slope 1.5 a year)
    assert s["observed"]["south"] == {
        "alt_mean_cm": 50.333, "alt_share_years_at_bound": 0.0, "alt_trend_cm_per_decade": 5.0,
        "months_above_zero_layer1": 1.667, "thawing_degree_months_layer1": 2.333,
        "thawing_degree_months_layer1_trend_per_decade": 15.0, "t_air_trend_degC_per_decade": 0.1}
    # north: 194.0 is not at the bound, 194.4999995 and 194.5 are: 2 of 3 years, and no ALT trend
    assert s["observed"]["north"] == {
        "alt_mean_cm": 194.333, "alt_share_years_at_bound": 0.667, "alt_trend_cm_per_decade": None,
        "months_above_zero_layer1": 6.0, "thawing_degree_months_layer1": 30.0,
        "thawing_degree_months_layer1_trend_per_decade": 0.0, "t_air_trend_degC_per_decade": 0.2}
    # rcp85: ALT 80 82 84 (2 cm a year), members 12 and 92, layer-1 months 3 4 4, TDM 2 4 8 (3 a year)
    assert s["rcp85"]["south"] == {
        "alt_mean_cm": 82.0, "alt_share_years_at_bound": 0.0, "alt_model_min_cm": 12.0, "alt_model_max_cm": 92.0,
        "alt_trend_cm_per_decade": 20.0, "months_above_zero_layer1": 3.667, "thawing_degree_months_layer1": 4.667,
        "thawing_degree_months_layer1_trend_per_decade": 30.0, "t_air_trend_degC_per_decade": 0.5}
    assert s["rcp45"]["north"]["alt_model_min_cm"] == 11.0 and s["rcp45"]["north"]["alt_model_max_cm"] == 91.0
    assert s["rcp45"]["north"]["t_air_trend_degC_per_decade"] == 0.4


def test_an_alt_within_a_millionth_of_a_cm_of_the_bound_is_at_it():
    """An ALT half a millionth of a cm short of 194.5 cm (interpolation rounding; the tolerance is 1e-6 cm) is at
    the bound: counted, and no ALT trend."""
    obs, ens, air = _summary_inputs()
    obs["alt_cm"][1] = [194.4999995, 194.4999995, 194.0]
    north = summarise(obs, ens, ["south", "north"], air)["observed"]["north"]
    assert north["alt_share_years_at_bound"] == 0.667 and north["alt_trend_cm_per_decade"] is None
    proj = _projection()
    proj["alt_cm"].loc[{"band": 1, "model": "a"}] = 194.4999995  # member a only just at the bound, b at 194.0
    north = decadal_summary(proj, ["south", "north"], [(2030, 2032), (2033, 2035)])["rcp85"]["north"]
    assert [v["alt_share_at_bound"] for v in north["decades"].values()] == [0.5, 0.5]
    assert north["alt_trend_cm_per_decade"] is None and north["alt_trend_cm_ci95"] is None


def _band(decades, alt_trend, alt_ci, tdm_trend, tdm_ci, reaches):
    """One band of a decadal summary; ``decades`` maps a label to (ALT, min, max, share at bound, permafrost)."""
    return {"decades": {d: {"alt_cm": a, "alt_min_cm": lo, "alt_max_cm": hi, "alt_share_at_bound": b,
                            "near_surface_permafrost_share": p} for d, (a, lo, hi, b, p) in decades.items()},
            "alt_trend_cm_per_decade": alt_trend, "alt_trend_cm_ci95": alt_ci,
            "tdm_layer1_trend_per_decade": tdm_trend, "tdm_layer1_trend_ci95": tdm_ci,
            "alt_first_reaches_cm": {"3.5": 2026, "17.5": 2026, "64": reaches[0], "194.5": reaches[1]}}


def test_markdown_of_the_thaw_summary_in_full():
    def row(alt, share, lo, hi, trend, mon, tdm, tdm_trend, air):
        r = {"alt_mean_cm": alt, "alt_share_years_at_bound": share, "alt_trend_cm_per_decade": trend,
             "months_above_zero_layer1": mon, "thawing_degree_months_layer1": tdm,
             "thawing_degree_months_layer1_trend_per_decade": tdm_trend, "t_air_trend_degC_per_decade": air}
        return r if lo is None else {**r, "alt_model_min_cm": lo, "alt_model_max_cm": hi}

    summary = {"observed": {"south": row(52.26, 0.0, None, None, -1.24, 5.04, 15.56, 3.04, 0.456),
                            "north": row(194.5, 1.0, None, None, None, 7.0, 40.0, 0.0, 0.25)},
               "rcp45": {"south": row(60.0, 0.0, 55.04, 65.96, 12.0, 6.0, 20.0, 2.0, 0.3),
                         "north": row(194.5, 0.5, 180.0, 194.5, None, 8.0, 45.0, 1.5, 0.35)},
               "rcp85": {"south": row(70.0, 0.0, 60.0, 80.0, 25.0, 6.5, 25.0, 4.0, 0.6),
                         "north": row(194.5, 1.0, 194.5, 194.5, None, 9.0, 50.0, 3.0, 0.7)}}
    lines = [
        "# Active-layer thickness and thaw",
        "",
        ("ALT in cm (annual-maximum profile, interpolated between the layer mid-depths 3.5, 17.5, 64 and 194.5 cm;"
         " 194.5 means 'at least'). Observed: ERA5-Land 2001-2010. Projected: ensemble mean over the architectures"
         " 2024-2100, [min-max of the members], trend per decade of the ensemble mean; 'bound x%': share of years"
         " at the 194.5 cm bound, where no trend is given (n/a)."),
        "",
        "| band | observed ALT | rcp45 ALT [spread] (trend/decade) | rcp85 ALT [spread] (trend/decade) |",
        "|---|---|---|---|",
        "| south | 52.3 (-1.2) | 60.0 [55.0-66.0] (+12.0) | 70.0 [60.0-80.0] (+25.0) |",
        ("| north | 194.5 (n/a; bound 100%) | 194.5 [180.0-194.5] (n/a; bound 50%)"
         " | 194.5 [194.5-194.5] (n/a; bound 100%) |"),
        "",
        ("Layer 1: months above 0 degC and thawing degree-months (TDM, degC month) per year; observed and ensemble"
         " mean:"),
        "",
        "| band | observed months > 0 | observed TDM | rcp45 months > 0 | rcp45 TDM | rcp85 months > 0 | rcp85 TDM |",
        "|---|---|---|---|---|---|---|",
        "| south | 5.0 | 15.6 | 6.0 | 20.0 | 6.5 | 25.0 |",
        "| north | 7.0 | 40.0 | 8.0 | 45.0 | 9.0 | 50.0 |",
        "",
        ("Trends per decade over each period: ALT (cm; n/a where years sit at the bound) / layer-1 TDM (degC month)"
         " / air temperature driving them (degC). A short period's trends follow the weather of its years as much"
         " as the forced warming:"),
        "",
        "| band | observed | rcp45 | rcp85 |",
        "|---|---|---|---|",
        "| south | -1.2 / +3.0 / +0.46 | +12.0 / +2.0 / +0.30 | +25.0 / +4.0 / +0.60 |",
        "| north | n/a / +0.0 / +0.25 | n/a / +1.5 / +0.35 | n/a / +3.0 / +0.70 |",
    ]
    assert markdown(summary, "2001-2010", "2024-2100") == "\n".join(lines) + "\n"


def test_decadal_markdown_in_full():
    d1, d2 = "2024-2029", "2030-2039"
    dec = {"rcp45": {"south": _band({d1: (60.4, 55.6, 65.4, 0.0, 1.0), d2: (70.0, 60.0, 194.5, 0.25, 0.75)},
                                    12.34, 3.21, 2.06, None, (2031, None)),
                     "north": _band({d1: (150.0, 120.0, 180.0, 0.0, 0.5), d2: (194.5, 194.5, 194.5, 1.0, 0.0)},
                                    None, None, 0.0, 0.0, (2026, 2035))},
           "rcp85": {"south": _band({d1: (61.0, 56.0, 66.0, 0.0, 1.0), d2: (80.0, 70.0, 90.0, 0.0, 0.5)},
                                    -0.44, 0.06, 5.0, 1.26, (2026, 2090)),
                     "north": _band({d1: (160.0, 130.0, 190.0, 0.0, 0.25), d2: (194.5, 194.5, 194.5, 1.0, 0.0)},
                                    None, None, 7.77, 2.22, (2026, 2030))}}
    lines = [
        "## Per decade, to the end of the projection",
        "",
        ("ALT per decade (cm): ensemble mean [min-max of the architectures' decadal means], 'b x%' where member-years"
         " sit at the 194.5 cm bound (the value is then a lower bound). Then the share of member-years with"
         " near-surface permafrost (the 194.5 cm layer never above 0 degC)."),
        "",
        "### rcp45: ALT",
        "",
        "| band | 2024-2029 | 2030-2039 |",
        "|---|---|---|",
        "| south | 60 [56-65] | 70 [60-194] b 25% |",
        "| north | 150 [120-180] | 194 [194-194] b 100% |",
        "",
        "### rcp45: near-surface permafrost (share of member-years)",
        "",
        "| band | 2024-2029 | 2030-2039 |",
        "|---|---|---|",
        "| south | 100% | 75% |",
        "| north | 50% | 0% |",
        "",
        "### rcp85: ALT",
        "",
        "| band | 2024-2029 | 2030-2039 |",
        "|---|---|---|",
        "| south | 61 [56-66] | 80 [70-90] |",
        "| north | 160 [130-190] | 194 [194-194] b 100% |",
        "",
        "### rcp85: near-surface permafrost (share of member-years)",
        "",
        "| band | 2024-2029 | 2030-2039 |",
        "|---|---|---|",
        "| south | 100% | 50% |",
        "| north | 25% | 0% |",
        "",
        ("Trends over the whole projection, ensemble mean, with the 95% interval (lag-1 autocorrelation taken into"
         " account): ALT (cm/decade; n/a where a year sits at the bound) and layer-1 thawing degree-months"
         " (degC month/decade); and the year the ensemble-mean ALT (5-year running mean) first reaches the 64 and"
         " 194.5 cm mid-depths ('2026' or earlier: already there; 'no': not by the end)."),
        "",
        ("| band | rcp45: ALT trend; TDM trend; reaches 64 / 194.5 cm"
         " | rcp85: ALT trend; TDM trend; reaches 64 / 194.5 cm |"),
        "|---|---|---|",
        "| south | +12.3 ± 3.2; +2.1; 2031 / no | -0.4 ± 0.1; +5.0 ± 1.3; 2026 / 2090 |",
        "| north | n/a; +0.0 ± 0.0; 2026 / 2035 | n/a; +7.8 ± 2.2; 2026 / 2030 |",
    ]
    assert decadal_markdown(dec, 2024) == "\n".join(lines) + "\n"
    # one scenario: one trend column
    one = decadal_markdown({"rcp85": dec["rcp85"]}, 2024).splitlines()
    assert one[-4:] == ["| band | rcp85: ALT trend; TDM trend; reaches 64 / 194.5 cm |", "|---|---|",
                        "| south | -0.4 ± 0.1; +5.0 ± 1.3; 2026 / 2090 |",
                        "| north | n/a; +7.8 ± 2.2; 2026 / 2030 |"]


def _projection():
    """Two scenarios (the same numbers), members a and b, two bands, 2030-2035, dims in an unusual order.

    south ALT: a 54..64, b 64..74 (2 cm a year); north ALT: a at the bound 194.5, b at 194.0 (not at it).
    Layer-1 TDM: a 0 2 0 2 0 2, b 0; layer-1 months: a 3 3 3 5 5 5, b 4; other layers 9 (never picked).
    Zero-curtain months: layer index k (a) or k + 1 (b), plus 2 from 2033. Near-surface permafrost: a in
    2030-2032, b in 2030-2031.
    """
    years = np.arange(2030, 2036)
    alt = np.empty((2, 2, 6))  # [model, band, year]
    alt[0, 0], alt[1, 0] = 54 + 2 * np.arange(6), 64 + 2 * np.arange(6)
    alt[0, 1], alt[1, 1] = 194.5, 194.0
    tdm = np.full((2, 2, 4, 6), 9.0)  # [model, band, layer, year]
    tdm[0, :, 0], tdm[1, :, 0] = [0.0, 2.0, 0.0, 2.0, 0.0, 2.0], 0.0
    mon = np.full((2, 2, 4, 6), 9.0)
    mon[0, :, 0], mon[1, :, 0] = [3.0, 3.0, 3.0, 5.0, 5.0, 5.0], 4.0
    late = np.where(years >= 2033, 2.0, 0.0)
    zc = np.arange(4.0)[None, None, :, None] + np.array([0.0, 1.0])[:, None, None, None] + late
    zc = np.broadcast_to(zc, (2, 2, 4, 6))
    pf = np.zeros((2, 2, 6), dtype=bool)
    pf[0, :, :3], pf[1, :, :2] = True, True
    per_year, per_layer = ("scenario", "model", "band", "year"), ("scenario", "model", "band", "layer", "year")
    ds = xr.Dataset({"alt_cm": (per_year, np.stack([alt, alt])),
                     "thawing_degree_months": (per_layer, np.stack([tdm, tdm])),
                     "months_above_zero": (per_layer, np.stack([mon, mon])),
                     "zero_curtain_months": (per_layer, np.stack([zc, zc])),
                     "near_surface_permafrost": (per_year, np.stack([pf, pf]))},
                    coords={"scenario": ["rcp45", "rcp85"], "model": ["a", "b"], "band": [0, 1],
                            "layer": list(TARGETS), "year": years})
    return ds.transpose("year", "layer", "band", "model", "scenario")


def test_decadal_summary_per_decade_fields_with_member_spread():
    out = decadal_summary(_projection(), ["south", "north"], [(2030, 2032), (2033, 2035)])
    assert list(out) == ["rcp45", "rcp85"] and list(out["rcp45"]) == ["south", "north"]
    south = out["rcp85"]["south"]
    assert list(south["decades"]) == ["2030-2032", "2033-2035"]
    early, late = (dict(south["decades"][d]) for d in ("2030-2032", "2033-2035"))
    # per layer k: (k + k + 1) / 2 = k + 0.5, and 2 more from 2033
    assert early.pop("zero_curtain_months") == pytest.approx({"t_soil1": 0.5, "t_soil2": 1.5, "t_soil3": 2.5,
                                                              "t_soil4": 3.5})
    assert late.pop("zero_curtain_months") == pytest.approx({"t_soil1": 2.5, "t_soil2": 3.5, "t_soil3": 4.5,
                                                             "t_soil4": 5.5})
    # ALT a 54 56 58 (56) and b 64 66 68 (66); months a 3, b 4; TDM a 0 2 0 (2/3), b 0; permafrost 5 of 6
    assert early == pytest.approx({
        "alt_cm": 61.0, "alt_min_cm": 56.0, "alt_max_cm": 66.0, "alt_share_at_bound": 0.0,
        "months_above_zero_layer1": 3.5, "months_above_zero_layer1_min": 3.0, "months_above_zero_layer1_max": 4.0,
        "thawing_degree_months_layer1": 1 / 3, "thawing_degree_months_layer1_min": 0.0,
        "thawing_degree_months_layer1_max": 2 / 3, "near_surface_permafrost_share": 5 / 6}, rel=1e-12)
    # ALT a 60 62 64 (62) and b 70 72 74 (72); months a 5, b 4; TDM a 2 0 2 (4/3), b 0; no permafrost
    assert late == pytest.approx({
        "alt_cm": 67.0, "alt_min_cm": 62.0, "alt_max_cm": 72.0, "alt_share_at_bound": 0.0,
        "months_above_zero_layer1": 4.5, "months_above_zero_layer1_min": 4.0, "months_above_zero_layer1_max": 5.0,
        "thawing_degree_months_layer1": 2 / 3, "thawing_degree_months_layer1_min": 0.0,
        "thawing_degree_months_layer1_max": 4 / 3, "near_surface_permafrost_share": 0.0}, rel=1e-12)


def test_decadal_summary_trends_intervals_and_crossings():
    out = decadal_summary(_projection(), ["south", "north"], [(2030, 2032), (2033, 2035)])["rcp45"]
    south, north = out["south"], out["north"]
    # ensemble-mean ALT 59 61 .. 69: exactly 20 cm per decade, no residual, a zero-width interval
    assert south["alt_trend_cm_per_decade"] == pytest.approx(20.0) and south["alt_trend_cm_ci95"] == 0.0
    # ensemble-mean TDM 0 1 0 1 0 1: slope 3/35 a year; residuals (-20 44 -32 32 -44 20) / 70 alternate (n_eff 6),
    # SSR 48/35, se = sqrt(48/35 / 4 / 17.5); t(0.975, 4) = 2.7764
    assert south["tdm_layer1_trend_per_decade"] == pytest.approx(30 / 35)
    assert south["tdm_layer1_trend_ci95"] == pytest.approx(2.7764451 * np.sqrt(48 / 2450) * 10, rel=1e-6)
    # 5-year means of 59..69 are 63 (2032) and 65 (2033): 64 cm first in 2033
    assert south["alt_first_reaches_cm"] == {"3.5": 2032, "17.5": 2032, "64": 2033, "194.5": None}
    # north: member a sits at 194.5 cm (b at 194.0 does not): half the member-years, no ALT trend
    assert [v["alt_share_at_bound"] for v in north["decades"].values()] == [0.5, 0.5]
    assert north["decades"]["2033-2035"]["alt_cm"] == pytest.approx(194.25)
    assert north["alt_trend_cm_per_decade"] is None and north["alt_trend_cm_ci95"] is None
    assert north["tdm_layer1_trend_per_decade"] == pytest.approx(30 / 35)
    assert north["alt_first_reaches_cm"] == {"3.5": 2032, "17.5": 2032, "64": 2032, "194.5": None}
