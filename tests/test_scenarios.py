"""The scenarios stage: corrected RCP inputs, provenance, diagnostics, leakage and bad input."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import TINY, layout
from thawcast.config import parse_config
from thawcast.errors import ConfigError, DataError
from thawcast.prep.scenarios import correct_scenarios
from thawcast.stages import scenarios as stage
from thawcast.variables import ERA5_FEATURES, VARIABLES


def _bands(root, cfg):
    era = xr.load_dataset(root / "bands" / "era5land_bands.nc")
    cmip = {e: xr.load_dataset(root / "bands" / f"cmip5_{e}.nc") for e in cfg.cmip5.experiments}
    return era, cmip


def test_outputs_provenance_and_ranges(tiny_pipeline, tiny_cfg):
    out = tiny_pipeline / "scenarios"
    for rcp in tiny_cfg.rcp_experiments:
        ds = xr.load_dataset(out / f"{rcp}.nc")
        assert set(ERA5_FEATURES) <= set(ds.data_vars)
        t = pd.DatetimeIndex(ds["time"].values)
        assert t[0] == pd.Timestamp("2001-01-01") and t[-1] == pd.Timestamp("2030-12-01")
        assert len(t) == 12 * 30  # every month present
        for v in ERA5_FEATURES:
            lo, hi = VARIABLES[v].valid_range
            assert float(ds[v].min()) >= lo and float(ds[v].max()) <= hi and not ds[v].isnull().any()
        a = ds.attrs
        assert a["bias_correction_method"] == "qdm" and a["calibration_period"] == "2001-2002"
        assert a["xsdba_version"] and a["thawcast_synthetic"] == "true" and a["experiment_id"] == rcp
    ratios = xr.load_dataset(out / "moisture_split.nc")["moisture_ratio"]
    assert ratios.sizes == {"layer": 4, "band": 6, "month": 12}


def test_corrected_calibration_matches_era5(tiny_world, tiny_cfg):
    """Over the calibration years the corrected rcp45 (= the calibration model) matches ERA5-Land's monthly means."""
    era, cmip = _bands(tiny_world, tiny_cfg)
    corrected = correct_scenarios(tiny_cfg, era, cmip).corrected
    cal = slice("2001", "2002")
    for v in ("t_air", "r_thermal", "p_total"):
        raw_bias = float(abs(cmip["historical"][v].sel(time=cal) - era[v].sel(time=cal)).mean())
        got = corrected["qdm"][v].sel(scenario="rcp45", time=cal)
        new_bias = float(abs(got.groupby("time.month").mean() - era[v].sel(time=cal).groupby("time.month").mean())
                         .mean())
        assert new_bias < 0.25 * raw_bias, v


def test_spread_metrics(tiny_pipeline):
    m = json.loads((tiny_pipeline / "metrics" / "scenario_spread.json").read_text())
    assert m["pair"] == "rcp85 minus rcp26"
    assert set(m["spread"]) == set(ERA5_FEATURES)
    t = m["spread"]["t_air"]
    # The synthetic RCPs share one weather: RCP8.5 minus RCP2.6 is their forced warming difference over the
    # projection years (annual means of climate.warming; the calibration years are the same for both).
    from thawcast.ingest.synthetic.climate import warming

    dec = np.concatenate([y + (np.arange(12) + 0.5) / 12 for y in range(2024, 2031)])
    forced = float(np.mean(warming(dec, 0.5, "rcp85") - warming(dec, 0.5, "rcp26")))
    assert t["raw"] == pytest.approx(forced, abs=0.02) and forced > 0.03
    assert t["qdm"] == pytest.approx(t["raw"], rel=0.2)


