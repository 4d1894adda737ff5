"""--reference_parity: on small inputs, what the reference's formulas give (written out here as the reference
computed them, REFERENCE.md §2-§3, §6), matched by the components the CLI builds with the flag and not by
those it builds without it; the flag reaches every component through its from_opt path; flags it overrides
are named; a resumed run keeps it."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import batchminer
import criteria
import datasets
import parameters
from batchminer.base import BatchMiner
from datasets.samplers import ClassRandomSampler, FullRandomSampler
from tests.conftest import make_opt
from utilities import resume
from utilities.errors import UsageError

pytestmark = pytest.mark.usefixtures("single_thread")
PARITY = ["--reference_parity"]


class FixedTriplets(BatchMiner):
    """A miner that returns the same triplets every call."""

    def __init__(self, triplets):
        self.triplets = torch.tensor(triplets)

    def __call__(self, batch, labels):
        return self.triplets


def reference_margin_loss(batch, labels, triplets, beta, margin):
    """The reference's margin loss (criteria/margin.py at S2SD 1ef26e4), loop for loop."""
    d_ap = torch.stack([((batch[a] - batch[p]).pow(2).sum() + 1e-8).pow(1 / 2) for a, p, _ in triplets])
    d_an = torch.stack([((batch[a] - batch[n]).pow(2).sum() + 1e-8).pow(1 / 2) for a, _, n in triplets])
    b = torch.stack([beta[labels[a]] for a, _, _ in triplets])
    pos_loss, neg_loss = F.relu(d_ap - b + margin), F.relu(b - d_an + margin)
    pair_count = torch.sum((pos_loss > 0.0) + (neg_loss > 0.0)).float()
    return torch.sum(pos_loss + neg_loss) / pair_count if pair_count else torch.sum(pos_loss + neg_loss)


def test_margin_normaliser_is_the_reference_or_count_only_with_the_flag():
    torch.manual_seed(0)
    batch = F.normalize(torch.randn(8, 6), dim=1).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    triplets = [[0, 1, 2], [1, 0, 4], [2, 3, 7], [3, 2, 0], [4, 5, 6], [5, 4, 1], [6, 7, 2], [7, 6, 5]]
    losses = {}
    for name, flags in (("parity", PARITY), ("default", [])):
        margin = criteria.from_opt("margin", make_opt(*flags), FixedTriplets(triplets), n_classes=4)
        margin.beta.data = torch.tensor([0.9, 1.1, 1.2, 1.3])  # varied betas: every kind of active term
        losses[name] = margin(batch, labels)
    reference = reference_margin_loss(batch, labels, triplets, torch.tensor([0.9, 1.1, 1.2, 1.3]), 0.2)
    d_ap, d_an = criteria.TupleLoss.triplet_distances(batch, torch.tensor(triplets))
    beta = torch.tensor([0.9, 1.1, 1.2, 1.3])[labels[torch.tensor(triplets)[:, 0]]]
    pos, neg = (d_ap - beta + 0.2) > 0, (beta - d_an + 0.2) > 0
    n_or, n_terms = int((pos | neg).sum()), int(pos.sum() + neg.sum())
    assert 0 < n_or < n_terms  # the example tells the two counts apart
    torch.testing.assert_close(losses["parity"], reference)
    torch.testing.assert_close(losses["default"], reference * n_or / n_terms)
    grads = [torch.autograd.grad(losses[k], batch)[0] for k in ("parity", "default")]
    torch.testing.assert_close(grads[1], grads[0] * n_or / n_terms)


def reference_s2sd_groups(opt, s2sd):
    """(lr, weight decay) of the optimizer groups the reference's S2SD appended: the target MLPs at --lr
    without a weight_decay key (0 in Adam/SGD as constructed), then per sub-criterion its optim_dict_list if it
    has one (proxynca: --lr x lrmulti) else all its parameters at --lr, without weight decay."""
    groups = [(opt.lr, 0.0)]
    for criterion in [*s2sd.target_criteria, s2sd.source_criterion]:
        if isinstance(criterion, criteria.ProxyNCALoss):
            groups.append((opt.lr * opt.loss_proxynca_lrmulti, 0.0))
        elif list(criterion.parameters()):
            groups.append((opt.lr, 0.0))
    return groups


