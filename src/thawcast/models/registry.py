"""The registry of architectures and the one constructor every caller uses."""

from __future__ import annotations

from thawcast.errors import ConfigError
from thawcast.models.base import BandSequenceModel
from thawcast.models.bilstm import BiLSTM
from thawcast.models.conv_lstm import ConvLSTM
from thawcast.models.gru import GRU
from thawcast.models.hparams import HPARAMS
from thawcast.models.tcn import TCN
from thawcast.models.transformer import Transformer

ARCHITECTURES: dict[str, type[BandSequenceModel]] = {
    "tcn": TCN,
    "transformer": Transformer,
    "conv_lstm": ConvLSTM,
    "gru": GRU,
    "bilstm": BiLSTM,
}


def build_model(name: str, n_features: int, n_bands: int, hparams=None, band_embedding_dim: int = 4,
                n_targets: int = 4) -> BandSequenceModel:
    """Build architecture ``name``; ``hparams`` is its params object or a dict (defaults when None).

    Raises
    ------
    ConfigError
        For an unknown architecture or a bad hyper-parameter.
    """
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {name!r}; valid: {list(ARCHITECTURES)}")
    cls_hp = HPARAMS[name]
    if hparams is None or isinstance(hparams, dict):
        try:
            hparams = cls_hp.model_validate(hparams or {})
        except ValueError as exc:
            raise ConfigError(f"bad hyper-parameters for {name}: {exc}") from None
    return ARCHITECTURES[name](n_features, n_bands, hparams, band_embedding_dim, n_targets)
