"""Sequence models: one file per architecture, one registry (:mod:`thawcast.models.registry`).

Every network maps a window ``x [batch, w, features]`` and the band index ``band [batch]``
to the four layer temperatures ``[batch, 4]`` (scaled). Hyper-parameters are typed in
:mod:`thawcast.models.hparams` (torch-free, so the config can validate them cheaply).
"""
