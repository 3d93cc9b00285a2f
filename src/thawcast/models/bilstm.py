"""BiLSTM: a bidirectional LSTM; the forward pass's last step joined to the backward pass's first."""

from __future__ import annotations

import torch
from torch import nn

from thawcast.models.base import BandSequenceModel
from thawcast.models.hparams import BiLSTMParams


class BiLSTM(BandSequenceModel):
    def __init__(self, n_features: int, n_bands: int, hp: BiLSTMParams, band_embedding_dim: int = 4,
                 n_targets: int = 4) -> None:
        super().__init__(n_features, n_bands, band_embedding_dim, n_targets)
        self.hidden = hp.hidden
        self.rnn = nn.LSTM(self.input_size, hp.hidden, num_layers=hp.layers, batch_first=True,
                           bidirectional=True, dropout=hp.dropout if hp.layers > 1 else 0.0)
        self.drop = nn.Dropout(hp.dropout)
        self.make_head(2 * hp.hidden)

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """``h [batch, w, input_size]`` -> ``[batch, 2 hidden]`` (both directions have read the whole window)."""
        out, _ = self.rnn(h)
        return self.drop(torch.cat([out[:, -1, : self.hidden], out[:, 0, self.hidden:]], dim=-1))
