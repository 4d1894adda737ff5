"""S2SD trains for 3 steps on real glyph images with every loss as source and as target, under every
miner the registry allows, with a finite loss at every step.

One backbone forward per batch is shared by all combinations (the backbone is not what is under test):
each combination trains its own copy of the embedding layer, its S2SD target branches and its losses'
parameters on those features, with feature distillation switched on after the first step.
"""
import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

import architectures
import criteria
import datasets
from tests.conftest import make_opt

pytestmark = pytest.mark.usefixtures("single_thread")

LOSSES = sorted(n for n in criteria.REGISTRY if n != "s2sd")
DEFAULT_MINER = {"triplets": "distance", "npairs": "npair", "lifted": "lifted"}
FLAGS = ["--dataset", "glyphs", "--arch", "slimresnet18_normalize", "--not_pretrained", "--bs", "16",
         "--samples_per_class", "4", "--embed_dim", "16", "--seed", "0", "--lr", "1e-3"]


def kind(name):
    cls = criteria.REGISTRY[name]
    return cls.MINER_OUTPUT if cls.REQUIRES_BATCHMINER else None


def combinations():
    """Each loss as source and target under each miner it allows, then every compatible source/target pair."""
    combos = []
    for name in LOSSES:
        cls = criteria.REGISTRY[name]
        for miner in (criteria.allowed_miners(cls) if cls.REQUIRES_BATCHMINER else ["distance"]):
            combos.append((name, name, miner))
    for source, target in itertools.permutations(LOSSES, 2):
        kinds = {kind(source), kind(target)} - {None}
        if len(kinds) <= 1:
            combos.append((source, target, DEFAULT_MINER[kinds.pop()] if kinds else "distance"))
    return combos


@pytest.fixture(scope="module")
def glyph_batches():
    """Three class-balanced training batches of glyph images through a slim ResNet: (labels, pooled, map)."""
    opt = make_opt(*FLAGS)
    splits = datasets.select("glyphs", opt, opt.source_path)
    torch.manual_seed(0)
    model = architectures.select(opt.arch, opt).eval()
    sampler = datasets.select_sampler("class_random", splits["training"], opt)
    batches = []
    with torch.no_grad():
        for indices in itertools.islice(iter(sampler), 3):
            items = [splits["training"][i] for i in indices]
            labels = torch.tensor([label for label, _, _ in items])
            out = model(torch.stack([image for _, image, _ in items]))
            batches.append((labels, out["avg_features"], out["features"]))
    return model.last_linear, batches, splits["training"].n_classes, model.feature_dim


COMBINATIONS = combinations()


@pytest.mark.parametrize("source,target,miner", COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
def test_three_steps(glyph_batches, source, target, miner):
    last_linear, batches, n_classes, feature_dim = glyph_batches
    opt = make_opt(*FLAGS, "--loss", "s2sd", "--loss_s2sd_source", source, "--loss_s2sd_target", target,
                   "--batch_mining", miner, "--loss_s2sd_target_dims", "12", "24", "--loss_s2sd_feat_distill",
                   "--loss_s2sd_feat_distill_delay", "1")
    torch.manual_seed(1)
    head = copy.deepcopy(last_linear)
    s2sd = criteria.select("s2sd", opt, n_classes=n_classes, feature_dim=feature_dim)
    optimizer = torch.optim.Adam([{"params": head.parameters(), "lr": opt.lr}] + s2sd.param_groups())
    start = [p.detach().clone() for p in head.parameters()]
    for labels, pooled, fmap in batches:
        embeds = F.normalize(head(pooled), dim=1)
        loss = s2sd(embeds, labels, avg_batch_features=pooled, batch_features=fmap)
        assert torch.isfinite(loss), (source, target, miner, float(loss))
        assert int(s2sd.last_tuple_count) > 0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert "feat_kl" in s2sd.last_terms and int(s2sd.iteration) == 3
    assert all(torch.isfinite(p).all() for p in s2sd.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(start, head.parameters()))
