"""The clamp + invariance piece, checked against values computed by hand; the batch-type sampler."""

import numpy as np
import pytest
import torch

from trainer.errors import DcignError
from trainer.faces.datasets import BATCH_TYPES
from trainer.model import DCIGN, DCIGN_LATENTS, ModelConfig
from trainer.monovariant import (MonovariantClamp, batch_type_probabilities, clamp_invariance,
                                 inactive_mask, sample_monovariant_batch)

X = [[1.0, 2.0, 3.0],
     [3.0, 6.0, 1.0]]          # batch mean [2, 4, 2]
INACTIVE = [True, False, True]  # latent 1 is the active one
GRAD_OUT = [[10.0, 20.0, 30.0],
            [40.0, 50.0, 60.0]]


@pytest.mark.parametrize("reference, expected", [
    ("mean", [[2.0, 2.0, 2.0], [2.0, 6.0, 2.0]]),
    ("first", [[1.0, 2.0, 3.0], [1.0, 6.0, 3.0]]),
])
def test_clamp_forward(reference, expected):
    out = clamp_invariance(torch.tensor(X), torch.tensor(INACTIVE), reference, 0.5)
    assert out.tolist() == expected


@pytest.mark.parametrize("reference", ["mean", "first"])
def test_invariance_backward_exact(reference):
    x = torch.tensor(X, requires_grad=True)
    out = clamp_invariance(x, torch.tensor(INACTIVE), reference, strength=0.5)
    out.backward(torch.tensor(GRAD_OUT))
    # inactive: 0.5 * (x - mean) whatever came from above; active: passed through
    assert x.grad.tolist() == [[-0.5, 20.0, 0.5],
                               [0.5, 50.0, -0.5]]


def test_invariance_gradient_is_the_penalty_gradient():
    # descent gradient of 0.5 * s * sum_i ||x_i - mean||^2 over the inactive latents: the sign the
    # original code had reversed. A step against it shrinks the spread around the mean.
    torch.manual_seed(0)
    x = torch.randn(20, 6, requires_grad=True)
    inactive = torch.tensor([True, True, False, True, False, True])
    s = 0.01
    clamp_invariance(x, inactive, "mean", s).sum().backward()
    y = x.detach().clone().requires_grad_(True)
    penalty = 0.5 * s * ((y - y.mean(0)) ** 2)[:, inactive].sum()
    penalty.backward()
    assert torch.allclose(x.grad[:, inactive], y.grad[:, inactive], atol=1e-7)
    assert torch.equal(x.grad[:, ~inactive], torch.ones(20, 2))
    stepped = x.detach() - 10 * x.grad
    assert stepped[:, inactive].std(0).lt(x.detach()[:, inactive].std(0)).all()


def test_inactive_masks():
    names = DCIGN_LATENTS
    assert inactive_mask("AZ_VARIED", names, 6).tolist() == [False, True, True, True, True, True]
    assert inactive_mask("LIGHT_VARIED", names, 6).tolist() == [True, True, False, True, True, True]
    assert inactive_mask("SHAPE_VARIED", names, 6).tolist() == [True] * 3 + [False] * 3
    with pytest.raises(DcignError):
        inactive_mask("AZ_VARIED", {}, 6)  # a baseline has no azimuth latent
    with pytest.raises(DcignError):
        inactive_mask("POSE_VARIED", names, 6)


def test_clamp_in_the_model():
    model = DCIGN(ModelConfig(image_size=64, width=0.125))
    x = torch.rand(5, 1, 64, 64)
    for btype in BATCH_TYPES:
        mask = inactive_mask(btype, DCIGN_LATENTS, 200)
        _, mu, logvar = model(x, torch.zeros(5, 200), MonovariantClamp(mask, "mean", 0.01))
        for v in (mu, logvar):
            assert torch.allclose(v[:, mask], v[:1, mask].expand(5, -1))
            assert not torch.allclose(v[:, ~mask], v[:1, ~mask].expand(5, -1))


def test_batch_type_sampler_follows_the_ratio():
    probs = batch_type_probabilities((1, 1, 1, 10))
    assert probs.tolist() == pytest.approx([1 / 13, 1 / 13, 1 / 13, 10 / 13])
    batches = {b: np.arange(40).reshape(2, 20) + 40 * i for i, b in enumerate(BATCH_TYPES)}
    rng = np.random.default_rng(0)
    draws = [sample_monovariant_batch(batches, probs, rng) for _ in range(6500)]
    counts = {b: sum(d[0] == b for d in draws) for b in BATCH_TYPES}
    assert counts["SHAPE_VARIED"] / 6500 == pytest.approx(10 / 13, abs=0.02)
    assert counts["AZ_VARIED"] / 6500 == pytest.approx(1 / 13, abs=0.01)
    assert all(len(set(rows.tolist()) & set(batches[b].ravel())) == 20 for b, rows in draws[:50])
    with pytest.raises(DcignError):
        batch_type_probabilities((1, 1, 1))
