"""Conv1D-LSTM: a 1-D convolution over time extracts local patterns, an LSTM reads them in order."""

from __future__ import annotations

import torch
from torch import nn

from thawcast.models.base import BandSequenceModel
from thawcast.models.hparams import ConvLSTMParams


class ConvLSTM(BandSequenceModel):
    def __init__(self, n_features: int, n_bands: int, hp: ConvLSTMParams, band_embedding_dim: int = 4,
                 n_targets: int = 4) -> None:
        super().__init__(n_features, n_bands, band_embedding_dim, n_targets)
        self.conv = nn.Conv1d(self.input_size, hp.filters, hp.kernel_size, padding="same")
        self.rnn = nn.LSTM(hp.filters, hp.hidden, num_layers=hp.layers, batch_first=True,
                           dropout=hp.dropout if hp.layers > 1 else 0.0)
        self.drop = nn.Dropout(hp.dropout)
        self.make_head(hp.hidden)

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """``h [batch, w, input_size]`` -> conv ``[batch, filters, w]`` -> LSTM -> ``[batch, hidden]``."""
        c = torch.relu(self.conv(h.transpose(1, 2))).transpose(1, 2)
        out, _ = self.rnn(self.drop(c))
        return self.drop(out[:, -1])
