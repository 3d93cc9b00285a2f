"""The seed-spread stage: retraining with other seeds, and what it concludes."""

import json
from pathlib import Path

import pytest

from conftest import TRAINED_ARCHS, layout
from thawcast.config import parse_config
from thawcast.errors import ConfigError
from thawcast.learn.seeds import (
    cell_markdown,
    cell_spread_row,
    choose_by_validation,
    describe,
    difference,
    paired_difference,
    tuning_effect,
)
from thawcast.learn.settings import default_settings, select_settings, write_best_params
from thawcast.stages import seed_spread


@pytest.fixture(scope="module")
def spread(trained, tmp_path_factory):
    """gru with a 'tuned' setting (wider), tcn with defaults only; seeds = cfg.seed and 1; two worker processes."""
    cfg, root, world = trained
    cfg = cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"workers": 2})})
    tmp = tmp_path_factory.mktemp("spread")
    paths = layout(tmp, windows=world / "windows")
    paths.study("gru").mkdir(parents=True)
    wider = default_settings(cfg, "gru")
    wider = type(wider)(wider.architecture, wider.hparams.model_copy(update={"hidden": 12}), wider.training,
                        wider.band_embedding_dim, "test")
    write_best_params(paths.best_params("gru"), wider)
    seed_spread.run(cfg, paths)
    table = json.loads(paths.metric("seed_spread.json").read_text())
    return cfg, root, tmp, table


def test_one_process_or_two_give_the_same_table_to_the_bit(spread, trained):
    """Where a model trains (a worker process or the stage's own) and beside what changes none of its bits."""
    cfg, _, tmp, _ = spread
    serial = cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"workers": 1})})
    paths = layout(tmp, windows=trained[2] / "windows", metrics=tmp / "serial")
    seed_spread.run(serial, paths)
    assert paths.metric("seed_spread.json").read_text() == layout(tmp).metric("seed_spread.json").read_text()


def _best(tmp, arch):
    return layout(tmp).best_params(arch)


def _spread_file(tmp):
    return layout(tmp).metric("seed_spread.json")


def test_the_pipeline_seed_reproduces_the_registered_model(spread):
    """Known answer: the first seed is the pipeline's, so its defaults run is the registered one."""
    cfg, root, _, table = spread
    assert table["seeds"] == [cfg.seed, 1]
    evaluation = json.loads(layout(root).metric("evaluation.json").read_text())
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
    md = layout(tmp).metric("seed_spread.md").read_text()
    assert "| gru | defaults |" in md and "|  | tuned |" in md and "Median seed std" in md


def test_tuning_effect_counts_only_differences_beyond_seed_noise():
    def d(values):
        return describe(values)

    noisy = tuning_effect(d([0.7, 0.8, 0.6]), d([0.6, 0.7, 0.5]))  # diff -0.1, SE 0.0816
    assert noisy["tuned_minus_defaults_test_rmse"] == pytest.approx(-0.1)
    assert noisy["standard_error"] == pytest.approx((0.01 / 3 + 0.01 / 3) ** 0.5)
    assert not noisy["beyond_two_standard_errors"]
    clear = tuning_effect(d([0.70, 0.71, 0.69]), d([0.60, 0.61, 0.59]))
    assert clear["beyond_two_standard_errors"]
    assert describe([0.5])["std"] == 0.0


def test_seeds_must_be_distinct_and_the_pipeline_seed_comes_first():
    with pytest.raises(ConfigError, match="seeds"):
        parse_config({"robustness": {"seeds": [1, 1]}})
    cfg = parse_config({"seed": 5, "robustness": {"seeds": [1, 5, 2]}})
    assert cfg.robustness.all_seeds(cfg.seed) == (5, 1, 2)


def test_the_registered_settings_are_chosen_on_validation_over_seeds(spread):
    """The choice follows the mean validation RMSE; the test scores cannot move it (no leakage)."""
    cfg, _, tmp, table = spread
    gru = table["architectures"]["gru"]
    val_d, val_t = gru["defaults"]["val_rmse"]["values"], gru["tuned"]["val_rmse"]["values"]
    expected = "tuned" if sum(val_t) < sum(val_d) else "defaults"
    assert gru["choice"]["settings"] == expected
    assert "choice" not in table["architectures"]["tcn"]  # no study, no choice: defaults
    spread_file = _spread_file(tmp)
    chosen = select_settings(cfg, "gru", _best(tmp, "gru"), spread_file)
    assert (chosen.hparams.hidden == 12) == (expected == "tuned")
    assert select_settings(cfg, "tcn", _best(tmp, "tcn"), spread_file).source == "params.yaml"

    def rewritten(change) -> Path:
        edited = json.loads(json.dumps(table))
        change(edited["architectures"]["gru"])
        out = tmp / f"edited-{len(list(tmp.glob('edited-*')))}.json"
        out.write_text(json.dumps(edited))
        return out

    def tuned_wins(row):  # what seed-spread would write had the tuned settings won on validation
        row["choice"] = {**row["choice"], "settings": "tuned"}

    def defaults_win(row):
        row["choice"] = {**row["choice"], "settings": "defaults"}

    assert select_settings(cfg, "gru", _best(tmp, "gru"), rewritten(tuned_wins)).hparams.hidden == 12
    rejected = select_settings(cfg, "gru", _best(tmp, "gru"), rewritten(defaults_win))
    assert rejected.hparams == default_settings(cfg, "gru").hparams and "rejected" in rejected.source
    off = cfg.model_copy(update={"robustness": cfg.robustness.model_copy(update={"choose_by_validation": False})})
    assert select_settings(off, "gru", _best(tmp, "gru"), rewritten(defaults_win)).hparams.hidden == 12
    # missing seed-spread output: the tuned settings, unchecked
    assert select_settings(cfg, "gru", _best(tmp, "gru"), tmp / "absent.json").hparams.hidden == 12


