"""``thawcast``: one subcommand per DVC stage, plus helpers.

Only this module reads ``params.yaml``; stages receive the typed config.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from thawcast import __version__
from thawcast.catalogue import ARCHITECTURES
from thawcast.config import load_config, with_overrides
from thawcast.errors import ThawcastError

log = logging.getLogger("thawcast")

STAGES = {
    "raw": "generate the synthetic Alaska (default) or ingest downloaded files into data/raw/",
    "static": "per-band static features (HWSD texture/carbon, lithology) into data/static/",
    "cells": "every land cell's monthly drivers and soil temperatures, and its statics, into data/cells/",
    "bands": "per-band monthly ERA5-Land and CMIP5 tables into data/bands/",
    "scenarios": "bias-corrected CMIP5 RCP inputs (xsdba QDM/EQM) into data/scenarios/ + spread metrics",
    "windows": "scaled features, splits and sliding-window indices into data/windows/",
    "tune": "Optuna study per architecture (resumable), tracked in MLflow; data/tuning/<arch>/",
    "compare-studies": "cross-architecture comparison of the tuning studies: metrics/tuning.{json,md}",
    "seed-spread": "every architecture retrained with several seeds, defaults and tuned: metrics/seed_spread.*",
    "feature-ablation": "every architecture trained without and with ablation.features (snow): metrics/feature_ablation.*",
    "train": "train one architecture, log it to MLflow and register it (data/models/<arch>/)",
    "evaluate": "score every model and baseline on the test years: metrics, table, figures",
    "train-cells": "train one architecture across the seen grid cells, log and register it (data/cell_models/<arch>/)",
    "evaluate-cells": "score the cell models and baselines per cell, seen vs held out, and averaged up to the bands",
    "tune-cells": "Optuna study per cell model (resumable), tracked in MLflow: metrics/cell_tuning.{json,md}",
    "seed-spread-cells": "every cell model retrained with several seeds, beside the band models': metrics/cell_seed_spread.*",
    "explain-cells": "SHAP attributions of the cell models on seen and held-out cells: data/cell_explain/, metrics/cell_shap.*",
    "project-cells": "per-cell soil temperature, ALT and permafrost maps and extent under every RCP (cell models)",
    "project": "every RCP x every registered model (@champion): projected soil temperature, ensemble, period check",
    "explain": "SHAP attributions of each registered model: data/explain/<arch>/",
    "compare-explanations": "top SHAP features of every architecture side by side: metrics/shap.{json,md}",
    "thaw": "active-layer thickness and thaw metrics for observations and projections (data/thaw/)",
    "pseudo-reality": "the synthetic world continued to 2100 under each RCP: the perfect-model truth (data/pseudo_reality/)",
    "perfect-model": "every registered model and baseline scored against the pseudo-reality per decade: metrics/perfect_model.*",
    "report": "one self-contained offline HTML report of the whole pipeline (data/report/index.html)",
}


#: Stages run once per architecture (``dvc.yaml`` foreach): ``thawcast <stage> <arch>``.
PER_ARCHITECTURE = ("train", "train-cells")
#: Stages that do every architecture, side by side, or the one named: ``thawcast <stage> [<arch>]``.
EACH_ARCHITECTURE = ("tune", "explain")


def _quiet_libraries() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # xarray/dask chatter that is not actionable for a user of the pipeline.
    warnings.filterwarnings("ignore", message=".*Converting non-nanosecond precision datetime.*")
    warnings.filterwarnings("ignore", message=".*does not have a .* _FillValue.*")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="thawcast",
        description="Forecast soil temperature and active-layer thaw of Alaska's permafrost. "
        "Each stage subcommand is one DVC stage (see dvc.yaml); run them all with `dvc repro`.",
    )
    p.add_argument("--version", action="version", version=f"thawcast {__version__}")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in STAGES.items():
        sp = sub.add_parser(name, help=f"stage: {help_text}", description=help_text)
        if name in EACH_ARCHITECTURE:
            sp.add_argument("architecture", nargs="?", default=None,
                            help=f"one of: {', '.join(ARCHITECTURES)} (default: every one of training.architectures,"
                                 " up to compute.workers of them side by side)")
        elif name in PER_ARCHITECTURE:
            sp.add_argument("architecture", help=f"one of: {', '.join(ARCHITECTURES)}")
        if name in ("tune", "tune-cells"):
            sp.add_argument("--workers", type=int, default=None, metavar="N",
                            help="worker processes on the study (default: tuning.workers in params)")
    e = sub.add_parser("expectations", help="(re)write the Great Expectations suites in expectations/")
    e.add_argument("--out", type=Path, default=Path("expectations"))
    d = sub.add_parser("download", help="download real data with your own credentials (never run in tests)")
    dsub = d.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    era = dsub.add_parser("era5", help="ERA5-Land monthly means for the study box from the Copernicus CDS")
    era.add_argument("--out", type=Path, default=None, help="folder (default: source.era5land_dir)")
    era.add_argument("--years", default=None, help="e.g. 2001-2023 (default: period in params)")
    era.add_argument("--dry-run", action="store_true", help="print the CDS requests, send nothing")
    return p


def _years(text: str | None) -> range | None:
    if not text:
        return None
    try:
        a, _, b = text.partition("-")
        first, last = int(a), int(b or a)
    except ValueError:
        raise ThawcastError(f"--years must look like 2001-2023, got {text!r}") from None
    if last < first:
        raise ThawcastError(f"--years {text}: end before start")
    return range(first, last + 1)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    _quiet_libraries()
    for noisy in ("great_expectations", "distributed", "numba", "matplotlib", "pint"):
        logging.getLogger(noisy).setLevel(logging.ERROR if noisy == "pint" else logging.WARNING)
    try:
        return _dispatch(args)
    except ThawcastError as exc:
        print(f"thawcast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # permissions, read-only or full disks: the user's to fix, not a bug
        from thawcast.quality.provenance import USER_OS_ERRORS, os_error_hint

        if exc.errno not in USER_OS_ERRORS:
            raise
        print(f"thawcast {args.command}: error: {os_error_hint(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # re-raised unless an MLflow store refused a write (one line, below)
        from thawcast.tracking.registry import store_write_failure

        if (line := store_write_failure(exc)) is None:
            raise
        print(f"thawcast {args.command}: error: {line}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "expectations":
        from thawcast.quality.suites import write_suites

        for path in write_suites(args.out):
            print(path)
        return 0
    cfg = load_config(args.params)
    if getattr(args, "workers", None) is not None:
        try:
            cfg = with_overrides(cfg, tuning={"workers": args.workers})
        except ThawcastError as exc:
            raise ThawcastError(f"--workers {args.workers}: {exc}") from None
    if args.command == "download":
        from thawcast.ingest.download import download_era5land, era5land_requests

        years = _years(args.years)
        if args.dry_run:
            print(json.dumps([{"year": y, "request": r} for y, r in era5land_requests(cfg, years)], indent=2))
            return 0
        download_era5land(cfg, args.out or cfg.source.era5land_dir, years)
        return 0
    if args.command not in STAGES:  # pragma: no cover - argparse restricts the choices
        raise ThawcastError(f"unknown command {args.command}")
    stage = importlib.import_module(f"thawcast.stages.{args.command.replace('-', '_')}")
    if getattr(args, "architecture", None) is not None:  # train; tune and explain when given one
        out = stage.run(cfg, args.architecture)
        log.info("stage %s@%s done: %s", args.command, args.architecture, out)
    else:
        out = stage.run(cfg)
        log.info("stage %s done: %s", args.command, out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
