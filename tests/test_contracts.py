"""Great Expectations suites: in step with the variable table, and failing on bad data."""

import json

import numpy as np
import pytest
import xarray as xr

from conftest import SUITES
from thawcast.errors import ValidationFailed
from thawcast.quality.suites import band_table_frame, build_suites
from thawcast.quality.validation import run_suite, validate_stage


def test_committed_suites_match_the_variable_table():
    for name, suite in build_suites().items():
        assert json.loads((SUITES / f"{name}.json").read_text()) == suite, "regenerate with `thawcast expectations`"


@pytest.fixture(scope="module")
def era_bands(tiny_world):
    return xr.load_dataset(tiny_world / "bands" / "era5land_bands.nc")


def _check(ds, n_months=36):
    frame = band_table_frame(ds)
    return run_suite(frame, "bands_era5land", SUITES,
                     parameters={"n_rows": 6 * n_months, "max_band": 5}, index_columns=["band", "time"])


def test_clean_band_table_passes(era_bands):
    assert _check(era_bands)["success"]


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda ds: ds.assign(t_soil2=ds["t_soil2"].where(ds["time"] != ds["time"][5])), "t_soil2"),
        (lambda ds: ds.assign(t_air=ds["t_air"] + 273.15), "column=t_air"),  # Kelvin left unconverted
        (lambda ds: ds.assign(p_total=ds["p_total"].where(ds["band"] != 2, -9999.0)), "p_total"),
        (lambda ds: ds.assign(r_solar=ds["r_solar"].where(ds["band"] != 1, 1e20)), "r_solar"),
        (lambda ds: ds.drop_isel(time=[7]), "dt_months"),  # a missing month
        (lambda ds: ds.assign(w1=ds["w1"].assign_attrs(units="%")), "w1__units"),
    ],
)
def test_corrupted_band_table_fails(era_bands, corrupt, message):
    bad = corrupt(era_bands.copy(deep=True))
    section = _check(bad, n_months=bad.sizes["time"])
    assert not section["success"]
    assert any(message in f for f in section["failures"]), section["failures"]


def test_failed_stage_writes_a_readable_report(era_bands, tmp_path):
    bad = era_bands.assign(t_soil1=era_bands["t_soil1"] * np.nan)
    with pytest.raises(ValidationFailed, match="t_soil1") as info:
        validate_stage("bands", [_check(bad)], tmp_path)
    report = json.loads((tmp_path / "bands.json").read_text())
    assert report["success"] is False and report["failures"]
    assert info.value.report == tmp_path / "bands.json"


def test_static_suite_rejects_lithology_that_does_not_sum_to_one(tiny_world):
    import pandas as pd

    table = pd.read_csv(tiny_world / "static" / "static_bands.csv")
    lith = [c for c in table.columns if c.startswith("lithology_")]
    table["lithology_total"] = table[lith].sum(axis=1)
    table["texture_total"] = table[["clay_pct", "sand_pct", "silt_pct"]].sum(axis=1)
    params = {"n_rows": 6, "max_band": 5}
    assert run_suite(table, "static_bands", SUITES, parameters=params)["success"]
    table.loc[3, "lithology_total"] = 0.7
    section = run_suite(table, "static_bands", SUITES, parameters=params)
    assert not section["success"] and any("lithology_total" in f for f in section["failures"])
