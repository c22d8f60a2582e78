"""The DC-IGN network: shapes at 64x64 and the paper's 150x150, parameter count, the loss."""

import math

import pytest
import torch

from trainer.errors import DcignError
from trainer.model import (DCIGN, ModelConfig, count_flops, decoder_plan, n_params, neg_elbo,
                           widen_decoder)


@pytest.mark.parametrize("size, plan, enc", [(64, (4, 3), 4), (150, (15, 0), 15)])
def test_shapes_at_both_sizes(size, plan, enc):
    assert decoder_plan(size) == plan
    cfg = ModelConfig(image_size=size, width=0.125)
    model = DCIGN(cfg)
    assert model.mu.in_features == 3 * enc * enc  # 24 * 0.125 = 3 feature maps
    x = torch.rand(2, 1, size, size)
    logits, mu, logvar = model(x, torch.zeros(2, 200))
    assert logits.shape == (2, 1, size, size)
    assert mu.shape == logvar.shape == (2, 200)
    images = model.decode(mu)
    assert images.shape == (2, 1, size, size)
    assert 0 <= images.min() and images.max() <= 1


def test_paper_model_size_and_flops():
    cfg = ModelConfig(image_size=150)
    assert n_params(DCIGN(cfg)) == 4_131_137  # the paper's "about 4.1M"
    assert 3 * count_flops(cfg) == pytest.approx(23.5e9, rel=0.01)  # forward + backward


def test_latent_layout_and_width():
    cfg = ModelConfig()
    assert cfg.latent_names == {"azimuth": 0, "elevation": 1, "light": 2}
    assert list(cfg.intrinsic) == list(range(3, 200))
    assert DCIGN(ModelConfig(width=0.5)).encoder[0].out_channels == 48
    assert ModelConfig(latent_names={}).intrinsic == range(0, 200)


def test_code_width_sets_only_the_maps_next_to_the_code():
    narrow, wide = DCIGN(ModelConfig(width=0.25)), DCIGN(ModelConfig(width=0.25, code_width=1))
    assert ModelConfig(width=0.25).code_channels == 6 and wide.config.code_channels == 24
    assert (narrow.mu.in_features, wide.mu.in_features) == (6 * 16, 24 * 16)
    assert wide.encoder[6].out_channels == wide.decoder[1].in_channels == 24
    assert wide.decoder_in.out_features == 24 * 16
    for a, b in [(narrow.encoder[0], wide.encoder[0]), (narrow.encoder[3], wide.encoder[3]),
                 (narrow.decoder[1], wide.decoder[1]), (narrow.decoder[4], wide.decoder[4])]:
        assert a.out_channels == b.out_channels  # the other layers keep the width's channels
    assert wide(torch.rand(2, 1, 64, 64))[0].shape == (2, 1, 64, 64)
    with pytest.raises(DcignError, match="code_width"):
        ModelConfig(code_width=0)


def test_decoder_width_sets_only_the_decoders_maps():
    base, wide = DCIGN(ModelConfig(width=0.25)), DCIGN(ModelConfig(width=0.25, decoder_width=0.5))
    assert wide.config.decoder_channels == (24, 48, 48)
    assert [wide.decoder[i].out_channels for i in (1, 4, 7, 10)] == [24, 48, 48, 1]
    assert wide.decoder[1].in_channels == base.decoder[1].in_channels == 6  # the code's maps
    for name, p in base.state_dict().items():  # the encoder is the same
        if name.startswith(DCIGN.ENCODER_KEYS):
            assert wide.state_dict()[name].shape == p.shape
    assert wide(torch.rand(2, 1, 64, 64))[0].shape == (2, 1, 64, 64)
    with pytest.raises(DcignError, match="decoder_width"):
        ModelConfig(decoder_width=-1)


@pytest.mark.parametrize("size", [32, 40, 72])
def test_unsupported_sizes_fail_clearly(size):
    with pytest.raises(DcignError) as e:
        ModelConfig(image_size=size)
    assert str(size) in str(e.value) and "\n" not in str(e.value)


def test_neg_elbo_by_hand():
    x = torch.rand(3, 1, 64, 64)
    logits = torch.zeros_like(x)  # p = 1/2 everywhere: BCE = ln 2 per pixel, whatever x is
    mu = torch.zeros(3, 200)
    mu[1, :10] = 1.0  # KL of N(1, 1) to N(0, 1) = 1/2 per latent
    logvar = torch.zeros(3, 200)
    logvar[2, 0] = math.log(4.0)  # KL of N(0, 4): (4 - 1 - ln 4) / 2
    nelbo, bce, kl = neg_elbo(logits, x, mu, logvar)
    assert torch.allclose(bce, torch.full((3,), 64 * 64 * math.log(2)))
    assert torch.allclose(kl, torch.tensor([0.0, 5.0, (3 - math.log(4)) / 2]), atol=1e-6)
    assert torch.allclose(nelbo, bce + kl)


def test_widen_decoder_computes_the_same_function():
    torch.manual_seed(0)
    narrow = DCIGN(ModelConfig(width=0.25, code_width=1))
    wide = DCIGN(ModelConfig(width=0.25, code_width=1, decoder_width=0.5))
    x, eps = torch.rand(3, 1, 64, 64), torch.randn(3, 200)
    widen_decoder(narrow, wide, torch.Generator().manual_seed(1), noise=0.0)
    with torch.no_grad():
        same, before = wide(x, eps)[0], narrow(x, eps)[0]
    torch.testing.assert_close(same, before, rtol=0, atol=1e-5)
    assert wide.decoder[7].out_channels == 48 and narrow.decoder[7].out_channels == 24
    widen_decoder(narrow, wide, torch.Generator().manual_seed(1))  # with noise: close, not equal
    with torch.no_grad():
        gap = (wide(x, eps)[0] - before).abs().max().item()
    assert 0 < gap < 0.05 * before.abs().max().item()
    # the copies differ, so Adam can pull them apart
    w = wide.decoder[4].weight
    assert len({tuple(row.flatten().tolist()) for row in w}) == w.shape[0]
    with pytest.raises(DcignError, match="narrow"):
        widen_decoder(wide, narrow, torch.Generator())
    with pytest.raises(DcignError, match="encoder"):
        widen_decoder(DCIGN(ModelConfig(width=0.5)), wide, torch.Generator())


def test_old_configs_with_the_removed_hidden_layer_load_when_it_was_off(tmp_path):
    from trainer.checkpoint import model_config_from_dict
    from trainer.errors import CheckpointError
    old = {**ModelConfig(width=0.25).to_dict(), "decoder_hidden": 0}  # as the shipped configs
    assert model_config_from_dict(old, "config.json") == ModelConfig(width=0.25)
    with pytest.raises(CheckpointError, match="decoder_hidden = 96"):
        model_config_from_dict({**old, "decoder_hidden": 96}, "config.json")