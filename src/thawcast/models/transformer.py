"""Transformer encoder over the window, with a learned position embedding per month of the window.

(The month of the year is already in the features as sin/cos; the position embedding tells
the attention how far back each step is.) The last step's representation is the summary.
"""

from __future__ import annotations

import torch
from torch import nn

from thawcast.errors import ModelInputError
from thawcast.models.base import BandSequenceModel
from thawcast.models.hparams import TransformerParams

MAX_WINDOW = 240


class Transformer(BandSequenceModel):
    def __init__(self, n_features: int, n_bands: int, hp: TransformerParams, band_embedding_dim: int = 4,
                 n_targets: int = 4) -> None:
        super().__init__(n_features, n_bands, band_embedding_dim, n_targets)
        self.proj = nn.Linear(self.input_size, hp.d_model)
        self.position = nn.Parameter(torch.zeros(MAX_WINDOW, hp.d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(hp.d_model, hp.heads, hp.ff_dim, hp.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, hp.layers, enable_nested_tensor=False)
        self.make_head(hp.d_model)

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """``h [batch, w, input_size]`` -> ``[batch, d_model]``; positions count back from the last month."""
        w = h.shape[1]
        if w > MAX_WINDOW:
            raise ModelInputError(f"windows of {w} months exceed the Transformer's {MAX_WINDOW}-month position table")
        z = self.proj(h) + self.position[:w].flip(0)
        return self.encoder(z)[:, -1]
