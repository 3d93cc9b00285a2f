"""Grid cells as units: which cells, their areas and attributes, and the streamed [cell, time, variable] store."""

import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from helpers import canonical_cube, write_cds
from thawcast.catalogue import LITHOLOGY_CLASSES
from thawcast.config import StaticConfig
from thawcast.errors import DataError
from thawcast.ingest.era5land import open_era5land
from thawcast.ingest.synthetic.relief import elevation
from thawcast.prep.cells import (
    cell_means,
    cell_store,
    holdout_blocks,
    land_cells,
    static_cell_table,
    with_soil,
    write_cell_store,
)
from thawcast.prep.geometry import EARTH_RADIUS_KM, BandGeometry
from thawcast.variables import TARGETS

GEOM = BandGeometry((60.0, 61.0, 62.0), -150.0, -148.0)


def _grid(lat, lon, valid):
    return xr.DataArray(np.asarray(valid, bool), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="stl1")


def test_land_cells_are_the_valid_cells_inside_the_bands_and_longitudes_in_grid_order():
    lat = np.array([59.75, 60.25, 60.75, 61.25, 61.75, 62.25])  # first and last outside the bands
    lon = np.array([-150.25, -149.75, -149.25, -148.75, -148.25, -147.75])  # first and last outside the longitudes
    valid = np.ones((6, 6), bool)
    valid[2, 3] = False  # the sea
    cells = land_cells(_grid(lat, lon, valid), GEOM)
    assert len(cells) == 4 * 4 - 1
    assert cells.lat_index.tolist() == [1] * 4 + [2] * 3 + [3] * 4 + [4] * 4
    assert cells.lon_index.tolist() == [1, 2, 3, 4, 1, 2, 4] + [1, 2, 3, 4] * 2
    assert cells.band.tolist() == [0] * 7 + [1] * 8
    assert (cells.lat, cells.lon) == (pytest.approx(lat[cells.lat_index]), pytest.approx(lon[cells.lon_index]))
    with pytest.raises(DataError, match=r"^stl1: no land cell in the study area \(60.0..62.0 N, -150.0..-148.0 E\)"):
        land_cells(_grid(lat, lon, np.zeros((6, 6), bool)), GEOM)


def test_cell_areas_add_up_to_the_spherical_zone():
    lat, lon = np.arange(60.125, 62.0, 0.25), np.arange(-149.875, -148.0, 0.25)
    cells = land_cells(_grid(lat, lon, np.ones((lat.size, lon.size))), GEOM)
    zone = EARTH_RADIUS_KM ** 2 * (np.sin(np.deg2rad(62.0)) - np.sin(np.deg2rad(60.0))) * np.deg2rad(2.0)
    assert cells.area_km2.sum() == pytest.approx(zone, rel=1e-12)
    # a cell further north is smaller: the same zone formula, cell by cell
    assert cells.area_km2[0] > cells.area_km2[-1] > 0


def test_cell_means_average_the_fine_pixels_in_each_cell_by_cos_latitude():
    coarse = land_cells(_grid(np.array([60.5, 61.5]), np.array([-149.5, -148.5]), np.ones((2, 2))), GEOM)
    fine_lat, fine_lon = np.array([60.25, 60.75, 61.25, 61.75]), np.array([-149.75, -149.25, -148.75, -148.25])
    values = np.array([[1.0, 2.0, 10.0, 10.0],
                       [3.0, np.nan, 10.0, 10.0],
                       [0.0, 0.0, 5.0, 7.0],
                       [4.0, 4.0, 5.0, 7.0]])
    da = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": fine_lat, "lon": fine_lon})
    out = cell_means(da, coarse)
    w1, w2 = np.cos(np.deg2rad(60.25)), np.cos(np.deg2rad(60.75))
    # cell (60.5, -149.5): pixels 1 and 2 at 60.25, 3 at 60.75 (the NaN left out)
    assert out[0] == pytest.approx((w1 * 3.0 + w2 * 3.0) / (2 * w1 + w2), rel=1e-12)
    assert out[1] == pytest.approx(10.0)
    w3, w4 = np.cos(np.deg2rad(61.25)), np.cos(np.deg2rad(61.75))
    assert out[2] == pytest.approx((2 * w4 * 4.0) / (2 * w3 + 2 * w4), rel=1e-12)  # 0, 0 at 61.25; 4, 4 at 61.75
    assert out[3] == pytest.approx(6.0)
    # pixels outside the coarse grid count for nothing; a cell with no pixel is NaN
    shifted = da.assign_coords(lon=fine_lon + 1.0)
    assert np.isnan(cell_means(shifted, coarse)[[0, 2]]).all()


