"""Provenance attributes for every NetCDF output, and all-or-nothing output folders."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from thawcast import __version__
from thawcast.errors import DataError
from thawcast.parallel import process_alive

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


#: errno values of failures a user causes and can fix (permissions, read-only or full disks).
USER_OS_ERRORS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})


#: What a user does about a :data:`USER_OS_ERRORS` failure.
OS_ERROR_ADVICE = "free disk space, or check the folder's permissions, then run the stage again"


def read_output_json(path: Path, stage: str) -> dict:
    """A JSON object a pipeline stage wrote; a missing, unreadable or damaged one (an edit, a merge, a disk that
    filled up while it was written) is one :class:`DataError` naming the stage that rebuilds it."""
    path = Path(path)
    redo = f"rerun the {stage} stage (`dvc repro {stage}`), or restore it with `dvc checkout`"
    if not path.exists():
        raise DataError(path, f"not found: {redo}")
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not readable JSON ({exc}): {redo}") from None
    if not isinstance(value, dict):
        raise DataError(path, f"holds a JSON {type(value).__name__}, not the dict the {stage} stage writes: {redo}")
    return value


def os_error_hint(exc: OSError) -> str:
    """``<file>: <what the system said> (<what to do>)`` for an :data:`USER_OS_ERRORS` failure."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or os.strerror(exc.errno)} ({OS_ERROR_ADVICE})"


@contextlib.contextmanager
def staged_output(final: Path) -> Iterator[Path]:
    """Write a stage's output folder all-or-nothing.

    Yields a fresh temporary folder ``.<name>.tmp-<pid>`` next to ``final``. If the block succeeds, ``final``
    is replaced by it; if the block or the replacement fails, the temporary folder is removed and the previous
    ``final`` is left as it was. Before starting, leftovers of runs that died (their process is gone) are
    cleared: a run killed between moving ``final`` aside and moving the new folder in gets its previous
    ``final`` back. A folder that cannot be written (permissions, read-only or full disk) is a
    :class:`~thawcast.errors.DataError` naming it.
    """
    final = Path(final)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        _clear_dead_runs(final)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:
        raise _unwritable(final, exc) from None
    try:
        yield tmp
        if final.exists():
            final.rename(old)
        tmp.rename(final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            try:
                old.rename(final)
            except OSError:  # the next run restores it (see _clear_dead_runs)
                log.error("%s: the previous output could not be moved back; it is in %s", final, old)
        if isinstance(exc, OSError) and exc.errno in USER_OS_ERRORS:
            raise _unwritable(final, exc) from None
        raise
    shutil.rmtree(old, ignore_errors=True)
    log.info("wrote %s", final)


def _unwritable(final: Path, exc: OSError) -> Exception:
    from thawcast.errors import DataError

    if exc.errno not in USER_OS_ERRORS:
        return exc
    return DataError(final, f"cannot write ({exc.strerror or os.strerror(exc.errno)}, at {exc.filename or final});"
                            f" the previous output is left as it was: {OS_ERROR_ADVICE}")


def _clear_dead_runs(final: Path) -> None:
    """Remove ``.<name>.tmp-<pid>`` / ``.<name>.old-<pid>`` of processes that are gone; restore ``final`` from
    such an ``.old`` folder when ``final`` is missing (that run died between its two renames)."""
    for leftover in sorted(final.parent.glob(f".{final.name}.*-*")):
        kind, _, pid = leftover.name.removeprefix(f".{final.name}.").partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or int(pid) == os.getpid() or process_alive(int(pid)):
            continue
        if kind == "old" and not final.exists():
            leftover.rename(final)
            log.warning("%s: restored the previous output from %s (a run died while replacing it)", final,
                        leftover.name)
        else:
            shutil.rmtree(leftover, ignore_errors=True)
            log.info("removed %s, left by a run that died", leftover)
