"""Stages end to end on the tiny world: outputs, provenance, and nothing lost on failure."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from conftest import SUITES, TINY, layout
from thawcast import __version__
from thawcast.config import parse_config
from thawcast.errors import DataError, ValidationFailed
from thawcast.quality.validation import validate_stage
from thawcast.stages import bands, raw


def test_outputs_and_provenance(tiny_world, tiny_cfg):
    era = xr.open_dataset(tiny_world / "bands" / "era5land_bands.nc")
    assert era.sizes == {"band": 6, "time": 36}
    assert era["t_soil4"].attrs["units"] == "degC"
    assert {"thawcast_version", "thawcast_stage", "method", "source", "history"} <= set(era.attrs)
    # Provenance is reproducible: no git commit and no clock time (those are in MLflow and dvc.lock).
    assert "git_commit" not in era.attrs
    assert era.attrs["history"] == f"thawcast {__version__} stage 'bands'"
    for exp in tiny_cfg.cmip5.experiments:
        c = xr.open_dataset(tiny_world / "bands" / f"cmip5_{exp}.nc")
        assert c.attrs["experiment_id"] == exp and c.attrs["thawcast_synthetic"] == "true"
    static = xr.open_dataset(tiny_world / "static" / "static_bands.nc")
    assert static.attrs["hwsd_note"].startswith("texture and organic carbon are REAL")
    # Real HWSD: Alaskan topsoil texture sums to ~100 % and is sand/silt dominated.
    total = static["clay_pct"] + static["sand_pct"] + static["silt_pct"]
    np.testing.assert_allclose(total.values, 100.0, atol=2.0)
    # Per-layer organic carbon declines with depth and bulk density rises.
    assert np.all(static["oc_l1_g_kg"] > static["oc_l4_g_kg"])
    assert np.all(static["bulk_density_l1_kg_m3"] < static["bulk_density_l4_kg_m3"])


def test_cmip_scenarios_follow_their_warming_paths(tiny_world):
    """The RCPs share one weather, so their differences are the forced warming alone (annual means of the
    paths in climate.warming, winter amplification averaging out over the year to within 0.02 K)."""
    from thawcast.ingest.synthetic.climate import warming

    def annual(exp):
        t = xr.open_dataset(tiny_world / "bands" / f"cmip5_{exp}.nc")["t_air"].mean("band")
        return t.groupby("time.year").mean()

    base = annual("rcp26")
    years = base["year"].values
    for exp in ("rcp45", "rcp60", "rcp85"):
        forced = [warming(y + (np.arange(12) + 0.5) / 12, 0.5, exp).mean()
                  - warming(y + (np.arange(12) + 0.5) / 12, 0.5, "rcp26").mean() for y in years]
        np.testing.assert_allclose(annual(exp).values - base.values, forced, atol=0.02)
    assert forced[-1] > 0.1  # RCP8.5 pulls ahead of RCP2.6 by 2030


def test_cmip_is_biased_against_era5(tiny_world):
    era = xr.open_dataset(tiny_world / "bands" / "era5land_bands.nc")
    hist = xr.open_dataset(tiny_world / "bands" / "cmip5_historical.nc").sel(time=slice("2001", "2003"))
    assert float((hist["t_air"] - era["t_air"]).mean()) < -1.0  # a cold model
    assert float(hist["p_total"].mean() / era["p_total"].mean()) > 1.15  # a wet model


def _copy_world(tiny_world, tmp_path):
    for name in ("raw", "bands"):
        shutil.copytree(tiny_world / name, tmp_path / name)
    return tmp_path


def test_bad_raw_data_keeps_previous_outputs(tiny_world, tiny_cfg, tmp_path):
    root = _copy_world(tiny_world, tmp_path)
    before = {p.name: p.read_bytes() for p in (root / "bands").iterdir()}
    path = root / "raw" / "era5land" / "era5land_monthly_2002.nc"
    ds = xr.load_dataset(path)
    ds["t2m"][3] = -9999.0  # an unflagged fill value
    path.unlink()
    ds.to_netcdf(path)
    with pytest.raises(ValidationFailed, match="t_air"):
        bands.run(tiny_cfg, layout(root))
    assert {p.name: p.read_bytes() for p in (root / "bands").iterdir()} == before
    assert (root / "reports" / "bands.json").exists()
    # The raw stage's own contract catches it too, naming the file.
    sections = raw.validation_sections(tiny_cfg, root / "raw", SUITES)
    with pytest.raises(ValidationFailed, match="era5land_monthly_2002.nc"):
        validate_stage("raw", sections, root / "reports")


def test_nan_on_land_fails_raw_validation(tiny_world, tiny_cfg, tmp_path):
    root = _copy_world(tiny_world, tmp_path)
    path = root / "raw" / "era5land" / "era5land_monthly_2001.nc"
    ds = xr.load_dataset(path)
    land = np.isfinite(ds["swvl2"][0].values)
    ii, jj = np.argwhere(land)[0]
    ds["swvl2"][5, ii, jj] = np.nan
    path.unlink()
    ds.to_netcdf(path)
    sections = raw.validation_sections(tiny_cfg, root / "raw", SUITES)
    failures = [f for s in sections for f in s["failures"]]
    assert any("w2__nan_land" in f for f in failures)


def test_years_outside_the_data(tiny_world, tmp_path):
    cfg = parse_config({**TINY, "period": {"start_year": 2001, "end_year": 2005}})
    with pytest.raises(DataError, match=r"years 2001-2005 are outside the data, which cover 2001-01 to 2003-12"):
        bands.run(cfg, layout(tmp_path, raw=tiny_world / "raw"))
    assert not (tmp_path / "bands").exists()


def _rewrite(path, fn):
    ds = xr.load_dataset(path)
    path.unlink()
    fn(ds).to_netcdf(path)


def _user_files(tiny_world, tiny_cfg, root):
    """Copies of the tiny world's raw ERA5-Land and CMIP5 files under ``root/external`` and the files-mode config
    reading them: (config, folder)."""
    ext = root / "external"
    for kind in ("era5land", "cmip5"):
        shutil.copytree(tiny_world / "raw" / kind, ext / kind)
    return tiny_cfg.model_copy(update={"source": tiny_cfg.source.model_copy(update={
        "kind": "files", "era5land_dir": ext / "era5land", "cmip5_dir": ext / "cmip5"})}), ext


@pytest.fixture(scope="module")
def ingested(tiny_world, tiny_cfg, tmp_path_factory):
    """Files mode on copies of the tiny world's raw files, ingested once: the raw output folder."""
    root = tmp_path_factory.mktemp("ingested")
    raw.run(_user_files(tiny_world, tiny_cfg, root)[0], layout(root))
    return root / "raw"


