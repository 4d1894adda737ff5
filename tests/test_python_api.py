"""The components outside the CLI: every loss, miner and S2SD built from Python with keyword arguments (no
`parameters`, no `opt`) trains on random tensors; built by the CLI with no flags, each equals the Python
default; the packages export them by class name; the example of docs/python_api.md runs."""
import inspect
import os
import runpy

import pytest
import torch
import torch.nn.functional as F

import architectures
import batchminer
import criteria
import metrics
import parameters
from utilities.flags import options

pytestmark = pytest.mark.usefixtures("single_thread")

N_CLASSES, PER_CLASS, IN_DIM, FEATURE_DIM, EMBED_DIM = 4, 4, 16, 24, 8
LOSSES = [name for name in criteria.REGISTRY if name != "s2sd"]
#: Miners that are not class-discriminative on purpose: their triplets need not separate the classes.
NOT_DISCRIMINATIVE = {"intra_random", "random_distance"}
RUNTIME = {"n_classes": N_CLASSES, "embed_dim": EMBED_DIM, "feature_dim": FEATURE_DIM}


def runtime_facts(cls) -> dict:
    takes = inspect.signature(cls).parameters
    return {fact: value for fact, value in RUNTIME.items() if fact in takes}


def separation(embeds: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean distance to same-class samples over mean distance to other-class samples (lower: better)."""
    dist = torch.cdist(embeds, embeds)
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool)
    return float(dist[same & off_diagonal].mean() / dist[~same].mean())


def train(loss, steps: int = 25, seed: int = 0):
    """Train a linear backbone and head with `loss` on noisy class centres; (separation before, after)."""
    torch.manual_seed(seed)
    centres = torch.randn(N_CLASSES, IN_DIM) * 2
    labels = torch.arange(N_CLASSES).repeat_interleave(PER_CLASS)
    backbone, head = torch.nn.Linear(IN_DIM, FEATURE_DIM), torch.nn.Linear(FEATURE_DIM, EMBED_DIM)
    groups = [{"params": [*backbone.parameters(), *head.parameters()], "lr": 0.02}, *loss.param_groups()]
    optimizer = torch.optim.Adam(groups)
    inputs = centres[labels] + torch.randn(len(labels), IN_DIM)

    def embed():
        pooled = torch.relu(backbone(inputs))
        return pooled, F.normalize(head(pooled), dim=1)

    before = separation(embed()[1].detach(), labels)
    for _ in range(steps):
        pooled, embeds = embed()
        value = loss(embeds, labels, features=pooled) if isinstance(loss, criteria.S2SD) else loss(embeds, labels)
        assert torch.isfinite(value)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return before, separation(embed()[1].detach(), labels)


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_built_from_python_trains(name):
    cls = criteria.REGISTRY[name]
    loss = cls(**runtime_facts(cls))
    before, after = train(loss)
    assert after < 0.8 * before, (name, before, after)
    assert loss.last_tuple_count is not None and int(loss.last_tuple_count) >= 0


@pytest.mark.parametrize("name", list(batchminer.REGISTRY))
def test_every_miner_built_from_python_feeds_a_loss_that_trains(name):
    miner = batchminer.REGISTRY[name]()
    loss = {batchminer.TRIPLETS: criteria.TripletLoss, batchminer.NPAIRS: criteria.NPairLoss,
            batchminer.LIFTED: criteria.LiftedLoss}[miner.OUTPUT](batchminer=miner)
    before, after = train(loss)
    assert int(loss.last_tuple_count) > 0
    if name not in NOT_DISCRIMINATIVE:
        assert after < 0.8 * before, (name, before, after)
    else:
        assert after != before


def test_s2sd_built_from_python_trains_in_any_loop():
    s2sd = criteria.S2SD(criteria.MarginLoss(n_classes=N_CLASSES), lambda width: criteria.ProxyAnchorLoss(N_CLASSES, width),
                         feature_dim=FEATURE_DIM, target_dims=(6, 10), w=10.0, feat_distill=True, feat_distill_delay=5,
                         head_lr=0.02)
    before, after = train(s2sd, steps=25)
    assert after < 0.8 * before and int(s2sd.iteration) == 25
    assert set(s2sd.last_terms) == {"source", "target", "kl", "feat_kl"} and float(s2sd.last_terms["feat_kl"]) > 0
    assert [c.proxies.shape[1] for c in s2sd.target_criteria] == [6, 10]


def test_s2sd_default_is_the_reference_setting_and_features_may_be_pooled_or_a_map():
    s2sd = criteria.S2SD(feature_dim=FEATURE_DIM)
    assert s2sd.target_dims == (512, 1024, 1536, 2048) and (s2sd.temperature, s2sd.w) == (1.0, 50.0)
    assert all(isinstance(c, criteria.MultiSimilarityLoss) for c in (s2sd.source_criterion, *s2sd.target_criteria))
    torch.manual_seed(0)
    embeds = F.normalize(torch.randn(8, EMBED_DIM), dim=1)
    labels = torch.arange(4).repeat_interleave(2)
    fmap = torch.randn(8, FEATURE_DIM, 2, 2)
    pooled = fmap.mean((2, 3))
    reference = s2sd(embeds, labels, avg_batch_features=pooled)
    torch.testing.assert_close(s2sd(embeds, labels, features=pooled), reference)
    torch.testing.assert_close(s2sd(embeds, labels, features=fmap), reference)
    with pytest.raises(ValueError, match="S2SD needs the backbone features"):
        s2sd(embeds, labels)
    with pytest.raises(ValueError, match="1 target criteria for 2 target_dims"):
        criteria.S2SD(target=[criteria.TripletLoss()], feature_dim=FEATURE_DIM, target_dims=(4, 8))


def hyperparameters(obj, params) -> dict:
    return {p: getattr(obj, p) for p in params}


@pytest.mark.parametrize("registry,name", [(criteria.REGISTRY, n) for n in LOSSES + ["s2sd"]]
                         + [(batchminer.REGISTRY, n) for n in batchminer.REGISTRY])
def test_constructor_defaults_are_the_flag_defaults(registry, name):
    """What the CLI passes with no flags equals the constructor's own defaults (the reference's), except the
    reference's SNR rule, which switches the regulariser off under the default --batch_mining distance."""
    cls = registry[name]
    argv = ["--batch_mining", "semihard"] if name == "snr" else []
    given = options(parameters.parse(argv), cls.FLAGS)
    defaults = {p.name: p.default for p in inspect.signature(cls).parameters.values()
                if p.default is not inspect.Parameter.empty}
    assert bool(given) == any(f.param for f in cls.FLAGS), name
    for param, value in given.items():
        expected = defaults[param]
        assert value == (pytest.approx(expected) if isinstance(expected, float) else expected), (name, param)


