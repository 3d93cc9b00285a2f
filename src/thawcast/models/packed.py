"""A trained network in the form it is logged, registered and served: one float tensor in, degC out.

MLflow model signatures, ``torch.export`` and SHAP's ``GradientExplainer`` all want a model
that takes a single float tensor. :class:`PackedModel` carries the band index as the last
channel of the window (the same integer at every step), un-scales the outputs to degC
with the training-split target scaler, and keeps what a user needs to feed it correctly
(feature order, window length, target names) as attributes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from thawcast.errors import ModelInputError
from thawcast.models.base import BandSequenceModel


class PackedModel(nn.Module):
    """``x [batch, w, F + 1]`` (features in ``feature_names`` order, then the band index) -> degC ``[batch, 4]``.

    Parameters
    ----------
    net
        The trained network (scaled inputs -> scaled targets).
    target_mean, target_std
        The target scaler (training split), ``[n_targets]`` each, degC.
    feature_names
        Input features per time step, in order (the scenario signal ``z`` included).
    window_length
        Months per window the network was trained on.
    target_names
        Names of the outputs (soil layers).
    architecture
        Registry name of ``net``.
    unit_ids
        Whether the network tells its units apart by an index (the bands' embedding). A cell model does not: it
        sees each cell through its attributes, its band channel is 0 for every window, and it takes any cell.
    """

    def __init__(self, net: BandSequenceModel, target_mean: Sequence[float], target_std: Sequence[float],
                 feature_names: Sequence[str], window_length: int, target_names: Sequence[str],
                 architecture: str, unit_ids: bool = True) -> None:
        super().__init__()
        if len(feature_names) != net.n_features:
            raise ModelInputError(f"{len(feature_names)} feature names for a network of {net.n_features} features")
        self.net = net
        self.register_buffer("target_mean", torch.as_tensor(np.asarray(target_mean), dtype=torch.float32))
        self.register_buffer("target_std", torch.as_tensor(np.asarray(target_std), dtype=torch.float32))
        self.feature_names = tuple(feature_names)
        self.window_length = int(window_length)
        self.target_names = tuple(target_names)
        self.architecture = architecture
        self.unit_ids = unit_ids

    @property
    def n_bands(self) -> int:
        return self.net.n_bands

    def weights_sha256(self) -> str:
        """SHA-256 of every parameter and buffer (name, dtype, shape, bytes) in name order.

        Names a trained model by what it is: the same data, settings and seed give the same
        digest on CPU (deterministic training), so DVC-tracked hand-offs can carry it instead
        of a registry version counter.
        """
        h = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            arr = tensor.detach().cpu().contiguous().numpy()
            h.update(f"{name}:{arr.dtype}:{arr.shape};".encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    @staticmethod
    def pack(x: torch.Tensor | np.ndarray, band: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Join ``x [n, w, F]`` and ``band [n]`` into the one-tensor input ``[n, w, F + 1]``."""
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
        band = torch.as_tensor(np.asarray(band) if not isinstance(band, torch.Tensor) else band)
        ch = band.to(torch.float32)[:, None, None].expand(-1, x.shape[1], 1)
        return torch.cat([x, ch], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.net.n_features + 1:
            raise ModelInputError(
                f"{self.architecture}: expected [batch, w, {self.net.n_features} features + band channel],"
                f" got shape {tuple(x.shape)} (feature order: {' '.join(self.feature_names)})")
        band_f = x[:, -1, -1]
        band = torch.round(band_f).to(torch.long)
        if not torch.equal(band.to(band_f.dtype), band_f):
            raise ModelInputError(f"{self.architecture}: the last channel must hold the integer band index")
        return self.net(x[..., :-1], band) * self.target_std + self.target_mean

    def check_windows(self, ws, what: str) -> None:
        """Raise :class:`ModelInputError` if the window set ``ws`` is not what this model was trained on.

        Checks the feature list and order (naming what is missing or unexpected), the window
        length and the number of bands. ``what`` names the model in the message.
        """
        if tuple(self.feature_names) != tuple(ws.feature_names):
            missing = [f for f in self.feature_names if f not in ws.feature_names]
            extra = [f for f in ws.feature_names if f not in self.feature_names]
            raise ModelInputError(f"{what} was trained on other features than these windows have (missing"
                                  f" {missing}, unexpected {extra}{', or another order' if not missing + extra else ''})")
        if self.window_length != ws.length:
            raise ModelInputError(f"{what} was trained on {self.window_length}-month windows, these are {ws.length}")
        if getattr(self, "unit_ids", True) and ws.x.shape[0] > self.n_bands:
            raise ModelInputError(f"{what} knows {self.n_bands} bands, the windows have {ws.x.shape[0]}")

    @torch.no_grad()
    def predict_windows(self, ws, batch_size: int = 2048) -> np.ndarray:
        """degC ``[N, n_targets]`` for every window of ``ws`` (after :meth:`check_windows`)."""
        self.eval()
        unit = ws.band if getattr(self, "unit_ids", True) else np.zeros_like(ws.band)  # pickled before unit_ids: bands
        out = [self(self.pack(ws.inputs(slice(i, i + batch_size)), unit[i:i + batch_size])).numpy()
               for i in range(0, len(ws), batch_size)]
        return np.concatenate(out).astype(float) if out else np.zeros((0, len(self.target_names)))
