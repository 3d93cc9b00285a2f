"""The one reader of ``dvc.lock``: which content hash DVC recorded for each stage output.

Stages log these hashes to MLflow (``dvc.md5.<path>`` tags) and the report lists them, so a
run can be traced to the exact data it saw. Library code never reads the lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from thawcast.errors import DataError, first_line

#: libyaml's loader where PyYAML was built with it: the lock runs to thousands of lines (0.14 s against 0.64)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def locked_outputs(lock: Path) -> dict[str, tuple[str, str]]:
    """``{output path: (stage name, md5)}`` for every output ``lock`` records (empty without a lock)."""
    lock = Path(lock)
    if not lock.exists():
        return {}
    try:
        stages = (yaml.load(lock.read_text(), Loader=_LOADER) or {}).get("stages", {})
    except (yaml.YAMLError, AttributeError) as exc:  # AttributeError: YAML, but not a mapping
        first = first_line(exc, type(exc).__name__)
        raise DataError(lock, f"not a DVC lock file ({first}); a merge conflict? Resolve it, or take it back with"
                        " `git checkout dvc.lock` and rebuild with `dvc repro`") from None
    out = {}
    for name, stage in stages.items():
        for entry in stage.get("outs", []) or []:
            out[str(Path(entry.get("path", "")))] = (name, str(entry.get("md5") or entry.get("hash") or "unknown"))
    return out


def data_version(paths: Iterable[str | Path], lock: Path) -> dict[str, str]:
    """The md5 ``dvc.lock`` records for each path as an upstream stage's output.

    Under ``dvc repro`` the lock is updated stage by stage, so the entries of a stage's
    inputs are current when it runs. Paths not found get ``"unknown"``.
    """
    outs = locked_outputs(lock)
    return {p: outs.get(p, ("", "unknown"))[1] for p in sorted({str(Path(p)) for p in paths})}
