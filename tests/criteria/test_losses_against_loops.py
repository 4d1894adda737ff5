"""Every loss added beyond the foundation, value and gradient, against a slow explicit loop (reference.py)."""
import pytest
import torch
import torch.nn.functional as F

import batchminer
import criteria
from batchminer.base import LiftedTuples, NPairTuples
from tests.criteria import reference as ref

pytestmark = pytest.mark.usefixtures("single_thread")

C = 4


def batch(n_classes=C, per_class=3, dim=8, seed=0, normalise=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_classes * per_class, dim, generator=g, dtype=torch.float64)
    x = F.normalize(x, dim=1) if normalise else 0.7 * x
    return x.requires_grad_(), torch.arange(n_classes).repeat_interleave(per_class)


def assert_same(loss, expected, tensors):
    torch.testing.assert_close(loss, torch.as_tensor(expected, dtype=loss.dtype))
    got = torch.autograd.grad(loss, tensors, retain_graph=True)
    want = torch.autograd.grad(expected, tensors, retain_graph=True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def npair_tuples(labels, seed=0):
    """Every anchor, a random positive, all other-class samples as negatives (lists and the tuple type)."""
    g = torch.Generator().manual_seed(seed)
    anchors, positives, negatives = [], [], []
    for a in range(len(labels)):
        pos = [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        anchors.append(a)
        positives.append(pos[int(torch.randint(len(pos), (1,), generator=g))])
        negatives.append([n for n in range(len(labels)) if labels[n] != labels[a]])
    mask = torch.zeros(len(labels), len(labels), dtype=torch.bool)
    for r, negs in enumerate(negatives):
        mask[r, negs] = True
    return (anchors, positives, negatives), NPairTuples(torch.tensor(anchors), torch.tensor(positives), mask)


def select(name, opt, miner=None, n_classes=None):
    return criteria.select(name, opt, batchminer=miner, n_classes=n_classes).double()


@pytest.mark.parametrize("seed,unnormalised", [(0, False), (1, True)])
def test_npair(opt_factory, seed, unnormalised):
    x, labels = batch(seed=seed, normalise=not unnormalised)
    lists, tuples = npair_tuples(labels, seed)
    loss = select("npair", opt_factory("--loss_npair_l2", "0.05"), ref.FixedTuplesMiner(tuples, "npair"))(x, labels)
    assert_same(loss, ref.npair_loss(x, *lists, l2=0.05), [x])


def test_npair_divides_bninception_embeddings_by_four(opt_factory, monkeypatch):
    import architectures

    x, labels = batch(seed=2)
    lists, tuples = npair_tuples(labels)
    monkeypatch.setitem(architectures.REGISTRY, "bninception", architectures.REGISTRY["resnet50"])
    criterion = select("npair", opt_factory("--arch", "bninception_normalize"), ref.FixedTuplesMiner(tuples, "npair"))
    assert_same(criterion(x, labels), ref.npair_loss(x / 4, *lists, l2=0.005), [x])


@pytest.mark.parametrize("seed,alpha", [(0, 45.0), (1, 36.0)])
def test_angular(opt_factory, seed, alpha):
    x, labels = batch(seed=seed, normalise=False)
    lists, tuples = npair_tuples(labels, seed)
    opt = opt_factory("--loss_angular_alpha", str(alpha), "--loss_angular_npair_ang_weight", "1.5",
                      "--loss_angular_npair_l2", "0.01")
    loss = select("angular", opt, ref.FixedTuplesMiner(tuples, "npair"))(x, labels)
    assert_same(loss, ref.angular_loss(x, *lists, alpha, 1.5, 0.01), [x])


def test_angular_npair_exponent_is_clamped_at_50(opt_factory):
    # x_a.x_n - x_a.x_p = 100 + 100 = 200: the reference's clamp caps it at 50 and stops its gradient.
    x = torch.tensor([[10.0, 0.0], [-10.0, 0.0], [10.0, 0.0]], dtype=torch.float64, requires_grad=True)
    tuples = NPairTuples(torch.tensor([0]), torch.tensor([1]), torch.tensor([[False, False, True]]))
    opt = opt_factory("--loss_angular_npair_ang_weight", "0", "--loss_angular_npair_l2", "0")
    loss = select("angular", opt, ref.FixedTuplesMiner(tuples, "npair"))(x, torch.tensor([0, 0, 1]))
    torch.testing.assert_close(loss, torch.log1p(torch.exp(torch.tensor(50.0, dtype=torch.float64))))
    assert torch.count_nonzero(torch.autograd.grad(loss, x)[0]) == 0


@pytest.mark.parametrize("seed,per_class", [(0, 3), (1, 4)])
def test_lifted(opt_factory, seed, per_class):
    x, labels = batch(seed=seed, per_class=per_class, normalise=False)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    tuples = LiftedTuples(torch.arange(len(labels)), same & ~eye, ~same)
    pos_sets = [torch.nonzero(r).squeeze(1).tolist() for r in tuples.positives]
    neg_sets = [torch.nonzero(r).squeeze(1).tolist() for r in tuples.negatives]
    opt = opt_factory("--loss_lifted_neg_margin", "1.2", "--loss_lifted_l2", "0.02")
    loss = select("lifted", opt, ref.FixedTuplesMiner(tuples, "lifted"))(x, labels)
    assert_same(loss, ref.lifted_loss(x, range(len(labels)), pos_sets, neg_sets, 1.2, 0.02), [x])


@pytest.mark.parametrize("seed,reg", [(0, 0.0), (1, 0.05)])
def test_snr(opt_factory, seed, reg):
    x, labels = batch(seed=seed)
    triplets = ref.all_triplets(labels)[::2]
    opt = opt_factory("--loss_snr_margin", "0.3", "--loss_snr_reg_lambda", str(reg), "--batch_mining", "random")
    loss = select("snr", opt, ref.FixedMiner(triplets))(x, labels)
    assert_same(loss, ref.snr_loss(x, triplets, 0.3, reg), [x])


def test_snr_regulariser_is_off_under_distance_miners_on_the_command_line(opt_factory):
    for name, expected in [("distance", 0.0), ("random_distance", 0.0), ("semihard", 0.3)]:
        opt = opt_factory("--loss_snr_reg_lambda", "0.3", "--batch_mining", name)
        assert criteria.select("snr", opt).reg_lambda == expected
    # Built in Python, the loss keeps the lambda it is given, whatever its miner.
    assert criteria.SNRLoss(reg_lambda=0.3, batchminer=batchminer.DistanceMiner()).reg_lambda == 0.3


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_quadruplet(opt_factory, n_classes):
    x, labels = batch(n_classes=n_classes, seed=n_classes, normalise=False)
    triplets = ref.all_triplets(labels)[::3]
    opt = opt_factory("--loss_quadruplet_margin_alpha_1", "0.3", "--loss_quadruplet_margin_alpha_2", "0.1")
    criterion = select("quadruplet", opt, ref.FixedMiner(triplets))
    torch.manual_seed(7)
    loss = criterion(x, labels)
    torch.manual_seed(7)
    fourth, has = criterion.fourth_samples(labels, torch.tensor(triplets))
    fourth = [int(f) if h else None for f, h in zip(fourth, has)]
    for (a, _, n), f in zip(triplets, fourth):
        if f is None:
            assert n_classes == 2
        else:
            assert labels[f] != labels[a] and labels[f] != labels[n]
    assert_same(loss, ref.quadruplet_loss(x, triplets, fourth, 0.3, 0.1), [x])


def test_quadruplet_fourth_sample_is_uniform_over_third_classes(opt_factory):
    labels = torch.tensor([0, 0, 1, 2, 2, 3])
    triplets = torch.tensor([[0, 1, 2]] * 3000)
    fourth, has = criteria.REGISTRY["quadruplet"].fourth_samples(labels, triplets)
    assert bool(has.all())
    counts = torch.bincount(fourth, minlength=6).float() / len(fourth)
    torch.testing.assert_close(counts, torch.tensor([0, 0, 0, 1 / 3, 1 / 3, 1 / 3]), atol=0.04, rtol=0)


@pytest.mark.parametrize("seed,nbins", [(0, 65), (1, 11), (2, 5)])
def test_histogram(opt_factory, seed, nbins):
    x, labels = batch(seed=seed, dim=4)
    loss = select("histogram", opt_factory("--loss_histogram_nbins", str(nbins)))(x, labels)
    assert_same(loss, ref.histogram_loss(x, labels, nbins), [x])


def test_histogram_survives_identical_embeddings(opt_factory):
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], requires_grad=True)  # cosines exactly 1
    criterion = criteria.select("histogram", opt_factory())
    loss = criterion(x, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(x.grad).all())
    # Positives at +1, negatives at 0: P(s_neg > s_pos) is 0 and the estimate puts no mass there.
    assert loss.item() == 0.0


