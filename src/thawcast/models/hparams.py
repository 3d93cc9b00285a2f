"""Typed hyper-parameters of each architecture (the ``models`` section of ``params.yaml``).

Torch-free on purpose: :mod:`thawcast.config` validates them without importing torch.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _HParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class TCNParams(_HParams):
    """Causal dilated residual convolutions; dilation doubles per level (1, 2, 4, ...)."""

    channels: int = Field(32, ge=1)
    levels: int = Field(3, ge=1, le=12)
    kernel_size: int = Field(3, ge=2, le=12)


class TransformerParams(_HParams):
    """Encoder-only Transformer with a learned position embedding over the window."""

    d_model: int = Field(32, ge=2)
    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1, le=12)
    ff_dim: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _divisible(self) -> TransformerParams:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by heads {self.heads}")
        return self


class ConvLSTMParams(_HParams):
    """A 1-D convolution over time feeding an LSTM (the paper's Conv1D-LSTM)."""

    filters: int = Field(32, ge=1)
    kernel_size: int = Field(3, ge=1, le=12)
    hidden: int = Field(32, ge=1)
    layers: int = Field(1, ge=1, le=6)


class GRUParams(_HParams):
    hidden: int = Field(32, ge=1)
    layers: int = Field(2, ge=1, le=6)


class BiLSTMParams(_HParams):
    hidden: int = Field(32, ge=1)
    layers: int = Field(1, ge=1, le=6)


HPARAMS: dict[str, type[_HParams]] = {
    "tcn": TCNParams,
    "transformer": TransformerParams,
    "conv_lstm": ConvLSTMParams,
    "gru": GRUParams,
    "bilstm": BiLSTMParams,
}
