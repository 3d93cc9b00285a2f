import numpy as np
import pandas as pd
import pytest

from conftest import REAL_ERA5
from helpers import canonical_cube, rewrite, write_cds
from thawcast.errors import DataError
from thawcast.ingest.era5land import open_era5land


def test_real_cds_file_with_integer_date(tmp_path):
    """The real ERA5 sample (cfgrib layout: integer YYYYMMDD `date`, descending latitude)."""
    ds = open_era5land(REAL_ERA5, variables=("t2m",))
    t = pd.DatetimeIndex(ds["time"].values)
    assert len(t) == 120 and t[0] == pd.Timestamp("2010-01-01") and t[-1] == pd.Timestamp("2019-12-01")
    assert np.all(np.diff(ds["lat"].values) > 0)
    t_air = ds["t_air"].load()
    assert t_air.attrs["units"] == "degC"
    # Interior Alaska near Healy: January around -20 C, July around +13 C.
    clim = t_air.mean(("lat", "lon")).groupby("time.month").mean()
    assert -30 < float(clim.sel(month=1)) < -10
    assert 8 < float(clim.sel(month=7)) < 18


def test_synthetic_cds_files_round_trip(tmp_path):
    cube = canonical_cube()
    write_cds(cube, tmp_path)
    ds = open_era5land(tmp_path).load()
    assert set(ds.data_vars) == set(cube.data_vars)
    for v in cube.data_vars:
        np.testing.assert_allclose(ds[v].values, cube[v].values, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("layout", ["time", "date", "ascending_lat", "lon_0_360"])
def test_layouts_give_the_same_result(tmp_path, layout):
    cube = canonical_cube(years=(2001,))
    ref_dir, alt_dir = tmp_path / "ref", tmp_path / "alt"
    write_cds(cube, ref_dir)
    (path,) = write_cds(cube, alt_dir)

    def change(ds):
        if layout == "time":
            return ds.rename({"valid_time": "time"})
        if layout == "date":
            ints = pd.DatetimeIndex(ds["valid_time"].values).strftime("%Y%m%d").astype(int)
            return ds.assign_coords(valid_time=ints).rename({"valid_time": "date"})
        if layout == "ascending_lat":
            return ds.sortby("latitude")
        return ds.assign_coords(longitude=ds["longitude"] % 360)

    rewrite(path, change)
    ref, alt = open_era5land(ref_dir).load(), open_era5land(alt_dir).load()
    for v in ref.data_vars:
        np.testing.assert_allclose(alt[v].values, ref[v].values, atol=1e-4)
    np.testing.assert_allclose(alt["lon"].values, ref["lon"].values)


@pytest.mark.parametrize("layout", ["valid_time", "date", "time"])
def test_a_time_chunk_applies_to_the_files_own_time_axis(tmp_path, layout):
    """chunks={"time": n} names the canonical axis; CDS files call it valid_time (or date), and a chunk of a
    dimension the file does not have would be ignored without a word."""
    from thawcast.ingest.synthetic.world import write_era5land

    (path,) = write_era5land(canonical_cube(years=(2001, 2002, 2003)), tmp_path, years_per_file=3)
    if layout == "date":
        rewrite(path, lambda ds: ds.assign_coords(valid_time=pd.DatetimeIndex(ds["valid_time"].values).strftime(
            "%Y%m%d").astype(int)).rename({"valid_time": "date"}))
    elif layout == "time":
        rewrite(path, lambda ds: ds.rename({"valid_time": "time"}))
    for n, expected in ((-1, (36,)), (24, (24, 12)), (12, (12, 12, 12))):
        ds = open_era5land(tmp_path, chunks={"time": n})
        assert ds["t_air"].chunksizes["time"] == expected, n
    np.testing.assert_array_equal(open_era5land(tmp_path, chunks={"time": -1})["t_soil1"].values,
                                  open_era5land(tmp_path)["t_soil1"].values)


def test_truncated_file_is_named(tmp_path):
    (path,) = write_cds(canonical_cube(years=(2001,)), tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=rf"{path.name}.*not a readable NetCDF"):
        open_era5land(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "x.nc").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        open_era5land(tmp_path)


def test_missing_variable(tmp_path):
    (path,) = write_cds(canonical_cube(years=(2001,)), tmp_path)
    rewrite(path, lambda ds: ds.drop_vars("stl3"))
    with pytest.raises(DataError, match=r"\['stl3'\] not found"):
        open_era5land(tmp_path)


@pytest.mark.parametrize(("old", "new"), [("t2m", "T2M"), ("stl1", "stl_1"), ("swvl4", "SWVL4")])
def test_a_renamed_variable_is_named_in_its_file(tmp_path, old, new):
    """Renamed in one file of three: that file, the expected name and the one found (not missing months)."""
    paths = write_cds(canonical_cube(years=(2001, 2002, 2003)), tmp_path)
    rewrite(paths[1], lambda ds: ds.rename({old: new}))
    with pytest.raises(DataError, match=rf"{paths[1].name}: no variable '{old}' .* but '{new}'.* names it '{old}'"):
        open_era5land(tmp_path)


def test_other_era5_variables_are_not_taken_for_renamed_ones(tmp_path):
    """ssr and str (net solar and thermal radiation) are ERA5 variables of their own, not renamed ssrd/strd."""
    (path,) = write_cds(canonical_cube(years=(2001,)), tmp_path)
    rewrite(path, lambda ds: ds.assign(ssr=ds["ssrd"] * 0.8, str=ds["strd"] * 0.1))
    assert "r_solar" in open_era5land(tmp_path).data_vars


def test_a_file_holding_some_of_the_variables_is_no_rename(tmp_path):
    """CDS splits variables across files: a file without stl1 (and no look-alike) is fine when another holds it;
    stl2..4 are never taken for a renamed stl1."""
    cube = canonical_cube(years=(2001,))
    write_cds(cube[["t_soil1"]], tmp_path / "a")
    write_cds(cube.drop_vars("t_soil1"), tmp_path / "b")
    both = open_era5land([tmp_path / "a", tmp_path / "b"]).load()
    assert set(both.data_vars) == set(cube.data_vars)


def test_celsius_where_kelvin_expected(tmp_path):
    (path,) = write_cds(canonical_cube(years=(2001,)), tmp_path)

    def to_c(ds):
        ds["t2m"] = ds["t2m"] - 273.15
        ds["t2m"].attrs["units"] = "degC"
        return ds

    rewrite(path, to_c)
    with pytest.raises(DataError, match=rf"{path.name}: variable 't2m' has units 'degC'; expected 'K'"):
        open_era5land(tmp_path)


def test_duplicated_months_across_files(tmp_path):
    write_cds(canonical_cube(years=(2001, 2002)), tmp_path)
    dup = canonical_cube(years=(2002,))
    write_cds(dup, tmp_path / "more")
    (tmp_path / "more" / "era5land_monthly_2002.nc").rename(tmp_path / "era5land_copy_2002.nc")
    with pytest.raises(DataError, match="duplicated months"):
        open_era5land(tmp_path)


def test_missing_months(tmp_path):
    (path,) = write_cds(canonical_cube(years=(2001,)), tmp_path)
    rewrite(path, lambda ds: ds.drop_isel(valid_time=[4, 5]))
    with pytest.raises(DataError, match=r"missing 2 month\(s\): 2001-05, 2001-06"):
        open_era5land(tmp_path)


def test_files_on_different_grids(tmp_path):
    write_cds(canonical_cube(years=(2001,)), tmp_path)
    write_cds(canonical_cube(years=(2002,), lat=np.arange(59.0, 71.6, 0.25)), tmp_path / "b")
    (tmp_path / "b" / "era5land_monthly_2002.nc").rename(tmp_path / "era5land_monthly_2002.nc")
    with pytest.raises(DataError, match="grid differs"):
        open_era5land(tmp_path)


def test_no_time_coordinate(tmp_path):
    (path,) = write_cds(canonical_cube(years=(2001,)), tmp_path)
    rewrite(path, lambda ds: ds.drop_vars("expver").rename({"valid_time": "when"}))
    with pytest.raises(DataError, match="no time coordinate"):
        open_era5land(tmp_path)


@pytest.mark.parametrize(("fmt", "engine"), [("NETCDF4", "h5netcdf"), ("NETCDF4_CLASSIC", "h5netcdf"),
                                             ("NETCDF3_64BIT", "scipy"), ("NETCDF3_CLASSIC", "scipy")])
def test_each_netcdf_format_is_read_by_a_thread_safe_engine_and_gives_the_same_data(tmp_path, fmt, engine):
    import xarray as xr

    from thawcast.ingest.common import read_engine

    (path,) = write_cds(canonical_cube(years=(2001,)), tmp_path / "as_written")
    converted = tmp_path / fmt / path.name
    converted.parent.mkdir()
    with xr.open_dataset(path, engine="netcdf4") as ds:
        ds.load().to_netcdf(converted, format=fmt, engine="netcdf4")
    assert read_engine(converted) == engine
    ref, alt = open_era5land(path.parent).load(), open_era5land(converted.parent).load()
    assert list(alt.data_vars) == list(ref.data_vars) and (alt["time"].values == ref["time"].values).all()
    for v in ref.data_vars:
        np.testing.assert_array_equal(alt[v].values, ref[v].values)


def test_a_file_that_is_not_netcdf_goes_to_netcdf4_and_is_named(tmp_path):
    from thawcast.ingest.common import read_engine

    path = tmp_path / "era5land_monthly_2001.nc"
    path.write_text("<html>Service unavailable</html>")
    assert read_engine(path) == "netcdf4"
    with pytest.raises(DataError, match=rf"{path.name}: not a readable NetCDF file"):
        open_era5land(tmp_path)