def test_proxynca(opt_factory):
    x, labels = batch(seed=0)
    criterion = select("proxynca", opt_factory(embed_dim=8), n_classes=C)
    assert_same(criterion(x, labels), ref.proxynca_loss(x, labels, criterion.proxies), [x, criterion.proxies])


def test_softmax(opt_factory):
    x, labels = batch(seed=1, normalise=False)
    criterion = select("softmax", opt_factory("--loss_softmax_temperature", "0.1", embed_dim=8), n_classes=C)
    expected = ref.softmax_loss(x, labels, criterion.class_weights, 0.1)
    assert_same(criterion(x, labels), expected, [x, criterion.class_weights])


@pytest.mark.parametrize("margin", [0.5, 2.9])  # 2.9 rad sends most targets past pi - m: the linear branch
def test_arcface(opt_factory, margin):
    x, labels = batch(seed=2)
    opt = opt_factory("--loss_arcface_angular_margin", str(margin), "--loss_arcface_feature_scale", "8", embed_dim=8)
    criterion = select("arcface", opt, n_classes=C)
    expected = ref.arcface_loss(x, labels, criterion.class_weights, margin, 8.0)
    assert_same(criterion(x, labels), expected, [x, criterion.class_weights])


def test_arcface_margin_moves_only_the_target_logit(opt_factory):
    """The reference added the margin to every logit, which left the loss equal to a scaled softmax."""
    x, labels = batch(seed=3)
    opt = opt_factory("--loss_arcface_feature_scale", "16", embed_dim=8)
    with_margin = select("arcface", opt, n_classes=C)
    no_margin = select("arcface", opt_factory("--loss_arcface_angular_margin", "0", "--loss_arcface_feature_scale",
                                              "16", embed_dim=8), n_classes=C)
    no_margin.load_state_dict(with_margin.state_dict())
    assert with_margin(x, labels).item() > no_margin(x, labels).item() + 0.1


