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
from pathlib import Path

from thawcast.config import Config
from thawcast.layout import Layout
from thawcast.learn.seeds import markdown, spread_row, summary
from thawcast.learn.settings import default_settings, resolve_settings
from thawcast.learn.training import check_devices, load_training_data, score_degc, train_many
from thawcast.prep.windows import open_windows
from thawcast.quality.provenance import git_commit
from thawcast.tracking.registry import start_run, use_store

log = logging.getLogger(__name__)


def run(cfg: Config, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    check_devices(cfg.training)  # before anything is trained or logged
    data = load_training_data(paths.history, paths.scaler)
    test = open_windows(paths.history, "test")
    seeds = cfg.robustness.all_seeds(cfg.seed)
    variants = {}
    for arch in cfg.training.architectures:
        variants[arch] = {"defaults": default_settings(cfg, arch)}
        tuned = resolve_settings(cfg, arch, paths.best_params(arch))
        if tuned.source != "params.yaml":
            variants[arch]["tuned"] = tuned
    runs = [(arch, name, seed) for arch, by_name in variants.items() for name in by_name for seed in seeds]
    workers = cfg.compute.worker_count(len(runs))
    log.info("seed-spread: %d trainings in %d process(es) of %d thread(s)", len(runs), workers,
             cfg.training.threads)
    scored: dict[tuple[str, str, int], tuple[float, float]] = {}
    jobs = [(variants[arch][name], seed, f"{arch} {name} seed {seed}") for arch, name, seed in runs]
    for i, net in train_many(jobs, data, workers):
        scored[runs[i]] = (score_degc(net, data.validation, data.targets)["rmse"],
                           score_degc(net, test, data.targets)["rmse"])
        log.info("seed-spread %d/%d: %s %s seed %d: validation RMSE %.3f, test RMSE %.3f degC",
                 len(scored), len(runs), *runs[i], *scored[runs[i]])
    table: dict = {"seeds": list(seeds), "choose_by_validation": cfg.robustness.choose_by_validation,
                   "architectures": {}}
    for arch, settings_by_name in variants.items():
        val = {name: [scored[arch, name, seed][0] for seed in seeds] for name in settings_by_name}
        tst = {name: [scored[arch, name, seed][1] for seed in seeds] for name in settings_by_name}
        row = spread_row(val, tst, {name: s.to_dict() for name, s in settings_by_name.items()})
        if "choice" in row:
            log.info("%s: registers the %s settings (mean validation RMSE defaults %.3f, tuned %.3f)", arch,
                     row["choice"]["settings"], row["choice"]["defaults_val_rmse"], row["choice"]["tuned_val_rmse"])
        table["architectures"][arch] = row
    table["summary"] = summary(table["architectures"])

    json_file, md_file = paths.metric("seed_spread.json"), paths.metric("seed_spread.md")
    json_file.parent.mkdir(parents=True, exist_ok=True)
    json_file.write_text(json.dumps(table, indent=2) + "\n")
    md_file.write_text(markdown(table, seeds))
    use_store(cfg.mlflow)
    with start_run(run_name="seed-spread", tags={"thawcast.stage": "seed-spread", "git_commit": git_commit()}):
        mlflow.log_params({"seeds": ",".join(map(str, seeds)), "architectures": ",".join(variants)})
        mlflow.log_metrics({f"{arch}_{name}_test_rmse_{stat}": row[name]["test_rmse"][stat]
                            for arch, row in table["architectures"].items() for name in ("defaults", "tuned")
                            if name in row for stat in ("mean", "std")})
        mlflow.log_dict(table, "seed_spread.json")
        mlflow.log_text(markdown(table, seeds), "seed_spread.md")
    return json_file
