"""Stage ``seed-spread``: how much of a difference between two single training runs is seed noise.

Every architecture is trained again with each seed of ``robustness.all_seeds`` (the
pipeline's ``seed``, whose run is the registered one, plus ``robustness.seeds``), once with
the ``params.yaml`` defaults and once with its tuned settings, and scored on the validation
and test years. Nothing is registered: the models are thrown away, the scores are kept.

Outputs: ``metrics/seed_spread.json`` (``dvc metrics show``) and ``metrics/seed_spread.md``;
an MLflow run ``seed-spread`` in the training experiment holds the same table.

Per architecture and settings: mean, std (across seeds), min and max of the validation and
test RMSE; per architecture, the tuned-minus-defaults difference of the mean test RMSE with
its standard error, and whether it exceeds twice that (a difference seed noise alone would
rarely produce).

It also decides which settings the train stage registers (``robustness.choose_by_validation``):
the tuned ones only if their mean *validation* RMSE over the seeds beats the defaults'. A
study picks its best trial on one seed, so part of its margin over the defaults is that
seed's luck; averaging over seeds removes most of it. The test years play no part in it.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from thawcast.config import Config
from thawcast.provenance import git_commit
from thawcast.settings import choose_by_validation, default_settings, resolve_settings
from thawcast.stages.train import training_data
from thawcast.stages.windows import HISTORY_FILE
from thawcast.tracking import use_store
from thawcast.training import score_degc, train_model
from thawcast.windows import open_windows

log = logging.getLogger(__name__)

METRICS_FILE = "seed_spread.json"
TABLE_FILE = "seed_spread.md"


def describe(values: list[float]) -> dict:
    """Mean, sample std (0 for one value), min, max and the values themselves."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "values": [float(x) for x in v]}


def tuning_effect(defaults: dict, tuned: dict) -> dict:
    """Tuned minus defaults mean test RMSE, its standard error across seeds, and |diff| > 2 SE."""
    n_d, n_t = len(defaults["values"]), len(tuned["values"])
    diff = tuned["mean"] - defaults["mean"]
    se = math.sqrt(defaults["std"] ** 2 / n_d + tuned["std"] ** 2 / n_t)
    return {"tuned_minus_defaults_test_rmse": diff, "standard_error": se,
            "beyond_two_standard_errors": bool(abs(diff) > 2 * se) if se > 0 else diff != 0}


def registered(row: dict, by_validation: bool) -> str:
    """Which of an architecture's settings the train stage registers: no study, the defaults; else the seed
    check's choice, or the tuned settings when the check is off."""
    if "tuned" not in row:
        return "defaults"
    return row["choice"]["settings"] if by_validation else "tuned"


def markdown(table: dict, seeds: tuple[int, ...]) -> str:
    lines = ["# Seed spread", "",
             (f"Each architecture trained with seeds {', '.join(map(str, seeds))} (the first is the registered"
              " run's), with the params.yaml defaults and with its tuned settings. RMSE in degC: mean +- std"
              " across seeds [min-max]. 'tuning effect' = tuned minus defaults mean test RMSE (negative: tuning"
              " helps) +- its standard error; * marks a difference beyond two standard errors. 'registered': the"
              " settings the train stage registers"
              + (", the tuned ones only where their mean validation RMSE over the seeds is lower than the"
                 " defaults' (the test years play no part in this choice)."
                 if table["choose_by_validation"] else ", the tuned ones wherever a study ran.")), "",
             "| architecture | settings | validation RMSE | test RMSE | tuning effect on test | registered |",
             "|---|---|---|---|---|---|"]

    def cell(d: dict) -> str:
        return f"{d['mean']:.3f} +- {d['std']:.3f} [{d['min']:.3f}-{d['max']:.3f}]"

    for arch, row in table["architectures"].items():
        for i, name in enumerate(k for k in ("defaults", "tuned") if k in row):
            effect = ""
            if i == 1 and "tuning_effect" in row:
                e = row["tuning_effect"]
                effect = (f"{e['tuned_minus_defaults_test_rmse']:+.3f} +- {e['standard_error']:.3f}"
                          + (" *" if e["beyond_two_standard_errors"] else ""))
            chosen = registered(row, table["choose_by_validation"])
            lines.append(f"| {arch if i == 0 else ''} | {name} | {cell(row[name]['val_rmse'])} |"
                         f" {cell(row[name]['test_rmse'])} | {effect} | {'yes' if name == chosen else ''} |")
    s = table["summary"]
    lines += ["", (f"Median seed std of the test RMSE: {s['median_test_std']:.3f} degC; the largest is"
                   f" {s['max_test_std']:.3f} degC. Differences between two single runs smaller than about twice"
                   " the seed std are not evidence that one configuration is better.")]
    return "\n".join(lines) + "\n"


