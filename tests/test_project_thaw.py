"""Projections from registered models, the period diagnostic, and the thaw stage on the tiny world."""

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import TRAINED_ARCHS, layout
from thawcast.analysis.projection import grid, period_diagnostic, projection_months
from thawcast.errors import DataError
from thawcast.prep.windows import open_windows
from thawcast.stages import project, thaw
from thawcast.tracking.registry import (
    WEIGHTS_TAG,
    RegistryError,
    load_registration,
    read_registration,
    use_store,
)


def _paths(root, world):
    """Projections, thaw and metrics under ``root``; windows, bands and scenarios from the tiny world."""
    return layout(root, windows=world / "windows", bands=world / "bands", scenarios=world / "scenarios")


@pytest.fixture(scope="module")
def projected(trained):
    cfg, root, world = trained
    paths = _paths(root, world)
    project.run(cfg, paths)
    thaw.run(cfg, paths)
    return cfg, root, world


def test_projections_cover_every_scenario_model_band_layer_and_month(projected):
    cfg, root, _ = projected
    paths = layout(root)
    with xr.open_dataset(paths.projections_file) as ds:
        t = ds["soil_temperature"]
        assert t.dims == ("scenario", "model", "band", "layer", "time")
        assert list(ds["scenario"].values) == list(cfg.rcp_experiments)
        assert list(ds["model"].values) == list(TRAINED_ARCHS)
        assert ds.sizes["time"] == cfg.projection.n_months and not t.isnull().any()
        np.testing.assert_allclose(ds["ensemble_mean"], t.mean("model"))
        assert (ds["ensemble_min"] <= ds["ensemble_mean"] + 1e-12).all()
        assert (ds["ensemble_max"] >= ds["ensemble_mean"] - 1e-12).all()
        used = json.loads(ds.attrs["registered_models"])
        assert ds.attrs["bias_correction_method"] == cfg.bias_correction.method
        assert ds.attrs["thawcast_synthetic"] == "true"
    use_store(cfg.mlflow)
    client = mlflow.MlflowClient()
    versions = {}
    for arch in TRAINED_ARCHS:  # the model train recorded, loaded from the registry by its weights' digest
        reg = read_registration(paths.registration(arch), arch)
        assert used[arch] == {"registered_model": f"thawcast-{arch}", "weights_sha256": reg.weights_sha256}
        model, mv = load_registration(reg)
        assert model.weights_sha256() == reg.weights_sha256
        versions[arch] = mv.version
        # @champion still points at a version holding those weights
        champion = client.get_model_version_by_alias(f"thawcast-{arch}", "champion")
        assert champion.tags[WEIGHTS_TAG] == reg.weights_sha256
    runs = client.search_runs([client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id],
                              "tags.`thawcast.stage` = 'project'")
    assert runs and runs[0].data.params["model.gru"] == f"thawcast-gru/{versions['gru']}"
    assert (root / "projections" / "figures" / "ensemble.png").read_bytes()[:4] == b"\x89PNG"


