"""The miners beyond the foundation's: tuple validity, the documented choices and distributions on
constructed batches, and degenerate batches."""
import math

import pytest
import torch
import torch.nn.functional as F

import batchminer
from batchminer.base import LiftedTuples, NPairTuples
from batchminer.distance import distance_log_weights
from utilities.geometry import euclidean
from tests.batchminer.test_miners import assert_valid, batch

pytestmark = pytest.mark.usefixtures("single_thread")

EASY_POSITIVE = ["ephn", "epdn", "epshn"]


@pytest.mark.parametrize("name", EASY_POSITIVE + ["parametric"])
@pytest.mark.parametrize("seed", range(4))
def test_triplets_are_valid(opt_factory, name, seed):
    x, labels = batch(seed=seed)
    torch.manual_seed(seed)
    triplets = batchminer.select(name, opt_factory())(x, labels)
    assert len(triplets) == len(labels)
    assert_valid(triplets, labels)


@pytest.mark.parametrize("name", EASY_POSITIVE)
@pytest.mark.parametrize("seed", range(3))
def test_easy_positive_is_the_nearest_same_class_sample(opt_factory, name, seed):
    x, labels = batch(n_classes=4, per_class=5, seed=seed)
    torch.manual_seed(seed)
    triplets = batchminer.select(name, opt_factory())(x, labels)
    d = euclidean(x, eps=0.0)
    for a, p, _ in triplets.tolist():
        others = [j for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        assert p == min(others, key=lambda j: float(d[a, j]))
        assert p != 1 or labels[a] == labels[1]  # the reference's bug returned sample 1 for every anchor


def test_ephn_negative_is_closer_than_the_farthest_positive(opt_factory):
    # Anchor 0; positives at distances 0.2 and 2.0; negatives at 1.0 (hard) and 3.0 (easy).
    x = torch.tensor([[0.0, 0.0], [0.2, 0.0], [2.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1, 2])
    miner = batchminer.select("ephn", opt_factory())
    for seed in range(10):
        torch.manual_seed(seed)
        assert miner(x, labels)[0].tolist() == [0, 1, 3]


def test_epshn_negative_is_semihard_relative_to_the_easy_positive(opt_factory):
    # Anchor 0, easy positive 1 at 1.0 (positive 2 at 1.5 is not the nearest); negatives at 0.5 (hard),
    # 1.1 (semi-hard for the margin 0.2 of --loss triplet), 3.0 (easy).
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -1.5], [0.5, 0.0], [0.0, 1.1], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1, 2, 3])
    import criteria

    opt = opt_factory("--loss", "triplet", "--batch_mining", "epshn", "--loss_triplet_margin", "0.2")
    miner = criteria.select("triplet", opt).batchminer
    for seed in range(10):
        torch.manual_seed(seed)
        assert miner(x, labels)[0].tolist() == [0, 1, 4]
    opt = opt_factory("--loss", "margin", "--batch_mining", "epshn", "--loss_margin_margin", "0.05")
    assert criteria.select("margin", opt, n_classes=8).batchminer.margin == 0.05


def test_epdn_draws_negatives_with_the_distance_weights(opt_factory):
    x, labels = batch(n_classes=3, per_class=2, dim=4, seed=3)
    miner = batchminer.select("epdn", opt_factory("--miner_distance_upper_cutoff", "2.0"))
    d = euclidean(x, eps=0.0)
    anchor = 0
    neg = labels != labels[anchor]
    weights = distance_log_weights(d[anchor], x.shape[1], 0.5).exp() * neg
    expected = weights / weights.sum()
    torch.manual_seed(0)
    picks = torch.stack([miner(x, labels)[anchor, 2] for _ in range(1500)])
    observed = torch.bincount(picks, minlength=len(labels)).float() / len(picks)
    torch.testing.assert_close(observed, expected, atol=0.04, rtol=0)


