"""What decides one architecture's training: hyper-parameters and training settings.

Defaults come from ``params.yaml`` (``models.<arch>``, ``models.band_embedding_dim``,
``training``); a tuning study's ``best_params.json`` overrides them. This module is the one
place that knows that file's format: the tune stage writes it with
:func:`write_best_params`, the train stage reads it with :func:`resolve_settings`.
The train stage then keeps the tuned settings only where the seed-spread stage found them
better than the defaults on validation over several seeds (:func:`select_settings`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from thawcast.config import TUNABLE_COMMON, Config, TrainingConfig
from thawcast.errors import ConfigError
from thawcast.learn.seeds import read_choice
from thawcast.models.hparams import HPARAMS

log = logging.getLogger(__name__)

#: Training settings a tuning study may override (the rest stay as in params).
TUNABLE_TRAINING = ("learning_rate", "batch_size", "weight_decay")


@dataclass(frozen=True)
class ModelSettings:
    """Everything that decides one architecture's training run."""

    architecture: str
    hparams: object  # the architecture's typed params (thawcast.models.hparams)
    training: TrainingConfig
    band_embedding_dim: int
    source: str  # "params.yaml" or the best-params file

    def flat(self) -> dict[str, object]:
        """Flat ``{name: value}`` for MLflow params."""
        out = {"architecture": self.architecture, "band_embedding_dim": self.band_embedding_dim,
               "hparams_source": self.source}
        out.update({f"model.{k}": v for k, v in self.hparams.model_dump().items()})
        out.update({f"training.{k}": v for k, v in self.training.model_dump(exclude={"architectures"}).items()})
        return out

    def to_dict(self) -> dict:
        return {"architecture": self.architecture, "source": self.source,
                "band_embedding_dim": self.band_embedding_dim, "hparams": self.hparams.model_dump(),
                "training": self.training.model_dump(mode="json", exclude={"architectures"})}


def default_settings(cfg: Config, arch: str) -> ModelSettings:
    """The ``params.yaml`` settings of ``arch`` (``models.<arch>``, ``training``), ignoring any tuning."""
    cfg.training.require(arch)
    return ModelSettings(arch, cfg.models.hparams(arch), cfg.training, cfg.models.band_embedding_dim, "params.yaml")


def resolve_settings(cfg: Config, arch: str, path: Path) -> ModelSettings:
    """The tuned settings of ``arch`` if its best-params file ``path`` exists, else the defaults.

    The best-params file holds ``{"architecture", "hparams": {...}, "training": {...},
    "band_embedding_dim"}``; ``training`` may set only :data:`TUNABLE_TRAINING`.

    Raises
    ------
    ConfigError
        The architecture is unknown or the file is unreadable, for another architecture, or
        holds an unknown or invalid setting.
    """
    cfg.training.require(arch)
    path = Path(path)
    if not path.exists():
        return default_settings(cfg, arch)
    try:
        best = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable best-params file: {exc}") from None
    settings = settings_from_record(cfg, arch, best, str(path))
    if settings.band_embedding_dim < 1:
        raise ConfigError(f"{path}: band_embedding_dim must be >= 1, got {settings.band_embedding_dim}")
    return settings


def settings_from_record(cfg: Config, arch: str, best: dict, source: str,
                         training: TrainingConfig | None = None) -> ModelSettings:
    """The settings a best-params record (:func:`write_best_params`) holds, over the defaults of ``arch`` and
    ``training`` (default: ``cfg.training``).

    Raises
    ------
    ConfigError
        The record is not a mapping, is for another architecture, or holds an unknown or invalid setting.
    """
    if not isinstance(best, dict):
        raise ConfigError(f"{source}: a best-params record must be a mapping, got {type(best).__name__}")
    if best.get("architecture") != arch:
        raise ConfigError(f"{source}: written for architecture {best.get('architecture')!r}, not {arch!r}")
    extra = set(best.get("training", {})) - set(TUNABLE_TRAINING)
    if extra:
        raise ConfigError(f"{source}: training settings {sorted(extra)} cannot be tuned; tunable: {TUNABLE_TRAINING}")
    flat = {**best.get("hparams", {}), **best.get("training", {})}
    if "band_embedding_dim" in best:
        flat["band_embedding_dim"] = best["band_embedding_dim"]
    return settings_from(cfg, arch, flat, source, training)


