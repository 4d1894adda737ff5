"""Backbone outputs, modifiers, optimizer groups and where ImageNet weights come from."""
import pytest
import torch
import torch.nn as nn

import architectures
from utilities.errors import UsageError


def build(opt_factory, arch, *flags):
    return architectures.select(arch, opt_factory("--not_pretrained", "--embed_dim", "24", *flags))


@pytest.mark.parametrize("arch,feature_dim,size,fmap", [("slimresnet18", 256, 32, 1), ("resnet18", 512, 64, 2),
                                                        ("resnet50", 2048, 64, 2)])
def test_output_dict_shapes_and_backward(opt_factory, arch, feature_dim, size, fmap):
    model = build(opt_factory, arch)
    out = model(torch.randn(3, 3, size, size))
    assert model.feature_dim == feature_dim
    assert out["embeds"].shape == (3, 24) and out["avg_features"].shape == (3, feature_dim)
    assert out["features"].shape == (3, feature_dim, fmap, fmap)
    out["embeds"].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_modifiers(opt_factory):
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    plain = build(opt_factory, "slimresnet18").eval()
    torch.manual_seed(0)
    both = build(opt_factory, "slimresnet18_normalize_double").eval()
    out_plain, out_both = plain(x), both(x)
    torch.testing.assert_close(out_both["embeds"].norm(dim=1), torch.ones(2))
    fmap = out_both["features"]
    torch.testing.assert_close(out_both["avg_features"], fmap.mean((2, 3)) + fmap.amax((2, 3)))
    torch.testing.assert_close(out_plain["avg_features"], fmap.mean((2, 3)))
    assert architectures.parse_arch("resnet50_frozen_normalize") == architectures.parse_arch("resnet50_normalize_frozen")


def test_frozen_batchnorm_keeps_its_statistics_in_train_mode(opt_factory):
    model = build(opt_factory, "slimresnet18_frozen").train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [bn.running_mean.clone() for bn in bns]
    model(torch.randn(4, 3, 32, 32))
    assert all(not bn.training for bn in bns)
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(before, bns))
    assert all(bn.weight.requires_grad for bn in bns)
    unfrozen = build(opt_factory, "slimresnet18").train()
    unfrozen(torch.randn(4, 3, 32, 32))
    assert any(not torch.equal(torch.zeros_like(bn.running_mean), bn.running_mean)
               for bn in unfrozen.modules() if isinstance(bn, nn.BatchNorm2d))


def test_fc_lr_splits_the_embedding_layer(opt_factory):
    opt = opt_factory("--not_pretrained", "--fc_lr", "0.01", "--lr", "0.001", "--decay", "0.1")
    model = architectures.select("slimresnet18", opt)
    body, head = model.param_groups(opt)
    assert head["lr"] == 0.01 and body["lr"] == 0.001 and body["weight_decay"] == head["weight_decay"] == 0.1
    assert {id(p) for p in head["params"]} == {id(p) for p in model.last_linear.parameters()}
    assert len(body["params"]) + len(head["params"]) == len(list(model.parameters()))


def test_missing_weights_say_where_to_put_them(opt_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UsageError) as err:
        architectures.select("resnet50_frozen_normalize", opt_factory())
    message = str(err.value)
    assert "\n" not in message
    assert f"put resnet50-0676ba61.pth in {tmp_path}/hub/checkpoints/" in message
    assert "--pretrained_path FILE" in message and "--not_pretrained" in message


def test_weights_load_from_the_cache_and_from_pretrained_path(opt_factory, tmp_path, monkeypatch):
    from torchvision.models import resnet18
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = resnet18()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    model = architectures.select("resnet18", opt_factory())
    torch.testing.assert_close(model.trunk.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    # Cadene pretrainedmodels names the classifier last_linear; it is ignored either way.
    state = {("last_linear." + k[3:] if k.startswith("fc.") else k): v for k, v in reference.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "cadene.pth")
    model = architectures.select("resnet18", opt_factory("--pretrained_path", str(tmp_path / "cadene.pth")))
    torch.testing.assert_close(model.trunk.conv1.weight, reference.conv1.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(UsageError, match="is not a resnet18 state dict"):
        architectures.select("resnet18", opt_factory("--pretrained_path", str(tmp_path / "wrong.pth")))


def test_slimresnet_has_no_imagenet_weights(opt_factory):
    with pytest.raises(UsageError, match="slimresnet18 has no ImageNet weights; pass --not_pretrained"):
        architectures.select("slimresnet18", opt_factory())
