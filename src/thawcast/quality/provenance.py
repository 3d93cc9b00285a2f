"""Provenance attributes for every NetCDF output, and all-or-nothing output folders."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from thawcast import __version__

log = logging.getLogger(__name__)


def git_commit() -> str:
    """Current git commit (with ``-dirty`` if the tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10, check=False).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(stage: str, method: str, sources: list[str] | str, synthetic: bool, **extra) -> dict:
    """Global attributes describing how an output was made.

    Nothing here depends on the clock or the git state: DVC hashes these files, and the same
    inputs must give the same bytes on any machine and any clone. When and from which commit
    an output was made is recorded in the MLflow runs (``git_commit`` tag) and in ``dvc.lock``.
    """
    src = sources if isinstance(sources, str) else ", ".join(sources)
    attrs = {
        "title": f"thawcast {stage} output",
        "institution": "thawcast",
        "source": src,
        "method": method,
        "history": f"thawcast {__version__} stage '{stage}'",
        "thawcast_version": __version__,
        "thawcast_stage": stage,
        "thawcast_synthetic": "true" if synthetic else "false",
        "Conventions": "CF-1.8",
    }
    if synthetic:
        attrs["comment"] = ("Derived from the SYNTHETIC embedded Alaska (not observations): see the"
                            " thawcast README, section 'What is synthetic'.")
    attrs.update({k: str(v) for k, v in extra.items()})
    return attrs


def is_synthetic(attrs: dict) -> bool:
    return str(attrs.get("thawcast_synthetic", "false")).lower() == "true"


@contextlib.contextmanager
def staged_output(final: Path) -> Iterator[Path]:
    """Write a stage's output folder all-or-nothing.

    Yields a fresh temporary folder next to ``final``. If the block succeeds, ``final`` is
    replaced by it; if the block raises, the temporary folder is removed and the previous
    ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    log.info("wrote %s", final)
