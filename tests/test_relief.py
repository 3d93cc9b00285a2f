"""The synthetic relief, its climate, and ERA5-Land's invariant geopotential as a reader meets it."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from helpers import canonical_cube, write_cds
from thawcast.errors import DataError
from thawcast.ingest.era5land import elevation_at, open_elevation, open_era5land
from thawcast.ingest.synthetic.climate import LAPSE_K_PER_KM, generate
from thawcast.ingest.synthetic.relief import (
    OROGRAPHIC_PER_KM,
    RIDGES,
    Terrain,
    elevation,
    height_above_regional,
    terrain,
)
from thawcast.variables import GRAVITY


def test_a_ridge_peaks_on_its_crest_and_falls_off_as_a_gaussian():
    brooks = next(r for r in RIDGES if r.name == "Brooks Range")
    lon, lat = brooks.crest[2]  # a crest point well away from the other ranges
    crest = elevation(np.array(lat), np.array(lon))
    assert crest == pytest.approx(brooks.height_m, rel=0.05)  # its neighbours add a little
    south = elevation(np.array(lat - 2 * brooks.width_deg), np.array(lon))
    foothills = next(r for r in RIDGES if r.name == "Arctic foothills")
    assert south == pytest.approx(brooks.height_m * np.exp(-2.0), abs=0.02 * foothills.height_m + 10)


def test_heights_are_never_negative_and_lowlands_stay_low():
    lat, lon = np.meshgrid(np.arange(59.3, 71.3, 0.1), np.arange(-168.0, -141.0, 0.1), indexing="ij")
    h = elevation(lat, lon)
    assert h.min() >= 0.0 and 2000.0 < h.max() < 3500.0
    # the Yukon-Kuskokwim delta (61.5 N, 164 W) and the North Slope's coastal plain (70.5 N, 153 W)
    assert elevation(np.array([61.5, 70.5]), np.array([-164.0, -153.0])).max() < 150.0


def test_the_height_above_the_rows_mean_averages_to_zero_on_land_and_the_wetness_to_one():
    lat, lon = np.arange(60.0, 70.0, 0.5), np.arange(-160.0, -145.0, 0.5)
    land = np.zeros((lat.size, lon.size), bool)
    land[2:15, 3:25] = True
    land[5, 3:10] = False
    t = terrain(lat, lon, land)
    rows = land.any(1)
    np.testing.assert_allclose((t.height_km * land).sum(1)[rows] / land.sum(1)[rows], 0.0, atol=1e-12)
    np.testing.assert_allclose((t.wetness * land).sum(1)[rows] / land.sum(1)[rows], 1.0, rtol=1e-12)
    assert (t.height_km[~rows] == 0.0).all() and (t.wetness[~rows] == 1.0).all()  # rows without land
    # one cell by hand: its height in km less its row's land mean, and exp(0.4 h) over the row's mean of it
    row = land[7]
    expect = (elevation(lat[7], lon[11]) - elevation(np.full(row.sum(), lat[7]), lon[row]).mean()) / 1000.0
    assert t.height_km[7, 11] == pytest.approx(expect) == height_above_regional(lat, lon, land)[7, 11]
    assert t.wetness[7, 11] == pytest.approx(np.exp(OROGRAPHIC_PER_KM * expect)
                                             / np.exp(OROGRAPHIC_PER_KM * t.height_km[7, row]).mean())
    # a subset of cells, as the pseudo-reality simulates them: the grid's values, in row-major order
    pick = np.zeros_like(land)
    pick[7, 11] = pick[9, 4] = True
    assert t.at(pick).height_km.tolist() == [[t.height_km[7, 11], t.height_km[9, 4]]]


def test_a_cell_above_its_surroundings_is_colder_by_the_lapse_rate_and_wetter_with_the_same_weather():
    """The same seed with and without 1 km of height: July colder by the July lapse rate, January by January's,
    precipitation up by the terrain's factor; nothing else drawn differs."""
    times = pd.date_range("2001-01-01", "2003-12-01", freq="MS")
    lat, lon = np.array([[64.0, 64.0]]), np.array([[-150.0, -149.0]])
    flat = generate(lat, lon, times, np.random.default_rng(3))
    high = generate(lat, lon, times, np.random.default_rng(3),
                    terrain=Terrain(np.array([[1.0, 0.0]]), np.array([[1.3, 1.0]])))
    d = high["t_air"][:, 0, 0] - flat["t_air"][:, 0, 0]
    july, january = times.month == 7, times.month == 1
    assert d[july] == pytest.approx(np.full(july.sum(), -LAPSE_K_PER_KM["july"]), abs=0.05)
    assert d[january] == pytest.approx(np.full(january.sum(), -LAPSE_K_PER_KM["january"]), abs=0.1)
    ratio = high["p_total"][:, 0, 0] / flat["p_total"][:, 0, 0]
    np.testing.assert_allclose(ratio, 1.3, rtol=1e-9)
    np.testing.assert_array_equal(high["t_air"][:, 0, 1], flat["t_air"][:, 0, 1])  # no height: the same bits
    np.testing.assert_array_equal(high["r_solar"], flat["r_solar"])


