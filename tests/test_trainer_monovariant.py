"""The clamp + invariance piece, checked against values computed by hand; the batch-type sampler."""

import contextlib

import numpy as np
import pytest
import torch

from trainer.errors import DcignError
from trainer.faces.datasets import BATCH_TYPES
from trainer.model import DCIGN, DCIGN_LATENTS, ModelConfig, neg_elbo, permute_latents
from trainer.monovariant import (ActiveSpread, GroupedClamp, MonovariantClamp,
                                 batch_type_probabilities, clamp_invariance, inactive_mask,
                                 named_latent_order, order_scores, pick_named_latents,
                                 sample_monovariant_batch, spread_scores)

X = [[1.0, 2.0, 3.0],
     [3.0, 6.0, 1.0]]          # batch mean [2, 4, 2]
INACTIVE = [True, False, True]  # latent 1 is the active one
GRAD_OUT = [[10.0, 20.0, 30.0],
            [40.0, 50.0, 60.0]]


def test_clamp_forward():
    out = clamp_invariance(torch.tensor(X), torch.tensor(INACTIVE), 0.5)
    assert out.tolist() == [[2.0, 2.0, 2.0], [2.0, 6.0, 2.0]]


def test_invariance_backward_exact():
    x = torch.tensor(X, requires_grad=True)
    out = clamp_invariance(x, torch.tensor(INACTIVE), strength=0.5)
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
    clamp_invariance(x, inactive, s).sum().backward()
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
        _, mu, logvar = model(x, torch.zeros(5, 200), MonovariantClamp(mask, 0.01))
        for v in (mu, logvar):
            assert torch.allclose(v[:, mask], v[:1, mask].expand(5, -1))
            assert not torch.allclose(v[:, ~mask], v[:1, ~mask].expand(5, -1))


def test_active_spread_by_hand():
    spread = ActiveSpread(3, decay=0.5)
    active = torch.tensor([True, False, True])
    spread.update(torch.tensor([[0.0, 5.0, 1.0], [2.0, -5.0, 1.0]]), active)  # variances 1, 25, 0
    assert spread.active_var.tolist() == [1.0, 1.0, 0.0]  # first batch exact; unseen: 1
    assert spread.inactive_var.tolist() == [0.0, 25.0, 0.0]
    spread.update(torch.tensor([[0.0, 0.0, 0.0], [6.0, 0.0, 2.0]]), active)  # variances 9, 0, 1
    assert spread.active_var.tolist() == [5.0, 1.0, 0.5]  # a = max(1/2, 0.5)
    assert spread.inactive_var.tolist() == [0.0, 12.5, 0.0]
    assert spread.active_count.tolist() == [2.0, 0.0, 2.0]
    assert spread.inactive_count.tolist() == [0.0, 2.0, 0.0]
    pull, push = spread.strengths(6.0)
    assert pull.tolist() == pytest.approx([1.2, 6.0, 12.0])
    # push = pull * (n_in / max(n_act, 1)) * u / v: only column 1 has been seen clamped
    assert push.tolist() == pytest.approx([0.0, 6.0 * 2 * 12.5, 0.0])
    assert ActiveSpread(2, floor=0.1).strengths(1.0)[0].tolist() == [1.0, 1.0]
    # one strength per latent (the intrinsic block's own): each column scales by its own
    each_pull, each_push = spread.strengths(torch.tensor([6.0, 60.0, 6.0]))
    assert each_pull.tolist() == pytest.approx([1.2, 60.0, 12.0])
    assert each_push.tolist() == pytest.approx([0.0, 60.0 * 2 * 12.5, 0.0])
    restored = ActiveSpread(3)
    restored.load_state_dict(spread.state_dict())
    assert restored.inactive_var.tolist() == spread.inactive_var.tolist()
    with pytest.raises(DcignError):
        ActiveSpread(4).load_state_dict(spread.state_dict())
    with pytest.raises(DcignError):
        ActiveSpread(3).load_state_dict({"variance": spread.active_var})