def _statics(cells_grid, nan_at=None):
    lat, lon = cells_grid
    fine_lat = np.repeat(lat, 2) + np.tile([-0.1, 0.1], lat.size)
    fine_lon = np.repeat(lon, 2) + np.tile([-0.1, 0.1], lon.size)
    shape = (fine_lat.size, fine_lon.size)
    clay = np.full(shape, 20.0)
    if nan_at is not None:
        clay[2 * nan_at[0]:2 * nan_at[0] + 2, 2 * nan_at[1]:2 * nan_at[1] + 2] = np.nan
    coords = {"lat": fine_lat, "lon": fine_lon}
    hwsd = xr.Dataset({"clay_pct": (("lat", "lon"), clay), "sand_pct": (("lat", "lon"), np.full(shape, 50.0)),
                       "silt_pct": (("lat", "lon"), np.full(shape, 30.0)),
                       "oc_top_pct": (("lat", "lon"), np.full(shape, 2.0))}, coords=coords)
    # lithology: the western half of every cell class 6 (sedimentary), the eastern half class 1
    codes = xr.DataArray(np.tile([6.0, 1.0], (fine_lat.size, lon.size)), dims=("lat", "lon"), coords=coords)
    return hwsd, codes


def test_static_cell_table_gives_each_cell_its_soil_and_lithology_shares():
    lat, lon = np.array([60.5, 61.5]), np.array([-149.5, -148.5])
    cells = land_cells(_grid(lat, lon, np.ones((2, 2))), GEOM)
    hwsd, codes = _statics((lat, lon))
    table = static_cell_table(hwsd, codes, cells, StaticConfig())
    assert len(table) == 4 and table.index.name == "cell"
    np.testing.assert_allclose(table[["clay_pct", "sand_pct", "silt_pct"]], [[20.0, 50.0, 30.0]] * 4)
    shares = table[[f"lithology_{c}" for c in LITHOLOGY_CLASSES]]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    np.testing.assert_allclose(table["lithology_sedimentary"], 0.5)
    np.testing.assert_allclose(table["lithology_unconsolidated_surficial_deposits"], 0.5)
    # topsoil organic carbon 2 % is 20 g/kg averaged over 0-30 cm; layer 1 (0-7 cm) holds more than layer 4
    assert table["oc_l1_g_kg"].iloc[0] > 20.0 > table["oc_l4_g_kg"].iloc[0] > 0
    assert table["bulk_density_l1_kg_m3"].iloc[0] < table["bulk_density_l4_kg_m3"].iloc[0]
    np.testing.assert_allclose(table["lat"], [60.5, 60.5, 61.5, 61.5])
    np.testing.assert_allclose(table["lon"], [-149.5, -148.5, -149.5, -148.5])


def test_a_cell_without_soil_is_one_error_naming_it():
    lat, lon = np.array([60.5, 61.5]), np.array([-149.5, -148.5])
    cells = land_cells(_grid(lat, lon, np.ones((2, 2))), GEOM)
    hwsd, codes = _statics((lat, lon), nan_at=(1, 0))
    with pytest.raises(DataError, match=r"^static: 1 of 4 land cells have no HWSD soil or lithology \(first: "
                                        r"\(61.50 N, -149.50 E\)\); they cannot be units$"):
        static_cell_table(hwsd, codes, cells, StaticConfig())


