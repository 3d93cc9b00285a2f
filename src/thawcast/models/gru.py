"""GRU: stacked gated recurrent units; the last step's hidden state is the summary."""

from __future__ import annotations

import torch
from torch import nn

from thawcast.models.base import BandSequenceModel
from thawcast.models.hparams import GRUParams


class GRU(BandSequenceModel):
    def __init__(self, n_features: int, n_bands: int, hp: GRUParams, band_embedding_dim: int = 4,
                 n_targets: int = 4) -> None:
        super().__init__(n_features, n_bands, band_embedding_dim, n_targets)
        self.rnn = nn.GRU(self.input_size, hp.hidden, num_layers=hp.layers, batch_first=True,
                          dropout=hp.dropout if hp.layers > 1 else 0.0)
        self.drop = nn.Dropout(hp.dropout)
        self.make_head(hp.hidden)

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """``h [batch, w, input_size]`` -> ``[batch, hidden]``."""
        out, _ = self.rnn(h)
        return self.drop(out[:, -1])
