"""Band geometry and band means on small hand-made grids: a rectangular "land" outline, bands 60-61-62 N and
study longitudes -10..-8 E, so every weight, share and message can be worked out by hand."""

import numpy as np
import pytest
import xarray as xr

from thawcast.config import StudyAreaConfig
from thawcast.errors import DataError
from thawcast.prep import aggregate
from thawcast.prep.aggregate import band_means, compute_streaming
from thawcast.prep.geometry import (
    MAX_HOLE_SHARE,
    BandGeometry,
    band_weights,
    cell_edges,
    check_holes,
    enclosed,
    missing_land,
)

EARTH_RADIUS_KM = 6371.0
# Land everywhere from 20 W to 0 E, 50 to 70 N: inside the study box only the band edges and longitudes matter.
RECT = ((-20.0, 50.0), (0.0, 50.0), (0.0, 70.0), (-20.0, 70.0))
BOX = BandGeometry(edges=(60.0, 61.0, 62.0), lon_min=-10.0, lon_max=-8.0, outline=RECT)
# A grid whose cells end exactly on the study box: 0.5-degree cells, lat edges 60..62, lon edges -10..-8.
FIT_LAT, FIT_LON = np.array([60.25, 60.75, 61.25, 61.75]), np.array([-9.75, -9.25, -8.75, -8.25])


def _cos(lat):
    return np.cos(np.deg2rad(lat))


def test_band_geometry_from_config_keeps_edges_and_longitudes():
    cfg = StudyAreaConfig(band_edges=(60.0, 61.0, 62.0), lon_min=-10.0, lon_max=-8.0)
    geom = BandGeometry.from_config(cfg)
    assert geom == BandGeometry((60.0, 61.0, 62.0), -10.0, -8.0)
    assert geom.edges == (60.0, 61.0, 62.0) and geom.n_bands == 2


def test_band_of_puts_a_latitude_on_an_edge_in_the_band_above_and_the_top_edge_outside():
    lat = np.array([59.999, 60.0, 60.5, 61.0, 61.999, 62.0, 75.0, -5.0])
    assert BOX.band_of(lat).tolist() == [-1, 0, 0, 1, 1, -1, -1, -1]
    assert BOX.band_of([[60.0, 61.0], [62.0, 59.0]]).tolist() == [[0, 1], [-1, -1]]  # any shape, lists too


def test_is_land_needs_the_outline_and_the_study_longitudes_both_ends_included():
    lon = np.array([[-10.0, -8.0, -9.0], [-10.01, -7.99, -9.0]])
    lat = np.array([[65.0, 65.0, 65.0], [65.0, 65.0, 71.0]])  # 71 N is north of the outline
    np.testing.assert_array_equal(BOX.is_land(lon, lat), [[True, True, True], [False, False, False]])
    # longitudes wrap by 360: 350.5 E is -9.5 E (inside), 349.5 E is -10.5 E (west of the study box), -369 is -9
    np.testing.assert_array_equal(BOX.is_land([350.5, 349.5, -369.0], [65.0, 65.0, 65.0]), [True, False, True])


def test_band_area_is_the_spherical_zone_area_of_a_land_rectangle():
    """All of the box is land, so band b covers R^2 x (2 degrees in radians) x (sin(top) - sin(bottom)) km2;
    the 0.02-degree midpoint lattice agrees to ~1e-8."""
    zone = EARTH_RADIUS_KM**2 * np.deg2rad(2.0) * np.diff(np.sin(np.deg2rad(BOX.edges)))
    np.testing.assert_allclose(BOX.band_area_km2(), zone, rtol=1e-6)
    assert zone[0] == pytest.approx(12177.0, abs=1.0)  # 40589641 km2 x 0.0349066 x (0.8746197 - 0.8660254)