def _geopotential(path, lat, lon, height, **attrs):
    """An ERA5-Land invariant file as ECMWF serves it (one valid_time, latitudes descending)."""
    ds = xr.Dataset({"z": (("valid_time", "latitude", "longitude"), (height[::-1] * GRAVITY)[None].astype("f4"),
                           {"units": "m**2 s**-2", **attrs})},
                    coords={"valid_time": [np.datetime64("2001-01-01")], "latitude": lat[::-1], "longitude": lon})
    ds.to_netcdf(path)
    return path


def test_geopotential_over_g_is_the_height_on_any_longitude_convention(tmp_path):
    lat, lon = np.array([60.0, 60.1, 60.2]), np.array([200.0, 200.1])  # 0..360 longitudes, as a global file has
    height = np.array([[0.0, 10.0], [500.0, 1000.0], [2000.0, 4321.0]])
    elev = open_elevation(_geopotential(tmp_path / "geo.nc", lat, lon, height))
    np.testing.assert_allclose(elev["lon"].values, [-160.0, -159.9])
    np.testing.assert_allclose(elev.values, height, rtol=1e-6)
    got = elevation_at(elev, np.array([60.2, 60.1]), np.array([-159.9, -160.0]), "geo.nc")
    np.testing.assert_allclose(got, [4321.0, 500.0], rtol=1e-6)


def test_a_geopotential_on_another_grid_or_without_the_cells_is_one_error_naming_the_first(tmp_path):
    lat, lon = np.array([60.0, 60.25]), np.array([-160.0, -159.75])
    elev = open_elevation(_geopotential(tmp_path / "geo.nc", lat, lon, np.full((2, 2), 100.0)))
    with pytest.raises(DataError, match=r"1 of 2 ERA5-Land cells are not on its grid.*\(60\.100 N, -160\.000 E\)"):
        elevation_at(elev, np.array([60.0, 60.1]), np.array([-160.0, -160.0]), "geo.nc")
    with pytest.raises(DataError, match="1 of 1 ERA5-Land cells"):
        elevation_at(elev, np.array([61.0]), np.array([-160.0]), "geo.nc")
    hole = elev.where(elev["lon"] > -160.0)  # on the grid, but no height there
    with pytest.raises(DataError, match=r"1 of 2 ERA5-Land cells are not on its grid or have no height, first"
                                        r" \(60\.250 N, -160\.000 E\)"):
        elevation_at(hole, np.array([60.25, 60.25]), np.array([-159.75, -160.0]), "geo.nc")


def test_only_the_box_around_the_cells_is_read_and_checked(tmp_path):
    """A global file's heights far from the cells (a value out of range elsewhere) do not matter."""
    lat, lon = np.array([-80.0, 60.0, 60.1]), np.array([0.0, 200.0, 200.1])
    height = np.array([[-9999.0, 0.0, 0.0], [0.0, 100.0, 200.0], [0.0, 300.0, 400.0]])
    path = _geopotential(tmp_path / "geo.nc", lat, lon, height)
    with pytest.raises(DataError, match="1 heights outside"):
        open_elevation(path)
    box = open_elevation(path, (np.array([60.1]), np.array([-159.9])))
    assert box.sizes == {"lat": 2, "lon": 2}
    assert elevation_at(box, np.array([60.1]), np.array([-159.9]), path).tolist() == pytest.approx([400.0])


@pytest.mark.parametrize(("units", "scale", "message"), [
    ("m", 1.0, "units 'm'; expected 'm\\*\\*2 s\\*\\*-2'"),
    ("m**2 s**-2", 100.0, "heights outside"),  # a geopotential 100 x too large (e.g. in dam2 mislabelled)
])
def test_a_file_that_is_no_geopotential_is_refused(tmp_path, units, scale, message):
    lat, lon = np.array([60.0, 60.1]), np.array([-160.0, -159.9])
    path = _geopotential(tmp_path / "geo.nc", lat, lon, np.full((2, 2), 1000.0 * scale))
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    ds["z"].attrs["units"] = units
    ds.to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(DataError, match=message):
        open_elevation(tmp_path / "bad.nc")


def test_a_geopotential_with_several_time_steps_or_without_z_is_refused(tmp_path):
    lat, lon = np.array([60.0, 60.1]), np.array([-160.0, -159.9])
    path = _geopotential(tmp_path / "geo.nc", lat, lon, np.full((2, 2), 10.0))
    with xr.open_dataset(path) as ds:
        two = xr.concat([ds, ds.assign_coords(valid_time=[np.datetime64("2002-01-01")])], "valid_time").load()
    two.to_netcdf(tmp_path / "two.nc")
    with pytest.raises(DataError, match="the invariant geopotential has one"):
        open_elevation(tmp_path / "two.nc")
    two.rename({"z": "orog"}).to_netcdf(tmp_path / "orog.nc")
    with pytest.raises(DataError, match=r"no variable 'z' .*\['orog'\]"):
        open_elevation(tmp_path / "orog.nc")


def test_a_geopotential_file_among_the_monthly_files_says_where_it_belongs(tmp_path):
    write_cds(canonical_cube(), tmp_path)
    cube = open_era5land(tmp_path)
    _geopotential(tmp_path / "geo.nc", cube["lat"].values, cube["lon"].values,
                  np.zeros((cube.sizes["lat"], cube.sizes["lon"])))
    with pytest.raises(DataError, match="geo.nc.*invariant file \\(z\\), not monthly means.*source.geopotential_file"):
        open_era5land(tmp_path)
