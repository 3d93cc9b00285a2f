"""SHAP attributions: a known-answer toy model, additivity, and the explain stages on the tiny world."""

import json

import mlflow
import numpy as np
import pytest
import torch
import xarray as xr

from conftest import layout
from thawcast.analysis.explain import (
    CELL_GROUPS,
    FEATURE_GROUPS,
    additivity_gap,
    attributions,
    feature_group,
    group_shares,
    importance,
)
from thawcast.catalogue import CELL_ATTRIBUTES
from thawcast.errors import DataError
from thawcast.models.base import BandSequenceModel
from thawcast.models.packed import PackedModel
from thawcast.stages import compare_explanations, explain
from thawcast.tracking.registry import WEIGHTS_TAG, read_registration, use_store


class OneFeature(BandSequenceModel):
    """Output = 3 x (mean over the window of feature 2) + band offset: only feature 2 varies it."""

    def __init__(self) -> None:
        super().__init__(n_features=4, n_bands=2, band_embedding_dim=1, n_targets=4)
        self.head = torch.nn.Identity()

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        return (3.0 * h[:, :, 2].mean(dim=1, keepdim=True) + h[:, :1, -1]).expand(-1, 4)


def _toy():
    return PackedModel(OneFeature(), [0.0] * 4, [1.0] * 4, ("a", "b", "c", "d"), 6, ("l1", "l2", "l3", "l4"), "toy")


def test_a_model_that_reads_one_feature_gets_all_the_attribution():
    g = np.random.default_rng(0)
    bg, x = g.normal(size=(40, 6, 4)), g.normal(size=(12, 6, 4))
    bg_band, band = np.repeat([0, 1], 20), np.repeat([0, 1], 6)
    sv = attributions(_toy(), bg, bg_band, x, band, nsamples=2000, seed=0)
    assert sv.shape == (12, 4, 4)
    share = np.abs(sv[:, 2]).sum() / np.abs(sv).sum()
    assert share > 0.99
    # linear in the feature: expected gradients converge to f(x) - E f(background of the band)
    expected = 3 * x[:, :, 2].mean(axis=1) - np.array([3 * bg[bg_band == b, :, 2].mean() for b in band])
    np.testing.assert_allclose(sv[:, 2, 0], expected, atol=0.1)  # up to background sampling noise
    imp = importance(sv, ["a", "b", "c", "d"], ["l1", "l2", "l3", "l4"])
    assert imp.index[0] == "c" and imp.loc["a", "all"] < 1e-6


def test_the_additivity_gap_of_exact_attributions_is_zero_and_counts_what_is_missing():
    """For the linear toy, f(x) - E f(background) = 3 x (mean of feature 2 over the window minus the band's
    background mean of it), with no band term left: exact attributions leave a gap of 0; taking 0.4 degC
    away from one feature's attribution in every window and layer makes the gap exactly 0.4."""
    g = np.random.default_rng(1)
    bg, x = g.normal(size=(30, 6, 4)), g.normal(size=(8, 6, 4))
    bg_band, band = np.repeat([0, 1], 15), np.repeat([0, 1], 4)
    exact = np.zeros((8, 4, 4))
    exact[:, 2, :] = (3 * x[:, :, 2].mean(axis=1)
                      - np.array([3 * bg[bg_band == b, :, 2].mean() for b in band]))[:, None]
    assert additivity_gap(_toy(), exact, bg, bg_band, x, band) == pytest.approx(0.0, abs=1e-5)
    short = exact.copy()
    short[:, 0, :] -= 0.4
    assert additivity_gap(_toy(), short, bg, bg_band, x, band) == pytest.approx(0.4, abs=1e-5)


def test_attributions_need_background_for_every_band():
    g = np.random.default_rng(0)
    with pytest.raises(DataError, match="no background windows for band 1"):
        attributions(_toy(), g.normal(size=(5, 6, 4)), np.zeros(5, int), g.normal(size=(2, 6, 4)),
                     np.array([0, 1]), nsamples=10)


@pytest.fixture(scope="module")
def explained(trained):
    cfg, root, world = trained
    small = cfg.model_copy(update={"explain": cfg.explain.model_copy(update={"background": 12, "samples": 12,
                                                                           "nsamples": 20})})
    both = small.model_copy(update={"compute": small.compute.model_copy(update={"workers": 2})})
    assert small.training.architectures == ("gru", "tcn")
    explain.run(both, paths=layout(root, windows=world / "windows"))  # the stage: both side by side
    return small, root, world


