"""Snow: the readers, the synthetic snow pack, its bias correction, the missing-snow errors and the ablation."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import layout
from helpers import canonical_cube, rewrite, write_cds
from thawcast.config import parse_config
from thawcast.errors import ConfigError, DataError
from thawcast.ingest.cmip5 import open_cmip5
from thawcast.ingest.era5land import open_era5land
from thawcast.ingest.synthetic.soil import GLACIER_SWE_MM, SoilParams, simulate, snow_pack
from thawcast.ingest.synthetic.world import gcm_snow
from thawcast.learn.ablation import ablation_table, decide, paired, season_layer_rmse
from thawcast.prep import bias
from thawcast.prep.features import require


# ------------------------------------------------------------------------------------------------ readers
def test_era5_snow_is_read_and_the_depth_derived(tmp_path):
    cube = canonical_cube(years=(2001,), snow=True)
    write_cds(cube, tmp_path)
    raw = xr.open_dataset(next(tmp_path.iterdir()))
    assert raw["sd"].attrs["units"] == "m of water equivalent" and raw["rsn"].attrs["units"] == "kg m**-3"
    ds = open_era5land(tmp_path).load()
    assert "snow_density" not in ds  # used for the depth, then dropped
    np.testing.assert_allclose(ds["swe"].values, cube["swe"].values, rtol=1e-5, atol=1e-3)
    # depth (m) = swe (mm = kg m-2) / density (kg m-3): 250 kg m-3 here
    np.testing.assert_allclose(ds["snow_depth"].values, cube["swe"].values / 250.0, rtol=1e-5, atol=1e-6)
    assert ds["swe"].attrs["units"] == "mm" and ds["snow_depth"].attrs["units"] == "m"


def test_era5_without_snow_opens_without_snow_features(tmp_path):
    write_cds(canonical_cube(years=(2001,)), tmp_path)
    ds = open_era5land(tmp_path)
    assert "swe" not in ds and "snow_depth" not in ds and "t_air" in ds


def test_era5_snow_in_mm_is_refused(tmp_path):
    (path,) = write_cds(canonical_cube(years=(2001,), snow=True), tmp_path)

    def in_mm(ds):
        ds["sd"] = (ds["sd"] * 1000).assign_attrs(units="mm")
        return ds

    rewrite(path, in_mm)
    with pytest.raises(DataError, match="'sd' has units 'mm'"):
        open_era5land(tmp_path)


def test_era5_snow_in_some_years_only_is_a_gap(tmp_path):
    write_cds(canonical_cube(years=(2001,), snow=True), tmp_path)
    write_cds(canonical_cube(years=(2002,)), tmp_path)
    with pytest.raises(DataError, match="'swe' covers 2001-01..2001-12 but 't_air' covers 2001-01..2002-12"):
        open_era5land(tmp_path)


def test_cmip5_experiment_without_snow_opens_without_it(tmp_path, tiny_cfg):
    from thawcast.ingest.synthetic.world import write_cmip5

    write_cmip5(tiny_cfg, tmp_path, np.random.default_rng(3), years_per_file=30)
    full = open_cmip5(tmp_path, "rcp45")
    assert {"swe", "snow_depth"} <= set(full.data_vars)
    assert next(tmp_path.glob("snw_LImon_*rcp45*")).exists()
    for f in tmp_path.glob("sn[wd]_LImon_*rcp45*"):
        f.unlink()
    lean = open_cmip5(tmp_path, "rcp45")
    assert "swe" not in lean and "snow_depth" not in lean and "t_air" in lean
    with pytest.raises(DataError, match="tas"):  # a required variable stays required
        for f in tmp_path.glob("tas_Amon_*rcp45*"):
            f.unlink()
        open_cmip5(tmp_path, "rcp45")


def test_require_names_the_file_variables_and_the_switch():
    have = {"t_air": 1}
    require(("t_air", "z"), have, "era5", "x")  # nothing optional requested: fine
    with pytest.raises(DataError, match=r"\['rsn', 'sd'\].*remove \['swe', 'snow_depth'\] from `features`"):
        require(("t_air", "swe", "snow_depth"), have, "era5", "data/raw/era5land")
    with pytest.raises(DataError, match=r"snw \(LImon\)"):
        require(("swe",), have, "cmip5", "rcp60")


# ---------------------------------------------------------------------------------------- synthetic snow
def test_snow_pack_known_answer():
    """10 days of 2 mm/day snowfall at -10 C, then 10 days at +5 C (3.5 mm/K/day melts 17.5 mm/day)."""
    snowfall = np.r_[np.full(10, 2.0), np.zeros(10)][:, None]
    t_air = np.r_[np.full(10, -10.0), np.full(10, 5.0)][:, None]
    out, end = snow_pack(snowfall, t_air, 1.0, np.arange(20))
    np.testing.assert_allclose(out[:10, 0], 2.0 * np.arange(1, 11))
    np.testing.assert_allclose(out[10, 0], 20.0 - 17.5)
    assert out[11:, 0].max() == 0.0 and end[0] == 0.0


def test_snow_that_outlasts_the_summers_stops_at_a_glaciers_10_m_of_water_equivalent():
    """ERA5-Land keeps a glacier's snow at 10 m w.e.: 30 mm/day at -5 C for 400 days reaches it on day 334, and
    the soil column's pack stops there too."""
    snowfall, t_air = np.full((400, 1), 30.0), np.full((400, 1), -5.0)
    out, end = snow_pack(snowfall, t_air, 1.0, np.arange(400))
    assert GLACIER_SWE_MM == 10000.0
    np.testing.assert_allclose(out[:333, 0], 30.0 * np.arange(1, 334))
    assert out[333:, 0].max() == GLACIER_SWE_MM and end[0] == GLACIER_SWE_MM
    run = simulate(t_air, snowfall, t_air, 1.0, 0.3, SoilParams())
    assert run.state.swe[0] == GLACIER_SWE_MM


