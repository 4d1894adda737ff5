"""triplet, contrastive and margin against explicit loops over the same mined triplets."""
import pytest
import torch
import torch.nn.functional as F

import criteria
from tests.criteria import reference as ref


def batch(n_classes=4, per_class=3, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n_classes * per_class, dim, generator=g), dim=1).double().requires_grad_()
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    return x, labels


def grads(loss, x):
    (g,) = torch.autograd.grad(loss, x)
    return g


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplet_matches_loop(opt_factory, seed):
    x, labels = batch(seed=seed)
    triplets = ref.all_triplets(labels)
    opt = opt_factory("--loss_triplet_margin", "0.3")
    loss = criteria.select("triplet", opt, batchminer=ref.FixedMiner(triplets))(x, labels)
    expected = ref.triplet_loss(x, triplets, 0.3)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grads(loss, x), grads(expected, x))


@pytest.mark.parametrize("seed", [0, 1])
def test_contrastive_matches_loop(opt_factory, seed):
    x, labels = batch(seed=seed)
    triplets = ref.all_triplets(labels)[::3]
    opt = opt_factory("--loss_contrastive_pos_margin", "0.1", "--loss_contrastive_neg_margin", "1.2")
    loss = criteria.select("contrastive", opt, batchminer=ref.FixedMiner(triplets))(x, labels)
    expected = ref.contrastive_loss(x, triplets, 0.1, 1.2)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grads(loss, x), grads(expected, x))


@pytest.mark.parametrize("nu", [0.0, 0.1])
def test_margin_matches_loop_including_beta_gradient(opt_factory, nu):
    x, labels = batch(seed=3)
    triplets = ref.all_triplets(labels)
    opt = opt_factory("--loss_margin_beta", "0.9", "--loss_margin_nu", str(nu))
    criterion = criteria.select("margin", opt, batchminer=ref.FixedMiner(triplets), n_classes=4).double()
    loss = criterion(x, labels)
    beta = torch.full((4,), 0.9, dtype=torch.float64, requires_grad=True)
    expected = ref.margin_loss(x, labels, triplets, beta, 0.2, nu)
    torch.testing.assert_close(loss, expected)
    (g_beta,) = torch.autograd.grad(loss, criterion.beta, retain_graph=True)
    (g_beta_ref,) = torch.autograd.grad(expected, beta, retain_graph=True)
    torch.testing.assert_close(g_beta, g_beta_ref)
    torch.testing.assert_close(grads(loss, x), grads(expected, x))


def test_margin_beta_has_its_own_learning_rate(opt_factory):
    opt = opt_factory("--loss_margin_beta_lr", "0.123", "--lr", "1e-5")
    groups = criteria.select("margin", opt, n_classes=8).param_groups()
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(0.123, 0.0)]
    constant = criteria.select("margin", opt_factory("--loss_margin_beta_constant"), n_classes=8)
    assert constant.param_groups() == [] and not any(True for _ in constant.parameters())


@pytest.mark.parametrize("name", ["triplet", "contrastive", "margin"])
def test_no_triplet_gives_zero_loss_and_zero_gradient(opt_factory, name):
    x, labels = batch()
    criterion = criteria.select(name, opt_factory(), batchminer=ref.FixedMiner([]), n_classes=4)
    loss = criterion(x.float(), labels)
    assert loss.item() == 0.0
    assert int(criterion.last_tuple_count) == 0
    (g,) = torch.autograd.grad(loss, x)
    assert torch.count_nonzero(g) == 0


def test_semihard_miner_takes_the_margin_of_the_loss_it_serves(opt_factory):
    import batchminer

    opt = opt_factory("--loss_triplet_margin", "0.35", "--loss_margin_margin", "0.15", "--batch_mining", "semihard")
    assert criteria.select("triplet", opt).batchminer.margin == 0.35
    assert criteria.select("margin", opt, n_classes=8).batchminer.margin == 0.15
    assert batchminer.select("semihard", opt).margin == 0.35
