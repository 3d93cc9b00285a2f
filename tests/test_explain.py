"""SHAP attributions: a known-answer toy model, additivity, and the explain stages on the tiny world."""

import json

import mlflow
import numpy as np
import pytest
import torch
import xarray as xr

from thawcast.errors import DataError
from thawcast.explain import attributions, importance
from thawcast.models.base import BandSequenceModel
from thawcast.models.packed import PackedModel
from thawcast.stages import compare_explanations, explain
from thawcast.tracking import use_store


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
    for arch in ("gru", "tcn"):
        explain.run(small, arch, world / "windows", root / "explain")
    return small, root, world


def test_explain_writes_values_importance_and_figures(explained):
    cfg, root, _ = explained
    out = root / "explain" / "gru"
    with xr.open_dataset(out / "shap_values.nc") as ds:
        assert ds["shap"].dims == ("window", "feature", "layer") and ds.sizes["window"] >= 12
        assert ds.attrs["registered_model"] == "thawcast-gru"
        assert np.isfinite(ds["shap"]).all()
    top = json.loads((out / explain.TOP_FILE).read_text())
    assert len(top["top"]) == cfg.explain.top and top["additivity_gap_degc"] >= 0
    for name in ("shap_bar.png", "shap_beeswarm.png"):
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG"


def test_explain_is_logged_to_the_model_run_and_an_explain_run(explained):
    cfg, _, _ = explained
    use_store(cfg.mlflow)
    client = mlflow.MlflowClient()
    mv = client.get_model_version_by_alias("thawcast-gru", "champion")
    arts = {a.path for a in client.list_artifacts(mv.run_id, "shap")}
    assert "shap/top_features.json" in arts
    exp = client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id
    runs = client.search_runs([exp], "tags.`thawcast.stage` = 'explain' and tags.`thawcast.architecture` = 'gru'")
    assert runs and runs[0].data.tags["model_version"] == str(mv.version)


def test_compare_explanations(explained, tmp_path):
    cfg, root, _ = explained
    compare_explanations.run(cfg, root / "explain", tmp_path)
    m = json.loads((tmp_path / compare_explanations.METRICS_FILE).read_text())
    assert set(m) == {"gru", "tcn"} and len(m["gru"]["top"]) == compare_explanations.RANKS
    assert "| gru |" in (tmp_path / compare_explanations.TABLE_FILE).read_text()
    more = cfg.model_copy(update={"training": cfg.training.model_copy(update={"architectures": ("gru", "bilstm")})})
    with pytest.raises(DataError, match="run the explain@bilstm stage"):
        compare_explanations.run(more, root / "explain", tmp_path)