def test_band_area_counts_whole_lattice_columns():
    """Study longitudes -10..-8.012: the 0.02-degree lattice has 99 columns, centred -9.99, -9.97, .., -8.03
    (the next, -8.01, lies east of -8.012), so each band's area is that of a 1.98-degree wide zone."""
    narrow = BandGeometry(BOX.edges, -10.0, -8.012, outline=RECT)
    zone = EARTH_RADIUS_KM**2 * np.deg2rad(1.98) * np.diff(np.sin(np.deg2rad(BOX.edges)))
    np.testing.assert_allclose(narrow.band_area_km2(), zone, rtol=1e-6)


def test_band_area_counts_only_land():
    """The outline cut at 61.5 N: band 1 keeps half its latitudes, 61..61.5."""
    half = BandGeometry(BOX.edges, -10.0, -8.0, outline=((-20.0, 50.0), (0.0, 50.0), (0.0, 61.5), (-20.0, 61.5)))
    zone = EARTH_RADIUS_KM**2 * np.deg2rad(2.0) * np.diff(np.sin(np.deg2rad([60.0, 61.0, 61.5])))
    np.testing.assert_allclose(half.band_area_km2(), zone, rtol=1e-6)


def test_cell_edges_of_one_centre_and_of_irregular_centres():
    np.testing.assert_array_equal(cell_edges([5.0]), [4.5, 5.5])  # a lone centre: a 1-degree cell
    # edges half way between centres, the outer ones mirrored: 0 -(0.5)- 1 -(2.0)- 3 -(3.5)- 4
    np.testing.assert_array_equal(cell_edges([0.0, 1.0, 3.0, 4.0]), [-0.5, 0.5, 2.0, 3.5, 4.5])
    np.testing.assert_array_equal(cell_edges([10.0, 12.0]), [9.0, 11.0, 13.0])


# The sub-sampling grid: 1-degree rows 58.25..63.25 N; 0.5-degree columns from -10.375 to -7.875 with wide
# cells (1.25 and 2 degrees) outside the study box on both sides. Edges by cell_edges (midpoints):
# -13.625 | -11.625 | -10.375 | -9.875 | -9.375 | -8.875 | -8.375 | -7.875 | -6.625 | -4.625
SUB_LAT = np.array([58.75, 59.75, 60.75, 61.75, 62.75])
SUB_LON = np.array([-12.625, -10.625, -10.125, -9.625, -9.125, -8.625, -8.125, -7.625, -5.625])


def test_weights_are_cos_lat_area_times_the_lattice_share_of_band_land():
    """lattice 0.22: a 1-degree row gets ceil(1/0.22) = 5 sub-rows at 0.1, 0.3, .., 0.9 of the cell; a 0.5-degree
    column ceil(0.5/0.22) = 3 sub-columns at 1/6, 1/2, 5/6 (the widest study column sets the count; the wide
    columns outside the study box do not). Band edges lie 0.75 up each row, so the row 59.25..60.25 has 1 of 5
    sub-rows in band 0, 60.25..61.25 has 4 in band 0 and 1 in band 1, 61.25..62.25 has 4 in band 1. The
    study box's west edge -10 lies 0.75 across the column -10.375..-9.875 (1 of 3 sub-columns inside), its east
    edge -8 0.75 across -8.375..-7.875 (2 of 3 inside)."""
    w = band_weights(SUB_LAT, SUB_LON, BOX, lattice_deg=0.22)
    fy = np.array([[0, 0.2, 0.8, 0, 0], [0, 0, 0.2, 0.8, 0]])
    fx = np.array([0, 0, 1 / 3, 1, 1, 1, 2 / 3, 0, 0])
    area = 1.0 * 0.5 * _cos(SUB_LAT)  # cell extent 1 x 0.5 degrees, cos of the centre latitude
    expected = fy[:, :, None] * area[None, :, None] * fx[None, None, :]
    np.testing.assert_allclose(w.values, expected, rtol=1e-12, atol=1e-15)
    assert w.dims == ("band", "lat", "lon")
    np.testing.assert_array_equal(w["band"], [0, 1])
    np.testing.assert_array_equal(w["lat"], SUB_LAT)
    np.testing.assert_array_equal(w["lon"], SUB_LON)
    assert w.attrs == {"long_name": "cell area x overlap fraction with band land", "units": "deg2 (cos-lat scaled)"}


