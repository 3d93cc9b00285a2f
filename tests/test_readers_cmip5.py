import numpy as np
import pandas as pd
import pytest
import xarray as xr

from helpers import rewrite
from thawcast.errors import DataError
from thawcast.ingest.cmip5 import find_cmip5_files, open_cmip5
from thawcast.ingest.synthetic.world import write_cmip5


@pytest.fixture(scope="module")
def cmip_dir(tmp_path_factory, tiny_cfg):
    folder = tmp_path_factory.mktemp("cmip")
    write_cmip5(tiny_cfg, folder, np.random.default_rng(1), years_per_file=10)
    return folder


def _copy(cmip_dir, tmp_path):
    import shutil

    dst = tmp_path / "cmip"
    shutil.copytree(cmip_dir, dst)
    return dst


def test_drs_names_and_chunks(cmip_dir):
    files = find_cmip5_files(cmip_dir, "IPSL-CM5A-MR", "rcp45", "r1i1p1")
    assert [p.name for p in files["tas"]] == [
        "tas_Amon_IPSL-CM5A-MR_rcp45_r1i1p1_200601-201512.nc",
        "tas_Amon_IPSL-CM5A-MR_rcp45_r1i1p1_201601-202512.nc",
        "tas_Amon_IPSL-CM5A-MR_rcp45_r1i1p1_202601-203012.nc",
    ]
    assert files["mrsos"][0].name.startswith("mrsos_Lmon_")


def test_open_concatenates_chunks_in_canonical_units(cmip_dir):
    ds = open_cmip5(cmip_dir, "rcp85")
    t = pd.DatetimeIndex(ds["time"].values)
    assert t[0] == pd.Timestamp("2006-01-01") and t[-1] == pd.Timestamp("2030-12-01") and len(t) == 300
    assert np.all(np.diff(ds["lon"].values) > 0) and ds["lon"].values.max() <= 180
    raw = xr.open_dataset(find_cmip5_files(cmip_dir, "IPSL-CM5A-MR", "rcp85", "r1i1p1")["hfls"][0])
    assert raw["time"].encoding["calendar"] == "365_day"
    # hfls is positive upward in CMIP; canonical latent heat is positive downward.
    first = float(ds["q_latent"].isel(time=slice(0, 12)).mean())
    assert first == pytest.approx(-float(raw["hfls"].isel(time=slice(0, 12)).mean()), rel=1e-4)
    assert ds["t_air"].attrs["units"] == "degC" and float(ds["t_air"].mean()) < 0
    assert ds["p_total"].attrs["units"] == "mm day-1" and 0.2 < float(ds["p_total"].mean()) < 10


def test_unknown_scenario(cmip_dir):
    with pytest.raises(DataError, match="unknown scenario/experiment 'rcp99'"):
        open_cmip5(cmip_dir, "rcp99")


def test_missing_variable_files(cmip_dir, tmp_path):
    d = _copy(cmip_dir, tmp_path)
    for p in d.glob("prsn_*rcp26*"):
        p.unlink()
    with pytest.raises(DataError, match=r"no files for variable\(s\) \['prsn'\]"):
        open_cmip5(d, "rcp26")


def test_files_named_otherwise_are_listed_where_none_were_found(cmip_dir, tmp_path):
    """A renamed variable (TAS_...), experiment (RCP45) or member (r2i1p1): the error lists what the folder
    holds, so the user sees the name they have beside the one looked for."""
    d = _copy(cmip_dir, tmp_path)
    for p in d.glob("tas_*rcp26*"):
        p.rename(p.with_name("TAS" + p.name[3:]))
    with pytest.raises(DataError, match=r"no files for variable\(s\) \['tas'\] of IPSL-CM5A-MR rcp26 r1i1p1 .*"
                                        r"the folder holds .*IPSL-CM5A-MR rcp26 r1i1p1 \(TAS, hfls, "):
        open_cmip5(d, "rcp26")
    for p in d.glob("*_rcp45_*"):
        p.rename(p.with_name(p.name.replace("_rcp45_", "_RCP45_")))
    with pytest.raises(DataError, match=r"no files of IPSL-CM5A-MR rcp45 r1i1p1; the folder holds .*"
                                        r"IPSL-CM5A-MR RCP45 r1i1p1 \(hfls, "):
        open_cmip5(d, "rcp45")
    with pytest.raises(DataError, match=r"no files of IPSL-CM5A-MR rcp26 r2i1p1; .*IPSL-CM5A-MR rcp26 r1i1p1 "):
        open_cmip5(d, "rcp26", ensemble="r2i1p1")