def test_distance_miner_clamps_close_negatives_to_the_lower_cutoff(opt_factory):
    """A negative closer than --miner_distance_lower_cutoff gets the weight of the cutoff distance, not its
    own (much larger) weight: it is drawn exactly as often as a negative at the cutoff, no more."""
    dim = 16

    def at(dist, axis):
        v = torch.zeros(dim)
        v[0], v[axis] = 1 - dist**2 / 2, math.sqrt(1 - (1 - dist**2 / 2) ** 2)
        return v

    anchor = torch.zeros(dim)
    anchor[0] = 1
    x = torch.stack([anchor, at(0.3, 1), at(0.2, 2), at(0.5, 3), at(0.9, 4)])
    labels = torch.tensor([0, 0, 1, 2, 3])
    miner = batchminer.select("distance", opt_factory("--miner_distance_lower_cutoff", "0.5"))
    torch.manual_seed(0)
    picks = torch.stack([miner(x, labels)[0, 2] for _ in range(1500)])
    share = torch.bincount(picks, minlength=5).float() / len(picks)
    w = distance_log_weights(torch.tensor([0.5, 0.5, 0.9]), dim, 0.5).exp()
    torch.testing.assert_close(share[2:], w / w.sum(), atol=0.04, rtol=0)
    assert abs(share[2] - share[3]) < 0.06  # 0.2 and the cutoff 0.5 are drawn equally often


def test_semihard_returns_semihard_negatives_whenever_they_exist(opt_factory):
    x, labels = batch(n_classes=8, per_class=3, dim=4, seed=5)
    miner = batchminer.select("semihard", opt_factory("--loss_triplet_margin", "0.3"))
    d = euclidean(x, eps=0.0)
    torch.manual_seed(0)
    checked = 0
    for _ in range(20):
        for a, p, n in miner(x, labels).tolist():
            semihard = [j for j in range(len(labels)) if labels[j] != labels[a] and d[a, p] < d[a, j] < d[a, p] + 0.3]
            if semihard:
                assert n in semihard
                checked += 1
    assert checked > 100


def test_npair_miner(opt_factory):
    x, labels = batch(n_classes=4, per_class=3)
    miner = batchminer.select("npair", opt_factory())
    torch.manual_seed(0)
    counts = torch.zeros(len(labels), len(labels))
    for _ in range(300):
        t = miner(x, labels)
        assert isinstance(t, NPairTuples) and t.anchors.tolist() == list(range(len(labels)))
        assert bool((labels[t.positives] == labels[t.anchors]).all()) and bool((t.positives != t.anchors).all())
        assert torch.equal(t.negatives, labels[t.anchors][:, None] != labels[None, :])
        counts[t.anchors, t.positives] += 1
    # Each anchor has two positives, each drawn half of the time.
    assert ((counts[counts > 0] / 300 - 0.5).abs() < 0.1).all() and int((counts > 0).sum()) == 2 * len(labels)


def test_lifted_miner(opt_factory):
    labels = torch.tensor([0, 0, 0, 1, 1, 2])  # sample 5 has no positive: not an anchor
    t = batchminer.select("lifted", opt_factory())(torch.randn(6, 4), labels)
    assert isinstance(t, LiftedTuples) and t.anchors.tolist() == [0, 1, 2, 3, 4]
    same = labels[:, None] == labels[None, :]
    assert torch.equal(t.positives, (same & ~torch.eye(6, dtype=torch.bool))[:5])
    assert torch.equal(t.negatives, ~same[:5])


def test_intra_random_draws_three_distinct_samples_of_one_class(opt_factory):
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])  # class 1 has only two samples: never drawn
    miner = batchminer.select("intra_random", opt_factory())
    torch.manual_seed(0)
    triplets = torch.cat([miner(torch.randn(9, 4), labels) for _ in range(300)])
    assert triplets.shape == (300 * 9, 3)
    a, p, n = triplets.T
    assert bool((labels[a] == labels[p]).all() & (labels[a] == labels[n]).all())
    assert bool(((a != p) & (a != n) & (p != n)).all())
    share = torch.bincount(labels[a], minlength=3).float() / len(a)
    torch.testing.assert_close(share, torch.tensor([0.5, 0.0, 0.5]), atol=0.03, rtol=0)  # classes uniformly
    members_of_2 = torch.bincount(a[labels[a] == 2], minlength=9)[5:].float()
    assert (members_of_2 / members_of_2.sum() - 0.25).abs().max() < 0.03  # samples uniformly within a class


def test_random_distance_mines_on_permuted_labels(opt_factory):
    x, labels = batch(n_classes=10, per_class=2, dim=16, seed=2)
    miner = batchminer.select("random_distance", opt_factory())
    torch.manual_seed(0)
    triplets = torch.cat([miner(x, labels) for _ in range(50)])
    assert bool((triplets[:, 0] != triplets[:, 1]).all()) and len(triplets) == 50 * len(labels)
    # With true labels every positive shares the anchor's class; under a random permutation about 1 in 19 does.
    same_true_class = (labels[triplets[:, 0]] == labels[triplets[:, 1]]).float().mean().item()
    assert same_true_class < 0.15
    assert (labels[triplets[:, 0]] == labels[triplets[:, 2]]).float().mean().item() > 0.0


