"""Stage ``feature-ablation``: do the features of ``ablation.features`` (snow by default) earn their place?

Every architecture is trained with its ``params.yaml`` defaults on every seed of
``robustness.all_seeds``, on two input sets built from the ERA5-Land band tables: ``features``
without the tested ones, and with them (:meth:`thawcast.config.Config.ablation_variants`). Each
set has its own scaler, fitted on the training months only; the test years are scored, never used
to decide. Nothing is registered.

Outputs: ``metrics/feature_ablation.{json,md}`` (:mod:`thawcast.learn.ablation`: the paired
difference of the validation RMSE overall, per architecture and per season x layer, and the
decision) and an MLflow run ``feature-ablation`` in the training experiment.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from thawcast.analysis.metrics import rmse
from thawcast.catalogue import FEATURES, SIGNAL_SOURCE
from thawcast.config import Config
from thawcast.ingest.common import open_netcdf
from thawcast.layout import Layout
from thawcast.learn.ablation import ablation_table, markdown, season_layer_rmse
from thawcast.learn.settings import default_settings
from thawcast.learn.training import (
    TrainingData,
    WindowTensors,
    check_devices,
    predict,
    score_degc,
    train_many,
)
from thawcast.prep.scenarios import open_band_table
from thawcast.prep.windows import build_history
from thawcast.quality.provenance import git_commit
from thawcast.tracking.registry import start_run, use_store
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)


def run(cfg: Config, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    check_devices(cfg.training)  # before anything is trained or logged
    variants = cfg.ablation_variants()
    with open_netcdf(paths.static_table) as s:
        static = s.load()
    dyn = tuple(n for n in variants["with"] if FEATURES[n].kind == "dynamic")
    era = open_band_table(paths.era5_bands, (*dyn, SIGNAL_SOURCE, *TARGETS))
    seeds = cfg.robustness.all_seeds(cfg.seed)
    data, test = {}, {}
    for name, features in variants.items():
        hist = build_history(cfg.model_copy(update={"features": features}), era, static)
        data[name] = TrainingData(hist.of_split("train"), hist.of_split("validation"), hist.scalers["targets"])
        test[name] = hist.of_split("test")
    runs = [(name, arch, seed) for name in variants for arch in cfg.training.architectures for seed in seeds]
    workers = cfg.compute.worker_count(len(runs) // 2)
    log.info("feature-ablation of %s: %d trainings in %d process(es)", list(cfg.ablation.features), len(runs),
             workers)
    scores: dict[tuple[str, str, int], dict] = {}
    for name in variants:
        mine = [r for r in runs if r[0] == name]
        jobs = [(default_settings(cfg, arch), seed, f"{arch} {name} {'+'.join(cfg.ablation.features)} seed {seed}")
                for _, arch, seed in mine]
        for i, net in train_many(jobs, data[name], workers):
            val = data[name].validation
            obs = data[name].targets.inverse(val.targets())
            pred = data[name].targets.inverse(predict(net, WindowTensors.from_windows(val)))
            scores[mine[i]] = {"val": rmse(obs, pred),  # score_degc's number, without predicting twice
                               "test": score_degc(net, test[name], data[name].targets)["rmse"],
                               "val_season": season_layer_rmse(obs, pred, val.target_times().month.to_numpy())}
            log.info("feature-ablation %d/%d: %s %s seed %d: validation RMSE %.3f", len(scores), len(runs),
                     *mine[i], scores[mine[i]]["val"])
    table = ablation_table(scores, cfg.ablation.features, seeds, TARGETS,
                           in_default=set(cfg.ablation.features) <= set(cfg.feature_names))
    json_file, md_file = paths.metric("feature_ablation.json"), paths.metric("feature_ablation.md")
    json_file.parent.mkdir(parents=True, exist_ok=True)
    json_file.write_text(json.dumps(table, indent=2) + "\n")
    md_file.write_text(markdown(table))
    log.info("feature-ablation: %s %s (validation RMSE difference %+.3f +- %.3f degC)", table["decision"],
             list(cfg.ablation.features), table["difference"]["mean"], table["difference"]["standard_error"])
    use_store(cfg.mlflow)
    with start_run(run_name="feature-ablation", tags={"thawcast.stage": "feature-ablation",
                                                      "git_commit": git_commit()}):
        mlflow.log_params({"features": ",".join(cfg.ablation.features), "seeds": ",".join(map(str, seeds)),
                           "decision": table["decision"]})
        mlflow.log_metrics({"val_rmse_difference": table["difference"]["mean"],
                            "val_rmse_difference_se": table["difference"]["standard_error"],
                            "test_rmse_difference": table["test_difference"]["mean"]})
        mlflow.log_dict(table, "feature_ablation.json")
        mlflow.log_text(markdown(table), "feature_ablation.md")
    return json_file
