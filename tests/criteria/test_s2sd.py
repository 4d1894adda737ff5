"""S2SD: the total against a hand-assembled sum, the KL direction and where its gradient flows."""
import pytest
import torch
import torch.nn.functional as F

import criteria
from criteria.s2sd import similarity_kl
from tests.criteria import reference as ref

B, D, FEAT = 12, 8, 16


def make(opt_factory, *flags, **overrides):
    opt = opt_factory("--loss", "s2sd", "--loss_s2sd_target_dims", "6", "10", *flags,
                      **overrides)
    torch.manual_seed(0)
    return criteria.select("s2sd", opt, n_classes=4, feature_dim=FEAT)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(B, D, generator=g), dim=1).requires_grad_()
    feats = torch.randn(B, FEAT, generator=g).requires_grad_()
    labels = torch.arange(4).repeat_interleave(3)
    return x, feats, labels


def hand_assembled(s2sd, x, feats, labels, feat_on):
    src = ref.multisimilarity_loss(x.double(), labels, 2.0, 40.0, 0.1, 0.5)
    tgt, kls = [], []
    xn = F.normalize(x, dim=1)
    for net in s2sd.target_nets:
        z = F.normalize(net(feats), dim=1)
        tgt.append(ref.multisimilarity_loss(z.double(), labels, 2.0, 40.0, 0.1, 0.5))
        kls.append(ref.kl_rows((z @ z.T).detach().double(), (xn @ xn.T).double(), 2.0))
    total = 0.5 * (src + sum(tgt) / len(tgt)) + 50.0 * sum(kls) / len(kls)
    if feat_on:
        fn = F.normalize(feats, dim=1).detach()
        total = total + 7.0 * ref.kl_rows((fn @ fn.T).double(), (xn @ xn.T).double(), 2.0)
    return total


def test_total_matches_hand_assembled_before_and_after_the_delay(opt_factory):
    s2sd = make(opt_factory, "--loss_s2sd_T", "2", "--loss_s2sd_feat_distill", "--loss_s2sd_feat_w", "7",
                "--loss_s2sd_feat_distill_delay", "2")
    x, feats, labels = inputs()
    for step in range(4):
        assert int(s2sd.iteration) == step
        loss = s2sd(x, labels, avg_batch_features=feats)
        expected = hand_assembled(s2sd, x, feats, labels, feat_on=step >= 2)
        torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert int(s2sd.iteration) == 4


def test_feature_term_changes_the_loss_only_after_the_delay(opt_factory):
    on = make(opt_factory, "--loss_s2sd_feat_distill", "--loss_s2sd_feat_distill_delay", "1")
    off = make(opt_factory)
    x, feats, labels = inputs(1)
    first_on, first_off = on(x, labels, avg_batch_features=feats), off(x, labels, avg_batch_features=feats)
    torch.testing.assert_close(first_on, first_off)
    second_on, second_off = on(x, labels, avg_batch_features=feats), off(x, labels, avg_batch_features=feats)
    assert (second_on - second_off).item() > 1e-4


def test_kl_has_the_target_as_teacher():
    g = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(5, 5, generator=g), torch.randn(5, 5, generator=g)
    torch.testing.assert_close(similarity_kl(teacher, student, 1.5), ref.kl_rows(teacher, student, 1.5))
    assert not torch.allclose(similarity_kl(teacher, student, 1.5), similarity_kl(student, teacher, 1.5))


def test_kl_moves_the_base_embedding_but_not_the_target_heads(opt_factory):
    s2sd = make(opt_factory)
    x, feats, labels = inputs(2)
    total = s2sd(x, labels, avg_batch_features=feats)
    heads = list(s2sd.target_nets.parameters())
    g_total_heads = torch.autograd.grad(total, heads, retain_graph=True)
    g_total_x = torch.autograd.grad(total, x, retain_graph=True)[0]
    # Without the KL terms: 0.5 * (source + mean target).
    without_kl = 0.5 * (s2sd.source_criterion(x, labels)
                        + torch.stack([c(F.normalize(n(feats), dim=1), labels)
                                       for n, c in zip(s2sd.target_nets, s2sd.target_criteria)]).mean())
    g_plain_heads = torch.autograd.grad(without_kl, heads, retain_graph=True)
    g_plain_x = torch.autograd.grad(without_kl, x)[0]
    for a, b in zip(g_total_heads, g_plain_heads):
        torch.testing.assert_close(a, b)
    assert (g_total_x - g_plain_x).abs().max().item() > 1e-4