def test_bias_correction_never_sees_test_years(tiny_world, tiny_cfg):
    era, cmip = _bands(tiny_world, tiny_cfg)
    clean = correct_scenarios(tiny_cfg, era, cmip)
    ratios = clean.ratios
    poisoned = era.copy(deep=True)
    test_years = poisoned["time"].dt.year >= tiny_cfg.windows.test.start_year
    for v in poisoned.data_vars:
        poisoned[v] = poisoned[v].where(~test_years, poisoned[v] * 3 + 50)
    dirty = correct_scenarios(tiny_cfg, poisoned, cmip)
    for m in clean.corrected:
        xr.testing.assert_allclose(clean.corrected[m], dirty.corrected[m])
    xr.testing.assert_allclose(ratios, dirty.ratios)
    # and the check has teeth: a changed calibration month changes the correction
    early = era.copy(deep=True)
    early["t_air"] = era["t_air"].where(era["time"] != era["time"][2], era["t_air"] + 5.0)
    moved = correct_scenarios(tiny_cfg, early, cmip).corrected
    assert not np.allclose(moved["qdm"]["t_air"], clean.corrected["qdm"]["t_air"])


def test_calibration_overlapping_test_years_is_refused():
    with pytest.raises(ConfigError, match="overlaps the test years"):
        parse_config({**TINY, "bias_correction": {"calibration": {"start_year": 2001, "end_year": 2003}}})
    with pytest.raises(ConfigError, match="splice_experiment"):
        parse_config({**TINY, "bias_correction": {**TINY["bias_correction"], "splice_experiment": "rcp99"}})


@pytest.fixture()
def bands_copy(tiny_world, tmp_path):
    folder = tmp_path / "bands"
    shutil.copytree(tiny_world / "bands", folder)
    return folder


def _edit(path, fn):
    ds = fn(xr.load_dataset(path))
    path.unlink()
    ds.to_netcdf(path)


def _run_fails(cfg, bands, tmp_path, match):
    out = tmp_path / "scenarios"
    out.mkdir()
    (out / "keep.txt").write_text("previous output")
    with pytest.raises(DataError, match=match):
        stage.run(cfg, layout(tmp_path, bands=bands))
    assert (out / "keep.txt").read_text() == "previous output"
    assert not (tmp_path / "metrics").exists()


def test_scenario_missing_a_variable(bands_copy, tiny_cfg, tmp_path):
    _edit(bands_copy / "cmip5_rcp60.nc", lambda ds: ds.drop_vars("r_solar"))
    _run_fails(tiny_cfg, bands_copy, tmp_path, r"cmip5_rcp60.nc.*missing variable\(s\) \['r_solar'\]")


def test_scenario_missing_months(bands_copy, tiny_cfg, tmp_path):
    _edit(bands_copy / "cmip5_rcp85.nc", lambda ds: ds.drop_sel(time=[np.datetime64("2020-03-01")]))
    _run_fails(tiny_cfg, bands_copy, tmp_path, r"missing 1 month\(s\): 2020-03")


def test_calendars_that_do_not_align(bands_copy, tiny_cfg, tmp_path):
    def mid_month(ds):
        return ds.assign_coords(time=ds["time"].values + np.timedelta64(14, "D"))

    _edit(bands_copy / "cmip5_historical.nc", mid_month)
    _run_fails(tiny_cfg, bands_copy, tmp_path, "not month starts")


def test_calibration_outside_the_data(bands_copy, tiny_cfg, tmp_path):
    _edit(bands_copy / "era5land_bands.nc", lambda ds: ds.sel(time=slice("2002", None)))
    _run_fails(tiny_cfg, bands_copy, tmp_path, "requested years 2001-2002 are outside the data")


def test_scenario_ending_before_the_projection(bands_copy, tmp_path):
    cfg = parse_config({**TINY, "projection": {"start_year": 2024, "end_year": 2030}})
    _edit(bands_copy / "cmip5_rcp26.nc", lambda ds: ds.sel(time=slice(None, "2027-12")))
    _run_fails(cfg, bands_copy, tmp_path, "before the projection end 2030-12")