@pytest.mark.parametrize("fault", ["narrow longitudes", "hole", "blank west", "renamed variable", "GRIB name"])
def test_user_files_that_miss_part_of_the_study_area_or_a_variable_are_named(ingested, tiny_world, tiny_cfg,
                                                                           tmp_path, fault):
    """Issue 16's cases: a grid over -160..-141 of the -168..-141 study area, a block of inland cells with no
    data, the full grid with no data west of 160 W, and 't2m' renamed 'T2M' or '2t', each in one of three
    ERA5-Land files, are refused where the files are read, naming the user's file, and the previous raw output
    stays."""
    cfg, ext = _user_files(tiny_world, tiny_cfg, tmp_path)
    shutil.copytree(ingested, tmp_path / "raw")
    before = sorted(p.name for p in (tmp_path / "raw" / "era5land").iterdir())
    target = sorted((ext / "era5land").glob("*.nc"))[1]
    if fault == "narrow longitudes":
        _rewrite(target, lambda ds: ds.isel(longitude=ds["longitude"].values >= -160))
        match = r"grid covers longitudes -160.50..-140.50 E, the study area spans -168.00..-141.00 E"
    elif fault == "hole":
        def hole(ds):
            lat, lon = ds["latitude"].values, ds["longitude"].values
            box = ((lat >= 63.5) & (lat <= 65.5))[:, None] & ((lon >= -156) & (lon <= -146))[None, :]
            ds["t2m"] = ds["t2m"].where(~xr.DataArray(box, dims=("latitude", "longitude")))
            return ds
        _rewrite(target, hole)
        match = r"no 't_air' in \d+ land cells of band 2 \(63.29-65.30 N\), .*: a hole in the grid"
    elif fault == "blank west":  # the full grid, every variable empty west of 160 W: it reaches the grid's edge
        _rewrite(target, lambda ds: ds.where(ds["longitude"] >= -160))
        match = r"no '\w+' in \d+ land cells of band \d .*: a hole in the grid or an area the file leaves out"
    elif fault == "renamed variable":
        _rewrite(target, lambda ds: ds.rename({"t2m": "T2M"}))
        match = r"no variable 't2m' .* but 'T2M'"
    else:  # a name no look-alike rule knows: the month the file covers have no air temperature at all
        _rewrite(target, lambda ds: ds.rename({"t2m": "2t"}))
        match = (r"no variable 't2m' \(.*\) for \d{4}-01\.\.\d{4}-12 \(12 months\), and no other file has it for those"
                 r" months; the file has \['2t', 'rsn', ")
    with pytest.raises(DataError, match=match) as info:
        raw.run(cfg, layout(tmp_path))
    assert str(info.value).startswith(f"{target}:"), str(info.value)
    assert sorted(p.name for p in (tmp_path / "raw" / "era5land").iterdir()) == before


