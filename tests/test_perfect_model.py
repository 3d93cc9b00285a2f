"""The perfect-model experiment: warming paths, the pseudo-reality, decade scores and the references."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import TINY, layout
from thawcast.analysis import perfect_model as pm
from thawcast.analysis import periods
from thawcast.config import parse_config
from thawcast.errors import ConfigError, DataError
from thawcast.ingest.synthetic.climate import (
    GLOBAL_WARMING,
    GLOBAL_WARMING_YEARS,
    global_warming,
    warming,
)
from thawcast.ingest.synthetic.soil import SoilParams, layer_matrix, node_grid, simulate
from thawcast.variables import TARGETS


# ------------------------------------------------------------------ warming paths
def test_global_paths_pass_through_the_ar5_values_and_keep_their_order():
    for rcp, values in GLOBAL_WARMING.items():
        np.testing.assert_allclose(global_warming(np.array(GLOBAL_WARMING_YEARS), rcp), values, atol=1e-12)
    end = {rcp: float(global_warming(np.array(2100.0), rcp)) for rcp in GLOBAL_WARMING}
    assert end["rcp26"] < end["rcp45"] < end["rcp60"] < end["rcp85"]
    with pytest.raises(ValueError, match="no warming path for 'rcp99'"):
        global_warming(np.array(2050.0), "rcp99")


def test_rcp26_levels_off_and_rcp85_accelerates():
    def per_decade(rcp, a, b):
        return float(warming(np.array(b), 0.5, rcp) - warming(np.array(a), 0.5, rcp)) / ((b - a) / 10)

    assert abs(per_decade("rcp26", 2070.0, 2100.0)) < 0.02  # K per decade: flat after mid-century
    assert per_decade("rcp26", 2010.0, 2040.0) > 0.3
    assert per_decade("rcp85", 2040.0, 2070.0) > 2 * per_decade("rcp85", 2006.0, 2024.0)


def test_a_scenario_continues_the_record_without_a_jump():
    before, at = warming(np.array([2023.999, 2024.0]), 0.5, "rcp85", since=2024.0)
    assert at == pytest.approx(before, abs=1e-3)
    assert warming(np.array(2010.0), 0.5, "rcp85", since=2024.0) == pytest.approx(0.5)  # the record's own trend


# ------------------------------------------------------------------ soil model: continuation and averaging
def _forcing(steps=300, cols=3, seed=1):
    rng = np.random.default_rng(seed)
    t = np.arange(steps) * 2.0
    air = -4 + 14 * np.sin(2 * np.pi * (t - 100) / 365)[:, None] + rng.normal(0, 2, (steps, cols))
    return air, np.where(air < 0, rng.gamma(2.0, 0.8, (steps, cols)), 0.0)


def test_a_run_continued_from_its_state_equals_one_run():
    air, snow = _forcing()
    theta, obs = np.array([0.1, 0.25, 0.4]), layer_matrix(node_grid(SoilParams())[0])
    whole = simulate(air, snow, air, 2.0, theta, observe=obs, t_init=np.full(3, -2.0))
    first = simulate(air[:137], snow[:137], air[:137], 2.0, theta, observe=obs, t_init=np.full(3, -2.0))
    rest = simulate(air[137:], snow[137:], air[137:], 2.0, theta, observe=obs, state=first.state)
    np.testing.assert_array_equal(np.concatenate([first.temps, rest.temps]), whole.temps)
    np.testing.assert_array_equal(rest.state.temp, whole.state.temp)
    assert rest.state.swe.shape == (3,) and np.all(whole.state.swe >= 0)


def test_periods_average_the_steps_of_each_row():
    air, snow = _forcing()
    theta = np.full(3, 0.3)
    rows = np.repeat(np.arange(20), 15)
    steps = simulate(air, snow, air, 2.0, theta, t_init=np.zeros(3))
    means = simulate(air, snow, air, 2.0, theta, t_init=np.zeros(3), periods=rows)
    assert means.temps.shape == (20, 3, steps.temps.shape[2])
    np.testing.assert_allclose(means.temps, steps.temps.reshape(20, 15, 3, -1).mean(1), atol=2e-6)
    with pytest.raises(ValueError, match="non-decreasing"):
        simulate(air, snow, air, 2.0, theta, periods=rows[::-1].copy())
    with pytest.raises(ValueError, match="columns"):
        simulate(air, snow, air, 2.0, theta, state=means.state._replace(swe=np.zeros(2)))


# ------------------------------------------------------------------ decade scores and references
def test_decades_are_calendar_decades_with_short_ends_joined():
    assert [periods.label(d) for d in periods.decades(2024, 2100)] == [
        "2024-2029", "2030-2039", "2040-2049", "2050-2059", "2060-2069", "2070-2079", "2080-2089", "2090-2100"]
    assert periods.decades(2024, 2030) == [(2024, 2030)]
    assert periods.decades(2020, 2029) == [(2020, 2029)]
    with pytest.raises(DataError):
        periods.decades(2030, 2024)


def test_decade_scores_known_answers():
    times = pd.date_range("2024-01-01", "2035-12-01", freq="MS")
    truth = np.random.default_rng(0).normal(size=(2, len(times), 4))
    pred = truth.copy()
    pred[0, :, 0] += 2.0  # band 0, layer 1: +2 K everywhere
    pred[1, np.asarray(times.year) >= 2030, 3] -= 1.0  # band 1, layer 4: -1 K from 2030
    s = pm.decade_scores(truth, pred, times, periods.decades(2024, 2035), ["a", "b"])
    first, second = s["2024-2029"], s["2030-2035"]
    assert first["per_layer"]["t_soil1"] == {"rmse": pytest.approx(np.sqrt(2.0)), "bias": pytest.approx(1.0),
                                             "n": 2 * 72}
    assert first["per_layer"]["t_soil4"]["rmse"] == 0.0
    assert second["per_layer"]["t_soil4"]["bias"] == pytest.approx(-0.5)
    assert first["rmse"] == pytest.approx(np.sqrt(4.0 / 8)) and first["bias"] == pytest.approx(2.0 / 8)
    assert second["per_band"]["b"]["rmse"] == pytest.approx(np.sqrt(1.0 / 4))
    with pytest.raises(DataError, match="differ in shape"):
        pm.decade_scores(truth, pred[:1], times, periods.decades(2024, 2035), ["a", "b"])


def test_delta_change_shifts_the_climatology_by_the_air_anomaly():
    record = pd.date_range("2020-01-01", "2026-12-01", freq="MS")
    months = record[record.year >= 2024]
    clim = np.arange(2 * 12 * 4, dtype=float).reshape(2, 12, 4)
    air = np.where(np.asarray(record.year) >= 2023, 3.0, 1.0)[None].repeat(2, 0)  # +2 K from 2023
    pred = pm.delta_change_forecast(clim, air, np.array([1.0, 1.0]), record, months)
    np.testing.assert_allclose(pred - pm.climatology_forecast(clim, months), 2.0)
    assert pm.climatology_forecast(clim, months)[1, 13, 2] == clim[1, 1, 2]  # February
    with pytest.raises(DataError, match="12 months"):
        pm.delta_change_forecast(clim, air, np.ones(2), record, record[:13])


def test_seasonal_persistence_is_the_truth_a_year_before():
    record = pd.date_range("2020-01-01", "2022-12-01", freq="MS")
    truth = np.random.default_rng(2).normal(size=(2, len(record), 4))
    pred = pm.seasonal_persistence_forecast(truth, record, record[12:])
    np.testing.assert_array_equal(pred, truth[:, :-12])
    with pytest.raises(DataError):
        pm.seasonal_persistence_forecast(truth, record, record[11:])


def test_change_is_the_last_span_minus_the_first():
    times = pd.date_range("2024-01-01", "2035-12-01", freq="MS")
    values = np.where(np.asarray(times.year) >= 2030, 3.5, 1.0)[None, :, None].repeat(2, 0).repeat(4, 2)
    assert pm.change(values, times, (2024, 2029), (2030, 2035)) == pytest.approx(2.5)
    with pytest.raises(DataError, match="no month in 2040-2049"):
        pm.change(values, times, (2024, 2029), (2040, 2049))


def test_monthly_climatology_uses_only_the_fitting_months():
    times = pd.date_range("2001-01-01", "2004-12-01", freq="MS")
    values = np.where(np.asarray(times.year) <= 2002, 1.0, 100.0)[None, :, None].repeat(4, 2)
    fit = np.asarray(times.year) <= 2002
    np.testing.assert_array_equal(pm.monthly_climatology(values, times, fit), 1.0)
    with pytest.raises(DataError, match="calendar month"):
        pm.monthly_climatology(values, times, np.asarray(times.month) != 5)


# ------------------------------------------------------------------ config
def test_the_perfect_model_needs_the_synthetic_world():
    files = {**TINY, "source": {"kind": "files"}}
    assert not parse_config(files).perfect_model_on
    with pytest.raises(ConfigError, match="perfect-model experiment needs the synthetic world"):
        parse_config({**files, "perfect_model": {"enabled": True}})
    assert not parse_config({**TINY, "perfect_model": {"enabled": False}}).perfect_model_on
    assert parse_config(TINY).perfect_model_on


# ------------------------------------------------------------------ the pseudo-reality (tiny world)
@pytest.fixture(scope="module")
def pseudo(tiny_world, tiny_cfg):
    from thawcast.stages import pseudo_reality

    pseudo_reality.run(tiny_cfg, layout(tiny_world))
    return layout(tiny_world)


def test_the_pseudo_reality_continues_the_record_under_each_rcp(pseudo, tiny_cfg):
    from thawcast.ingest.era5land import open_era5land

    cfg = tiny_cfg
    era = open_era5land(pseudo.raw / "era5land").load()
    truths = {rcp: open_era5land(pseudo.pseudo_truth(rcp)).load() for rcp in cfg.rcp_experiments}
    files = sorted(pseudo.pseudo_truth("rcp85").glob("*.nc"))
    first, last = cfg.period.end_year + 1, cfg.synthetic.scenario_end_year
    assert files[0].name == f"era5land_monthly_{first}-{first + 9}.nc"
    assert files[-1].name.endswith(f"-{last}.nc") and len(files) == -(-(last - first + 1) // 10)
    with xr.open_dataset(files[0]) as ds:
        assert ds.attrs["thawcast_pseudo_reality"] == "true" and ds.attrs["thawcast_synthetic"] == "true"
        assert ds.attrs["experiment_id"] == "rcp85" and "SYNTHETIC" in ds.attrs["title"]
    t = truths["rcp85"]
    cells = t["t_soil4"].isel(time=0).notnull().values
    land = era["t_soil4"].isel(time=0).notnull().values
    stride = cfg.perfect_model.stride
    assert cells.sum() > 0 and not (cells & ~land).any()
    assert cells[::stride, ::stride].sum() == cells.sum()  # only every stride-th row and column
    # The deep soil goes on from where the record ends: December to January no larger than in the record.
    jump = np.abs(t["t_soil4"].isel(time=0).values[cells] - era["t_soil4"].isel(time=-1).values[cells])
    deep = era["t_soil4"].values[:, cells]
    in_record = np.abs(deep[12::12] - deep[11:-1:12]).max(axis=0)
    assert jump.max() <= in_record.max() + 0.3 and np.median(jump) <= 1.5 * np.median(in_record)
    # One weather for every RCP: their difference is the forced warming alone.
    diff = (t["t_air"] - truths["rcp26"]["t_air"]).sel(time=str(cfg.synthetic.scenario_end_year)).mean().item()
    dec = cfg.synthetic.scenario_end_year + (np.arange(12) + 0.5) / 12
    since = float(cfg.period.end_year + 1)
    forced = (warming(dec, 0.5, "rcp85", since) - warming(dec, 0.5, "rcp26", since)).mean()
    assert diff == pytest.approx(forced, abs=0.05) and forced > 0


def test_the_pseudo_reality_is_skipped_with_real_files(tmp_path):
    from thawcast.stages import pseudo_reality

    cfg = parse_config({**TINY, "source": {"kind": "files"}})
    out = pseudo_reality.run(cfg, layout(tmp_path))
    assert "real data have no pseudo-reality" in (out / pseudo_reality.SKIPPED_NOTE).read_text()
    assert [p.name for p in out.iterdir()] == [pseudo_reality.SKIPPED_NOTE]


def test_only_the_scoring_stages_read_the_pseudo_truth():
    import yaml

    from conftest import REPO

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    readers = {name for name, st in stages.items() if "data/pseudo_reality" in st.get("deps", [])}
    # perfect-model and project-cells score against it; the report depends on it only to list its hash (README
    # "Report"): its code opens nothing of it
    assert readers == {"perfect-model", "project-cells", "report"}
    assert "pseudo_reality" not in (REPO / "src" / "thawcast" / "stages" / "report.py").read_text()
    assert "pseudo_bands" not in (REPO / "src" / "thawcast" / "stages" / "report.py").read_text()
    upstream = {"raw", "static", "cells", "bands", "scenarios", "windows", "tune", "seed-spread", "train",
                "train-cells", "evaluate-cells", "seed-spread-cells"}
    assert not upstream & {name for name, st in stages.items()
                           if any("perfect_model" in str(d) for d in st.get("deps", []))}


def test_perfect_model_scores_the_networks_and_references(trained, pseudo):
    from thawcast.stages import perfect_model

    cfg, root, world = trained
    from thawcast.stages import project

    paths = layout(root, windows=world / "windows", raw=world / "raw", static=world / "static", bands=world / "bands",
                   pseudo_reality=pseudo.pseudo_reality, scenarios=world / "scenarios")
    project.run(cfg, paths)
    perfect_model.run(cfg, paths)
    metrics = json.loads(paths.metric("perfect_model.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))  # no NaN or Infinity
    assert metrics["available"] and metrics["networks"] == list(cfg.training.architectures)
    # models named by their weights: no registry version counter in a DVC-tracked metric
    assert all(" weights sha256 " in label and " v" not in label for label in metrics["registered"].values())
    names = {*cfg.training.architectures, "ensemble", "climatology", "delta_change", "ridge", "seasonal_persistence"}
    assert set(metrics["scores"]["rcp85"]) == names and set(metrics["test_rmse"]) == names
    with xr.open_dataset(paths.perfect_model / "perfect_model.nc") as ds:
        truth, pred = ds["truth"], ds["prediction"]
        # The NetCDF's scores are the metrics' (recomputed from truth and predictions).
        first = metrics["decades"][0]
        span = slice(first[:4], first[-4:])
        err = (pred.sel(scenario="rcp45", model="gru") - truth.sel(scenario="rcp45")).sel(time=span).values
        assert float(np.sqrt(np.mean(err**2))) == pytest.approx(metrics["scores"]["rcp45"]["gru"][first]["rmse"],
                                                                abs=1e-3)
        assert float(ds["rmse"].sel(scenario="rcp45", model="gru", decade=first).mean()) > 0
        # Seasonal persistence is the truth a year before; the ensemble is the networks' mean.
        sp = pred.sel(scenario="rcp26", model="seasonal_persistence").isel(time=slice(12, None)).values
        np.testing.assert_allclose(sp, truth.sel(scenario="rcp26").isel(time=slice(None, -12)).values, atol=1e-5)
        ens = pred.sel(scenario="rcp60", model="ensemble")
        nets = pred.sel(scenario="rcp60", model=list(cfg.training.architectures)).mean("model")
        np.testing.assert_allclose(ens.values, nets.values, atol=1e-5)
        assert ds.attrs["thawcast_pseudo_reality"] == "true"
    # The RMSE of a mean is at most the mean RMSE (convexity): a check of the bookkeeping, not of skill.
    for per in metrics["scores"].values():
        for d in metrics["decades"]:
            assert per["ensemble"][d]["rmse"] <= np.mean([per[a][d]["rmse"] for a in cfg.training.architectures]) + 1e-3
    assert metrics["verdict"].count("best network") == len(cfg.rcp_experiments)
    # Climatology has no warming at all: the same calendar months every year.
    assert all(abs(w["climatology"]) < 1e-9 for w in metrics["warming"].values())
    md = paths.metric("perfect_model.md").read_text()
    assert "## rcp85" in md and "Truth's sampling error" in md
    assert (paths.perfect_model / "figures" / "skill_by_decade.png").stat().st_size > 5000
    assert set(metrics["truth_sampling_rmse"]) == set(TARGETS)
    # Whole chain: the projections' decadal monthly climate against the truth's, computed here with xarray.
    with xr.open_dataset(paths.perfect_model / "perfect_model.nc") as pmds, \
            xr.open_dataset(paths.projections_file) as proj:
        common = np.intersect1d(pmds["time"].values, proj["time"].values)  # the projection's years
        truth = pmds["truth"].sel(scenario="rcp85", time=common)
        chain = proj["ensemble_mean"].sel(scenario="rcp85", time=common).transpose("band", "time", "layer")
        err = chain.groupby("time.month").mean() - truth.groupby("time.month").mean()
        alone = pmds["prediction"].sel(scenario="rcp85", model="ensemble", time=common)
        err_alone = alone.groupby("time.month").mean() - truth.groupby("time.month").mean()
        n_windows = pmds["extrapolation_distance"].size
    whole = metrics["whole_chain"]["rcp85"]
    decade = f"{cfg.projection.start_year}-{cfg.projection.end_year}"
    assert whole["years"] == decade and list(whole["climate"]["chain"]) == [decade]
    assert whole["climate"]["chain"][decade]["rmse"] == pytest.approx(float(np.sqrt((err**2).mean())), abs=1e-3)
    assert whole["climate"]["chain"][decade]["bias"] == pytest.approx(float(err.mean()), abs=1e-3)
    assert whole["climate"]["networks_alone"][decade]["rmse"] == pytest.approx(float(np.sqrt((err_alone**2).mean())),
                                                                               abs=1e-3)
    assert len(whole["alt_last_decade_cm"]["truth"]) == len(cfg.study_area.band_labels)
    assert set(whole["trend_per_decade"]) == {"truth", "chain", "networks_alone"}
    # The extrapolation check pools every scored window of every scenario.
    ext = metrics["extrapolation"]
    assert sum(b["n"] for b in ext["bins"]) == n_windows
    assert -1 <= ext["rank_correlation_windows"] <= 1 and -1 <= ext["rank_correlation_decades"] <= 1
    assert "## Whole chain" in md and "## Does the extrapolation diagnostic warn" in md


def test_climate_scores_ignore_the_weather_and_see_a_shift():
    """Oracle for the whole-chain score: reshuffling whole years inside a decade (another weather, the same
    climate) scores 0; a uniform +0.5 degC shift scores RMSE 0.5 and bias +0.5 in every decade."""
    rng = np.random.default_rng(5)
    times = pd.date_range("2024-01-01", "2039-12-01", freq="MS")
    truth = rng.normal(size=(2, len(times), 4)) + np.cos(2 * np.pi * times.month.to_numpy() / 12)[None, :, None]
    bins = periods.decades(2024, 2039)
    years = np.asarray(times.year)
    shuffled = truth.copy()
    for a, b in bins:
        idx = np.flatnonzero((years >= a) & (years <= b)).reshape(-1, 12)  # whole years of the decade
        shuffled[:, idx.ravel()] = truth[:, rng.permutation(idx).ravel()]
    assert np.sqrt(np.mean((shuffled - truth) ** 2)) > 1.0  # another weather month by month ...
    for d, s in pm.climate_scores(truth, shuffled, times, bins).items():  # ... and the same climate
        assert s["rmse"] == pytest.approx(0.0, abs=1e-12), d
    for s in pm.climate_scores(truth, truth + 0.5, times, bins).values():
        assert s["rmse"] == pytest.approx(0.5) and s["bias"] == pytest.approx(0.5)
        assert s["per_layer"] == pytest.approx(dict.fromkeys(TARGETS, 0.5))
    one = pm.climate_scores(truth[..., :1], truth[..., :1] - 1, times, bins, layers=("t_air",))
    assert one["2030-2039"]["per_layer"] == {"t_air": pytest.approx(1.0)}
    with pytest.raises(DataError, match="must match"):
        pm.climate_scores(truth, truth[..., :2], times, bins)


def test_decadal_thaw_and_trends_known_answers():
    times = pd.date_range("2024-01-01", "2043-12-01", freq="MS")
    bins = periods.decades(2024, 2043)  # 2024-2029, 2030-2043 (the short end piece joins)
    season = -np.cos(2 * np.pi * (times.month.to_numpy() - 1) / 12)
    amp, mean = np.array([10.0, 6.0, 2.0, 0.5]), np.array([0.0, -1.0, -1.0, -2.0])
    profile = (mean[None, :] + amp[None, :] * season[:, None])[None]  # [band, time, layer]; maxima 10, 5, 1, -1.5
    members = np.stack([profile, profile + 10.0])  # the second member thaws every layer: ALT at the bound
    out = pm.decadal_thaw(members, times, bins)
    alt_one = 64 + 130.5 / 2.5
    np.testing.assert_allclose(out["alt_cm"], [[(alt_one + 194.5) / 2]] * 2)
    np.testing.assert_allclose(out["alt_share_at_bound"], [[0.5]] * 2)
    assert out["months_above_zero"].shape == (2, 1, 4)
    ramp = np.repeat(0.1 * (np.asarray(times.year) - 2024), 1)[None, :, None] * np.ones((3, 1, 4))
    np.testing.assert_allclose(pm.annual_trends(ramp, times), 1.0)  # 0.1 degC a year is 1 degC a decade


def test_whole_chain_known_answers():
    """A chain that reproduces the truth scores 0 everywhere; networks 1 degC warm score 1 degC with their
    trend intact; an air temperature 0.5 degC off scores 0.5."""
    rng = np.random.default_rng(6)
    times = pd.date_range("2024-01-01", "2043-12-01", freq="MS")
    season = -8 * np.cos(2 * np.pi * (times.month.to_numpy() - 1) / 12)
    truth = season[None, :, None] + np.array([0.0, -1.0, -2.0, -3.0]) + 0.05 * np.arange(len(times))[None, :, None] / 12
    truth = np.repeat(truth, 2, axis=0) + rng.normal(scale=0.1, size=(2, len(times), 4))
    air = rng.normal(size=(2, len(times)))
    out = pm.whole_chain(truth, np.stack([truth, truth]), np.stack([truth + 1.0]), air, air + 0.5, times)
    assert out["years"] == "2024-2043" and list(out["climate"]["chain"]) == ["2024-2029", "2030-2043"]
    for d in out["climate"]["chain"]:
        assert out["climate"]["chain"][d]["rmse"] == pytest.approx(0.0, abs=1e-12)
        assert out["climate"]["networks_alone"][d]["bias"] == pytest.approx(1.0)
        assert out["t_air_climate"][d]["rmse"] == pytest.approx(0.5)
        assert out["thaw_abs_error"]["chain"][d] == {"alt_cm": 0.0, "months_above_zero": 0.0}
    assert out["trend_rmse"]["chain"] == pytest.approx(0.0, abs=1e-12)
    assert out["trend_rmse"]["networks_alone"] == pytest.approx(0.0, abs=1e-9)  # a shift has the same trend
    assert out["trend_per_decade"]["truth"]["t_soil1"] == pytest.approx(0.5, abs=0.05)  # 0.05 degC a year
    assert out["alt_last_decade_cm"]["chain"] == out["alt_last_decade_cm"]["truth"]


def test_no_output_names_the_staging_folder_it_was_written_in(pseudo):
    """Outputs are written in a staging folder named with the process id and moved in place at the end; an
    attribute naming that folder made a rebuild differ from the last (found on a fresh clone: the
    pseudo-reality band tables)."""
    files = sorted(pseudo.pseudo_reality.rglob("*.nc")) + sorted(pseudo.bands.rglob("*.nc"))
    assert any(f.name.startswith("bands_rcp") for f in files)
    for f in files:
        with xr.open_dataset(f) as ds:
            staged = {k: v for k, v in ds.attrs.items() if ".tmp-" in str(v)}
        assert not staged, f"{f.name}: {staged}"