@pytest.mark.parametrize("source,target", [("margin", "proxynca"), ("arcface", "softmax")])
def test_s2sd_trains_sub_loss_parameters_at_lr_and_heads_without_decay_only_with_the_flag(source, target):
    flags = ["--loss", "s2sd", "--loss_s2sd_source", source, "--loss_s2sd_target", target, "--lr", "2e-5",
             "--loss_softmax_lr", "3e-4", "--loss_s2sd_target_dims", "8", "12"]
    got = {}
    for name, extra in (("parity", PARITY), ("default", [])):
        opt = make_opt(*flags, *extra)
        s2sd = criteria.from_opt("s2sd", opt, n_classes=5, feature_dim=16)
        got[name] = [(g["lr"], g["weight_decay"]) for g in s2sd.param_groups()]
        expected = reference_s2sd_groups(opt, s2sd)
    np.testing.assert_allclose(got["parity"], expected)
    assert not np.allclose(got["default"], expected)
    assert got["default"][0] == (2e-5, 0.0004)  # the heads: --lr with the network's weight decay
    if source == "margin":
        assert got["default"][-1] == (0.0005, 0.0) and got["parity"][-1] == (2e-5, 0.0)  # beta: --loss_margin_beta_lr vs --lr
        assert got["default"][1] == got["parity"][1] == pytest.approx((2e-5 * 50, 0.0))  # proxynca: --lr x lrmulti in both


def reference_negative_probabilities(batch, labels, lower_cutoff):
    """Per anchor, the reference distance miner's probability of each negative (batchminer/distance.py at
    S2SD 1ef26e4): no upper cutoff (its line is commented out)."""
    batch, labels = batch.double(), labels.numpy()
    dim = batch.shape[1]
    dist = torch.cdist(batch, batch).clamp(min=lower_cutoff)
    probabilities = []
    for i in range(len(batch)):
        log_q = (2.0 - dim) * torch.log(dist[i]) - (dim - 3) / 2 * torch.log(1.0 - 0.25 * dist[i].pow(2))
        same = np.where(labels == labels[i])[0]
        log_q[same] = 0
        q = torch.exp(log_q - torch.max(log_q))
        q[same] = 0
        probabilities.append((q / q.sum()).numpy())
    return np.array(probabilities)


@pytest.mark.parametrize("miner", ["distance", "rho_distance"])
def test_distance_weighted_miners_draw_beyond_the_upper_cutoff_only_with_the_flag(miner):
    torch.manual_seed(3)
    batch = F.normalize(torch.randn(8, 4), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    flags = ["--miner_rho_distance_cp", "0"] if miner == "rho_distance" else []
    reference = reference_negative_probabilities(batch, labels, 0.5)
    far = torch.cdist(batch, batch).numpy() >= 1.4
    assert (reference * far).sum(1).max() > 0.2  # the reference often draws a negative beyond 1.4
    draws = 3000
    for name, extra in (("parity", PARITY), ("default", [])):
        sampler = batchminer.from_opt(miner, make_opt(*flags, *extra))
        assert sampler.upper_cutoff == (None if name == "parity" else 1.4)
        counts = np.zeros((8, 8))
        for _ in range(draws):
            triplets = sampler(batch, labels).numpy()
            np.add.at(counts, (triplets[:, 0], triplets[:, 2]), 1)
        frequencies = counts / draws
        if name == "parity":
            np.testing.assert_allclose(frequencies, reference, atol=0.035)
        else:
            has_close = ((~far) & (labels[:, None] != labels[None, :]).numpy()).any(1)
            assert (frequencies * far)[has_close].sum() == 0 and np.abs(frequencies - reference).max() > 0.2


def test_s2sd_source_loss_sees_the_renormalised_embedding_only_with_the_flag():
    torch.manual_seed(0)
    batch = 3.0 * torch.randn(8, 6)  # an arch without `normalize`
    labels = torch.arange(4).repeat_interleave(2)
    features = torch.randn(8, 16)
    flags = ["--loss", "s2sd", "--loss_s2sd_target_dims", "8"]
    source = criteria.MultiSimilarityLoss()
    for extra, seen in ((PARITY, F.normalize(batch, dim=1)), ([], batch)):
        s2sd = criteria.from_opt("s2sd", make_opt(*flags, *extra), n_classes=4, feature_dim=16)
        s2sd(batch, labels, features=features)
        torch.testing.assert_close(s2sd.last_terms["source"], source(seen, labels))
    assert float(source(batch, labels)) != pytest.approx(float(source(F.normalize(batch, dim=1), labels)))


def test_softmax_uses_the_embedding_as_given_only_with_the_flag():
    torch.manual_seed(0)
    batch, labels = 2.0 * torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    for extra, x in ((PARITY, batch), ([], F.normalize(batch, dim=1))):
        loss = criteria.from_opt("softmax", make_opt(*extra), n_classes=3, embed_dim=4)
        logits = x @ F.normalize(loss.class_weights, dim=1).T / 0.05  # the reference's logits on x
        torch.testing.assert_close(loss(batch, labels), F.cross_entropy(logits, labels))


def test_intra_random_draws_with_replacement_from_any_class_only_with_the_flag():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])  # no class of three: the fixed miner has nothing to draw
    batch = torch.randn(6, 4)
    assert len(batchminer.from_opt("intra_random", make_opt())(batch, labels)) == 0
    triplets = batchminer.from_opt("intra_random", make_opt(*PARITY))(batch, labels)
    assert triplets.shape == (6, 3) and (labels[triplets] == labels[triplets[:, :1]]).all()