def test_a_lattice_coarser_than_the_cells_samples_each_cell_at_its_centre():
    """lattice 2 degrees: one sample per cell, its centre; 59.75 N and -10.125 E lie outside, -8.125 E inside."""
    w = band_weights(SUB_LAT, SUB_LON, BOX, lattice_deg=2.0)
    fy = np.array([[0, 0, 1, 0, 0], [0, 0, 0, 1, 0]])
    fx = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0])
    expected = fy[:, :, None] * (0.5 * _cos(SUB_LAT))[None, :, None] * fx[None, None, :]
    np.testing.assert_allclose(w.values, expected, rtol=1e-12, atol=1e-15)


def test_cells_that_only_touch_the_study_box_do_not_set_the_lattice():
    """Columns (edges by midpoints) -18.5 | -13.5 | -10 | -8.75 | -8 | -5.25 | -0.75: the 3.5- and 2.75-degree
    columns touch the box at -10 and -8 only, so the widest study column, 1.25 degrees, sets ceil(1.25 / 0.5) = 3
    sub-columns, at -9.79, -9.375 and -8.96. Land ends at 9.3 W: 2 of 3 in the column -10..-8.75, none in the
    next. 0.5-degree rows, one sample each (their centres)."""
    west = BandGeometry(BOX.edges, -10.0, -8.0, outline=((-20.0, 50.0), (-9.3, 50.0), (-9.3, 70.0), (-20.0, 70.0)))
    lon = np.array([-16.0, -11.0, -9.0, -8.5, -7.5, -3.0])
    w = band_weights(FIT_LAT, lon, west, lattice_deg=0.5).values
    fy = np.array([[1, 1, 0, 0], [0, 0, 1, 1]])
    fx = np.array([0, 0, 2 / 3, 0, 0, 0])
    expected = fy[:, :, None] * (0.5 * 1.25 * _cos(FIT_LAT))[None, :, None] * fx[None, None, :]
    np.testing.assert_allclose(w, expected, rtol=1e-12, atol=1e-15)


def test_integer_coordinates_come_back_as_float():
    w = band_weights([60, 61, 62], [-10, -9, -8], BOX)  # 1-degree cells 59.5..62.5 N, -10.5..-7.5 E
    assert w["lat"].dtype == w["lon"].dtype == np.float64
    np.testing.assert_array_equal(w["lat"], [60.0, 61.0, 62.0])


def test_the_default_lattice_splits_a_cell_centred_on_a_band_edge_half_and_half():
    """Default 0.05 degrees: a 0.5-degree cell gets 10 sub-rows; the cell 60.75..61.25 has 5 below the band
    edge 61 and 5 above (a lattice as coarse as the cell would put its one sample, the centre, in band 1), and
    the cell 59.75..60.25 has 5 in band 0."""
    lat = np.array([60.0, 60.5, 61.0, 61.5, 62.0])  # edges 59.75, 60.25, .., 62.25
    w = band_weights(lat, FIT_LON, BOX).values
    area = (0.5 * 0.5) * _cos(lat)
    np.testing.assert_allclose(w[:, :, 0] / area, [[0.5, 1, 0.5, 0, 0], [0, 0, 0.5, 1, 0.5]], rtol=1e-12, atol=1e-15)


