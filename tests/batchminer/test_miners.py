"""Miners return valid tuples, follow their documented rules, and survive degenerate batches."""
import pytest
import torch
import torch.nn.functional as F

import batchminer
from utilities.geometry import euclidean

TRIPLET_MINERS = ["random", "semihard", "softhard", "distance", "rho_distance"]


def batch(n_classes=6, per_class=3, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n_classes * per_class, dim, generator=g), dim=1)
    return x, torch.arange(n_classes).repeat_interleave(per_class)


def assert_valid(triplets, labels):
    a, p, n = triplets.T
    assert triplets.dtype == torch.long and triplets.shape[1] == 3
    assert bool((a != p).all()), "anchor used as its own positive"
    assert bool((labels[a] == labels[p]).all()), "positive from another class"
    assert bool((labels[a] != labels[n]).all()), "negative from the anchor's class"


@pytest.mark.parametrize("name", ["random", "semihard", "softhard", "distance"])
@pytest.mark.parametrize("seed", range(5))
def test_triplets_are_valid(opt_factory, name, seed):
    x, labels = batch(seed=seed)
    torch.manual_seed(seed)
    triplets = batchminer.select(name, opt_factory())(x, labels)
    assert len(triplets) > 0
    assert_valid(triplets, labels)


def test_rho_distance_mixes_valid_triplets_and_push_triplets(opt_factory):
    x, labels = batch(n_classes=8, per_class=4)
    torch.manual_seed(0)
    miner = batchminer.select("rho_distance", opt_factory("--miner_rho_distance_cp", "0.5"))
    triplets = torch.cat([miner(x, labels) for _ in range(40)])
    push = triplets[:, 0] == triplets[:, 1]
    # A push triplet (a, a, p') puts a same-class sample in the negative slot.
    assert bool((labels[triplets[push, 2]] == labels[triplets[push, 0]]).all())
    assert bool((triplets[push, 2] != triplets[push, 0]).all())
    assert_valid(triplets[~push], labels)
    assert 0.4 < push.float().mean().item() < 0.6


def test_random_miner_is_uniform_over_all_valid_triplets(opt_factory):
    labels = torch.tensor([0, 0, 1, 1, 2])  # 4 anchors x 1 positive x 3 negatives = 12 triplets
    x = torch.randn(5, 4)
    miner = batchminer.select("random", opt_factory())
    torch.manual_seed(0)
    counts = {}
    for _ in range(600):
        triplets = miner(x, labels)
        assert len(triplets) == 5 and len({tuple(t) for t in triplets.tolist()}) == 5
        assert_valid(triplets, labels)
        for t in triplets.tolist():
            counts[tuple(t)] = counts.get(tuple(t), 0) + 1
    assert len(counts) == 12
    assert max(counts.values()) / min(counts.values()) < 1.35  # each expected 250 times


def test_random_miner_returns_all_when_fewer_than_batch_size(opt_factory):
    labels = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])  # 2 anchors x 1 positive x 6 negatives = 12 > 8
    assert len(batchminer.select("random", opt_factory())(torch.randn(8, 4), labels)) == 8
    labels = torch.tensor([0, 0, 1])  # 2 triplets < batch of 3
    assert len(batchminer.select("random", opt_factory())(torch.randn(3, 4), labels)) == 2


def test_semihard_picks_a_semihard_negative_when_one_exists(opt_factory):
    # Anchor 0 at the origin, positive at distance 1, negatives at 0.5 (hard), 1.1 (semi-hard), 3 (easy).
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [0.0, 1.1], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 2, 3])
    miner = batchminer.select("semihard", opt_factory("--loss_triplet_margin", "0.2"))
    for seed in range(20):
        torch.manual_seed(seed)
        triplets = miner(x, labels)
        row = triplets[triplets[:, 0] == 0][0]
        assert row.tolist() == [0, 1, 3]


def test_softhard_positive_and_negative_are_hard_when_possible(opt_factory):
    x = torch.tensor([[0.0, 0.0], [0.2, 0.0], [2.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    miner = batchminer.select("softhard", opt_factory())
    for seed in range(20):
        torch.manual_seed(seed)
        row = miner(x, labels)[0]
        assert row.tolist() == [0, 2, 3]  # positive 2 is farther than the nearest negative (1.0); negative 3 is closer than 2.0


def test_distance_miner_respects_the_cutoffs(opt_factory):
    x, labels = batch(n_classes=20, per_class=2, dim=32, seed=1)
    opt = opt_factory("--miner_distance_lower_cutoff", "0.5", "--miner_distance_upper_cutoff", "1.4")
    miner = batchminer.select("distance", opt)
    d = euclidean(x, eps=0.0)
    torch.manual_seed(0)
    for _ in range(50):
        t = miner(x, labels)
        assert_valid(t, labels)
        has_close = ((d < 1.4) & (labels[:, None] != labels[None, :]))[t[:, 0]].any(1)
        assert bool((d[t[:, 0], t[:, 2]][has_close] < 1.4).all())


def test_distance_miner_prefers_near_negatives_on_the_sphere(opt_factory):
    # In 64-d, the inverse sphere density makes a negative at distance 0.8 far likelier than one at 1.35.
    dim = 64
    anchor = torch.zeros(dim); anchor[0] = 1
    def at(dist):
        cos = 1 - dist**2 / 2
        v = torch.zeros(dim); v[0] = cos; v[1] = (1 - cos**2) ** 0.5
        return v
    near, far = at(0.8), at(1.35)
    far[2], far[1] = far[1], 0.0
    x = torch.stack([anchor, anchor, near, far])
    labels = torch.tensor([0, 0, 1, 2])
    miner = batchminer.select("distance", opt_factory())
    torch.manual_seed(0)
    picks = torch.stack([miner(x, labels)[0, 2] for _ in range(200)])
    assert (picks == 2).float().mean().item() > 0.95


@pytest.mark.parametrize("name", TRIPLET_MINERS)
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [0, 0, 0, 0], [0, 0, 1, 2]])
def test_degenerate_batches(opt_factory, name, labels):
    labels = torch.tensor(labels)
    x = F.normalize(torch.randn(len(labels), 8), dim=1)
    triplets = batchminer.select(name, opt_factory())(x, labels)
    if len(set(labels.tolist())) == len(labels) or len(set(labels.tolist())) == 1:
        assert len(triplets) == 0
    else:
        assert len(triplets) > 0 and bool((triplets[:, 0] < 2).all())  # only the pair (0, 1) has positives
    assert triplets.shape[1] == 3


def test_distance_miner_works_on_unnormalised_embeddings(opt_factory):
    x, labels = batch()
    triplets = batchminer.select("distance", opt_factory())(x * 10, labels)
    assert_valid(triplets, labels)
    assert len(triplets) == len(labels)
