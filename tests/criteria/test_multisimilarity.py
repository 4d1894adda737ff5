"""multisimilarity against a loop over anchors with the reference's pair mining."""
import pytest
import torch
import torch.nn.functional as F

import criteria
from tests.criteria import reference as ref


@pytest.mark.parametrize("seed,per_class", [(0, 2), (1, 3), (2, 4)])
def test_matches_loop_value_and_gradient(opt_factory, seed, per_class):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(5).repeat_interleave(per_class)
    x = F.normalize(torch.randn(len(labels), 16, generator=g), dim=1).double().requires_grad_()
    opt = opt_factory()
    loss = criteria.select("multisimilarity", opt)(x, labels)
    expected = ref.multisimilarity_loss(x, labels, 2.0, 40.0, 0.1, 0.5)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(torch.autograd.grad(loss, x)[0], torch.autograd.grad(expected, x)[0])


def test_mining_skips_anchors_and_counts_them(opt_factory):
    # Two tight, far-apart classes: every negative is far below min positive - eps, so no anchor qualifies.
    x = torch.tensor([[1.0, 0.0], [0.999, 0.0447], [-1.0, 0.0], [-0.999, 0.0447]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    criterion = criteria.select("multisimilarity", opt_factory())
    loss = criterion(x, labels)
    assert loss.item() == 0.0 and int(criterion.last_tuple_count) == 0
    assert torch.count_nonzero(torch.autograd.grad(loss, x)[0]) == 0


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [0, 0, 0, 0]])
def test_degenerate_batches_give_zero_not_nan(opt_factory, labels):
    x = F.normalize(torch.randn(4, 8), dim=1).requires_grad_()
    loss = criteria.select("multisimilarity", opt_factory())(x, torch.tensor(labels))
    assert loss.item() == 0.0
    assert torch.count_nonzero(torch.autograd.grad(loss, x)[0]) == 0