def test_gap_between_chunks(cmip_dir, tmp_path):
    d = _copy(cmip_dir, tmp_path)
    (d / "tas_Amon_IPSL-CM5A-MR_rcp26_r1i1p1_201601-202512.nc").unlink()
    with pytest.raises(DataError, match=r"missing 120 month\(s\): 2016-01"):
        open_cmip5(d, "rcp26")


def test_overlapping_chunks(cmip_dir, tmp_path):
    d = _copy(cmip_dir, tmp_path)
    # an extra chunk that repeats 2015, already inside the first chunk's span
    first = xr.open_dataset(d / "tas_Amon_IPSL-CM5A-MR_rcp26_r1i1p1_200601-201512.nc", decode_times=False)
    first.isel(time=slice(108, 120)).load().to_netcdf(d / "tas_Amon_IPSL-CM5A-MR_rcp26_r1i1p1_201501-201512.nc")
    with pytest.raises(DataError, match="overlaps|duplicated"):
        open_cmip5(d, "rcp26")


def _set_attr(var, key, value):
    def change(ds):
        ds[var].attrs[key] = value
        return ds

    return change


def test_file_name_and_time_axis_disagree(cmip_dir, tmp_path):
    d = _copy(cmip_dir, tmp_path)
    rewrite(d / "tas_Amon_IPSL-CM5A-MR_rcp45_r1i1p1_202601-203012.nc", lambda ds: ds.isel(time=slice(0, 30)),
            decode_times=False)
    with pytest.raises(DataError, match="file name says 202601-203012.*truncated"):
        open_cmip5(d, "rcp45")


def test_unsupported_calendar(cmip_dir, tmp_path):
    d = _copy(cmip_dir, tmp_path)
    rewrite(d / "ts_Amon_IPSL-CM5A-MR_historical_r1i1p1_200101-200512.nc",
            _set_attr("time", "calendar", "all_leap_moon"), decode_times=False)
    with pytest.raises(DataError, match="calendar"):
        open_cmip5(d, "historical")


def test_wrong_units(cmip_dir, tmp_path):
    d = _copy(cmip_dir, tmp_path)
    rewrite(d / "pr_Amon_IPSL-CM5A-MR_historical_r1i1p1_200101-200512.nc", _set_attr("pr", "units", "mm/day"),
            decode_times=False)
    with pytest.raises(DataError, match=r"pr_Amon.*units 'mm/day'; expected 'kg m-2 s-1'"):
        open_cmip5(d, "historical")


def test_classic_netcdf3_files_read_the_same_through_scipy(cmip_dir, tmp_path):
    """Many ESGF CMIP5 files are NetCDF-3 (64-bit offset): the same experiment rewritten so reads the same, with
    its calendar and string attributes, through scipy's reader (``ingest.common.read_engine``)."""
    from thawcast.ingest.common import read_engine

    classic = _copy(cmip_dir, tmp_path)
    for path in classic.glob("*_rcp85_*.nc"):
        with xr.open_dataset(path, decode_times=False) as ds:
            loaded = ds.load()
        path.unlink()
        loaded.to_netcdf(path, format="NETCDF3_64BIT")
        assert read_engine(path) == "scipy"
    ref, alt = open_cmip5(cmip_dir, "rcp85").load(), open_cmip5(classic, "rcp85").load()
    assert alt.attrs == ref.attrs and list(alt.data_vars) == list(ref.data_vars)
    assert (alt["time"].values == ref["time"].values).all()
    for v in ref.data_vars:
        np.testing.assert_array_equal(alt[v].values, ref[v].values)
        assert alt[v].attrs == ref[v].attrs