def test_snow_pack_is_the_soil_models_snow():
    """The GCM's snow pack and the soil column's are one piece of physics: the same forcing, the same snow."""
    rng = np.random.default_rng(0)
    steps, cols = 400, 3
    t_air = -8 + 12 * np.sin(np.arange(steps)[:, None] / 30.0) + rng.normal(0, 2, (steps, cols))
    snowfall = rng.uniform(0, 3, (steps, cols))
    params = SoilParams()
    run = simulate(t_air, snowfall, t_air, 2.0, 0.3, params)
    swe, end = snow_pack(snowfall, t_air, 2.0, np.arange(steps), params)
    np.testing.assert_allclose(run.snow_depth * params.snow_density, swe, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(run.state.swe, end)


def test_gcm_snow_lies_in_winter_and_not_where_it_is_warm():
    times = pd.date_range("2006-01-01", "2010-12-01", freq="MS")
    month = times.month.to_numpy()
    cold = -5 - 15 * np.cos(2 * np.pi * (month - 1) / 12)  # -20 C in January, +10 in July
    t_air = np.stack([cold, np.full(len(times), 10.0)], 1)[:, None, :]  # [time, 1, 2]
    p_snow = np.full_like(t_air, 1.0)
    swe = gcm_snow(t_air, p_snow, times, 2.0)
    assert swe.shape == t_air.shape
    assert swe[:, 0, 1].max() < 1.0  # always +10 C: what falls melts
    march, august = swe[month == 3, 0, 0], swe[month == 8, 0, 0]
    assert march.min() > 100 and august.max() == 0.0


def test_synthetic_era5_snow(tiny_world):
    ds = open_era5land(tiny_world / "raw" / "era5land").load()
    assert {"swe", "snow_depth"} <= set(ds.data_vars) and "snow_density" not in ds
    assert "synthetic" in " ".join(f"{k}={v}" for k, v in ds.attrs.items()).lower()
    clim = ds["swe"].sel(lat=slice(68, None)).groupby("time.month").mean()
    assert float(clim.sel(month=3).mean()) > 40
    # snow-free in August but on a glacier's crest (snow that outlasts the summers)
    august = clim.sel(month=8).values[np.isfinite(clim.sel(month=8).values)]
    assert (august < 1).mean() > 0.95
    np.testing.assert_allclose(ds["snow_depth"].values, ds["swe"].values / SoilParams().snow_density,
                               rtol=1e-5, equal_nan=True)


# --------------------------------------------------------------------------------------- bias correction
def test_snow_correction_stays_finite_and_non_negative_at_melt_out():
    """A month where the observed snow is gone in some years and the model's in none (melt-out timing): ratios
    of near-zero quantiles ran to infinity under multiplicative QDM; the additive correction stays bounded."""
    rng = np.random.default_rng(1)
    times = pd.date_range("2001-01-01", "2018-12-01", freq="MS")
    june = times.month == 6
    ref = np.where(june, np.where(rng.random(len(times)) < 0.5, 0.0, rng.uniform(0, 30, len(times))),
                   rng.uniform(50, 150, len(times)))
    hist = np.where(june, 0.0, rng.uniform(60, 160, len(times)))
    sim = np.where(june, rng.uniform(0, 5, len(times)), rng.uniform(60, 160, len(times)))

    def da(v):
        return xr.DataArray(v, dims="time", coords={"time": times})

    out = bias.adjust(da(ref), da(hist), da(sim), variable="swe", method="qdm", nquantiles=10, seed=0)
    assert np.isfinite(out.values).all() and out.values.min() >= 0.0
    assert float(out.where(da(june), drop=True).max()) < 100  # bounded by ref's June values plus the model's
    assert "additive" in out.attrs["bias_correction"]


def test_scenarios_carry_corrected_snow(tiny_pipeline, tiny_cfg):
    paths = layout(tiny_pipeline)
    for rcp in tiny_cfg.rcp_experiments:
        with xr.open_dataset(paths.scenario(rcp)) as ds:
            assert {"swe", "snow_depth"} <= set(ds.data_vars)
            assert np.isfinite(ds["swe"].values).all() and ds["swe"].values.min() >= 0


# ---------------------------------------------------------------------------------- missing-snow errors
def _world_copy(tiny_world, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(tiny_world / "raw", root / "raw")
    return root


def test_requested_snow_absent_from_era5_is_one_clear_error(tiny_world, tiny_cfg, tmp_path):
    from thawcast.stages import bands

    root = _world_copy(tiny_world, tmp_path)
    for f in (root / "raw" / "era5land").glob("*.nc"):
        rewrite(f, lambda ds: ds.drop_vars(["sd", "rsn"]))
    with pytest.raises(DataError, match=r"\['rsn', 'sd'\]"):
        bands.run(tiny_cfg, layout(root))  # tiny_cfg uses every feature, snow included
    lean = parse_config({**tiny_cfg.model_dump(mode="json", exclude={"features"}),
                         "features": ["t_air", "p_snow", "month_sin", "month_cos", "z"]})
    bands.run(lean, layout(root))  # snow not asked for: runs, without it
    with xr.open_dataset(layout(root).era5_bands) as ds:
        assert "swe" not in ds and "t_air" in ds


def test_snow_missing_for_one_experiment(tiny_world, tiny_cfg, tmp_path):
    from thawcast.stages import bands

    root = _world_copy(tiny_world, tmp_path)
    for f in (root / "raw" / "cmip5").glob("snw_LImon_*rcp60*"):
        f.unlink()
    with pytest.raises(DataError, match=r"rcp60.*snw \(LImon\)"):
        bands.run(tiny_cfg, layout(root))
    lean = parse_config({**tiny_cfg.model_dump(mode="json", exclude={"features"}),
                         "features": ["t_air", "p_snow", "month_sin", "month_cos", "z"]})
    bands.run(lean, layout(root))  # not asked for: left out of every experiment, not of one
    for exp in lean.cmip5.experiments:
        with xr.open_dataset(layout(root).cmip5_bands(exp)) as ds:
            assert "swe" not in ds and "snow_depth" in ds  # snd is complete, snw is not


# ----------------------------------------------------------------------------------------------- ablation
def test_ablation_variants(tiny_cfg):
    cfg = parse_config({**tiny_cfg.model_dump(mode="json", exclude={"features", "ablation"}),
                        "features": ["t_air", "w1", "month_sin", "swe", "clay_pct", "z"],
                        "ablation": {"features": ["swe", "snow_depth"]}})
    v = cfg.ablation_variants()
    assert v["without"] == ("t_air", "w1", "month_sin", "clay_pct", "z")
    assert v["with"] == ("t_air", "w1", "swe", "snow_depth", "month_sin", "clay_pct", "z")


@pytest.mark.parametrize("bad", [[], ["z"], ["nope"], ["swe", "swe"]])
def test_ablation_features_are_checked(tiny_cfg, bad):
    with pytest.raises(ConfigError, match="ablation"):
        parse_config({**tiny_cfg.model_dump(mode="json", exclude={"ablation"}), "ablation": {"features": bad}})


def test_season_layer_rmse_known_answer():
    months = np.array([1, 7, 7, 4])
    obs = np.zeros((4, 2))
    pred = np.array([[1.0, 0.0], [3.0, 0.0], [4.0, 2.0], [0.0, 0.0]])
    out = season_layer_rmse(obs, pred, months)
    assert out["DJF"] == [1.0, 0.0] and out["MAM"] == [0.0, 0.0]
    assert out["JJA"] == pytest.approx([np.sqrt(12.5), np.sqrt(2.0)])
    assert np.isnan(out["SON"]).all()


def test_paired_and_decide():
    d = paired([-0.10, -0.12, -0.08, -0.11])
    assert d["mean"] == pytest.approx(-0.1025) and d["n_pairs"] == 4
    assert d["standard_error"] == pytest.approx(np.std([-0.10, -0.12, -0.08, -0.11], ddof=1) / 2)
    assert decide(d) == "add"
    assert decide(paired([-0.3, 0.25, -0.1, 0.1])) == "leave out"  # within two standard errors
    assert decide(paired([0.1, 0.12, 0.11])) == "leave out"  # clearly worse


def test_ablation_decides_on_validation_never_on_test():
    """Validation says the features help, the test years say the opposite: the decision follows validation."""
    seeds, layers = (1, 2, 3), ("t_soil1",)
    season = {s: [1.0] for s in ("DJF", "MAM", "JJA", "SON")}
    scores = {}
    for a in ("gru", "tcn"):
        for i, s in enumerate(seeds):
            scores["without", a, s] = {"val": 1.0 + 0.01 * i, "test": 1.0, "val_season": season}
            scores["with", a, s] = {"val": 0.9 + 0.01 * i, "test": 1.5, "val_season": season}
    table = ablation_table(scores, ("swe",), seeds, layers, in_default=False)
    assert table["decision"] == "add"
    assert table["difference"]["mean"] == pytest.approx(-0.1)
    assert table["test_difference"]["mean"] == pytest.approx(0.5)
    assert table["by_architecture"]["gru"]["difference"]["n_pairs"] == 3


def test_snow_expectations_apply_where_snow_is(tiny_world):
    """Great Expectations checks the snow columns a table has, and skips them when the table has none."""
    from conftest import SUITES
    from thawcast.quality.suites import band_table_frame
    from thawcast.quality.validation import run_suite

    with xr.open_dataset(layout(tiny_world).era5_bands) as f:
        ds = f.load()
    params = {"n_rows": ds.sizes["band"] * ds.sizes["time"], "max_band": ds.sizes["band"] - 1}
    full = run_suite(band_table_frame(ds), "bands_era5land", SUITES, params)
    lean = run_suite(band_table_frame(ds.drop_vars(["swe", "snow_depth"])), "bands_era5land", SUITES, params)
    assert full["success"] and lean["success"] and lean["expectations"] == full["expectations"] - 6
    bad = ds.copy()
    bad["swe"] = bad["swe"] - 1000.0
    out = run_suite(band_table_frame(bad), "bands_era5land", SUITES, params)
    assert not out["success"] and all("swe" in f for f in out["failures"])