def run(cfg: Config, windows_dir: Path = Path("data/windows"), tuning_dir: Path = Path("data/tuning"),
        metrics_dir: Path = Path("metrics")) -> Path:
    import mlflow

    data = training_data(windows_dir)
    test = open_windows(windows_dir / HISTORY_FILE, "test")
    seeds = cfg.robustness.all_seeds(cfg.seed)
    variants = {}
    for arch in cfg.training.architectures:
        variants[arch] = {"defaults": default_settings(cfg, arch)}
        tuned = resolve_settings(cfg, arch, tuning_dir)
        if tuned.source != "params.yaml":
            variants[arch]["tuned"] = tuned
    total = sum(len(v) for v in variants.values()) * len(seeds)
    done = 0
    table: dict = {"seeds": list(seeds), "choose_by_validation": cfg.robustness.choose_by_validation,
                   "architectures": {}}
    for arch, settings_by_name in variants.items():
        row = {}
        for name, settings in settings_by_name.items():
            val, tst = [], []
            for seed in seeds:
                net, _ = train_model(settings, data, seed, label=f"{arch} {name} seed {seed}")
                val.append(score_degc(net, data.validation, data.targets)["rmse"])
                tst.append(score_degc(net, test, data.targets)["rmse"])
                done += 1
                log.info("seed-spread %d/%d: %s %s seed %d: validation RMSE %.3f, test RMSE %.3f degC",
                         done, total, arch, name, seed, val[-1], tst[-1])
            row[name] = {"val_rmse": describe(val), "test_rmse": describe(tst), "settings": settings.to_dict()}
        if "tuned" in row:
            row["tuning_effect"] = tuning_effect(row["defaults"]["test_rmse"], row["tuned"]["test_rmse"])
            row["choice"] = {"settings": choose_by_validation(row["defaults"]["val_rmse"]["values"],
                                                              row["tuned"]["val_rmse"]["values"]),
                             "criterion": "mean validation RMSE over seeds",
                             "defaults_val_rmse": row["defaults"]["val_rmse"]["mean"],
                             "tuned_val_rmse": row["tuned"]["val_rmse"]["mean"]}
            log.info("%s: registers the %s settings (mean validation RMSE defaults %.3f, tuned %.3f)", arch,
                     row["choice"]["settings"], row["choice"]["defaults_val_rmse"], row["choice"]["tuned_val_rmse"])
        table["architectures"][arch] = row
    stds = [r[k]["test_rmse"]["std"] for r in table["architectures"].values() for k in ("defaults", "tuned") if k in r]
    table["summary"] = {"median_test_std": float(np.median(stds)), "max_test_std": float(np.max(stds))}

    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / METRICS_FILE).write_text(json.dumps(table, indent=2) + "\n")
    (metrics_dir / TABLE_FILE).write_text(markdown(table, seeds))
    use_store(cfg.mlflow)
    with mlflow.start_run(run_name="seed-spread", tags={"thawcast.stage": "seed-spread", "git_commit": git_commit()}):
        mlflow.log_params({"seeds": ",".join(map(str, seeds)), "architectures": ",".join(variants)})
        mlflow.log_metrics({f"{arch}_{name}_test_rmse_{stat}": row[name]["test_rmse"][stat]
                            for arch, row in table["architectures"].items() for name in ("defaults", "tuned")
                            if name in row for stat in ("mean", "std")})
        mlflow.log_dict(table, "seed_spread.json")
        mlflow.log_text(markdown(table, seeds), "seed_spread.md")
    return metrics_dir / METRICS_FILE
