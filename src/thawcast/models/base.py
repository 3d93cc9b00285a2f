"""The shared shell of every architecture: input checks, band embedding, output head."""

from __future__ import annotations

import torch
from torch import nn

from thawcast.errors import ModelInputError


class BandSequenceModel(nn.Module):
    """Base class: embeds the band, joins it to every time step, encodes, maps to the targets.

    Subclasses build ``self.encoder`` in ``__init__`` (input width ``self.input_size``) and
    implement :meth:`encode` returning ``[batch, self.encoded_size]``.

    Parameters
    ----------
    n_features
        Features per time step of the window (the scenario signal included).
    n_bands
        Number of latitude bands (size of the embedding table).
    band_embedding_dim
        Length of the learned band vector joined to every time step.
    n_targets
        Outputs (4 soil layers).
    """

    def __init__(self, n_features: int, n_bands: int, band_embedding_dim: int = 4, n_targets: int = 4) -> None:
        super().__init__()
        self.n_features, self.n_bands, self.n_targets = n_features, n_bands, n_targets
        self.band_embedding = nn.Embedding(n_bands, band_embedding_dim)
        self.input_size = n_features + band_embedding_dim

    def make_head(self, encoded_size: int) -> None:
        self.head = nn.Linear(encoded_size, self.n_targets)

    def encode(self, h: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_inputs(self, x: torch.Tensor, band: torch.Tensor) -> None:
        """Raise :class:`ModelInputError` for a batch this model cannot take."""
        if x.ndim != 3:
            raise ModelInputError(f"expected a window batch [batch, w, features], got shape {tuple(x.shape)}")
        if x.shape[-1] != self.n_features:
            raise ModelInputError(f"the model was built for {self.n_features} features per time step,"
                                  f" the batch has {x.shape[-1]}")
        if band.shape != x.shape[:1]:
            raise ModelInputError(f"band index shape {tuple(band.shape)} does not match batch size {x.shape[0]}")
        if band.numel() and (int(band.min()) < 0 or int(band.max()) >= self.n_bands):
            raise ModelInputError(f"band index outside the embedding 0..{self.n_bands - 1}"
                                  f" (got {int(band.min())}..{int(band.max())})")
        if not torch.isfinite(x).all():
            raise ModelInputError("the window batch contains NaN or inf")

    def forward(self, x: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        """``x [batch, w, n_features]`` float, ``band [batch]`` long -> ``[batch, n_targets]``."""
        self.check_inputs(x, band)
        emb = self.band_embedding(band)[:, None, :].expand(-1, x.shape[1], -1)
        return self.head(self.encode(torch.cat([x, emb], dim=-1)))