def test_branch_losses_reach_the_backbone_features(opt_factory):
    s2sd = make(opt_factory)
    x, feats, labels = inputs(3)
    g = torch.autograd.grad(s2sd(x, labels, avg_batch_features=feats), feats)[0]
    assert torch.count_nonzero(g) > 0


def test_heads_are_sized_from_the_backbone_and_pool_aggr_reads_the_feature_map(opt_factory):
    s2sd = make(opt_factory, "--loss_s2sd_pool_aggr")
    assert [n[0].in_features for n in s2sd.target_nets] == [FEAT, FEAT]
    assert [n[2].out_features for n in s2sd.target_nets] == [6, 10]
    fmap = torch.randn(B, FEAT, 3, 3)
    expected = fmap.mean((2, 3)) + fmap.amax((2, 3))
    torch.testing.assert_close(s2sd.branch_input(None, fmap), expected)


def test_sub_criteria_keep_their_own_learning_rates(opt_factory):
    s2sd = make(opt_factory, "--loss_s2sd_source", "margin", "--loss_s2sd_target", "margin",
                "--loss_margin_beta_lr", "0.01", "--lr", "1e-5", "--decay", "0.0004")
    groups = s2sd.param_groups()
    assert groups[0]["name"] == "s2sd_target_nets" and groups[0]["lr"] == 1e-5 and groups[0]["weight_decay"] == 0.0004
    betas = [g for g in groups if g["name"] == "margin_beta"]
    assert len(betas) == 3 and all(g["lr"] == 0.01 for g in betas)
    assert [tuple(g["params"][0].shape) for g in betas] == [(4,)] * 3  # one beta per class, in every branch


def test_iteration_counter_is_saved_in_the_state_dict(opt_factory):
    s2sd = make(opt_factory)
    x, feats, labels = inputs()
    s2sd(x, labels, avg_batch_features=feats)
    state = s2sd.state_dict()
    fresh = make(opt_factory)
    fresh.load_state_dict(state)
    assert int(fresh.iteration) == 1


@pytest.mark.parametrize("miner", ["semihard", "distance", "softhard", "random", "rho_distance"])
def test_miner_losses_inside_s2sd_are_the_sum_of_their_parts(opt_factory, miner):
    """Triplet source, margin targets: the total is 0.5 (source + mean target) + w mean KL on the same mined
    tuples (the same seed replays the miners), each miner serves its own loss with that loss's margin."""
    s2sd = make(opt_factory, "--loss_s2sd_source", "triplet", "--loss_s2sd_target", "margin", "--batch_mining", miner,
                "--loss_triplet_margin", "0.3", "--loss_margin_margin", "0.15")
    x, feats, labels = inputs()
    torch.manual_seed(5)
    loss = s2sd(x, labels, avg_batch_features=feats)
    torch.manual_seed(5)
    source = s2sd.source_criterion(x, labels)
    xn = F.normalize(x, dim=1)
    targets, kls = [], []
    for net, criterion in zip(s2sd.target_nets, s2sd.target_criteria):
        z = F.normalize(net(feats), dim=1)
        targets.append(criterion(z, labels))
        assert int(criterion.last_tuple_count) > 0
        kls.append(ref.kl_rows((z @ z.T).detach(), xn @ xn.T, 1.0))
    expected = 0.5 * (source + sum(targets) / len(targets)) + 50.0 * sum(kls) / len(kls)
    torch.testing.assert_close(loss, expected)
    assert int(s2sd.source_criterion.last_tuple_count) > 0 and loss.item() > 0
    miners = [c.batchminer for c in (s2sd.source_criterion, *s2sd.target_criteria)]
    assert len({id(m) for m in miners}) == 3 and all(m.name == miner for m in miners)
    if miner == "semihard":
        assert [m.margin for m in miners] == [0.3, 0.15, 0.15]