def test_class_random_and_full_random_draw_with_replacement_only_with_the_flag():
    labels = np.repeat(np.arange(6), 3)
    bs, spc, batches = 6, 2, 3000
    for name, replacement in (("parity", True), ("default", False)):
        sampler = ClassRandomSampler(labels, bs, spc, seed=0, replacement=replacement)
        drawn = [b for _ in range(batches // len(sampler) + 1) for b in sampler][:batches]
        repeated_class = np.mean([len(set(labels[b])) < bs // spc for b in drawn])
        repeated_image = np.mean([len(set(b)) < bs for b in drawn])
        if replacement:  # the reference: 3 classes of 6 with replacement, 2 images of 3 with replacement
            p_distinct_classes = 1 * 5 / 6 * 4 / 6
            assert repeated_class == pytest.approx(1 - p_distinct_classes, abs=0.03)
            assert repeated_image > repeated_class
        else:
            assert repeated_class == repeated_image == 0
    labels = np.repeat(np.arange(6), 10)  # classes larger than a batch: distinct images are always possible
    parity = FullRandomSampler(labels, bs, spc, seed=0, replacement=True)
    default = FullRandomSampler(labels, bs, spc, seed=0)
    assert any(len(set(b)) < bs for _ in range(50) for b in parity)
    assert all(len(set(b)) == bs for _ in range(50) for b in default)


def test_the_flag_reaches_every_component_through_from_opt():
    """What --reference_parity sets in each component the CLI builds (docs/reference_parity.md)."""
    def built(*flags):
        opt = make_opt(*flags)
        training = SimpleNamespace(labels=np.repeat(np.arange(8), 4))
        return {
            "margin": criteria.from_opt("margin", opt, n_classes=4).normaliser,
            "softmax": criteria.from_opt("softmax", opt, n_classes=4).normalise_embedding,
            "s2sd": (lambda s: (s.normalise_source, s.head_decay, s.source_criterion.beta_lr))(
                criteria.from_opt("s2sd", make_opt(*flags, "--loss_s2sd_source", "margin", "--loss_s2sd_target_dims", "8"),
                                  n_classes=4, feature_dim=8)),
            "distance": batchminer.from_opt("distance", opt).upper_cutoff,
            "epdn": batchminer.from_opt("epdn", opt).upper_cutoff,
            "random_distance": batchminer.from_opt("random_distance", opt).upper_cutoff,
            "rho_distance": batchminer.from_opt("rho_distance", opt).upper_cutoff,
            "intra_random": batchminer.from_opt("intra_random", opt).replacement,
            "class_random": datasets.select_sampler("class_random", training, make_opt(*flags, "--bs", "8")).replacement,
            "full_random": datasets.select_sampler("full_random", training, make_opt(*flags, "--bs", "8")).replacement,
        }

    assert built(*PARITY) == {"margin": "or", "softmax": False, "s2sd": (True, 0.0, 1e-5), "distance": None,
                              "epdn": None, "random_distance": None, "rho_distance": None, "intra_random": True,
                              "class_random": True, "full_random": True}
    assert built() == {"margin": "terms", "softmax": True, "s2sd": (False, 0.0004, 0.0005), "distance": 1.4,
                       "epdn": 1.4, "random_distance": 1.4, "rho_distance": 1.4, "intra_random": False,
                       "class_random": False, "full_random": False}


def test_flags_the_parity_overrides_are_named(capsys):
    parameters.parse(PARITY + ["--loss", "s2sd", "--loss_s2sd_source", "margin", "--loss_margin_beta_lr", "1e-3",
                               "--miner_distance_upper_cutoff", "1.3"])
    assert capsys.readouterr().err.splitlines() == [
        "main.py: warning: --miner_distance_upper_cutoff does not apply with --reference_parity: the reference "
        "applied no upper cutoff; the flag is ignored",
        "main.py: warning: --loss_margin_beta_lr does not apply inside S2SD with --reference_parity: the reference "
        "trained margin's parameters at --lr; the flag is ignored"]
    parameters.parse(["--loss", "s2sd", "--loss_s2sd_source", "margin", "--loss_margin_beta_lr", "1e-3"])
    assert capsys.readouterr().err == ""


def test_a_resumed_run_keeps_the_flag_and_refuses_to_change_it():
    assert "reference_parity" not in resume.CHANGEABLE
    saved = vars(parameters.parse(PARITY + ["--n_epochs", "3"]))
    argv = ["--checkpoint", "x", "--n_epochs", "5"]
    merged = resume.merge_options(parameters.parse(argv), argv, saved, parameters.build_parser())
    assert merged.reference_parity is True and merged.n_epochs == 5
    saved = vars(parameters.parse(["--n_epochs", "3"]))
    argv = ["--checkpoint", "x", "--reference_parity"]
    with pytest.raises(UsageError, match=r"these flags differ: --reference_parity True \(the run has False\)"):
        resume.merge_options(parameters.parse(argv), argv, saved, parameters.build_parser())