@pytest.mark.parametrize("k,seed", [(1, 0), (2, 1), (3, 2)])
def test_softtriplet(opt_factory, k, seed):
    x, labels = batch(seed=seed, normalise=False)
    opt = opt_factory("--loss_softtriplet_n_centroids", str(k), "--loss_softtriplet_gamma", "0.2",
                      "--loss_softtriplet_margin_delta", "0.05", "--loss_softtriplet_lambda", "6",
                      "--loss_softtriplet_reg_weight", "0.3", embed_dim=8)
    criterion = select("softtriplet", opt, n_classes=C)
    expected = ref.softtriple_loss(x, labels, criterion.centroids, C, k, 0.2, 0.05, 6.0, 0.3)
    assert_same(criterion(x, labels), expected, [x, criterion.centroids])


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 0, 0, 2, 2, 2]])  # the second leaves proxies 1, 3 without positives
def test_proxyanchor(opt_factory, labels):
    labels = torch.tensor(labels)
    x = F.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64), dim=1)
    x.requires_grad_()
    opt = opt_factory("--loss_proxyanchor_alpha", "16", "--loss_proxyanchor_delta", "0.2", embed_dim=8)
    criterion = select("proxyanchor", opt, n_classes=C)
    expected = ref.proxyanchor_loss(x, labels, criterion.proxies, 16.0, 0.2)
    assert_same(criterion(x, labels), expected, [x, criterion.proxies])


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 0, 1, 2, 3, 3, 4]])
def test_circle(opt_factory, labels):
    labels = torch.tensor(labels)
    x = F.normalize(torch.randn(8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64), dim=1)
    x.requires_grad_()
    loss = select("circle", opt_factory("--loss_circle_m", "0.3", "--loss_circle_gamma", "20"))(x, labels)
    assert_same(loss, ref.circle_loss(x, labels, 0.3, 20.0), [x])
