"""Contract tests over every registered architecture, plus causality and bad-input checks."""

import pytest
import torch

from conftest import TINY
from thawcast import catalogue
from thawcast.config import parse_config
from thawcast.errors import ConfigError, ModelInputError
from thawcast.models.hparams import HPARAMS
from thawcast.models.registry import ARCHITECTURES, build_model

N_FEATURES, N_BANDS, W = 7, 6, 12
NAMES = list(ARCHITECTURES)
SMALL = {"tcn": {"channels": 16, "levels": 2}, "transformer": {"d_model": 16, "heads": 2, "layers": 1, "ff_dim": 32},
         "conv_lstm": {"filters": 8, "hidden": 16}, "gru": {"hidden": 16, "layers": 1}, "bilstm": {"hidden": 16}}


def _model(name, dropout=0.0, **kw):
    torch.manual_seed(0)
    return build_model(name, N_FEATURES, N_BANDS, {**SMALL[name], "dropout": dropout, **kw})


def _batch(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, W, N_FEATURES, generator=g), torch.randint(0, N_BANDS, (n,), generator=g)


def test_registry_and_hparams_agree():
    assert set(ARCHITECTURES) == set(HPARAMS) == {"tcn", "transformer", "conv_lstm", "gru", "bilstm"}
    assert set(catalogue.ARCHITECTURES) == set(ARCHITECTURES)  # the names config validates against


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_backward(name):
    model = _model(name, dropout=0.1)
    x, band = _batch()
    out = model(x, band)
    assert out.shape == (16, 4) and out.dtype == torch.float32
    out.pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not missing, f"{name}: no gradient reaches {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_overfits_a_tiny_batch(name):
    model = _model(name)
    x, band = _batch(16)
    y = torch.randn(16, 4, generator=torch.Generator().manual_seed(2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x, band), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.05 * first, f"{name}: loss {first:.3f} -> {loss.item():.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_the_band_embedding_matters(name):
    model = _model(name).eval()
    x, _ = _batch(4)
    out0 = model(x, torch.zeros(4, dtype=torch.long))
    out5 = model(x, torch.full((4,), 5, dtype=torch.long))
    assert not torch.allclose(out0, out5)


def test_tcn_is_causal():
    model = _model("tcn").eval()
    x, band = _batch(2)
    emb = model.band_embedding(band)[:, None, :].expand(-1, W, -1)
    h = torch.cat([x, emb], -1)
    later = h.clone()
    later[:, 8:] += 5.0  # change the future of step 7
    a, b = model.blocks(h.transpose(1, 2)), model.blocks(later.transpose(1, 2))
    torch.testing.assert_close(a[:, :, :8], b[:, :, :8])
    assert not torch.allclose(a[:, :, 8:], b[:, :, 8:])
    assert model.receptive_field == 1 + 2 * 2 * 3  # kernel 3, levels 2


def test_bad_batches_are_clear_errors():
    model = _model("gru")
    x, band = _batch(4)
    with pytest.raises(ModelInputError, match="built for 7 features"):
        model(x[:, :, :5], band)
    with pytest.raises(ModelInputError, match="outside the embedding 0..5"):
        model(x, torch.tensor([0, 1, 2, 6]))
    with pytest.raises(ModelInputError, match="NaN"):
        model(torch.where(torch.arange(W)[None, :, None] == 3, float("nan"), x), band)
    with pytest.raises(ModelInputError, match=r"\[batch, w, features\]"):
        model(x[0], band)
    with pytest.raises(ModelInputError, match="exceed"):
        _model("transformer")(torch.randn(1, 241, N_FEATURES), torch.zeros(1, dtype=torch.long))


def test_unknown_architecture_and_bad_hparams():
    with pytest.raises(ConfigError, match="unknown architecture 'lstm'"):
        build_model("lstm", 3, 6)
    with pytest.raises(ConfigError, match="divisible"):
        build_model("transformer", 3, 6, {"d_model": 30, "heads": 4})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({**TINY, "models": {"gru": {"hidden": 8, "width": 3}}})
    cfg = parse_config({**TINY, "models": {"band_embedding_dim": 2, "gru": {"hidden": 8}}})
    model = build_model("gru", 5, 6, cfg.models.hparams("gru"), cfg.models.band_embedding_dim)
    assert model.band_embedding.embedding_dim == 2 and model.rnn.hidden_size == 8


# ---------------------------------------------------------------- the packed (logged) form
def _packed(arch="gru"):
    from thawcast.models.packed import PackedModel

    torch.manual_seed(0)
    net = build_model(arch, 3, 4, None, 2).eval()
    return net, PackedModel(net, [1.0, 2.0, 3.0, 4.0], [10.0, 10.0, 2.0, 0.5], ("a", "b", "z"), 5,
                            ("t1", "t2", "t3", "t4"), arch)


@pytest.mark.parametrize("arch", ["gru", "tcn"])
def test_packed_model_is_the_network_unscaled_with_the_band_as_last_channel(arch):
    from thawcast.models.packed import PackedModel

    net, packed = _packed(arch)
    x, band = torch.randn(6, 5, 3), torch.tensor([0, 1, 2, 3, 0, 2])
    with torch.no_grad():
        expected = net(x, band) * torch.tensor([10.0, 10.0, 2.0, 0.5]) + torch.tensor([1.0, 2.0, 3.0, 4.0])
        got = packed(PackedModel.pack(x, band))
    torch.testing.assert_close(got, expected)


def test_packed_model_rejects_bad_input():
    from thawcast.models.packed import PackedModel

    _, packed = _packed()
    x = PackedModel.pack(torch.randn(2, 5, 3), torch.tensor([0, 1]))
    with pytest.raises(ModelInputError, match="band channel"):
        packed(x[..., :-1])
    frac = x.clone()
    frac[:, :, -1] = 0.5
    with pytest.raises(ModelInputError, match="integer band index"):
        packed(frac)
    far = x.clone()
    far[:, :, -1] = 9.0
    with pytest.raises(ModelInputError, match="outside the embedding"):
        packed(far)
    with pytest.raises(ModelInputError, match="feature names"):
        PackedModel(packed.net, [0] * 4, [1] * 4, ("a", "b"), 5, ("t1", "t2", "t3", "t4"), "gru")