def select_settings(cfg: Config, arch: str, best_params: Path, spread_file: Path) -> ModelSettings:
    """The settings the train stage registers: :func:`resolve_settings`, unless the seed-spread stage found that
    the tuned settings do not beat the defaults on validation (``robustness.choose_by_validation``).

    Without a study there is nothing to choose; without ``spread_file`` (seed-spread not run) the tuned settings
    are used, with a warning.

    Raises
    ------
    ConfigError
        ``spread_file`` is unreadable, or was computed for other settings or seeds than the current ones.
    """
    tuned = resolve_settings(cfg, arch, best_params)
    if tuned.source == "params.yaml" or not cfg.robustness.choose_by_validation:
        return tuned
    spread_file = Path(spread_file)
    if not spread_file.exists():
        log.warning("%s: %s not found (run `thawcast seed-spread`); using the tuned settings unchecked",
                    arch, spread_file)
        return tuned
    choice, recorded, seeds = read_choice(spread_file, arch)
    defaults = default_settings(cfg, arch)
    current = {"defaults": defaults, "tuned": tuned}
    stale = [n for n in current if _comparable(recorded[n]) != _comparable(current[n].to_dict())]
    if stale or list(seeds) != list(cfg.robustness.all_seeds(cfg.seed)):
        what = f"settings {stale}" if stale else f"seeds {seeds}"
        raise ConfigError(f"{spread_file}: the seed spread of {arch} was computed for other {what} than the"
                          " current ones; rerun `thawcast seed-spread` (dvc repro does)")
    if choice["settings"] == "tuned":
        return tuned
    return replace(defaults, source=(
        f"params.yaml (tuned settings rejected: mean validation RMSE over seeds {choice['tuned_val_rmse']:.3f}"
        f" vs defaults {choice['defaults_val_rmse']:.3f}, {spread_file})"))


def _comparable(d: dict) -> dict:
    """A settings record without its ``source``, through JSON (so tuples and lists compare equal)."""
    return json.loads(json.dumps({k: v for k, v in d.items() if k != "source"}, sort_keys=True))


def settings_from(cfg: Config, arch: str, params: dict, source: str,
                  training: TrainingConfig | None = None) -> ModelSettings:
    """Defaults of ``arch`` with flat overrides ``params`` (hyper-parameter or :data:`TUNABLE_COMMON` names).

    Raises
    ------
    ConfigError
        An unknown name, or a combination the architecture refuses (e.g. d_model % heads).
    """
    fields = HPARAMS[arch].model_fields
    unknown = [k for k in params if k not in fields and k not in TUNABLE_COMMON]
    if unknown:
        raise ConfigError(f"{source}: unknown parameter(s) {unknown} for {arch}")
    base = training or cfg.training
    try:
        hparams = HPARAMS[arch].model_validate(
            {**cfg.models.hparams(arch).model_dump(), **{k: v for k, v in params.items() if k in fields}})
        train = TrainingConfig.model_validate(
            {**base.model_dump(), **{k: v for k, v in params.items() if k in TUNABLE_TRAINING}})
    except ValueError as exc:
        raise ConfigError(f"{source}: invalid settings for {arch}: {exc}") from None
    emb = int(params.get("band_embedding_dim", cfg.models.band_embedding_dim))
    return ModelSettings(arch, hparams, train, emb, source)


def best_params_record(settings: ModelSettings, **extra) -> dict:
    """``settings`` in the best-params format :func:`settings_from_record` reads, with ``extra`` entries."""
    return {"architecture": settings.architecture, "hparams": settings.hparams.model_dump(),
            "training": {k: getattr(settings.training, k) for k in TUNABLE_TRAINING},
            "band_embedding_dim": settings.band_embedding_dim, **extra}


def write_best_params(path: Path, settings: ModelSettings, **extra) -> Path:
    """Write ``settings`` in the best-params format :func:`resolve_settings` reads."""
    Path(path).write_text(json.dumps(best_params_record(settings, **extra), indent=2) + "\n")
    return Path(path)
