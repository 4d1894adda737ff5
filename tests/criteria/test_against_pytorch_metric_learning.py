"""Every loss against pytorch-metric-learning (a test-only oracle) where it implements the same formula,
value and gradient to 1e-5 after mapping parameters. Where ours deliberately differs, the test says how
and checks the relation.

Both losses see x = normalise(u) and gradients are taken with respect to u: PML normalises inside some of
its distances and we do inside some losses, which changes d/dx but not d/du on the unit sphere.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import batchminer
import criteria
from batchminer.base import LiftedTuples, NPairTuples
from tests.criteria import reference as ref

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
from pytorch_metric_learning import distances, miners, reducers  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

C, D = 5, 8
TOL = dict(rtol=1e-5, atol=1e-5)


def inputs(per_class=3, n_classes=C, dim=D, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n_classes * per_class, dim, generator=g, dtype=torch.float64, requires_grad=True)
    return u, torch.arange(n_classes).repeat_interleave(per_class)


def assert_same_loss_and_gradient(ours, theirs, tensors):
    torch.testing.assert_close(ours, theirs.to(ours.dtype), **TOL)
    for g_ours, g_theirs in zip(torch.autograd.grad(ours, tensors, retain_graph=True),
                                torch.autograd.grad(theirs, tensors, retain_graph=True)):
        torch.testing.assert_close(g_ours, g_theirs, **TOL)


def ours(name, opt, miner=None, n_classes=None):
    return criteria.select(name, opt, batchminer=miner, n_classes=n_classes).double()


def _copy(dst, src):
    with torch.no_grad():
        dst.copy_(src)


def mined_triplets(opt, x, labels, miner="random", seed=0):
    torch.manual_seed(seed)
    triplets = batchminer.select(miner, opt)(x.detach(), labels)
    assert len(triplets) > 0
    return triplets


@pytest.mark.parametrize("seed", [0, 1])
def test_multisimilarity_equals_pml_loss_with_its_miner(opt_factory, seed):
    u, labels = inputs(per_class=4, seed=seed)
    x = F.normalize(u, dim=1)
    sim = distances.DotProductSimilarity(normalize_embeddings=False)
    pml_miner = miners.MultiSimilarityMiner(epsilon=0.1, distance=sim)
    pml = pml_losses.MultiSimilarityLoss(alpha=2, beta=40, base=0.5, distance=sim)
    criterion = ours("multisimilarity", opt_factory())
    loss = criterion(x, labels)
    # PML averages over all B anchors; ours skips anchors whose mined positive or negative set is empty
    # (PML scores them with one half of the loss). The two agree when every anchor keeps both, as here.
    assert int(criterion.last_tuple_count) == len(labels)
    assert_same_loss_and_gradient(loss, pml(x, labels, pml_miner(x, labels)), [u])


@pytest.mark.parametrize("miner", ["random", "semihard", "distance"])
def test_triplet_equals_pml(opt_factory, miner):
    u, labels = inputs()
    x = F.normalize(u, dim=1)
    opt = opt_factory("--loss_triplet_margin", "0.3")
    triplets = mined_triplets(opt, x, labels, miner)
    pml = pml_losses.TripletMarginLoss(margin=0.3, distance=distances.LpDistance(power=2), reducer=reducers.MeanReducer())
    # PML's default reducer averages over non-zero terms only; ours (like the reference) over all triplets.
    assert_same_loss_and_gradient(ours("triplet", opt, ref.FixedMiner(triplets))(x, labels), pml(x, labels, tuple(triplets.T)), [u])


def test_contrastive_equals_pml(opt_factory):
    u, labels = inputs(seed=2)
    x = F.normalize(u, dim=1)
    opt = opt_factory("--loss_contrastive_pos_margin", "0.2", "--loss_contrastive_neg_margin", "1.1")
    triplets = mined_triplets(opt, x, labels, "distance")
    pml = pml_losses.ContrastiveLoss(pos_margin=0.2, neg_margin=1.1, reducer=reducers.MeanReducer())
    assert_same_loss_and_gradient(ours("contrastive", opt, ref.FixedMiner(triplets))(x, labels), pml(x, labels, tuple(triplets.T)), [u])


@pytest.mark.parametrize("nu", [0.0, 0.1])
def test_margin_equals_pml_including_beta(opt_factory, nu):
    u, labels = inputs(seed=3)
    x = F.normalize(u, dim=1)
    opt = opt_factory("--loss_margin_beta", "1.0", "--loss_margin_nu", str(nu))
    triplets = mined_triplets(opt, x, labels, "distance")
    criterion = ours("margin", opt, ref.FixedMiner(triplets), n_classes=C)
    _copy(criterion.beta, torch.linspace(0.8, 1.2, C))
    pml = pml_losses.MarginLoss(margin=0.2, nu=nu, beta=1.0, learn_beta=True, num_classes=C).double()
    _copy(pml.beta, criterion.beta)
    loss, theirs = criterion(x, labels), pml(x, labels, tuple(triplets.T))
    assert_same_loss_and_gradient(loss, theirs, [u])
    torch.testing.assert_close(torch.autograd.grad(loss, criterion.beta)[0], torch.autograd.grad(theirs, pml.beta)[0])


def test_proxynca_leaves_the_positive_proxy_out_of_the_denominator(opt_factory):
    """PML's ProxyNCALoss is NCA proper: l_i = -log(e^{-d_iy} / sum_all e^{-d_ic}). Ours (the paper's and the
    reference's) drops the positive from the sum: ours_i = -log(p / (1 - p)) with p = e^{-l_i}, i.e.
    l_i + log(1 - e^{-l_i}). The scale 3 on both sides maps to PML's softmax_scale 9."""
    u, labels = inputs(seed=4)
    x = F.normalize(u, dim=1)
    criterion = ours("proxynca", opt_factory(embed_dim=D), n_classes=C)
    pml = pml_losses.ProxyNCALoss(num_classes=C, embedding_size=D, softmax_scale=9.0).double()
    _copy(pml.proxies, criterion.proxies)
    per_sample = pml.compute_loss(x, labels, None, x, labels)["loss"]["losses"]
    assert len(per_sample) == len(labels)
    theirs = (per_sample + torch.log(-torch.expm1(-per_sample))).mean()
    loss = criterion(x, labels)
    assert_same_loss_and_gradient(loss, theirs, [u])
    torch.testing.assert_close(torch.autograd.grad(loss, criterion.proxies)[0],
                               torch.autograd.grad(theirs, pml.proxies)[0], **TOL)
    assert loss.item() < pml(x, labels).item()  # a smaller denominator: ours is the smaller loss


