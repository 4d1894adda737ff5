"""The paper recipe's criterion waits for no GPU result: S2SD on multisimilarity (four heads, feature
distillation on) and the proxy and classification losses trace into one graph with `torch._dynamo.explain`,
so they contain no `.item()`, no `nonzero` and no boolean-mask indexing, the operations whose output shape
depends on the data and which make the host wait for the GPU (issue 10, item 6). Checked on the CPU, where the
trace is the same.

The tuple losses are not here: a miner returns as many tuples as the batch has (the distance miner drops
anchors without a positive, semihard keeps the triplets it finds), one data-dependent shape per call."""
import pytest
import torch

import criteria
import parameters
from benchmarks import recipe_speed


def graph_breaks(criterion, *args, **kwargs):
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(criterion)(*args, **kwargs)
    return explanation.graph_break_count, [str(reason.reason).splitlines()[0] for reason in explanation.break_reasons]


def batch(n_classes=56, dim=128):
    torch.manual_seed(0)
    embeds = torch.nn.functional.normalize(torch.randn(2 * n_classes, dim), dim=1).requires_grad_()
    return embeds, torch.arange(n_classes).repeat_interleave(2)


def test_the_recipe_s2sd_criterion_traces_into_one_graph():
    opt = parameters.parse(recipe_speed.RECIPE)
    criterion = criteria.from_opt("s2sd", opt, n_classes=56, feature_dim=2048)
    criterion.iteration.fill_(opt.loss_s2sd_feat_distill_delay + 1)  # feature distillation on
    embeds, labels = batch()
    features = torch.randn(len(labels), 2048, 7, 7)
    assert graph_breaks(criterion, embeds, labels, avg_batch_features=features.mean((2, 3)),
                        batch_features=features) == (0, [])


@pytest.mark.parametrize("loss", ["multisimilarity", "proxyanchor", "proxynca", "arcface", "softmax", "softtriplet",
                                  "histogram"])
def test_losses_without_a_miner_trace_into_one_graph(loss):
    criterion = criteria.from_opt(loss, parameters.parse(["--loss", loss]), n_classes=56, embed_dim=128)
    assert graph_breaks(criterion, *batch()) == (0, [])