def test_a_grid_that_ends_on_the_study_box_passes_and_its_weights_fill_the_box():
    w = band_weights(FIT_LAT, FIT_LON, BOX).values
    area = 0.25 * _cos(FIT_LAT)
    np.testing.assert_allclose(w[0], np.repeat(area * [1, 1, 0, 0], 4).reshape(4, 4), rtol=1e-12)
    np.testing.assert_allclose(w[1], np.repeat(area * [0, 0, 1, 1], 4).reshape(4, 4), rtol=1e-12)
    # within 1e-6 degrees of the box (rounding in a file's coordinates) still passes, either way
    for shift in (5e-7, -5e-7):
        w = band_weights(FIT_LAT + shift, FIT_LON + shift, BOX).values
        assert w.sum() == pytest.approx(0.25 * 4 * _cos(FIT_LAT).sum(), rel=1e-5)


def test_the_1e6_degree_tolerance_includes_its_end():
    """0.5-degree cells whose outer edge lies exactly 1e-6 degrees inside the study box pass, at each of its
    four sides (quarter-degree offsets keep cell_edges exact, checked first)."""
    steps = 0.5 * np.arange(4)
    for lat, lon in (
        (60.0 + 1e-6 + 0.25 + steps, FIT_LON),
        (62.0 - 1e-6 - 0.25 - steps[::-1], FIT_LON),
        (FIT_LAT, -10.0 + 1e-6 + 0.25 + steps),
        (FIT_LAT, -8.0 - 1e-6 - 0.25 - steps[::-1]),
    ):
        lat_e, lon_e = cell_edges(lat), cell_edges(lon)
        assert lat_e[0] == 60.0 + 1e-6 or lat_e[-1] == 62.0 - 1e-6 or lon_e[0] == -10.0 + 1e-6 \
            or lon_e[-1] == -8.0 - 1e-6
        assert band_weights(lat, lon, BOX).sum() > 0


def test_a_grid_short_of_a_study_longitude_is_refused_naming_both_ranges():
    with pytest.raises(DataError) as err:
        band_weights(FIT_LAT, FIT_LON + 0.5, BOX, source="east.nc")  # -9.5..-7.5: half a degree short in the west
    assert str(err.value) == ("east.nc: grid covers longitudes -9.50..-7.50 E, the study area spans -10.00..-8.00 E:"
                              " every band would be averaged over part of its land")
    with pytest.raises(DataError) as err:
        band_weights(FIT_LAT, FIT_LON[:-1], BOX, source="west.nc")  # -10..-8.5: short in the east only
    assert str(err.value) == ("west.nc: grid covers longitudes -10.00..-8.50 E, the study area spans -10.00..-8.00 E:"
                              " every band would be averaged over part of its land")
    for shift in (2e-6, -2e-6):  # more than the 1e-6 of rounding
        with pytest.raises(DataError, match="grid covers longitudes"):
            band_weights(FIT_LAT, FIT_LON + shift, BOX)


def test_a_grid_short_of_a_study_latitude_is_refused_naming_the_bands_it_misses():
    cases = {  # lat centres: message tail
        (60.75, 61.25, 61.75): "latitudes 60.50..62.00 N, longitudes -10.00..-8.00 E: it does not cover band 0"
                               " (60.00-61.00 N)",
        (60.25, 60.75, 61.25): "latitudes 60.00..61.50 N, longitudes -10.00..-8.00 E: it does not cover band 1"
                               " (61.00-62.00 N)",
        (60.75, 61.25): "latitudes 60.50..61.50 N, longitudes -10.00..-8.00 E: it does not cover band 0"
                        " (60.00-61.00 N), band 1 (61.00-62.00 N)",
    }
    for lat, tail in cases.items():
        with pytest.raises(DataError) as err:
            band_weights(np.array(lat), FIT_LON, BOX, source="short.nc")
        assert str(err.value) == f"short.nc: grid covers {tail}"
    for shift in (2e-6, -2e-6):  # more than the 1e-6 of rounding
        with pytest.raises(DataError, match="it does not cover band"):
            band_weights(FIT_LAT + shift, FIT_LON, BOX)