def test_ingest_of_user_files(tiny_world, tiny_cfg, tmp_path):
    """source.kind = files: the same readers and contracts on 'downloaded' files."""
    cfg, ext = _user_files(tiny_world, tiny_cfg, tmp_path)
    raw.run(cfg, layout(tmp_path))
    assert len(list((tmp_path / "raw" / "era5land").glob("*.nc"))) == 3
    assert not (tmp_path / "raw" / "static").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg_bad = cfg.model_copy(update={"source": cfg.source.model_copy(update={"cmip5_dir": empty})})
    with pytest.raises(DataError, match="no IPSL-CM5A-MR r1i1p1 CMIP5 files"):
        raw.run(cfg_bad, layout(tmp_path))
    assert len(list((tmp_path / "raw" / "era5land").glob("*.nc"))) == 3  # previous output kept
    # a broken file is named where the user has it, not as its copy in the staging folder (gone by then)
    broken = sorted((ext / "era5land").glob("*.nc"))[1]
    broken.write_bytes(broken.read_bytes()[:2000])
    with pytest.raises(DataError) as info:
        raw.run(cfg, layout(tmp_path))
    assert str(info.value).startswith(f"{broken}:") and ".tmp-" not in str(info.value)


def test_errors_name_the_users_file_whether_the_copy_was_named_relative_or_absolute(tmp_path, monkeypatch):
    """raw reads copies of the user's files in its staging folder; an error names the user's file, also when the
    reader resolved the copy to an absolute path (the path came out doubled: '/work//data/era5/x.nc')."""
    from thawcast.stages.raw import _by_origin

    (tmp_path / "disk").mkdir()
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "data").symlink_to(tmp_path / "disk")  # data/ on another disk, as downloads often are
    monkeypatch.chdir(tmp_path / "proj")
    copy, original = Path("data/.raw.tmp-7/era5land/x.nc"), Path("/data/era5/x.nc")
    for named in (copy, copy.resolve(), Path.cwd() / copy):
        err = _by_origin(DataError(named, f"time axis of {named} stops in 2002-11"), {copy: original})
        assert str(err) == "/data/era5/x.nc: time axis of /data/era5/x.nc stops in 2002-11"