def test_cells_without_hwsd_soil_are_left_out_with_a_count(caplog):
    lat, lon = np.array([60.5, 61.5]), np.array([-149.5, -148.5])
    cells = land_cells(_grid(lat, lon, np.ones((2, 2))), GEOM)
    hwsd, _ = _statics((lat, lon), nan_at=(1, 0))  # the cell at 61.5 N, -149.5 E has no soil pixel
    with caplog.at_level(logging.WARNING, logger="thawcast.prep.cells"):
        kept = with_soil(hwsd, cells)
    assert len(kept) == 3 and kept.lat.tolist() == [60.5, 60.5, 61.5] and kept.lon.tolist() == [-149.5, -148.5, -148.5]
    assert kept.band.tolist() == [0, 0, 1] and (kept.grid_lat == cells.grid_lat).all()
    expected = "1 of 4 land cells have no soil in HWSD (water, ice or rock) and are left out; first: (61.50 N, -149.50 E)"
    assert caplog.messages == [expected]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="thawcast.prep.cells"):
        assert len(with_soil(_statics((lat, lon))[0], cells)) == 4
    assert caplog.messages == []


@pytest.fixture(scope="module")
def cube_files(tmp_path_factory):
    lat, lon = np.arange(59.75, 62.3, 0.5), np.arange(-150.25, -147.7, 0.5)
    cube = canonical_cube(years=(2001, 2002, 2003), lat=lat, lon=lon, seed=3)
    sea = (cube["lat"] > 61.5) & (cube["lon"] > -149.0)
    for t in TARGETS:
        cube[t] = cube[t].where(~sea)
    folder = tmp_path_factory.mktemp("cells") / "era5land"
    write_cds(cube, folder)
    return folder


def test_the_store_holds_each_land_cells_series_and_is_built_a_year_at_a_time(cube_files, tmp_path):
    folder = cube_files
    era = open_era5land(folder)
    cells = land_cells(era["t_soil1"].notnull().all("time").compute(), GEOM)
    # bands 60-62 hold rows 60.25..61.75, longitudes -150..-148 hold columns -149.75..-148.25; the sea takes 2 cells
    assert len(cells) == 4 * 4 - 2
    store = cell_store(era, cells, ("t_air", *TARGETS))
    assert store["values"].dims == ("cell", "time", "variable")
    assert store["values"].chunks[1] == (12, 12, 12)  # a year of months per chunk: nothing read yet
    path = tmp_path / "cells.nc"
    summary = write_cell_store(store, path)
    with xr.open_dataset(path) as saved:
        assert saved["values"].dtype == np.float32
        assert saved["values"].encoding["chunksizes"] == (len(cells), 12, 5)
        assert list(saved["variable"].values) == ["t_air", *TARGETS]
        np.testing.assert_array_equal(saved["band"], cells.band)
        expected = open_era5land(folder).load()
        for k in range(len(cells)):
            point = expected.isel(lat=cells.lat_index[k], lon=cells.lon_index[k])
            assert float(saved["lat"][k]) == float(point["lat"]) and float(saved["lon"][k]) == float(point["lon"])
            for v, name in enumerate(["t_air", *TARGETS]):
                np.testing.assert_array_equal(saved["values"][k, :, v], point[name].values.astype(np.float32))
        assert not saved["values"].isnull().any()
        assert pd.DatetimeIndex(saved["time"].values).equals(pd.date_range("2001-01-01", "2003-12-01", freq="MS"))
        # the summary found on the way is the saved values' own
        np.testing.assert_array_equal(summary["min"], saved["values"].min("time"))
        np.testing.assert_array_equal(summary["max"], saved["values"].max("time"))
        assert (summary["missing"] == 0).all()
    # written in time order from one thread: the same data give the same bytes (a DVC output)
    again = tmp_path / "again.nc"
    write_cell_store(cell_store(open_era5land(folder), cells, ("t_air", *TARGETS)), again)
    assert again.read_bytes() == path.read_bytes()