def test_select_by_name_from_keywords_or_from_flags():
    margin = criteria.select("margin", n_classes=5, margin=0.3)
    assert isinstance(margin, criteria.MarginLoss) and margin.margin == 0.3 and margin.beta.shape == (5,)
    assert isinstance(margin.batchminer, batchminer.DistanceMiner)  # the default miner of a triplet loss
    with pytest.raises(TypeError, match="loss 'proxynca' needs n_classes"):
        criteria.select("proxynca", embed_dim=8)
    opt = parameters.parse(["--loss_margin_margin", "0.25", "--batch_mining", "semihard"])
    margin = criteria.select("margin", opt, n_classes=5)
    assert margin.margin == 0.25 and margin.batchminer.name == "semihard" and margin.batchminer.margin == 0.25
    with pytest.raises(TypeError, match="not both"):
        criteria.select("margin", opt, n_classes=5, margin=0.3)
    assert batchminer.select("distance", upper_cutoff=1.2).upper_cutoff == 1.2
    assert batchminer.select("distance", parameters.parse(["--miner_distance_upper_cutoff", "1.1"])).upper_cutoff == 1.1


def test_a_loss_refuses_a_miner_of_another_kind_with_the_one_message():
    with pytest.raises(Exception) as err:
        criteria.TripletLoss(batchminer=batchminer.NPairMiner())
    assert str(err.value) == ("--batch_mining npair cannot serve --loss triplet; allowed: distance, epdn, ephn, epshn, "
                              "intra_random, parametric, random, random_distance, rho_distance, semihard, softhard")


def test_packages_export_their_components_by_class_name():
    for registry, package in ((criteria.REGISTRY, criteria), (batchminer.REGISTRY, batchminer)):
        for name, cls in registry.items():
            assert getattr(package, cls.__name__) is cls and cls.name == name
    assert callable(metrics.compute_metrics) and callable(criteria.select) and callable(batchminer.select)
    model = architectures.create("slimresnet18_normalize", embed_dim=EMBED_DIM, pretrained=False)
    assert isinstance(model, architectures.EmbeddingNetwork) and model.last_linear.out_features == EMBED_DIM


def test_the_example_trains_s2sd_in_a_plain_loop(capsys):
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "s2sd_in_your_loop.py")
    runpy.run_path(path, run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    losses = [float(line.split("loss ")[1].split()[0]) for line in lines if line.startswith("step")]
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0]
    assert lines[-1].startswith("Recall@1 on new samples: ") and float(lines[-1].split(": ")[1]) >= 0.9


def test_the_python_api_page_names_every_exported_class():
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "python_api.md"), encoding="utf-8") as f:
        page = f.read()
    missing = [cls.__name__ for registry in (criteria.REGISTRY, batchminer.REGISTRY) for cls in registry.values()
               if f"`{cls.__name__}`" not in page]
    assert not missing
