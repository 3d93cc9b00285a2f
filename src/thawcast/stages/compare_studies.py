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

from thawcast.analysis.tables import studies_markdown
from thawcast.config import Config
from thawcast.errors import DataError
from thawcast.layout import Layout
from thawcast.quality.provenance import read_output_json

log = logging.getLogger(__name__)

FIELDS = ("best_value", "default_value", "trials_complete", "trials_pruned", "trials_failed")


def comparison(cfg: Config, paths: Layout) -> dict:
    out = {}
    for arch in cfg.training.architectures:
        path = paths.study_summary(arch)
        if not path.exists():
            raise DataError(path, f"no tuning summary for {arch!r} (run `thawcast tune {arch}` or the tune stage)")
        s = read_output_json(path, "tune")
        out[arch] = {**{k: s.get(k) for k in FIELDS}, "best_params": s.get("best_params", {}), "study": s["study"]}
    return out


def run(cfg: Config, paths: Layout | None = None) -> Path:
    paths = paths or Layout.at()
    table = comparison(cfg, paths)
    json_file = paths.metric("tuning.json")
    json_file.parent.mkdir(parents=True, exist_ok=True)
    json_file.write_text(json.dumps(table, indent=2) + "\n")
    paths.metric("tuning.md").write_text(studies_markdown(table))
    for arch, r in sorted(table.items(), key=lambda kv: kv[1]["best_value"]):
        log.info("%-12s best %.4f (defaults %s), %d complete / %d pruned", arch, r["best_value"],
                 "n/a" if r["default_value"] is None else f"{r['default_value']:.4f}", r["trials_complete"],
                 r["trials_pruned"])
    return json_file
