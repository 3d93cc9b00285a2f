"""The seed-spread stage: retraining with other seeds, and what it concludes."""

import json

import pytest

from conftest import TRAINED_ARCHS
from thawcast.config import parse_config
from thawcast.errors import ConfigError
from thawcast.settings import default_settings, write_best_params
from thawcast.stages import seed_spread


@pytest.fixture(scope="module")
def spread(trained, tmp_path_factory):
    """gru with a 'tuned' setting (wider), tcn with defaults only; seeds = cfg.seed and 1."""
    cfg, root, world = trained
    tmp = tmp_path_factory.mktemp("spread")
    (tmp / "tuning" / "gru").mkdir(parents=True)
    wider = default_settings(cfg, "gru")
    wider = type(wider)(wider.architecture, wider.hparams.model_copy(update={"hidden": 12}), wider.training,
                        wider.band_embedding_dim, "test")
    write_best_params(tmp / "tuning" / "gru" / "best_params.json", wider)
    seed_spread.run(cfg, world / "windows", tmp / "tuning", tmp / "metrics")
    table = json.loads((tmp / "metrics" / seed_spread.METRICS_FILE).read_text())
    return cfg, root, tmp, table


def test_the_pipeline_seed_reproduces_the_registered_model(spread):
    """Known answer: the first seed is the pipeline's, so its defaults run is the registered one."""
    cfg, root, _, table = spread
    assert table["seeds"] == [cfg.seed, 1]
    evaluation = json.loads((root / "metrics" / "evaluation.json").read_text())
    for arch in TRAINED_ARCHS:  # trained from defaults (the fixture has no tuning folder)
        registered = evaluation["models"][arch]["overall"]["rmse"]
        assert table["architectures"][arch]["defaults"]["test_rmse"]["values"][0] == pytest.approx(registered,
                                                                                                   rel=1e-5)


def test_other_seeds_train_other_models_and_tuned_settings_are_compared(spread):
    _, _, tmp, table = spread
    gru, tcn = table["architectures"]["gru"], table["architectures"]["tcn"]
    for row in (gru["defaults"], gru["tuned"], tcn["defaults"]):
        values = row["test_rmse"]["values"]
        assert len(values) == 2 and values[0] != values[1] and row["test_rmse"]["std"] > 0
    assert "tuned" not in tcn and "tuning_effect" not in tcn  # no study: nothing to compare
    effect = gru["tuning_effect"]["tuned_minus_defaults_test_rmse"]
    assert effect == pytest.approx(gru["tuned"]["test_rmse"]["mean"] - gru["defaults"]["test_rmse"]["mean"])
    md = (tmp / "metrics" / seed_spread.TABLE_FILE).read_text()
    assert "| gru | defaults |" in md and "|  | tuned |" in md and "Median seed std" in md


def test_tuning_effect_counts_only_differences_beyond_seed_noise():
    def d(values):
        return seed_spread.describe(values)

    noisy = seed_spread.tuning_effect(d([0.7, 0.8, 0.6]), d([0.6, 0.7, 0.5]))  # diff -0.1, SE 0.0816
    assert noisy["tuned_minus_defaults_test_rmse"] == pytest.approx(-0.1)
    assert noisy["standard_error"] == pytest.approx((0.01 / 3 + 0.01 / 3) ** 0.5)
    assert not noisy["beyond_two_standard_errors"]
    clear = seed_spread.tuning_effect(d([0.70, 0.71, 0.69]), d([0.60, 0.61, 0.59]))
    assert clear["beyond_two_standard_errors"]
    assert seed_spread.describe([0.5])["std"] == 0.0


def test_seeds_must_be_distinct_and_the_pipeline_seed_comes_first():
    with pytest.raises(ConfigError, match="seeds"):
        parse_config({"robustness": {"seeds": [1, 1]}})
    cfg = parse_config({"seed": 5, "robustness": {"seeds": [1, 5, 2]}})
    assert cfg.robustness.all_seeds(cfg.seed) == (5, 1, 2)