@pytest.mark.parametrize("fault", ["none", "narrow longitudes", "hole"])
def test_a_lithology_grid_is_checked_for_coverage_where_it_is_read(tiny_world, tiny_cfg, tmp_path, fault):
    """The user's lithology raster covers the study area without holes, checked by raw (it named thawcast's copy
    only at static before, and a hole passed), naming the user's file."""
    cfg, ext = _user_files(tiny_world, tiny_cfg, tmp_path)
    lith = ext / "lithology.nc"
    shutil.copy2(tiny_world / "raw" / "static" / "lithology.nc", lith)
    cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"lithology_file": lith})})
    if fault == "none":
        raw.run(cfg, layout(tmp_path))
        assert (tmp_path / "raw" / "static" / "lithology.nc").read_bytes() == lith.read_bytes()
        return
    lon = next(n for n in ("longitude", "lon") if n in xr.open_dataset(lith).coords)
    lat = "latitude" if lon == "longitude" else "lat"
    if fault == "narrow longitudes":
        _rewrite(lith, lambda ds: ds.isel({lon: ds[lon].values >= -160}))
        match = r"grid covers longitudes -16\d.\d+..-14\d.\d+ E, the study area spans -168.00..-141.00 E"
    else:
        def hole(ds):
            box = ((ds[lat] >= 63.5) & (ds[lat] <= 65.5)) & ((ds[lon] >= -156) & (ds[lon] <= -146))
            return ds.assign(lithology=ds["lithology"].where(~box, -1))
        _rewrite(lith, hole)
        match = r"no lithology in \d+ land cells of band 2 .*: a hole in the grid"
    with pytest.raises(DataError, match=match) as info:
        raw.run(cfg, layout(tmp_path))
    assert str(info.value).startswith(f"{lith}:"), str(info.value)
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("fault", ["none", "another grid", "cut short"])
def test_a_users_geopotential_is_copied_and_must_give_every_land_cell_a_height(tiny_world, tiny_cfg, tmp_path,
                                                                               fault):
    """source.geopotential_file: ERA5-Land's invariant file, global on 0..360 longitudes as ECMWF serves it, is
    taken as it is; one on another grid, or cut to less than the monthly files' land, is one error naming it."""
    cfg, ext = _user_files(tiny_world, tiny_cfg, tmp_path)
    geo = ext / "geo_1279l4_0.1x0.1.nc"
    with xr.open_dataset(tiny_world / "raw" / "static" / "era5land_geopotential.nc") as ds:
        ds = ds.load()
    ds = ds.assign_coords(longitude=ds["longitude"] % 360)  # a global file's longitudes
    if fault == "another grid":
        ds = ds.assign_coords(latitude=ds["latitude"] + 0.05)
    elif fault == "cut short":
        ds = ds.isel(longitude=slice(0, ds.sizes["longitude"] // 2))
    ds.to_netcdf(geo)
    cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"geopotential_file": geo})})
    if fault == "none":
        raw.run(cfg, layout(tmp_path))
        assert (tmp_path / "raw" / "static" / "era5land_geopotential.nc").read_bytes() == geo.read_bytes()
        missing = cfg.model_copy(update={"source": cfg.source.model_copy(update={"geopotential_file": ext / "no.nc"})})
        with pytest.raises(DataError, match=r"no\.nc: geopotential file not found \(source\.geopotential_file"):
            raw.run(missing, layout(tmp_path))
        return
    with pytest.raises(DataError, match=r"\d+ of \d+ ERA5-Land cells are not on its grid or have no height") as info:
        raw.run(cfg, layout(tmp_path))
    assert str(info.value).startswith(f"{geo}:"), str(info.value)
    assert not (tmp_path / "raw").exists()


def test_cmip5_files_without_data_on_part_of_the_land_are_named(tiny_world, tiny_cfg, tmp_path):
    """The coverage check of ERA5-Land applies to each CMIP5 experiment too: RCP4.5 files with no data west of
    160 W (on the GCM's 2.5-degree grid, the empty columns reach the grid's edge) are refused at raw."""
    cfg, ext = _user_files(tiny_world, tiny_cfg, tmp_path)
    for f in sorted((ext / "cmip5").glob("*_rcp45_*.nc")):
        _rewrite(f, lambda ds: ds.assign({v: ds[v].where(ds["lon"] >= 200) for v in ds.data_vars
                                          if "lon" in ds[v].dims}))
    with pytest.raises(DataError, match=r"cmip5: no '\w+' of IPSL-CM5A-MR rcp45 in \d+ land cells of band \d .*"
                                        r"an area the file leaves out"):
        raw.run(cfg, layout(tmp_path))
    assert not (tmp_path / "raw").exists()