def test_relative_pull_does_not_reward_shrinking():
    # Latent 0 is active in batch a and clamped in batch b. Scaling the latent by (1 + e) moves
    # every sample x by e * x, so sum(x * grad) over both batches is the penalty's slope along
    # "shrink or grow the latent". The absolute pull has a positive slope (shrinking pays); the
    # relative one, pull on b and push on a together, has none.
    torch.manual_seed(1)
    a, b = torch.randn(20, 2) * 2.0, torch.randn(20, 2) * 0.3
    active_a = torch.tensor([True, False])  # latent 0 active in a, clamped in b

    def grads(spread):
        out = {}
        for name, x, inactive in (("b", b, active_a), ("a", a, ~active_a)):  # b first: see below
            x = x.clone().requires_grad_(True)
            mu, _ = MonovariantClamp(inactive, 1.0, spread)(x, x.detach())
            (mu * 0).sum().backward()  # no reconstruction gradient: the invariance terms alone
            out[name] = x.grad[:, 0]
        return out

    g = grads(None)
    assert (a[:, 0] @ g["a"] + b[:, 0] @ g["b"]).item() > 1.0  # absolute: shrinking lowers it
    spread = ActiveSpread(2)
    grads(spread)  # warm up: v = var(a), u = var(b) exactly, since the same batches repeat
    g = grads(spread)  # b then a: when a is seen, n_in = n_act = 2, so the push weight is 1
    v, u = a[:, 0].var(unbiased=False), b[:, 0].var(unbiased=False)
    torch.testing.assert_close(g["b"], (b[:, 0] - b[:, 0].mean()) / v)
    torch.testing.assert_close(g["a"], -(u / v) * (a[:, 0] - a[:, 0].mean()) / v)
    slope = a[:, 0] @ g["a"] + b[:, 0] @ g["b"]
    assert abs(slope.item()) < 1e-4


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


def test_split_pull_is_absolute_on_the_named_latents_and_relative_on_the_rest():
    torch.manual_seed(2)
    x = torch.randn(20, 5) * torch.tensor([2.0, 0.5, 1.0, 3.0, 0.2])
    named = torch.tensor([True, True, True, False, False])
    inactive = torch.tensor([True, False, True, True, True])  # latent 1 active

    def grad(absolute, spread):
        xi = x.clone().requires_grad_(True)
        mu, _ = MonovariantClamp(inactive, 4.0, spread, absolute)(xi, xi.detach())
        (mu * 0).sum().backward()
        return xi.grad

    spread = ActiveSpread(5)
    spread.active_var = torch.tensor([1.0, 0.25, 4.0, 9.0, 0.5], dtype=torch.float64)
    spread.active_count = torch.full((5,), 10.0, dtype=torch.float64)
    spread.inactive_var = torch.full((5,), 0.1, dtype=torch.float64)
    spread.inactive_count = torch.full((5,), 10.0, dtype=torch.float64)
    relative = ActiveSpread(5)
    relative.load_state_dict(spread.state_dict())
    split, rel, absolute = grad(named, spread), grad(None, relative), grad(None, None)
    torch.testing.assert_close(split[:, [0, 2]], absolute[:, [0, 2]])  # clamped, named
    torch.testing.assert_close(split[:, 1], torch.zeros(20))  # active, named: no push
    assert rel[:, 1].abs().max() > 0.1  # (the relative scale pushes it apart)
    torch.testing.assert_close(split[:, 3:], rel[:, 3:])  # the intrinsic block: relative
    assert not torch.allclose(split[:, 3:], absolute[:, 3:])
    with pytest.raises(DcignError):
        MonovariantClamp(inactive, 4.0, None, named)


@pytest.mark.parametrize("scale", ["absolute", "relative"])
def test_grouped_batches_give_the_sum_of_the_one_batch_gradients(scale):
    """batches_per_step = K: K groups of 20 in one pass, each clamped against its own mean with
    its own batch type, have the gradient of the K one-batch steps added up."""
    from trainer.train import forward_backward

    torch.manual_seed(0)
    config = ModelConfig(image_size=64, width=0.05, latent_dim=12)  # small: the sums are exact
    model = DCIGN(config)
    types = ["AZ_VARIED", "SHAPE_VARIED", None]  # None: an unclamped batch
    x = torch.rand(len(types) * 20, 1, 64, 64)
    eps = torch.randn(len(types) * 20, 12)

    def clamps():
        spread = ActiveSpread(12) if scale == "relative" else None
        return [None if t is None else
                MonovariantClamp(inactive_mask(t, config.latent_names, 12), 10.0, spread)
                for t in types]

    def gradients(step):
        model.zero_grad(set_to_none=True)
        step()
        return [p.grad.clone() for p in model.parameters()]

    nothing = contextlib.nullcontext()
    grouped = gradients(lambda: forward_backward(model, x, eps, GroupedClamp(clamps(), 20), 0.5,
                                                 nothing))
    one_by_one = clamps()

    def each_batch():
        for i, clamp in enumerate(one_by_one):
            rows = slice(20 * i, 20 * (i + 1))
            forward_backward(model, x[rows], eps[rows], clamp, 0.5, nothing)
    summed = gradients(each_batch)
    for g, s in zip(grouped, summed):
        torch.testing.assert_close(g, s, rtol=1e-4, atol=1e-4)
    # not what one clamp over all the rows (one mean, one batch type) would give
    whole = gradients(lambda: forward_backward(model, x, eps, clamps()[0], 0.5, nothing))
    assert any(not torch.allclose(g, w, rtol=1e-3, atol=1e-3) for g, w in zip(grouped, whole))


