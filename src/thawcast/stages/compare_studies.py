"""Stage ``compare-studies``: the tuning studies of every architecture side by side.

Reads ``data/tuning/<arch>/summary.json`` and writes ``metrics/tuning.json`` (for
``dvc metrics show``) and ``metrics/tuning.md``: best validation RMSE, the score of the
``params.yaml`` defaults (the first trial of each study), trials complete / pruned /
failed, wall time and the best parameters.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from thawcast.config import Config
from thawcast.errors import DataError
from thawcast.stages.tune import SUMMARY_FILE

log = logging.getLogger(__name__)

METRICS_FILE = "tuning.json"
TABLE_FILE = "tuning.md"
FIELDS = ("best_value", "default_value", "trials_complete", "trials_pruned", "trials_failed", "wall_s")


def comparison(cfg: Config, tuning_dir: Path) -> dict:
    out = {}
    for arch in cfg.training.architectures:
        path = tuning_dir / arch / SUMMARY_FILE
        if not path.exists():
            raise DataError(path, f"no tuning summary for {arch!r} (run the tune@{arch} stage)")
        s = json.loads(path.read_text())
        out[arch] = {**{k: s.get(k) for k in FIELDS}, "best_params": s.get("best_params", {}), "study": s["study"]}
    return out


def markdown(table: dict) -> str:
    def num(v, fmt):
        return "" if v is None else format(v, fmt)

    lines = ["# Tuning studies", "", ("Objective: validation RMSE (degC), lower is better; 'defaults' = the"
             " params.yaml settings (each study's first trial)."), "",
             "| architecture | best | defaults | gain | complete | pruned | failed | wall (s) | best params |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arch, r in sorted(table.items(), key=lambda kv: kv[1]["best_value"]):
        gain = (1 - r["best_value"] / r["default_value"]) if r["default_value"] else None
        params = ", ".join(f"{k}={num(v, '.3g') if isinstance(v, float) else v}" for k, v in r["best_params"].items())
        lines.append(f"| {arch} | {num(r['best_value'], '.4f')} | {num(r['default_value'], '.4f')} |"
                     f" {num(gain, '+.1%')} | {r['trials_complete']} | {r['trials_pruned']} | {r['trials_failed']} |"
                     f" {num(r['wall_s'], '.0f')} | {params} |")
    return "\n".join(lines) + "\n"


def run(cfg: Config, tuning_dir: Path = Path("data/tuning"), metrics_dir: Path = Path("metrics")) -> Path:
    table = comparison(cfg, tuning_dir)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / METRICS_FILE).write_text(json.dumps(table, indent=2) + "\n")
    (metrics_dir / TABLE_FILE).write_text(markdown(table))
    for arch, r in sorted(table.items(), key=lambda kv: kv[1]["best_value"]):
        log.info("%-12s best %.4f (defaults %s), %d complete / %d pruned, %.0f s", arch, r["best_value"],
                 "n/a" if r["default_value"] is None else f"{r['default_value']:.4f}", r["trials_complete"],
                 r["trials_pruned"], r["wall_s"])
    return metrics_dir / METRICS_FILE