def test_the_choice_is_blind_to_the_test_years(spread, trained, monkeypatch):
    """Leakage: with every test score turned upside down (best becomes worst) the seed-spread stage makes the
    same choice from the same validation scores, while the test scores it reports do change."""
    cfg, _, tmp, table = spread
    seen = []
    real_open, real_score = seed_spread.open_windows, seed_spread.score_degc

    def open_windows(path, split=None):
        ws = real_open(path, split)
        if split == "test":
            seen.append(ws)
        return ws

    def inverted(net, ws, targets):
        out = real_score(net, ws, targets)
        return {**out, "rmse": 100.0 - out["rmse"]} if any(ws is t for t in seen) else out

    monkeypatch.setattr(seed_spread, "open_windows", open_windows)
    monkeypatch.setattr(seed_spread, "score_degc", inverted)
    paths = layout(tmp, windows=trained[2] / "windows", metrics=tmp / "inverted")
    seed_spread.run(cfg, paths)
    again = json.loads(paths.metric("seed_spread.json").read_text())["architectures"]["gru"]
    gru = table["architectures"]["gru"]
    assert seen and again["choice"] == gru["choice"]
    assert again["defaults"]["val_rmse"] == gru["defaults"]["val_rmse"]
    assert again["defaults"]["test_rmse"]["mean"] == pytest.approx(100.0 - gru["defaults"]["test_rmse"]["mean"])


def test_a_tie_keeps_the_defaults_and_one_lucky_seed_is_not_enough():
    assert choose_by_validation([0.70, 0.72], [0.69, 0.71]) == "tuned"
    assert choose_by_validation([0.5, 0.75], [0.625, 0.625]) == "defaults"  # tie: tuning must earn its place
    assert choose_by_validation([0.70, 0.72], [0.60, 0.90]) == "defaults"  # one lucky seed is not enough
    with pytest.raises(ConfigError, match="same seeds"):
        choose_by_validation([0.7, 0.7], [0.6])


def test_a_stale_seed_spread_is_refused(spread):
    """Seed spread computed for other settings or seeds than the current ones: a clear error, not a silent pick."""
    cfg, _, tmp, _ = spread
    spread_file = _spread_file(tmp)
    other_lr = cfg.model_copy(update={"training": cfg.training.model_copy(update={"learning_rate": 0.5})})
    with pytest.raises(ConfigError, match="other settings"):
        select_settings(other_lr, "gru", _best(tmp, "gru"), spread_file)
    other_seeds = cfg.model_copy(update={"robustness": cfg.robustness.model_copy(update={"seeds": [7]})})
    with pytest.raises(ConfigError, match="other seeds"):
        select_settings(other_seeds, "gru", _best(tmp, "gru"), spread_file)
    (tmp / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="rerun `thawcast seed-spread`"):
        select_settings(cfg, "gru", _best(tmp, "gru"), tmp / "broken.json")


def test_differences_of_runs_and_of_paired_runs_by_hand():
    a, b = describe([1.0, 2.0, 3.0]), describe([2.0, 4.0, 6.0])  # stds 1 and 2
    d = difference(a, b)
    assert d["difference"] == pytest.approx(2.0) and d["standard_error"] == pytest.approx((1 / 3 + 4 / 3) ** 0.5)
    assert d["beyond_two_standard_errors"] is False  # 2.0 < 2 x 1.29
    p = paired_difference([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])  # per run 1, 2, 3: mean 2, std 1
    assert p["difference"] == pytest.approx(2.0) and p["standard_error"] == pytest.approx(3 ** -0.5)
    assert p["beyond_two_standard_errors"] is True  # pairing removes what the runs share
    same = difference(describe([0.5, 0.5]), describe([0.5, 0.5]))
    assert same["standard_error"] == 0 and same["beyond_two_standard_errors"] is False
    assert difference(describe([0.5, 0.5]), describe([0.6, 0.6]))["beyond_two_standard_errors"] is True
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])
    # one seed (robustness.seeds empty): no spread to measure, so nothing is called beyond noise
    for one in (difference(describe([0.5]), describe([0.7])), paired_difference([0.5], [0.7])):
        assert one["standard_error"] is None and one["beyond_two_standard_errors"] is False
        assert one["difference"] == pytest.approx(0.2)


def test_a_cell_model_whose_registered_seed_gives_other_weights_says_so():
    scored = {7: {"val_rmse": 0.5, "seen_test_rmse": 0.6, "held_out_test_rmse": 0.7, "bands_test_rmse": 0.4,
                  "weights_sha256": "aa"},
              1: {"val_rmse": 0.6, "seen_test_rmse": 0.7, "held_out_test_rmse": 0.9, "bands_test_rmse": 0.5,
                  "weights_sha256": "bb"}}
    ok, wrong = cell_spread_row(scored, "aa", 7, None), cell_spread_row(scored, "bb", 7, None)
    assert ok["reproduces_registered"] is True and wrong["reproduces_registered"] is False
    assert ok["held_out_minus_seen"]["difference"] == pytest.approx(0.15) and ok["against_band_models"] == {}
    assert ok["bands_test_rmse"]["mean"] == pytest.approx(0.45)
    text = cell_markdown({"seeds": [7, 1], "architectures": {"gru": wrong}})
    assert "| NO |" in text and "beside the band models" not in text  # no band table without a band spread
    single = cell_spread_row({7: scored[7]}, "aa", 7, None)
    assert "+0.100 (one seed: no spread)" in cell_markdown({"seeds": [7], "architectures": {"gru": single}})