def test_grouped_clamp_needs_whole_groups():
    clamp = GroupedClamp([None, None], 20)
    with pytest.raises(DcignError):
        clamp(torch.zeros(30, 4), torch.zeros(30, 4))


def test_named_latents_are_picked_by_their_own_batch_type():
    # 6 latents; spread of each on batches of each type
    spreads = {"AZ_VARIED":    [0.1, 0.2, 5.0, 0.1, 9.0, 0.1],
               "EL_VARIED":    [0.1, 0.2, 0.3, 0.6, 9.0, 0.1],
               "LIGHT_VARIED": [0.1, 0.2, 0.3, 0.1, 9.0, 4.0],
               "SHAPE_VARIED": [2.0, 0.2, 0.3, 0.1, 9.0, 0.1]}
    picked = pick_named_latents(spread_scores(spreads, DCIGN_LATENTS), DCIGN_LATENTS)
    # latent 4 varies most on azimuth batches, but as much on every other: not azimuth's
    assert picked == {"azimuth": 2, "elevation": 3, "light": 5}
    order = named_latent_order(picked, DCIGN_LATENTS, 6)
    assert sorted(order) == list(range(6)) and list(order[:3]) == [2, 3, 5]
    # each latent named once: the second-best is taken when the best is gone
    spreads["EL_VARIED"] = [0.1, 0.2, 0.6, 0.4, 9.0, 0.1]
    assert pick_named_latents(spread_scores(spreads, DCIGN_LATENTS),
                              DCIGN_LATENTS)["elevation"] == 3
    with pytest.raises(DcignError, match="SHAPE_VARIED is missing"):
        spread_scores({k: v for k, v in spreads.items() if k != "SHAPE_VARIED"}, DCIGN_LATENTS)
    with pytest.raises(DcignError, match="'light' has none"):
        pick_named_latents({"azimuth": [1.0], "elevation": [2.0]}, DCIGN_LATENTS)


def test_order_scores_prefer_which_way_to_how_far():
    azimuth = np.linspace(-90, 90, 40)
    codes = np.stack([np.abs(azimuth) / 30,         # how far: varies most, no sign
                      -(azimuth / 90) ** 3,         # which way, reversed and bent
                      np.zeros_like(azimuth)], 1)   # dead
    scores = order_scores({"azimuth": codes}, {"azimuth": azimuth})["azimuth"]
    assert scores[1] == pytest.approx(1) and scores[0] < 0.1 and scores[2] == 0
    spreads = {b: np.ones(3) for b in BATCH_TYPES}
    spreads["AZ_VARIED"] = codes.var(0)
    # the batch types alone take the latent that varies most: the one without the sign
    assert np.argmax(spread_scores(spreads, {"azimuth": 0})["azimuth"]) == 0


def test_permuting_latents_keeps_the_function():
    torch.manual_seed(0)
    cfg = ModelConfig(image_size=64, latent_dim=8, width=0.125)
    a, b = DCIGN(cfg), DCIGN(cfg)
    b.load_state_dict(a.state_dict())
    order = torch.tensor([5, 2, 7, 0, 1, 3, 4, 6])
    permute_latents(b, order)
    x = torch.rand(3, 1, 64, 64)
    eps = torch.randn(3, 8)
    with torch.no_grad():
        (mu_a, lv_a), (mu_b, lv_b) = a.encode(x), b.encode(x)
        torch.testing.assert_close(mu_b, mu_a[:, order])
        torch.testing.assert_close(lv_b, lv_a[:, order])
        logits_a = a(x, eps)[0]
        logits_b = b(x, eps[:, order])[0]  # the same noise on each renumbered latent
        torch.testing.assert_close(logits_b, logits_a, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(neg_elbo(logits_b, x, mu_b, lv_b)[0],
                                   neg_elbo(logits_a, x, mu_a, lv_a)[0])
    with pytest.raises(DcignError, match="permutation"):
        permute_latents(b, torch.tensor([0, 0, 1, 2, 3, 4, 5, 6]))
