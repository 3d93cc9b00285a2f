"""TCN: causal, dilated, residual 1-D convolutions (Bai et al. 2018).

Each level has two causal convolutions with dilation ``2**level`` (left padding only, so
step ``t`` never sees ``t+1``) and a residual connection; the receptive field is
``1 + 2 (kernel_size - 1) (2**levels - 1)`` months. The last step's channels are the summary.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from thawcast.models.base import BandSequenceModel
from thawcast.models.hparams import TCNParams


class _CausalConv(nn.Conv1d):
    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int) -> None:
        super().__init__(c_in, c_out, kernel, dilation=dilation)
        self.left = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = _CausalConv(c_in, c_out, kernel, dilation)
        self.conv2 = _CausalConv(c_out, c_out, kernel, dilation)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(torch.relu(self.conv1(x)))
        y = self.drop(torch.relu(self.conv2(y)))
        return torch.relu(y + self.skip(x))


class TCN(BandSequenceModel):
    def __init__(self, n_features: int, n_bands: int, hp: TCNParams, band_embedding_dim: int = 4,
                 n_targets: int = 4) -> None:
        super().__init__(n_features, n_bands, band_embedding_dim, n_targets)
        sizes = [self.input_size] + [hp.channels] * hp.levels
        self.blocks = nn.Sequential(*[_Block(sizes[i], sizes[i + 1], hp.kernel_size, 2**i, hp.dropout)
                                      for i in range(hp.levels)])
        self.receptive_field = 1 + 2 * (hp.kernel_size - 1) * (2**hp.levels - 1)
        self.make_head(hp.channels)

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """``h [batch, w, input_size]`` -> ``[batch, channels]`` at the last (causal) step."""
        return self.blocks(h.transpose(1, 2))[:, :, -1]
