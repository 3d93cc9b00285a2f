"""Stage ``explain-cells``: SHAP attributions of each registered cell model, on seen and on held-out cells.

A cell model tells cells apart only by their attributes (soil, lithology, position, elevation). Which of them it
leans on, beside the weather, says what it learnt about place: a model that mostly reads latitude and longitude has learnt a
map of the seen cells, one that reads soil and lithology something that may carry to other ground. The
attributions are computed as for the band models (:mod:`thawcast.analysis.explain`: expected gradients, summed
over the window's months, degC) with ``explain.background`` of the seen cells' training windows as background,
on ``explain.samples`` test windows of the seen cells and as many of the held-out cells (drawn with ``seed``).

Outputs: ``data/cell_explain/<arch>/`` (``shap_values.nc``, ``importance.csv``, ``figures/shap_bar.png``,
``figures/shap_beeswarm.png``) and ``metrics/cell_shap.{json,md}``: per cell model and group of cells, the share
of the attribution that goes to weather, soil, lithology, position, elevation and the signal, and the top features;
MLflow holds the same. The model is the version holding the weights ``train-cells@<arch>`` recorded, after checking its
scalers are these cells'.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import xarray as xr

from thawcast.analysis.explain import (
    FEATURE_GROUPS,
    additivity_gap,
    attributions,
    group_shares,
    importance,
    plots,
)
from thawcast.analysis.tables import markdown_table
from thawcast.config import Config
from thawcast.layout import Layout
from thawcast.parallel import torch_threads
from thawcast.prep.cell_windows import (
    GROUPS,
    build_cell_history,
    check_scaler,
    open_cells,
    subsample,
)
from thawcast.quality.provenance import git_commit, provenance, staged_output
from thawcast.tracking.registry import (
    Registration,
    load_registration,
    read_registration,
    start_run,
    use_store,
)
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)


def run(cfg: Config, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    e = cfg.explain
    hist = build_cell_history(cfg, open_cells(paths.cell_store, paths.static_cells))
    background = subsample(hist.windows("train", "seen"), e.background, cfg.seed)
    explained = {g: subsample(hist.windows("test", g), e.samples, cfg.seed) for g in GROUPS}
    use_store(cfg.mlflow, create=False)
    table: dict = {"n_background": len(background), "n_explained": {g: len(w) for g, w in explained.items()},
                   "groups": list(FEATURE_GROUPS), "models": {}}
    versions = {}  # MLflow's version numbers count up with every rebuild: logged to MLflow, not to the metrics
    with staged_output(paths.cell_explain) as tmp:
        for arch in cfg.cells.architectures:
            reg = read_registration(paths.cell_registration(arch), arch, "train-cells")
            check_scaler(hist, paths.cell_model(arch) / "scaler.json", arch)
            model, mv = load_registration(reg)
            versions[f"{arch}.model"] = f"{reg.registered_model} v{mv.version}"
            model.check_windows(background, reg.label)
            log.info("cells-%s: explaining %s test windows of seen / held-out cells against %d training windows",
                     arch, " / ".join(str(len(w)) for w in explained.values()), len(background))
            bg = background.inputs()
            zero = np.zeros(len(bg), dtype=np.int64)  # a cell model's unit channel is 0 for every window
            sv, x, gaps = {}, {}, {}
            with torch_threads(cfg.training.threads):
                for g, ws in explained.items():
                    x[g] = ws.inputs()
                    unit = np.zeros(len(ws), dtype=np.int64)
                    sv[g] = attributions(model, bg, zero, x[g], unit, e.nsamples, cfg.seed)
                    gaps[g] = additivity_gap(model, sv[g], bg, zero, x[g], unit)
            features = list(background.feature_names)
            table["models"][arch] = {
                "registered_model": reg.registered_model, "weights_sha256": reg.weights_sha256,
                **{g: {"shares": group_shares(sv[g], features), "additivity_gap_degc": gaps[g],
                       "top": [{"feature": f, "mean_abs_shap_degc": float(v)}
                               for f, v in importance(sv[g], features, TARGETS)["all"].head(5).items()]}
                   for g in GROUPS}}
            _write(cfg, arch, reg, np.concatenate([sv[g] for g in GROUPS]),
                   np.concatenate([x[g] for g in GROUPS]), explained, features, tmp / arch)
            log.info("cells-%s: attribution shares on held-out cells: %s", arch, ", ".join(
                f"{k} {v:.0%}" for k, v in table["models"][arch]["held_out"]["shares"].items()))
    text = markdown(table)
    paths.metrics.mkdir(parents=True, exist_ok=True)
    json_file = paths.metric("cell_shap.json")
    json_file.write_text(json.dumps(table, indent=2, allow_nan=False) + "\n")
    paths.metric("cell_shap.md").write_text(text)
    with start_run(run_name="explain-cells", tags={"thawcast.stage": "explain-cells", "thawcast.units": "cells",
                                                   "git_commit": git_commit(),
                                                   "synthetic_data": str(cfg.source.kind == "synthetic").lower()}):
        mlflow.log_params({"background": len(background), "nsamples": cfg.explain.nsamples,
                           **{f"samples_{g}": len(w) for g, w in explained.items()}, **versions})
        mlflow.log_metrics({f"{arch}.{g}.share_{k}": v for arch, row in table["models"].items() for g in GROUPS
                            for k, v in row[g]["shares"].items()})
        mlflow.log_dict(table, "cell_shap.json")
        mlflow.log_text(text, "cell_shap.md")
        mlflow.log_artifacts(str(paths.cell_explain), "cell_explain")
    return paths.cell_explain


def _write(cfg: Config, arch: str, reg: Registration, sv: np.ndarray, x: np.ndarray, explained: dict, features: list[str],
           folder: Path) -> None:
    """One model's attributions (seen cells' windows first, then the held-out cells'), importance and figures."""
    imp = importance(sv, features, TARGETS)
    ds = xr.Dataset(
        {"shap": (("window", "feature", "layer"), sv,
                  {"units": "degC", "long_name": "SHAP attribution summed over the window's months"}),
         "feature_value": (("window", "feature"), x.mean(axis=1), {"long_name": "window-mean scaled feature value"}),
         "cell": (("window",), np.concatenate([w.band for w in explained.values()])),
         "held_out": (("window",), np.concatenate([np.full(len(w), g == "held_out", dtype=np.int8)
                                                  for g, w in explained.items()])),
         "target_time": (("window",), np.concatenate([w.target_times().values for w in explained.values()]))},
        coords={"feature": features, "layer": list(TARGETS)},
        attrs=provenance("explain-cells", f"shap.GradientExplainer on {reg.label}", "data/cells, data/cell_models",
                         synthetic=cfg.source.kind == "synthetic", registered_model=reg.registered_model,
                         weights_sha256=reg.weights_sha256, nsamples=cfg.explain.nsamples))
    folder.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(folder / "shap_values.nc")
    imp.to_csv(folder / "importance.csv")
    plots(sv, x.mean(axis=1), features, imp, f"cells-{arch} ({reg.label}): SHAP on test windows, seen and held-out"
          " cells", folder / "figures", cfg.explain.top)