def test_a_band_without_land_on_the_grid_is_refused_though_the_grid_spans_it():
    """The outline stops at 60.9 N: the grid covers both bands' latitudes but band 1 holds no land."""
    south = BandGeometry(BOX.edges, -10.0, -8.0, outline=((-20.0, 50.0), (0.0, 50.0), (0.0, 60.9), (-20.0, 60.9)))
    with pytest.raises(DataError) as err:
        band_weights(FIT_LAT, FIT_LON, south, source="f.nc")
    assert str(err.value) == ("f.nc: grid covers latitudes 60.00..62.00 N, longitudes -10.00..-8.00 E: it does not"
                              " cover band 1 (61.00-62.00 N)")


def test_enclosed_cells_are_those_no_4_neighbour_path_joins_to_the_edge():
    ring = np.ones((5, 5), bool)
    ring[1:4, 1:4] = False
    ring[2, 2] = True  # inside a ring of False
    expected = np.zeros((5, 5), bool)
    expected[2, 2] = True
    np.testing.assert_array_equal(enclosed(ring), expected)
    # paths into the grid from each of its four edges: all open, nothing enclosed (diagonal contacts don't join)
    paths = np.array([
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 1],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 0, 0],
    ], bool)
    assert not enclosed(paths).any()
    # one cell on each edge and one in the middle, each alone: only the middle one is enclosed (lists work too)
    star = [
        [0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0],
        [1, 0, 1, 0, 1],
        [0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0],
    ]
    out = enclosed(star)
    assert out.dtype == bool
    np.testing.assert_array_equal(out, expected)


def _weights(w, lat, lon):
    return xr.DataArray(w, dims=("band", "lat", "lon"), coords={"band": np.arange(w.shape[0]), "lat": lat, "lon": lon})


def test_missing_land_is_holes_plus_empty_land_beyond_55_km_of_the_sea():
    """0.1-degree rows (11.1 km), 0.25-degree columns (13.9 km at 60 N). Sea (no band weight) in columns 0-1, so
    columns 2-4 lie within 55 km of it and column 5 (55.6 km) does not. Without data: the sea and columns 2-3
    (coast), a lake at (1, 5) inside data, row 2's columns 4-7 (column 4 coast, 5-7 beyond), (0, 9), and columns
    13-15 (an area the file leaves out, reaching the east edge)."""
    lat, lon = 60.0 + 0.1 * np.arange(3), -10.0 + 0.25 * np.arange(16)
    w = np.zeros((2, 3, 16))
    w[0, 0, 2:] = 1.0  # band 0: row 0
    w[1, 1:, 2:] = 1.0  # band 1: rows 1-2
    valid = np.ones((3, 16), bool)
    valid[:, :4] = False
    valid[1, 5] = False
    valid[2, 4:8] = False
    valid[0, 9] = False
    valid[:, 13:] = False
    expected = np.zeros((3, 16), bool)
    expected[1, 5] = True  # enclosed, though on the coast
    expected[2, 5:8] = True  # 55.6 km and more from the sea; (2, 4) is 41.7 km away: coast
    expected[0, 9] = True
    expected[:, 13:] = True
    np.testing.assert_array_equal(missing_land(valid, _weights(w, lat, lon)), expected)


def test_the_coast_is_as_wide_along_a_diagonal_and_in_km_not_in_grid_steps():
    """Sea in one corner of a 0.1-degree grid at 65 N (11.1 km a row, 4.7 km a column), and empty cells joined to
    it (so none is enclosed): a staircase to (3, 3), 36 km away, is coast (the cross-shaped margin before took it
    for land left out: 6 grid steps > 5); down column 0, (4, 0) at 44 km is coast and (5, 0) at 56 km is not;
    along row 0, (0, 11) at 52 km is coast and (0, 12) at 56 km is not."""
    lat, lon = 65.0 + 0.1 * np.arange(8), -150.0 + 0.1 * np.arange(14)
    w = np.ones((1, 8, 14))
    w[0, 0, 0] = 0.0  # the sea: one cell
    valid = np.ones((8, 14), bool)
    for cell in ((1, 1), (2, 1), (2, 2), (3, 2), (3, 3)):
        valid[cell] = False
    valid[:6, 0] = False
    valid[0, :13] = False
    expected = np.zeros((8, 14), bool)
    expected[5, 0] = expected[0, 12] = True
    np.testing.assert_array_equal(missing_land(valid, _weights(w, lat, lon)), expected)


