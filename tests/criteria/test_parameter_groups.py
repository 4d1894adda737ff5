"""Losses with parameters declare them with their own learning rate, keep it inside S2SD, and size them by
the embedding they serve (S2SD's target branches have their own widths)."""
import pytest
import torch

import criteria

pytestmark = pytest.mark.usefixtures("single_thread")

LR = 1e-5
EXPECTED = {  # loss -> (flags, parameter attribute, its shape for C classes and width d, expected lr)
    "proxynca": (["--loss_proxynca_lrmulti", "30"], "proxies", lambda c, d: (c, d), LR * 30),
    "proxyanchor": (["--loss_proxyanchor_lrmulti", "70"], "proxies", lambda c, d: (c, d), LR * 70),
    "softmax": (["--loss_softmax_lr", "0.002"], "class_weights", lambda c, d: (c, d), 0.002),
    "arcface": (["--loss_arcface_lr", "0.003"], "class_weights", lambda c, d: (c, d), 0.003),
    "softtriplet": (["--loss_softtriplet_lrmulti", "4", "--loss_softtriplet_n_centroids", "3"], "centroids",
                    lambda c, d: (d, 3 * c), LR * 4),
    "margin": (["--loss_margin_beta_lr", "0.004"], "beta", lambda c, d: (c,), 0.004),
}
PARAMETER_FREE = sorted(set(criteria.REGISTRY) - set(EXPECTED) - {"s2sd"})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_own_group_standalone_and_inside_s2sd(opt_factory, name):
    flags, attr, shape, lr = EXPECTED[name]
    opt = opt_factory("--lr", str(LR), *flags, embed_dim=12)
    standalone = criteria.select(name, opt, n_classes=7)
    [group] = standalone.param_groups()
    assert group["lr"] == pytest.approx(lr) and group["weight_decay"] == 0.0
    assert group["params"] == [getattr(standalone, attr)] and tuple(group["params"][0].shape) == shape(7, 12)

    s2sd_opt = opt_factory("--lr", str(LR), *flags, "--loss", "s2sd", "--loss_s2sd_source", name,
                           "--loss_s2sd_target", name, "--loss_s2sd_target_dims", "6", "10",
                           embed_dim=12)
    s2sd = criteria.select("s2sd", s2sd_opt, n_classes=7, feature_dim=16)
    groups = s2sd.param_groups()[1:]
    assert [g["lr"] for g in groups] == pytest.approx([lr] * 3) and all(g["weight_decay"] == 0.0 for g in groups)
    sizes = [tuple(g["params"][0].shape) for g in groups]
    assert sizes == [shape(7, 6), shape(7, 10), shape(7, 12)]
    owned = {id(p) for p in s2sd.parameters()}
    assert all(id(p) in owned for g in groups for p in g["params"])


@pytest.mark.parametrize("name", PARAMETER_FREE)
def test_parameter_free_losses_declare_no_group(opt_factory, name):
    criterion = criteria.select(name, opt_factory("--loss", name, "--batch_mining",
                                                  criteria.allowed_miners(criteria.REGISTRY[name])[0]
                                                  if criteria.REGISTRY[name].REQUIRES_BATCHMINER else "distance"))
    assert criterion.param_groups() == [] and not list(criterion.parameters())


def test_every_parameter_of_every_loss_is_in_a_group(opt_factory):
    for name in EXPECTED:
        criterion = criteria.select(name, opt_factory(embed_dim=8), n_classes=5)
        grouped = {id(p) for g in criterion.param_groups() for p in g["params"]}
        assert {id(p) for p in criterion.parameters()} == grouped, name


def test_parameters_learn_in_a_step(opt_factory):
    """One optimizer step over the declared groups changes each loss's parameters."""
    for name in EXPECTED:
        criterion = criteria.select(name, opt_factory(embed_dim=8, lr=0.1), n_classes=4)
        optimizer = torch.optim.SGD([{**g, "lr": 0.5} for g in criterion.param_groups()])
        before = [p.detach().clone() for p in criterion.parameters()]
        torch.manual_seed(0)
        x = torch.nn.functional.normalize(torch.randn(8, 8), dim=1)
        criterion(x, torch.arange(4).repeat_interleave(2)).backward()
        optimizer.step()
        assert any(not torch.equal(b, p) for b, p in zip(before, criterion.parameters())), name