def test_normsoftmax_equals_pml(opt_factory):
    u, labels = inputs(seed=5)
    x = F.normalize(u, dim=1)
    criterion = ours("softmax", opt_factory("--loss_softmax_temperature", "0.1", embed_dim=D), n_classes=C)
    pml = pml_losses.NormalizedSoftmaxLoss(num_classes=C, embedding_size=D, temperature=0.1).double()
    _copy(pml.W, criterion.class_weights.T)
    loss, theirs = criterion(x, labels), pml(x, labels)
    assert_same_loss_and_gradient(loss, theirs, [u])
    torch.testing.assert_close(torch.autograd.grad(loss, criterion.class_weights)[0],
                               torch.autograd.grad(theirs, pml.W)[0].T, **TOL)


@pytest.mark.parametrize("margin", [0.5, 2.8])
def test_arcface_equals_pml(opt_factory, margin):
    u, labels = inputs(seed=6)
    x = F.normalize(u, dim=1)
    opt = opt_factory("--loss_arcface_angular_margin", str(margin), "--loss_arcface_feature_scale", "16",
                      embed_dim=D)
    criterion = ours("arcface", opt, n_classes=C)
    pml = pml_losses.ArcFaceLoss(num_classes=C, embedding_size=D, margin=math.degrees(margin), scale=16).double()
    _copy(pml.W, criterion.class_weights.T)
    loss, theirs = criterion(x, labels), pml(x, labels)
    assert_same_loss_and_gradient(loss, theirs, [u])
    torch.testing.assert_close(torch.autograd.grad(loss, criterion.class_weights)[0],
                               torch.autograd.grad(theirs, pml.W)[0].T, **TOL)