def test_on_a_coarse_grid_the_coast_is_one_cell_wide():
    """1-degree cells (55.6 km a column at 60 N, 111 km a row): the cell next to the sea is always coast. One row of
    cells, sea in column 0, no data in columns 1 and 2 on the grid's edge: column 1 is coast, column 2 (111 km) is
    land left out. The same along one column. 0/1 integers work as the data mask."""
    w = np.zeros((1, 1, 6))
    w[0, 0, 1:] = 1.0
    valid = [[0, 0, 0, 1, 1, 1]]
    expected = [[False, False, True, False, False, False]]
    out = missing_land(valid, _weights(w, [60.0], -10.0 + np.arange(6.0)))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, expected)
    out = missing_land(np.transpose(valid), _weights(w.transpose(0, 2, 1), 60.0 + np.arange(6.0), [-10.0]))
    np.testing.assert_array_equal(out, np.transpose(expected))


# check_holes grid: 10 x 10 cells of 0.1 degree, all land (no sea), band 0 rows 0-4, band 1 rows 5-9, weight 1
HOLE_LAT, HOLE_LON = 60.0 + 0.1 * np.arange(10), -10.0 + 0.1 * np.arange(10)
HOLE_GEOM = BandGeometry((59.95, 60.45, 60.95), -10.05, -9.05, outline=RECT)


def _hole_weights():
    w = np.zeros((2, 10, 10))
    w[0, :5] = 1.0
    w[1, 5:] = 1.0
    return _weights(w, HOLE_LAT, HOLE_LON)


def test_a_hole_of_exactly_the_allowed_share_passes():
    valid = np.ones((10, 10), bool)
    valid[2, 3] = valid[7, 7] = False  # 1 of each band's 50 cells: 2%, not more than MAX_HOLE_SHARE
    assert MAX_HOLE_SHARE == 0.02
    check_holes(valid, _hole_weights(), HOLE_GEOM, source="ok.nc")


def test_a_hole_over_the_allowed_share_names_band_cells_share_and_place():
    valid = np.ones((10, 10), bool)
    valid[2, 3] = False  # band 0: 2%, allowed
    valid[6, 2] = valid[8, 7] = valid[9, 4] = False  # band 1: 3 of 50 cells, 6%
    with pytest.raises(DataError) as err:
        check_holes(valid, _hole_weights(), HOLE_GEOM, source="sm.nc", what="soil moisture")
    assert str(err.value) == (
        "sm.nc: no soil moisture in 3 land cells of band 1 (60.45-60.95 N), 6.0% of the band's land, at latitudes"
        " 60.60..60.90 N, longitudes -9.80..-9.30 E: a hole in the grid or an area the file leaves out (the band"
        " mean would cover part of the band)")
    valid = np.ones((10, 10), bool)
    valid[0:2, 0] = False  # band 0: 2 cells on the grid's edge, 4%; with no sea anywhere they are land
    with pytest.raises(DataError) as err:
        check_holes(valid, _hole_weights(), HOLE_GEOM)
    assert str(err.value) == (
        "no data in 2 land cells of band 0 (59.95-60.45 N), 4.0% of the band's land, at latitudes 60.00..60.10 N,"
        " longitudes -10.00..-10.00 E: a hole in the grid or an area the file leaves out (the band mean would"
        " cover part of the band)")