def markdown(table: dict) -> str:
    """The cell models' attribution shares per group of cells, and their top features."""
    head = ["cell model", "cells", *FEATURE_GROUPS, "top features (mean abs SHAP, degC)", "additivity gap"]
    rows = [[arch, g.replace("_", "-"), *(f"{row[g]['shares'][k]:.0%}" for k in FEATURE_GROUPS),
             ", ".join(f"{t['feature']} {t['mean_abs_shap_degc']:.2f}" for t in row[g]["top"]),
             f"{row[g]['additivity_gap_degc']:.3f}"]
            for arch, row in table["models"].items() for g in GROUPS]
    n = table["n_explained"]
    return "\n".join([
        "# What the cell models read (SHAP)", "",
        (f"Expected-gradient SHAP of each registered cell model on {n['seen']} test windows of seen cells and"
         f" {n['held_out']} of held-out cells, against {table['n_background']} training windows of the seen cells;"
         " attribution summed over the window's months (degC). Shares: each group's part of the mean |SHAP| summed"
         " over the inputs (weather: the monthly drivers and the calendar; soil: texture, organic carbon, bulk"
         " density; lithology: the shares of the lithology classes; position: latitude and longitude; elevation:"
         " the cell's height; signal: z). Additivity gap: mean |prediction - background"
         " mean - sum of attributions| (degC), how exact the sums are."), "",
        *markdown_table(head, rows), ""])