def test_side_by_side_or_alone_the_same_attributions(explained, tmp_path):
    """An architecture explained in a process beside another gets the bits it gets alone in this one."""
    cfg, root, world = explained
    alone = layout(root, windows=world / "windows").replace(explain=tmp_path)
    explain.run(cfg, "tcn", alone)
    for name in ("importance.csv", "top_features.json"):
        assert (alone.explanation("tcn") / name).read_bytes() == (layout(root).explanation("tcn") / name).read_bytes()
    with xr.open_dataset(alone.explanation("tcn") / "shap_values.nc") as a, \
            xr.open_dataset(layout(root).explanation("tcn") / "shap_values.nc") as b:
        np.testing.assert_array_equal(a["shap"].values, b["shap"].values)


def _registration(root, arch):
    return read_registration(layout(root).registration(arch), arch)


def test_explain_writes_values_importance_and_figures(explained):
    cfg, root, _ = explained
    paths = layout(root)
    out = paths.explanation("gru")
    digest = _registration(root, "gru").weights_sha256
    with xr.open_dataset(out / "shap_values.nc") as ds:
        assert ds["shap"].dims == ("window", "feature", "layer") and ds.sizes["window"] >= 12
        assert ds.attrs["registered_model"] == "thawcast-gru" and ds.attrs["weights_sha256"] == digest
        assert np.isfinite(ds["shap"]).all()
    top = json.loads(paths.top_features("gru").read_text())
    assert len(top["top"]) == cfg.explain.top
    # expected gradients with the stage's few samples are close to additive, not exact (the function itself
    # is held to known answers above)
    assert 0 < top["additivity_gap_degc"] < 1.0
    # The explained model is named by the weights train recorded, not by a version or run id.
    assert top["registered_model"] == "thawcast-gru" and top["weights_sha256"] == digest
    assert "version" not in top and "run_id" not in top
    for name in ("shap_bar.png", "shap_beeswarm.png"):
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG"


def test_explain_is_logged_to_the_model_run_and_an_explain_run(explained):
    cfg, root, _ = explained
    digest = _registration(root, "gru").weights_sha256
    use_store(cfg.mlflow)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id
    runs = client.search_runs([exp], "tags.`thawcast.stage` = 'explain' and tags.`thawcast.architecture` = 'gru'")
    assert runs
    # The version explained holds the recorded weights, as does the one @champion points at.
    mv = client.get_model_version("thawcast-gru", runs[0].data.tags["model_version"])
    assert mv.tags[WEIGHTS_TAG] == digest and runs[0].data.tags["model_run_id"] == mv.run_id
    assert client.get_model_version_by_alias("thawcast-gru", "champion").tags[WEIGHTS_TAG] == digest
    arts = {a.path for a in client.list_artifacts(mv.run_id, "shap")}
    assert "shap/top_features.json" in arts


def test_compare_explanations(explained, tmp_path):
    cfg, root, _ = explained
    paths = layout(root).replace(metrics=tmp_path)
    compare_explanations.run(cfg, paths)
    m = json.loads(paths.metric("shap.json").read_text())
    assert set(m) == {"gru", "tcn"} and len(m["gru"]["top"]) == compare_explanations.RANKS
    for arch in ("gru", "tcn"):  # "<registered model>#<12 hex of the weights digest>"
        assert m[arch]["model"] == _registration(root, arch).label
    assert "| gru |" in paths.metric("shap.md").read_text()
    more = cfg.model_copy(update={"training": cfg.training.model_copy(update={"architectures": ("gru", "bilstm")})})
    with pytest.raises(DataError, match="run `thawcast explain bilstm`"):
        compare_explanations.run(more, paths)


def test_group_shares_add_each_groups_mean_abs_attribution_by_hand():
    features = ["t_air", "month_sin", "clay_pct", "oc_l2_g_kg", "lithology_glacier", "lat", "lon", "elevation_m",
                "z"]
    assert [feature_group(f) for f in features] == ["weather", "weather", "soil", "soil", "lithology", "position",
                                                    "position", "elevation", "signal"]
    assert set(CELL_GROUPS) == set(CELL_ATTRIBUTES) and set(CELL_GROUPS.values()) <= set(FEATURE_GROUPS)
    sv = np.zeros((2, len(features), 2))
    sv[:, :, 0] = [1.0, -1.0, 2.0, 0.0, 1.0, 3.0, -1.0, 1.5, 2.0]  # mean |SHAP| per feature over windows and
    shares = group_shares(sv, features)                              # layers: half of these; total 12.5 / 2
    assert shares == pytest.approx({"weather": 2 / 12.5, "soil": 2 / 12.5, "lithology": 1 / 12.5,
                                    "position": 4 / 12.5, "elevation": 1.5 / 12.5, "signal": 2 / 12.5})
    assert group_shares(sv[:, :2], features[:2]) == pytest.approx({"weather": 1.0, "soil": 0.0, "lithology": 0.0,
                                                                    "position": 0.0, "elevation": 0.0, "signal": 0.0})