# band_means grid: 0.25-degree cells, the study box (rows 1-8, columns 1-8) fenced by one row/column outside it
FENCE_LAT, FENCE_LON = 59.875 + 0.25 * np.arange(10), -10.125 + 0.25 * np.arange(10)


def _fenced(**fields):
    """Two months of each field: as given, then doubled."""
    return xr.Dataset({k: (("time", "lat", "lon"), np.stack([v, 2 * v])) for k, v in fields.items()},
                      coords={"time": [0, 1], "lat": FENCE_LAT, "lon": FENCE_LON})


def test_band_means_weigh_cells_by_cos_lat_area_and_read_only_the_bands_cells():
    """In each band 4 rows x 8 columns of equal-extent cells, weighted by cos(latitude): a field that is 1 in
    one study column has band mean 1/8 whatever the row weights; one that is 1 in a band's top (or bottom) row
    has cos(that row) / sum of cos over the band's 4 rows. The fence cells outside the study box hold inf and
    no band mean sees them."""
    west, east, north, south = (np.zeros((10, 10)) for _ in range(4))
    west[:, 1] = east[:, 8] = 1.0
    north[[4, 8], :] = south[[1, 5], :] = 1.0
    ring = np.full((10, 10), np.inf)
    ring[1:9, 1:9] = 4.0
    gappy = np.full((10, 10), 2.0)
    gappy[1, 1] = gappy[6, 3] = gappy[8, 8] = np.nan
    ds = _fenced(west=west, east=east, north=north, south=south, ring=ring, gappy=gappy)
    ds["west"].attrs = {"units": "K", "long_name": "west column"}
    out = band_means(ds, BOX)
    c = _cos(FENCE_LAT)
    for name, expected in {
        "west": [0.125, 0.125],
        "east": [0.125, 0.125],
        "north": [c[4] / c[1:5].sum(), c[8] / c[5:9].sum()],
        "south": [c[1] / c[1:5].sum(), c[5] / c[5:9].sum()],
        "ring": [4.0, 4.0],
        "gappy": [2.0, 2.0],  # missing cells drop out of numerator and denominator
    }.items():
        assert out[name].dims == ("band", "time")
        np.testing.assert_allclose(out[name].values, np.transpose([expected, 2 * np.array(expected)]), rtol=1e-12,
                                   err_msg=name)  # each month on its own: the doubled month has doubled means
    assert out["west"].attrs == {"units": "K", "long_name": "west column"}
    assert out["east"].attrs == {}


def test_band_means_carry_band_index_and_edges_with_units():
    out = band_means(_fenced(x=np.ones((10, 10))), BOX)
    np.testing.assert_array_equal(out["band"], [0, 1])
    assert out["band"].attrs == {"long_name": "latitude band index (Table 1 of Rahaman 2025)"}
    np.testing.assert_array_equal(out["lat_min"], [60.0, 61.0])
    np.testing.assert_array_equal(out["lat_max"], [61.0, 62.0])
    assert out["lat_min"].dims == out["lat_max"].dims == ("band",)
    assert out["lat_min"].attrs == {"units": "degrees_north", "long_name": "band lower latitude"}
    assert out["lat_max"].attrs == {"units": "degrees_north", "long_name": "band upper latitude"}


def test_band_means_on_a_grid_with_one_row_per_band():
    """1-degree rows 60-61 and 61-62 (like a coarse CMIP grid): each band is one row."""
    x = np.array([[1.0, 3.0, 5.0, 7.0], [2.0, 2.0, 2.0, 2.0]])
    ds = xr.Dataset({"x": (("time", "lat", "lon"), x[None])}, coords={"time": [0], "lat": [60.5, 61.5],
                                                                     "lon": FIT_LON})
    np.testing.assert_allclose(band_means(ds, BOX)["x"].values[:, 0], [4.0, 2.0], rtol=1e-12)
    with pytest.raises(DataError, match=r"^coarse.nc: grid covers latitudes 60.00..61.00 N, .* band 1 \(61.00-62.00 N\)$"):
        band_means(ds.isel(lat=[0]), BOX, source="coarse.nc")  # the file named in band_weights' refusal


