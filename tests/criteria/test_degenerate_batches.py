"""Degenerate batches (singleton classes, --samples_per_class 1, one class, no valid tuple) never give NaN,
inf or a crash: tuple and pair losses return 0 with zero gradient and count 0 tuples, and the training
loop counts the step; proxy and classification losses stay well-defined."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import criteria
from batchminer.base import LiftedTuples, NPairTuples
from tests.criteria import reference as ref
from utilities.training import train_one_epoch

pytestmark = pytest.mark.usefixtures("single_thread")

D = 8
LOSSES = sorted(n for n in criteria.REGISTRY if n != "s2sd")
PROXY_LOSSES = {"proxynca", "softmax", "arcface", "softtriplet", "proxyanchor"}
SINGLETONS, ONE_CLASS, SINGLE_SAMPLE = [0, 1, 2, 3, 4, 5], [2] * 6, [3]


def loss_miner_pairs():
    pairs = []
    for name in LOSSES:
        cls = criteria.REGISTRY[name]
        pairs += [(name, m) for m in criteria.allowed_miners(cls)] if cls.REQUIRES_BATCHMINER else [(name, None)]
    return pairs


def build(opt_factory, name, miner):
    flags = ["--loss", name] + (["--batch_mining", miner] if miner else [])
    return criteria.select(name, opt_factory(*flags, embed_dim=D), n_classes=8)


def run(criterion, labels, seed=0):
    torch.manual_seed(seed)
    x = F.normalize(torch.randn(len(labels), D), dim=1).requires_grad_()
    loss = criterion(x, torch.tensor(labels))
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return loss, torch.zeros_like(x) if grad is None else grad


@pytest.mark.parametrize("name,miner", loss_miner_pairs())
@pytest.mark.parametrize("labels", [SINGLETONS, ONE_CLASS, SINGLE_SAMPLE], ids=["singletons", "one_class", "one_sample"])
def test_degenerate_batches(opt_factory, name, miner, labels):
    criterion = build(opt_factory, name, miner)
    loss, grad = run(criterion, labels)
    assert torch.isfinite(loss) and bool(torch.isfinite(grad).all())
    if name in PROXY_LOSSES:
        # Every sample still has its own class proxy and C - 1 others: a well-defined, positive loss.
        assert loss.item() > 0 and int(criterion.last_tuple_count) == len(labels)
    elif miner == "intra_random" and labels == ONE_CLASS:
        # intra_random triplets live inside one class: a class of six samples is exactly what it needs.
        assert int(criterion.last_tuple_count) > 0
    else:
        assert loss.item() == 0.0 and torch.count_nonzero(grad) == 0
        assert int(criterion.last_tuple_count) == 0


def empty_miner(name):
    kind = criteria.REGISTRY[name].MINER_OUTPUT
    if kind == "triplets":
        return ref.FixedMiner([])
    none, empty = torch.empty(0, dtype=torch.long), torch.zeros(0, 6, dtype=torch.bool)
    if kind == "npairs":
        return ref.FixedTuplesMiner(NPairTuples(none, none, empty), "npair")
    return ref.FixedTuplesMiner(LiftedTuples(none, empty, empty), "lifted")


@pytest.mark.parametrize("name", [n for n in LOSSES if criteria.REGISTRY[n].REQUIRES_BATCHMINER])
def test_a_miner_that_finds_nothing_gives_zero(opt_factory, name):
    criterion = criteria.select(name, opt_factory(embed_dim=D), batchminer=empty_miner(name), n_classes=8)
    loss, grad = run(criterion, [0, 0, 1, 1, 2, 2])
    assert loss.item() == 0.0 and torch.count_nonzero(grad) == 0 and int(criterion.last_tuple_count) == 0


@pytest.mark.parametrize("name", ["circle", "histogram", "multisimilarity"])
def test_pair_losses_on_a_batch_with_positives_are_not_degenerate(opt_factory, name):
    criterion = build(opt_factory, name, None)
    loss, grad = run(criterion, [0, 0, 1, 1, 2, 2, 3, 3])
    assert loss.item() > 0 and torch.count_nonzero(grad) > 0 and int(criterion.last_tuple_count) > 0


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, D)

    def forward(self, images):
        feats = images.flatten(1)
        return {"embeds": F.normalize(self.linear(feats), dim=1), "avg_features": feats,
                "features": feats[:, :, None, None]}


def degenerate_steps(criterion, batches):
    torch.manual_seed(0)
    model = TinyModel()
    params = list(model.parameters()) + [p for g in criterion.param_groups() for p in g["params"]]
    optimizer = torch.optim.SGD(params, lr=0.1)
    loader = [(torch.tensor(labels), torch.randn(len(labels), 4), torch.arange(len(labels))) for labels in batches]
    stats = train_one_epoch(model, criterion, optimizer, loader, torch.device("cpu"), 0)
    assert all(torch.isfinite(p).all() for p in params)
    return stats["degenerate_steps"]


@pytest.mark.parametrize("name", ["triplet", "lifted", "npair", "histogram", "circle", "quadruplet"])
def test_the_training_loop_counts_degenerate_steps(opt_factory, name):
    miner = {"lifted": "lifted", "npair": "npair"}.get(name, "semihard")
    criterion = build(opt_factory, name, miner)
    batches = [SINGLETONS, [0, 0, 1, 1, 2, 2], ONE_CLASS, [0, 0, 1, 1, 2, 2]]
    assert degenerate_steps(criterion, batches) == 2


def test_s2sd_step_is_degenerate_when_any_branch_is(opt_factory):
    """softmax (the source) is never degenerate, multisimilarity (the targets) is on singleton classes."""
    opt = opt_factory("--loss", "s2sd", "--loss_s2sd_source", "softmax", "--loss_s2sd_target", "multisimilarity",
                      "--loss_s2sd_target_dims", "6", "10", embed_dim=D)
    s2sd = criteria.select("s2sd", opt, n_classes=8, feature_dim=4)
    assert degenerate_steps(s2sd, [SINGLETONS, [0, 0, 1, 1, 2, 2], SINGLETONS]) == 2
    feats = torch.randn(6, 4)
    s2sd(F.normalize(torch.randn(6, D), dim=1), torch.tensor(SINGLETONS), avg_batch_features=feats)
    assert int(s2sd.source_criterion.last_tuple_count) == 6 and int(s2sd.last_tuple_count) == 0