@pytest.mark.parametrize("k", [1, 3])
def test_softtriple_equals_pml_without_the_regulariser(opt_factory, k):
    """PML's SoftTripleLoss has no centroid regulariser (the paper's tau term); it is checked against a
    loop in test_losses_against_loops.py, and set to 0 here. PML's `gamma` is the paper's gamma (it uses 1/gamma)."""
    u, labels = inputs(seed=7)
    x = F.normalize(u, dim=1)
    opt = opt_factory("--loss_softtriplet_n_centroids", str(k), "--loss_softtriplet_reg_weight", "0",
                      "--loss_softtriplet_gamma", "0.1", "--loss_softtriplet_lambda", "8",
                      "--loss_softtriplet_margin_delta", "0.01", embed_dim=D)
    criterion = ours("softtriplet", opt, n_classes=C)
    pml = pml_losses.SoftTripleLoss(num_classes=C, embedding_size=D, centers_per_class=k, la=8, gamma=0.1,
                                    margin=0.01).double()
    _copy(pml.fc, criterion.centroids)
    loss, theirs = criterion(x, labels), pml(x, labels)
    assert_same_loss_and_gradient(loss, theirs, [u])
    torch.testing.assert_close(torch.autograd.grad(loss, criterion.centroids)[0],
                               torch.autograd.grad(theirs, pml.fc)[0], **TOL)


def test_npair_equals_pml_on_one_pair_per_class(opt_factory):
    """PML's NPairsLoss uses one (anchor, positive) pair per class and the other pairs' positives as negatives
    (Sohn's batch). Our miner uses every other-class sample; given Sohn's tuples the formulas agree."""
    u, labels = inputs(per_class=2, seed=8)
    x = F.normalize(u, dim=1)
    anchors, positives = torch.arange(0, 2 * C, 2), torch.arange(1, 2 * C, 2)
    negatives = torch.zeros(C, 2 * C, dtype=torch.bool)
    negatives[:, positives] = ~torch.eye(C, dtype=torch.bool)
    miner = ref.FixedTuplesMiner(NPairTuples(anchors, positives, negatives), "npair")
    loss = ours("npair", opt_factory("--loss_npair_l2", "0"), miner)(x, labels)
    empty = torch.empty(0, dtype=torch.long)
    assert_same_loss_and_gradient(loss, pml_losses.NPairsLoss()(x, labels, (anchors, positives, empty, empty)), [u])


@pytest.mark.parametrize("alpha", [45.0, 40.0])
def test_angular_term_equals_pml(opt_factory, alpha):
    """PML's AngularLoss is the angular term alone over every positive pair; ours adds Wang et al.'s N-pair
    term and an l2 term (weights mapped to 0 and 1 here)."""
    u, labels = inputs(seed=9)
    x = F.normalize(u, dim=1)
    same = labels[:, None] == labels[None, :]
    a, p = torch.nonzero(same & ~torch.eye(len(labels), dtype=torch.bool), as_tuple=True)
    miner = ref.FixedTuplesMiner(NPairTuples(a, p, ~same[a]), "npair")
    opt = opt_factory("--loss_angular_alpha", str(alpha), "--loss_angular_npair_ang_weight", "1",
                      "--loss_angular_npair_l2", "0")
    criterion = ours("angular", opt, miner)
    from criteria.angular import angular_terms
    from criteria.npair import npair_terms

    tuples = miner(x, labels)
    loss = criterion(x, labels) - npair_terms(x, tuples, clamp=50.0).mean()
    assert_same_loss_and_gradient(loss, pml_losses.AngularLoss(alpha=alpha)(x, labels), [u])
    assert_same_loss_and_gradient(angular_terms(x, tuples, alpha).mean(), pml_losses.AngularLoss(alpha=alpha)(x, labels), [u])