def test_band_means_refuse_a_band_whose_weights_are_all_zero(monkeypatch):
    """band_weights itself refuses such grids; band_means still guards its crop against an empty band."""
    def no_band_1(lat, lon, geometry, source=None):
        w = band_weights(lat, lon, geometry, source=source)
        w[1] = 0.0
        return w

    monkeypatch.setattr(aggregate, "band_weights", no_band_1)
    with pytest.raises(DataError) as err:
        band_means(_fenced(x=np.ones((10, 10))), BOX, source="empty.nc")
    assert str(err.value) == "empty.nc: band 1 has no land on this grid"


def _cache_probe():
    """A lazy dataset whose one value is xarray's file-cache size at the moment dask computes it."""
    import dask
    import dask.array as darr

    def cache_size():
        return np.array(xr.get_options()["file_cache_maxsize"])

    return xr.Dataset({"cache": ((), darr.from_delayed(dask.delayed(cache_size)(), shape=(), dtype=int))})


@pytest.fixture
def restore_file_cache():
    before = xr.get_options()["file_cache_maxsize"]
    yield
    xr.set_options(file_cache_maxsize=before)


def test_streaming_compute_caps_open_files_while_it_runs_and_gives_the_eager_result(restore_file_cache):
    before = xr.get_options()["file_cache_maxsize"]
    assert compute_streaming(_cache_probe(), max_open_files=3)["cache"].item() == 3
    assert compute_streaming(_cache_probe())["cache"].item() == 4  # default: 4 files
    assert xr.get_options()["file_cache_maxsize"] == before  # only while computing
    ds = _fenced(x=np.arange(100.0).reshape(10, 10))
    lazy = band_means(ds.chunk({"time": 1}), BOX)
    assert lazy["x"].chunks is not None  # still lazy
    out = compute_streaming(lazy)
    assert out["x"].chunks is None
    xr.testing.assert_allclose(out, band_means(ds, BOX), rtol=1e-12)


def test_streaming_compute_shows_a_progress_bar_only_past_five_seconds(monkeypatch, capsys):
    """dask's progress bar reads its clock from dask.diagnostics.progress.default_timer: a task that moves that
    clock on by 5.5 s (or 4.5 s) stands in for a slow (or quick) computation."""
    import dask
    import dask.array as darr
    from dask.diagnostics import progress

    clock = [0.0]
    monkeypatch.setattr(progress, "default_timer", lambda: clock[0])

    def slow(seconds):
        clock[0] += seconds
        return np.array(1.0)

    for seconds, shown in ((4.5, False), (5.5, True)):
        lazy = xr.Dataset({"x": ((), darr.from_delayed(dask.delayed(slow)(seconds), shape=(), dtype=float))})
        assert compute_streaming(lazy)["x"].item() == 1.0
        assert ("100% Completed" in capsys.readouterr().out) is shown


def test_streaming_compute_on_a_dask_client_caps_each_workers_open_files(restore_file_cache):
    from distributed import Client, LocalCluster

    ds = _fenced(x=np.arange(100.0).reshape(10, 10))
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        out = compute_streaming(band_means(ds.chunk({"time": 1}), BOX), max_open_files=3, client=client)
        assert isinstance(out, xr.Dataset) and out["x"].chunks is None  # computed, not a future
        xr.testing.assert_allclose(out, band_means(ds, BOX), rtol=1e-12)
        assert set(client.run(lambda: xr.get_options()["file_cache_maxsize"]).values()) == {3}
        assert compute_streaming(_cache_probe(), client=client)["cache"].item() == 4  # default: 4 files


def test_cap_open_files_sets_xarrays_file_cache(restore_file_cache):
    aggregate._cap_open_files(7)
    assert xr.get_options()["file_cache_maxsize"] == 7