def test_the_store_summary_counts_missing_months_and_ignores_them_in_the_range(tmp_path):
    t = pd.date_range("2001-01-01", periods=24, freq="MS")
    v = np.arange(2 * 24 * 2, dtype=np.float32).reshape(2, 24, 2)
    v[1, 13, 0] = np.nan  # cell 1, February 2002, variable a
    store = xr.Dataset({"values": (("cell", "time", "variable"), v)},
                       coords={"cell": [0, 1], "time": t, "variable": ["a", "b"]}).chunk({"time": 12})
    summary = write_cell_store(store, tmp_path / "s.nc")
    assert summary["missing"].values.tolist() == [[0, 0], [1, 0]]
    np.testing.assert_array_equal(summary["min"], [[0.0, 1.0], [48.0, 49.0]])
    np.testing.assert_array_equal(summary["max"], [[46.0, 47.0], [94.0, 95.0]])
    with xr.open_dataset(tmp_path / "s.nc") as saved:
        np.testing.assert_array_equal(saved["values"], v)


def test_a_store_needs_its_variables_and_the_cells_grid(cube_files):
    folder = cube_files
    era = open_era5land(folder)
    cells = land_cells(era["t_soil1"].notnull().all("time").compute(), GEOM)
    with pytest.raises(DataError, match=r"variables \['swe'\] are not in the files"):
        cell_store(era, cells, ("t_air", "swe"))
    with pytest.raises(DataError, match=r"grid 6 x 5 is not the cells' grid 6 x 6"):
        cell_store(era.isel(lon=slice(0, 5)), cells)


