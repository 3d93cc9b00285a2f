import numpy as np
import pytest
import xarray as xr

from thawcast.config import StudyAreaConfig
from thawcast.errors import DataError
from thawcast.ingest.synthetic.world import IPSL_LAT, IPSL_LON
from thawcast.prep.aggregate import band_means
from thawcast.prep.geometry import BandGeometry, band_weights, wrap_lon

GEOM = BandGeometry.from_config(StudyAreaConfig())
PAPER_AREA_KM2 = np.array([2.43360e5, 2.64663e5, 2.38854e5, 2.2582e5, 2.12574e5, 6.7668e4])
ERA_LAT, ERA_LON = np.arange(59.0, 71.61, 0.1), np.arange(-168.0, -140.95, 0.1)
CMIP_LAT = IPSL_LAT[(IPSL_LAT > 55) & (IPSL_LAT < 76)]
CMIP_LON = np.sort(wrap_lon(IPSL_LON[(IPSL_LON > 185) & (IPSL_LON < 225)]))


def test_band_of_uses_table1_edges():
    lat = np.array([59.0, 59.2632802, 61.2755, 61.275545, 71.3369, 71.336926])
    assert GEOM.band_of(lat).tolist() == [-1, 0, 0, 1, 5, -1]


def test_land_areas_match_table1_for_bands_0_to_4():
    """The README: within 11% of Table 1 for bands 0-4, ratios 0.90, 1.04, 1.01, 1.07, 1.05, band 5 at 1.6x."""
    ratio = GEOM.band_area_km2() / PAPER_AREA_KM2
    assert np.all(np.abs(ratio[:5] - 1) < 0.11), ratio
    np.testing.assert_allclose(ratio[:5], [0.90, 1.04, 1.01, 1.07, 1.05], atol=0.005)
    assert ratio[5] == pytest.approx(1.6, abs=0.05)