def test_lifted_equals_pml_generalized_lifted_structure(opt_factory):
    u, labels = inputs(per_class=3, seed=10)
    x = F.normalize(u, dim=1)
    opt = opt_factory("--loss_lifted_neg_margin", "1.1", "--loss_lifted_l2", "0")
    torch.manual_seed(0)
    tuples = batchminer.select("lifted", opt)(x.detach(), labels)
    assert isinstance(tuples, LiftedTuples) and len(tuples) == len(labels)
    loss = ours("lifted", opt, ref.FixedTuplesMiner(tuples, "lifted"))(x, labels)
    assert_same_loss_and_gradient(loss, pml_losses.GeneralizedLiftedStructureLoss(neg_margin=1.1, pos_margin=0)(x, labels), [u])


def test_snr_equals_pml_triplet_loss_with_snr_distance(opt_factory):
    """Ours is the SNR *triplet* loss of Yuan et al.: PML's TripletMarginLoss with its SNRDistance (averaged over
    non-zero terms, as ours) is the same formula; PML's SignalToNoiseRatioContrastiveLoss is the paper's
    contrastive variant, a different loss. The zero-mean regulariser is set to 0 here and checked in the loop test."""
    u, labels = inputs(seed=11)
    x = F.normalize(u, dim=1)
    opt = opt_factory("--loss_snr_margin", "0.25", "--loss_snr_reg_lambda", "0")
    triplets = mined_triplets(opt, x, labels, "random")
    pml = pml_losses.TripletMarginLoss(margin=0.25, distance=distances.SNRDistance(), reducer=reducers.AvgNonZeroReducer())
    assert_same_loss_and_gradient(ours("snr", opt, ref.FixedMiner(triplets))(x, labels), pml(x, labels, tuple(triplets.T)), [u])


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")
@pytest.mark.parametrize("nbins", [65, 20])
def test_histogram_equals_pml(opt_factory, nbins):
    """PML's n_bins counts intervals (delta = 2 / n_bins); ours counts nodes (delta = 2 / (n_nodes - 1))."""
    u, labels = inputs(seed=12)
    x = F.normalize(u, dim=1)
    loss = ours("histogram", opt_factory("--loss_histogram_nbins", str(nbins)))(x, labels)
    assert_same_loss_and_gradient(loss, pml_losses.HistogramLoss(n_bins=nbins - 1)(x, labels), [u])


@pytest.mark.parametrize("labels", [None, [0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 4]])
def test_proxyanchor_equals_pml(opt_factory, labels):
    u, default_labels = inputs(per_class=2, n_classes=6, seed=13)
    labels = default_labels if labels is None else torch.tensor(labels)
    x = F.normalize(u, dim=1)
    opt = opt_factory("--loss_proxyanchor_alpha", "32", "--loss_proxyanchor_delta", "0.1", embed_dim=D)
    criterion = ours("proxyanchor", opt, n_classes=6)
    pml = pml_losses.ProxyAnchorLoss(num_classes=6, embedding_size=D, margin=0.1, alpha=32).double()
    _copy(pml.proxies, criterion.proxies)
    loss, theirs = criterion(x, labels), pml(x, labels)
    assert_same_loss_and_gradient(loss, theirs, [u])
    torch.testing.assert_close(torch.autograd.grad(loss, criterion.proxies)[0],
                               torch.autograd.grad(theirs, pml.proxies)[0], **TOL)


@pytest.mark.parametrize("m,gamma", [(0.4, 80.0), (0.25, 32.0)])
def test_circle_equals_pml(opt_factory, m, gamma):
    u, labels = inputs(seed=14)
    x = F.normalize(u, dim=1)
    loss = ours("circle", opt_factory("--loss_circle_m", str(m), "--loss_circle_gamma", str(gamma)))(x, labels)
    assert_same_loss_and_gradient(loss, pml_losses.CircleLoss(m=m, gamma=gamma)(x, labels), [u])


def test_quadruplet_has_no_pml_counterpart():
    """PML implements no quadruplet loss; test_losses_against_loops.py checks ours against a loop."""
    assert not hasattr(pml_losses, "QuadrupletLoss")