def test_the_cells_stage_on_the_tiny_world(tiny_world, tiny_cfg, tmp_path, caplog, monkeypatch):
    """Every land cell with soil is a unit; its store series are the raw files' at that cell, its statics the
    HWSD pixels', and the GX suite passed (the stage would have raised); the suite refuses a height out of range
    or missing, and skips it where the cells have none."""
    from conftest import layout
    from thawcast.quality.validation import run_suite
    from thawcast.stages import cells as stage

    checked = []
    monkeypatch.setattr(stage, "run_suite", lambda frame, *a, **k: checked.append((frame, a, k)) or run_suite(
        frame, *a, **k))
    paths = layout(tmp_path, raw=tiny_world / "raw")
    with caplog.at_level(logging.WARNING, logger="thawcast.prep.cells"):
        stage.run(tiny_cfg, paths)
    frame, args, kwargs = checked[0]
    assert run_suite(frame, *args, **kwargs)["success"]
    for bad in (9500.0, np.nan):
        section = run_suite(frame.assign(elevation_m=np.where(frame.index == 1, bad, frame["elevation_m"])), *args,
                            **kwargs)
        assert not section["success"] and all("elevation_m" in f for f in section["failures"])
    assert run_suite(frame.drop(columns="elevation_m"), *args, **kwargs)["success"]
    era = open_era5land(tiny_world / "raw" / "era5land").load()
    with xr.open_dataset(paths.cell_store) as store, xr.open_dataset(paths.static_cells) as statics:
        assert store.attrs["thawcast_synthetic"] == "true" and store.attrs["thawcast_stage"] == "cells"
        assert list(store["variable"].values) == list(stage.store_variables(era))
        n = store.sizes["cell"]
        area = tiny_cfg.study_area
        lat, lon = era["lat"], era["lon"]
        inside = (lat >= area.band_edges[0]) & (lat < area.band_edges[-1]) & (lon >= area.lon_min) & (
            lon <= area.lon_max)
        land = (era["t_soil1"].notnull().all("time") & inside).sum().item()
        left_out = [m for m in caplog.messages if "no soil in HWSD" in m]
        assert n == land - (int(left_out[0].split()[0]) if left_out else 0) and n > 0
        assert ((store["lat"] >= area.band_edges[0]) & (store["lat"] < area.band_edges[-1])).all()
        assert statics.sizes["cell"] == n and not statics.to_dataframe().isna().any().any()
        assert set(statics["held_out"].values.tolist()) == {0, 1}  # the tiny grid holds several blocks
        for k in (0, n // 2, n - 1):
            point = era.sel(lat=float(store["lat"][k]), lon=float(store["lon"][k]))
            np.testing.assert_array_equal(store["values"][k, :, -1], point["t_soil4"].values.astype(np.float32))
        area = store["area_km2"].values
        assert (area > 0).all() and area.max() / area.min() == pytest.approx(
            np.cos(np.deg2rad(store["lat"].min().item())) / np.cos(np.deg2rad(store["lat"].max().item())), rel=0.02)
        # the height is the synthetic relief at the cell's centre, read back from ERA5-Land's geopotential (float32)
        assert statics["elevation_m"].attrs["units"] == "m"
        np.testing.assert_allclose(statics["elevation_m"].values,
                                   elevation(statics["lat"].values, statics["lon"].values), rtol=1e-5, atol=0.01)


def test_without_a_geopotential_the_cells_have_no_height_and_the_models_no_such_input(tiny_world, tiny_cfg,
                                                                                      tmp_path):
    import shutil

    from conftest import layout
    from thawcast.prep.cell_windows import build_cell_history, open_cells
    from thawcast.stages import cells as stage

    shutil.copytree(tiny_world / "raw", tmp_path / "raw")
    (tmp_path / "raw" / "static" / "era5land_geopotential.nc").unlink()
    paths = layout(tmp_path, raw=tmp_path / "raw")
    stage.run(tiny_cfg, paths)
    data = open_cells(paths.cell_store, paths.static_cells)
    assert "elevation_m" not in data.static
    names = build_cell_history(tiny_cfg, data).feature_names
    assert "elevation_m" not in names and {"lat", "lon"} <= set(names)


def _square(n, step=0.5):
    lat = 60.0 + step / 2 + step * np.arange(n)
    lon = -150.0 + step / 2 + step * np.arange(n)
    return land_cells(_grid(lat, lon, np.ones((n, n))), BandGeometry((60.0, 60.0 + n * step), -150.0, -150.0 + n * step))


def test_the_spatial_hold_out_takes_whole_blocks_until_the_share_is_reached():
    cells = _square(4)  # 16 cells of 0.5 degree; blocks of 1 x 1 degree hold 4 cells each
    block = (np.floor((cells.lat - 60.0) / 1.0) * 10 + np.floor((cells.lon + 150.0) / 1.0)).astype(int)
    for share, n_blocks in ((0.1, 1), (0.25, 1), (0.3, 2), (0.5, 2), (0.9, 3)):
        out = holdout_blocks(cells, (1.0, 1.0), share, seed=0)
        assert out.sum() == 4 * n_blocks, share  # whole blocks, the fewest that reach the share
        for b in np.unique(block):  # a block is all in or all out
            assert len(set(out[block == b])) == 1
    # the same seed gives the same blocks; the draw depends on it
    assert (holdout_blocks(cells, (1.0, 1.0), 0.25, seed=3) == holdout_blocks(cells, (1.0, 1.0), 0.25, seed=3)).all()
    assert len({tuple(holdout_blocks(cells, (1.0, 1.0), 0.25, seed=s)) for s in range(10)}) > 1
    # blocks of 1 x 2 degrees: 8 cells each, so a quarter holds out one half of the square
    assert holdout_blocks(cells, (1.0, 2.0), 0.25, seed=0).sum() == 8


def test_a_hold_out_that_would_leave_nothing_to_train_on_is_refused():
    cells = _square(4)
    with pytest.raises(DataError, match=r"^cells: the 16 cells fill 1 block of 2.0 x 2.0 degrees: a spatial hold-out"
                                        r" needs at least 2 \(smaller cells.holdout_block_deg\)$"):
        holdout_blocks(cells, (2.0, 2.0), 0.2, seed=0)


def test_the_hold_out_settings_are_checked_when_params_are_read():
    from thawcast.config import parse_config
    from thawcast.errors import ConfigError

    for bad in ({"holdout_share": 1.0}, {"holdout_share": 0.0}, {"holdout_block_deg": [2.0, 0.0]}):
        with pytest.raises(ConfigError, match="cells.holdout"):
            parse_config({"cells": bad})