def test_a_cell_weighs_its_area_times_its_share_of_band_land():
    """0.4-degree cells: inland, wholly in band 1 -> its area (cos-lat scaled deg2); centred on the band 0/1
    edge -> half its area in each band; a cell reaching 0.1 degree past the study box's east edge (-141)
    -> three quarters of its area (to the lattice's 0.05 degree)."""
    edge = GEOM.edges[1]
    lat = edge + 0.4 * np.arange(-6, 27)  # row 6 centred on the edge
    lon = -141.1 - 0.4 * np.arange(68)[::-1]  # the last column spans -141.3..-140.9
    w = band_weights(lat, lon, GEOM).values
    area = 0.16 * np.cos(np.deg2rad(lat))
    inland = int(np.argmin(np.abs(lon + 146.3)))
    np.testing.assert_allclose(w[:, 6, inland] / area[6], [0.5, 0.5, 0, 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(w[:, 9, inland] / area[9], [0, 1, 0, 0, 0, 0], atol=1e-9)
    assert lat[14] == pytest.approx(64.4755, abs=1e-4)  # band 2, on the Yukon border
    np.testing.assert_allclose(w[:, 14, -1] / area[14], [0, 0, 0.75, 0, 0, 0], atol=0.06)
    # and a grid that stops short of the study latitudes by less than a degree is refused
    with pytest.raises(DataError, match=r"band 0 \(59.26-61.28 N\)"):
        band_weights(lat[lat > 59.6], lon, GEOM)
    with pytest.raises(DataError, match=r"band 5 \(69.32-71.34 N\)"):
        band_weights(lat[lat < 71.0], lon, GEOM)


def test_one_geometry_for_fine_and_coarse_grids():
    fine = band_weights(ERA_LAT, ERA_LON, GEOM).sum(("lat", "lon")).values
    coarse = band_weights(CMIP_LAT, CMIP_LON, GEOM).sum(("lat", "lon")).values
    np.testing.assert_allclose(coarse, fine, rtol=0.05)


def test_constant_field_aggregates_to_the_constant():
    for lat, lon in ((ERA_LAT[::3], ERA_LON[::3]), (CMIP_LAT, CMIP_LON)):
        ds = xr.Dataset({"x": (("time", "lat", "lon"), np.full((2, lat.size, lon.size), 3.25))},
                        coords={"time": [0, 1], "lat": lat, "lon": lon})
        ds["x"].attrs = {"units": "K", "long_name": "test field"}
        out = band_means(ds, GEOM)
        np.testing.assert_allclose(out["x"].values, 3.25)
        assert out["x"].attrs == {"units": "K", "long_name": "test field"}  # the variable's metadata kept
        np.testing.assert_allclose(out["lat_min"], GEOM.edges[:-1])
        np.testing.assert_allclose(out["lat_max"], GEOM.edges[1:])
        assert out["lat_min"].attrs == {"units": "degrees_north", "long_name": "band lower latitude"}
        assert out["lat_max"].attrs == {"units": "degrees_north", "long_name": "band upper latitude"}
        assert out["band"].attrs["long_name"] == "latitude band index (Table 1 of Rahaman 2025)"
    with pytest.raises(DataError, match="short.nc"):
        band_means(ds.sel(lat=slice(None, 68.0)), GEOM, source="short.nc")


def test_latitude_field_gives_area_weighted_band_centres():
    lat, lon = ERA_LAT, ERA_LON
    field = np.broadcast_to(lat[:, None], (lat.size, lon.size))[None]
    ds = xr.Dataset({"lat_value": (("time", "lat", "lon"), field)}, coords={"time": [0], "lat": lat, "lon": lon})
    means = band_means(ds, GEOM)["lat_value"].values[:, 0]
    edges = np.array(GEOM.edges)
    assert np.all(means > edges[:-1]) and np.all(means < edges[1:])
    assert np.all(np.diff(means) > 0)
    # exactly the weighted mean of the cell latitudes under the band weights, every weighted row included
    w = band_weights(lat, lon, GEOM).values
    expected = (w * lat[None, :, None]).sum(axis=(1, 2)) / w.sum(axis=(1, 2))
    np.testing.assert_allclose(means, expected, rtol=1e-12)


def test_nan_cells_drop_out_of_the_mean():
    lat, lon = ERA_LAT[::2], ERA_LON[::2]
    data = np.ones((1, lat.size, lon.size))
    data[:, :, : lon.size // 2] = np.nan  # west half missing
    data[:, :, lon.size // 2 :] = 5.0
    ds = xr.Dataset({"x": (("time", "lat", "lon"), data)}, coords={"time": [0], "lat": lat, "lon": lon})
    np.testing.assert_allclose(band_means(ds, GEOM)["x"].values, 5.0)


def test_grid_that_misses_a_band_is_an_error():
    with pytest.raises(DataError, match=r"does not cover band 5"):
        band_weights(np.arange(59.0, 68.0, 0.5), np.arange(-168, -140.9, 0.5), GEOM, source="short.nc")


def test_a_grid_short_of_the_study_longitudes_is_an_error():
    """The issue's case: -160..-141 of the -168..-141 study area passed, and each band mean covered part of
    its band; both ends are checked."""
    for lon in (np.arange(-160.0, -140.9, 0.25), np.arange(-168.0, -142.0, 0.25)):
        with pytest.raises(DataError, match=r"narrow.nc: grid covers longitudes .* the study area spans"
                                            r" -168.00..-141.00 E"):
            band_weights(ERA_LAT[::3], lon, GEOM, source="narrow.nc")


def test_a_hole_the_data_surround_is_an_error_and_the_sea_coast_or_a_lake_is_not():
    from thawcast.prep.geometry import MAX_HOLE_SHARE, check_holes, enclosed

    lat, lon = ERA_LAT[::2], ERA_LON[::2]  # 0.2 degree
    weights = band_weights(lat, lon, GEOM)
    on_land = weights.values.sum(axis=0) > 0
    check_holes(np.ones(on_land.shape, bool), weights, GEOM, source="full.nc")
    # ERA5-Land style: no data over the sea, coastal cells included, and inland cells next to the coast too:
    # all of it reaches the grid's edge through empty cells, so none of it is a hole
    coast = on_land & ~np.roll(on_land, 1, axis=1) | on_land & ~np.roll(on_land, -1, axis=0)
    check_holes(on_land & ~coast, weights, GEOM, source="sea.nc")
    assert not enclosed(~(on_land & ~coast)).any()

    def block(half_deg):
        box = np.zeros(on_land.shape, bool)
        box[np.ix_(np.abs(lat - 64.3) <= half_deg, np.abs(lon + 150.0) <= 2 * half_deg)] = True
        return box

    w2 = weights.values[2]
    lake, hole = block(0.1), block(0.4)  # a few cells and 4 x 8 cells of band 2, inland
    assert w2[lake].sum() / w2.sum() < MAX_HOLE_SHARE < w2[hole].sum() / w2.sum()
    np.testing.assert_array_equal(enclosed(hole), hole)
    check_holes(~lake, weights, GEOM, source="lake.nc")
    with pytest.raises(DataError, match=r"hole.nc: no data in 32 land cells of band 2 \(63.29-65.30 N\), 2.9% of"
                                        r" the band's land, at latitudes 64.00\.\.64.60 N,"
                                        r" longitudes -150.60\.\.-149.20 E: a hole in the grid"):
        check_holes(~hole, weights, GEOM, source="hole.nc")
    # a coast two cells (0.4 degrees) wide without data is still coast; land without data from the grid's western
    # edge to 160 W is not, though the empty cells reach the edge (issue 16: it passed as sea before)
    wide_coast = coast | np.roll(coast, 1, axis=1) & on_land
    check_holes(on_land & ~wide_coast, weights, GEOM, source="coast.nc")
    west = np.broadcast_to(lon < -160, on_land.shape)
    assert not (enclosed(~(on_land & ~west)) & west).any()  # the rule before: no cell of it enclosed
    with pytest.raises(DataError, match=r"west.nc: no data in \d+ land cells of band 0 .* longitudes -16\d.\d+\.\."
                                        r"-160.\d+ E: a hole in the grid or an area the file leaves out"):
        check_holes(on_land & ~west, weights, GEOM, source="west.nc")


def test_wrap_lon():
    np.testing.assert_allclose(wrap_lon(np.array([190.0, 359.9, 0.0, -170.0])), [-170.0, -0.1, 0.0, -170.0])