def parametric(opt_factory, *flags):
    return batchminer.select("parametric", opt_factory(*flags))


@pytest.mark.parametrize("mode,support,allowed", [
    ("hards", ["0", "2"], {2}),
    ("veryhards", ["0", "2"], {2}),
    ("semihards", ["0", "2"], {3}),
    ("uniform", ["0", "2"], {2, 3, 4, 5}),
    ("uniform", ["0.5", "2"], {3, 4, 5}),
    ("hards", ["0.5", "2"], {3, 4, 5}),  # no preferred negative in the support: uniform over the support
])
def test_parametric_draws_from_the_mode_window(opt_factory, mode, support, allowed):
    # Anchor 0, positive 1; negatives at distances 0.25, 0.6, 1.0 and 1.5 on a line.
    x = torch.tensor([[0.0], [0.1], [0.25], [0.6], [1.0], [1.5]])
    labels = torch.tensor([0, 0, 1, 2, 3, 4])
    miner = parametric(opt_factory, "--miner_parametric_mode", mode, "--miner_parametric_support_lim", *support)
    torch.manual_seed(0)
    picks = torch.stack([miner(x, labels)[0, 2] for _ in range(400)])
    seen = set(picks.tolist())
    assert seen == allowed
    counts = torch.bincount(picks, minlength=6)[sorted(allowed)].float()
    assert (counts / counts.sum() - 1 / len(allowed)).abs().max() < 0.08


def test_parametric_falls_back_to_any_negative_outside_the_support(opt_factory):
    x = torch.tensor([[0.0], [0.1], [3.0], [4.0]])  # both negatives beyond the support [0, 2]
    miner = parametric(opt_factory)
    torch.manual_seed(0)
    assert set(torch.stack([miner(x, torch.tensor([0, 0, 1, 2]))[0, 2] for _ in range(100)]).tolist()) == {2, 3}


def test_parametric_bin_weights(opt_factory):
    miner = parametric(opt_factory, "--miner_parametric_mode", "semihards", "--miner_parametric_n_support", "11",
                       "--miner_parametric_support_lim", "0.05", "1.05")
    # Bins (0.05, 0.15], ..., (0.95, 1.05]; a bin weighs the mode's indicator [0.3 <= d <= 0.7] at its lower
    # edge, so (0.35, 0.45] ... (0.65, 0.75] are preferred, and 0.3 itself falls in (0.25, 0.35]: not preferred.
    d = torch.tensor([0.04, 0.1, 0.3, 0.36, 0.5, 0.7, 0.74, 0.76, 1.0, 1.1])
    assert miner.negative_weights(d).tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]


def test_parametric_rejects_a_bad_support(opt_factory):
    from utilities.errors import UsageError

    with pytest.raises(UsageError, match="--miner_parametric_support_lim"):
        parametric(opt_factory, "--miner_parametric_support_lim", "1", "0.5")


ALL = sorted(batchminer.REGISTRY)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [0, 0, 0, 0], [0, 0, 1, 2], [5]])
def test_degenerate_batches(opt_factory, name, labels):
    labels = torch.tensor(labels)
    x = F.normalize(torch.randn(len(labels), 8), dim=1)
    torch.manual_seed(0)
    tuples = batchminer.select(name, opt_factory())(x, labels)
    one_class = len(set(labels.tolist())) == 1
    if name == "intra_random":
        assert (len(tuples) > 0) == (one_class and len(labels) >= 3)
        return
    if name == "random_distance":  # labels are permuted first: only the multiset of labels matters
        assert (len(tuples) > 0) == (labels.tolist() == [0, 0, 1, 2])
        return
    if len(set(labels.tolist())) == len(labels) or one_class:
        assert len(tuples) == 0
    else:
        assert len(tuples) > 0
        anchors = tuples.anchors if hasattr(tuples, "anchors") else tuples[:, 0]
        assert bool((anchors < 2).all())
    if isinstance(tuples, torch.Tensor):
        assert tuples.shape[1] == 3 and tuples.dtype == torch.long
    else:
        assert tuples.negatives.shape == (len(tuples), len(labels))
