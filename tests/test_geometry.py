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
    np.testing.assert_allclose(ratio, [0.90, 1.04, 1.01, 1.07, 1.05, 1.6], atol=[0.005] * 5 + [0.05])


def test_one_geometry_for_fine_and_coarse_grids():
    fine = band_weights(ERA_LAT, ERA_LON, GEOM).sum(("lat", "lon")).values
    coarse = band_weights(CMIP_LAT, CMIP_LON, GEOM).sum(("lat", "lon")).values
    np.testing.assert_allclose(coarse, fine, rtol=0.05)


def test_constant_field_aggregates_to_the_constant():
    for lat, lon in ((ERA_LAT[::3], ERA_LON[::3]), (CMIP_LAT, CMIP_LON)):
        ds = xr.Dataset({"x": (("time", "lat", "lon"), np.full((2, lat.size, lon.size), 3.25))},
                        coords={"time": [0, 1], "lat": lat, "lon": lon})
        out = band_means(ds, GEOM)
        np.testing.assert_allclose(out["x"].values, 3.25)


def test_latitude_field_gives_area_weighted_band_centres():
    lat, lon = ERA_LAT, ERA_LON
    field = np.broadcast_to(lat[:, None], (lat.size, lon.size))[None]
    ds = xr.Dataset({"lat_value": (("time", "lat", "lon"), field)}, coords={"time": [0], "lat": lat, "lon": lon})
    means = band_means(ds, GEOM)["lat_value"].values[:, 0]
    edges = np.array(GEOM.edges)
    assert np.all(means > edges[:-1]) and np.all(means < edges[1:])
    assert np.all(np.diff(means) > 0)


def test_nan_cells_drop_out_of_the_mean():
    lat, lon = ERA_LAT[::2], ERA_LON[::2]
    data = np.ones((1, lat.size, lon.size))
    data[:, :, : lon.size // 2] = np.nan  # west half missing
    data[:, :, lon.size // 2 :] = 5.0
    ds = xr.Dataset({"x": (("time", "lat", "lon"), data)}, coords={"time": [0], "lat": lat, "lon": lon})
    np.testing.assert_allclose(band_means(ds, GEOM)["x"].values, 5.0)


def test_grid_that_misses_a_band_is_an_error():
    with pytest.raises(DataError, match=r"does not cover band 5"):
        band_weights(np.arange(59.0, 68.0, 0.5), np.arange(-168, -141, 0.5), GEOM, source="short.nc")


def test_wrap_lon():
    np.testing.assert_allclose(wrap_lon(np.array([190.0, 359.9, 0.0, -170.0])), [-170.0, -0.1, 0.0, -170.0])