def test_every_projected_window_has_its_extrapolation_diagnostic(projected):
    cfg, root, _ = projected
    paths = layout(root)
    with xr.open_dataset(paths.projections_file) as ds:
        d, out = ds["extrapolation_distance"], ds["outside_range_share"]
        assert d.dims == ("scenario", "band", "time") and not d.isnull().any() and (d >= 0).all()
        assert ((out >= 0) & (out <= 1)).all()
    m = json.loads(paths.metric("extrapolation.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    decade = f"{cfg.projection.start_year}-{cfg.projection.end_year}"
    assert set(m["scenarios"]) == set(cfg.rcp_experiments) and all(set(v) == {decade} for v in m["scenarios"].values())
    for rcp, per in m["scenarios"].items():  # the metric is the mean of the NetCDF's per-window values
        assert per[decade]["distance_mean"] == pytest.approx(float(ds["extrapolation_distance"].sel(scenario=rcp).mean()),
                                                             abs=1e-3)
        assert per[decade]["share_extrapolating"] == pytest.approx(
            float((ds["extrapolation_distance"].sel(scenario=rcp) > 1).mean()), abs=1e-3)
    assert 0 <= m["test_years"]["share_extrapolating"] <= 1 and m["distance_scale"] > 0
    assert "| test years (observed) |" in paths.metric("extrapolation.md").read_text()


def test_the_extrapolation_envelope_never_sees_the_test_years(projected, tmp_path):
    """Leakage: spoil every test-year month of the history windows. The projected windows' diagnostic does not
    move (the envelope is the training windows'), while the test-year row does (positive control)."""
    cfg, root, world = projected
    shutil.copytree(world / "windows", tmp_path / "windows")
    hist = tmp_path / "windows" / "history.nc"
    with xr.open_dataset(hist) as ds:
        ds = ds.load()
    test_months = ds["time"].dt.year >= cfg.windows.test.start_year
    ds["x"] = ds["x"].where(~test_months, ds["x"] + 50.0)
    ds.to_netcdf(hist)
    paths = layout(tmp_path, windows=tmp_path / "windows", bands=world / "bands", scenarios=world / "scenarios",
                   models=root / "models")
    project.run(cfg, paths)
    before = json.loads(layout(root).metric("extrapolation.json").read_text())
    after = json.loads(paths.metric("extrapolation.json").read_text())
    assert after["scenarios"] == before["scenarios"] and after["distance_scale"] == before["distance_scale"]
    # every test window with a spoiled month among its inputs (all but the first test month's) extrapolates
    assert after["test_years"]["share_extrapolating"] >= 11 / 12 > before["test_years"]["share_extrapolating"]


def test_period_metric_is_written(projected):
    _, root, _ = projected
    m = json.loads(layout(root).metric("projection_period.json").read_text())
    assert m["members"]["n_series"] == 4 * len(TRAINED_ARCHS) * 6 * 4
    assert m["ensemble_mean"]["n_series"] == 4 * 6 * 4
    assert 0.0 <= m["members"]["fraction_12_months"] <= 1.0
    assert len(m["members"]["not_12_months"]) == round((1 - m["members"]["fraction_12_months"]) * 4 * 2 * 6 * 4)


def test_period_diagnostic_names_the_series_that_is_not_annual():
    t = np.arange(48)
    data = np.stack([np.sin(2 * np.pi * t / 12), np.sin(2 * np.pi * t / 6)])
    da = xr.DataArray(data, dims=("model", "time"), coords={"model": ["good", "bad"]})
    d = period_diagnostic(da)
    assert not d["all_series_12_months"] and d["fraction_12_months"] == 0.5
    assert d["not_12_months"] == [{"model": "bad", "period_months": 6.0}]


def test_missing_registered_model_is_named(trained, tmp_path):
    cfg, root, world = trained
    other = cfg.model_copy(update={"training": cfg.training.model_copy(update={"architectures": ("gru", "bilstm")})})
    with pytest.raises(DataError, match=r"bilstm/registration.json: not found: rerun the train@bilstm stage"):
        project.run(other, _paths(tmp_path, world).replace(models=root / "models"))
    # A hand-off naming weights that no registered version holds (e.g. another MLflow store).
    models = tmp_path / "models"
    shutil.copytree(root / "models", models)
    record = layout(tmp_path).registration("gru")
    record.write_text(json.dumps({**json.loads(record.read_text()), "weights_sha256": "0" * 64}))
    with pytest.raises(RegistryError, match="no version of 'thawcast-gru' holds the weights 000000000000"):
        project.run(cfg, _paths(tmp_path, world))
    assert not (tmp_path / "projections").exists() and not (tmp_path / "metrics").exists()


def test_scenario_windows_that_miss_months_are_an_error(trained):
    cfg, _, world = trained
    ws = open_windows(world / "windows" / "rcp45.nc")
    keep = ws.target_times() < pd.Timestamp("2030-07-01")
    ws.band, ws.last = ws.band[keep], ws.last[keep]
    with pytest.raises(DataError, match=r"do not cover the projection period.*6 month\(s\).*2030-07"):
        grid(ws, np.zeros((len(ws), 4)), projection_months(cfg.projection), "rcp45.nc")


def test_thaw_metrics_for_observations_and_projections(projected):
    cfg, root, _ = projected
    table = pd.read_csv(root / "thaw" / thaw.CSV_FILE)
    assert set(table["source"]) == {"observed", "projected"}
    assert set(table.loc[table["source"] == "projected", "scenario"]) == set(cfg.rcp_experiments)
    alt = table[table["metric"] == "alt_cm"]["value"]
    assert alt.between(0, 194.5).all()
    months = table[table["metric"] == "months_above_zero"]["value"]
    assert months.between(0, 12).all()
    obs_years = table.loc[table["source"] == "observed", "year"]
    assert obs_years.min() == cfg.period.start_year and obs_years.max() == cfg.period.end_year
    m = json.loads(layout(root).metric("thaw.json").read_text())
    assert set(m) == {"observed", *cfg.rcp_experiments}
    # the summary's layer-1 means are the CSV's, averaged over models (projections) and years
    layer1 = table[(table["metric"] == "thawing_degree_months") & (table["layer"] == "t_soil1")]
    band0 = cfg.study_area.band_labels[0]
    for source, sel in (("observed", layer1["source"] == "observed"),
                        (cfg.rcp_experiments[0], layer1["scenario"] == cfg.rcp_experiments[0])):
        expected = layer1[sel & (layer1["band"] == 0)]["value"].mean()
        assert m[source][band0]["thawing_degree_months_layer1"] == pytest.approx(expected, abs=1e-3)
        assert np.isfinite(m[source][band0]["t_air_trend_degC_per_decade"])
    assert "| band | observed ALT |" in layout(root).metric("thaw.md").read_text()
    dec = json.loads(layout(root).metric("thaw_decades.json").read_text())
    span = f"{cfg.projection.start_year}-{cfg.projection.end_year}"
    for rcp in cfg.rcp_experiments:  # the decade's ALT is the mean over members and years of the CSV's
        alt_rows = table[(table["metric"] == "alt_cm") & (table["scenario"] == rcp) & (table["band"] == 0)]
        one = dec[rcp][band0]["decades"][span]
        assert one["alt_cm"] == pytest.approx(alt_rows["value"].mean(), abs=1e-3)
        per_model = alt_rows.groupby("model")["value"].mean()
        assert one["alt_min_cm"] == pytest.approx(per_model.min(), abs=1e-3)
        assert one["alt_max_cm"] == pytest.approx(per_model.max(), abs=1e-3)
        assert 0 <= one["near_surface_permafrost_share"] <= 1
    assert "## Per decade" in layout(root).metric("thaw.md").read_text()
    assert (root / "thaw" / "figures" / "alt_by_band.png").read_bytes()[:4] == b"\x89PNG"


def test_warmer_projections_never_give_a_thinner_active_layer(projected, tmp_path):
    """Physical oracle: +2 degC everywhere deepens (or keeps) ALT and adds thawed months."""
    cfg, root, world = projected
    shutil.copytree(root / "projections", tmp_path / "projections")
    path = layout(tmp_path).projections_file
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    ds["soil_temperature"] = ds["soil_temperature"] + 2.0
    ds.to_netcdf(path)
    thaw.run(cfg, _paths(tmp_path, world))
    a = pd.read_csv(root / "thaw" / thaw.CSV_FILE)
    b = pd.read_csv(tmp_path / "thaw" / thaw.CSV_FILE)
    keys = ["source", "scenario", "model", "band", "year", "metric", "layer"]
    merged = a.merge(b, on=keys, suffixes=("", "_warm")).query("source == 'projected'")
    for metric in ("alt_cm", "months_above_zero", "thawing_degree_months"):
        sel = merged[merged["metric"] == metric]
        assert (sel["value_warm"] >= sel["value"] - 1e-9).all(), metric
    tdm = merged[merged["metric"] == "thawing_degree_months"]
    thawing = tdm[tdm["value"] > 0]  # a layer that thaws at all thaws more (at least 2 degC x its thawed months)
    months = merged[merged["metric"] == "months_above_zero"].set_index(keys[:-2] + ["layer"])["value"]
    gain = thawing.set_index(keys[:-2] + ["layer"])
    assert len(gain) and (gain["value_warm"] - gain["value"] >= 2.0 * months.loc[gain.index] - 1e-9).all()


def test_report_names_a_missing_input(projected, tmp_path):
    from thawcast.stages import report

    cfg, root, _ = projected
    with pytest.raises(DataError, match="scenario_spread.json: input missing"):
        report.run(cfg, layout(root).replace(metrics=tmp_path / "metrics", report=tmp_path / "report"))
    assert not (tmp_path / "report").exists()


def test_report_spread_table_shows_what_the_correction_keeps():
    from thawcast.stages.report import spread_table

    table = spread_table({"spread": {"t_air": {"raw": 1.0, "eqm": 0.5, "qdm": 0.99, "eqm_retained": 0.5,
                                               "qdm_retained": 0.99},
                                     "r_solar": {"raw": 0.0, "eqm": 0.0, "qdm": 0.0, "eqm_retained": None,
                                                 "qdm_retained": None}}})
    assert "| t_air | 1 | 0.5 | 0.99 | 50% | 99% |" in table
    assert "| r_solar | 0 | 0 | 0 |  |  |" in table  # nothing to keep: blank, not a division by 0
