"""Mixed precision (utilities/precision.py): bf16 autocast against fp32, the fp32 boundary, fp16 with a grad
scaler, and the kernel choices."""
import contextlib
import copy

import pytest
import torch

import architectures
import criteria
from tests.conftest import make_opt
from utilities import precision as precision_module
from utilities.precision import Precision

CPU = torch.device("cpu")


def quickstart_parts(seed=0):
    """The quickstart's S2SD (multisimilarity, feature distillation on) on a frozen-BatchNorm slim ResNet-18, as
    the paper recipe's frozen ResNet-50; 16 classes x 2 images of 32 x 32."""
    opt = make_opt("--dataset", "glyphs", "--arch", "slimresnet18_frozen_normalize", "--not_pretrained",
                   "--embed_dim", "32", "--loss", "s2sd", "--loss_s2sd_target_dims", "64", "128",
                   "--loss_s2sd_feat_distill", "--loss_s2sd_feat_distill_delay", "0")
    torch.manual_seed(seed)
    model = architectures.select(opt.arch, opt)
    criterion = criteria.from_opt("s2sd", opt, n_classes=16, feature_dim=model.feature_dim)
    images = torch.randn(32, 3, 32, 32)
    labels = torch.arange(16).repeat_interleave(2)
    return model, criterion, images, labels


def loss_and_gradients(model, criterion, images, labels, precision, criterion_context=contextlib.nullcontext):
    model.zero_grad(set_to_none=True)
    criterion.zero_grad(set_to_none=True)
    with precision.autocast():
        out = model(images)
    with criterion_context():
        loss = criterion(out["embeds"], labels, avg_batch_features=out["avg_features"], batch_features=out["features"])
    loss.backward()
    parameters = [p for p in [*model.parameters(), *criterion.parameters()] if p.grad is not None]
    return out, loss, torch.cat([p.grad.flatten() for p in parameters])


def test_a_bf16_autocast_step_gives_the_fp32_loss_and_gradients():
    """bf16 keeps 8 significant bits (unit roundoff 2^-9 = 0.2 %). The trunk's 17 convolutions run in bf16, so
    the gradient (over all weights) is off by 8.7 % in L2 (cosine 0.996); the loss, computed in fp32 from fp32
    embeddings, is off by 0.008 %. Tolerances: loss 0.1 %, gradient 15 % in L2 and cosine 0.99. Running the
    criterion under autocast too (similarities and softmax in bf16) breaks both: 6.9 % and 26 %."""
    model, criterion, images, labels = quickstart_parts()
    conv_outputs = []
    hook = model.trunk.layer4[1].conv2.register_forward_hook(lambda m, i, o: conv_outputs.append(o.dtype))
    _, loss32, grad32 = loss_and_gradients(model, criterion, images, labels, Precision(CPU))
    bf16 = Precision(CPU, torch.bfloat16)
    out, loss16, grad16 = loss_and_gradients(model, criterion, images, labels, bf16)
    hook.remove()
    assert conv_outputs == [torch.float32, torch.bfloat16]  # the trunk ran in bf16 ...
    assert {k: v.dtype for k, v in out.items()} == dict.fromkeys(out, torch.float32)  # ... its outputs are fp32
    assert loss16.dtype == torch.float32
    assert abs(loss16.item() - loss32.item()) <= 1e-3 * abs(loss32.item())
    assert (grad16 - grad32).norm() <= 0.15 * grad32.norm()
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) >= 0.99

    _, broken, broken_grad = loss_and_gradients(model, criterion, images, labels, bf16, criterion_context=bf16.autocast)
    assert abs(broken.item() - loss32.item()) > 1e-3 * abs(loss32.item()) or \
        (broken_grad - grad32).norm() > 0.15 * grad32.norm()  # the tolerances would catch a lost fp32 boundary


def small_parts():
    """A two-convolution embedding network and multisimilarity on 8 classes x 2 images of 8 x 8."""
    from architectures.base import EmbeddingNetwork

    torch.manual_seed(1)
    trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3))
    model = EmbeddingNetwork(trunk, 16, 8, normalize=True, double=False, frozen=False, name="small")
    criterion = criteria.select("multisimilarity")
    return model, criterion, torch.randn(16, 3, 8, 8), torch.arange(8).repeat_interleave(2)


def test_fp16_scales_the_loss_and_skips_a_step_with_infinite_gradients():
    model, criterion, images, labels = small_parts()
    fp16 = Precision(CPU, torch.float16, scaler=torch.amp.GradScaler("cpu", init_scale=2.0**10))
    optimizer = torch.optim.Adam([*model.parameters(), *criterion.parameters()], lr=1e-3)
    weight = model.last_linear.weight
    before = weight.detach().clone()
    with fp16.autocast():
        out = model(images)
    assert out["features"].dtype == torch.float32
    loss = criterion(out["embeds"], labels, avg_batch_features=out["avg_features"], batch_features=out["features"])
    fp16.backward_and_step(loss, optimizer)
    assert not torch.equal(weight, before) and fp16.scaler.get_scale() == 2.0**10
    moved = weight.detach().clone()
    with fp16.autocast():
        out = model(images)
    loss = criterion(out["embeds"], labels, avg_batch_features=out["avg_features"], batch_features=out["features"])
    fp16.backward_and_step(loss * float("inf"), optimizer)
    assert torch.equal(weight, moved) and fp16.scaler.get_scale() == 2.0**9  # skipped, scale halved
    state = fp16.state_dict()
    fresh = Precision(CPU, torch.float16, scaler=torch.amp.GradScaler("cpu"))
    fresh.load_state_dict(state)
    assert fresh.scaler.get_scale() == 2.0**9


def test_amp_choices_and_kernel_options():
    cuda = torch.device("cuda", 0)
    assert precision_module.resolve_amp("auto", CPU) is None
    assert precision_module.resolve_amp("bf16", CPU) == torch.bfloat16
    assert precision_module.resolve_amp("fp16", CPU) == torch.float16 and precision_module.resolve_amp("off", cuda) is None
    assert precision_module.optimizer_options(torch.optim.Adam, CPU) == {}
    assert precision_module.optimizer_options(torch.optim.Adam, cuda) == {"fused": True}
    assert precision_module.optimizer_options(torch.optim.SGD, cuda) == {"fused": True}
    assert precision_module.deterministic(make_opt(), CPU) and not precision_module.deterministic(make_opt(), cuda)
    assert precision_module.deterministic(make_opt("--deterministic"), cuda)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    optimizer.load_state_dict({"state": {}, "param_groups": [{**optimizer.param_groups[0], "params": [0], "fused": True}]})
    precision_module.keep_kernel_options(optimizer, {})
    assert optimizer.param_groups[0]["fused"] is None  # a CUDA checkpoint resumes on the CPU


def test_channels_last_only_for_convolutional_backbones_on_cuda():
    model, *_ = quickstart_parts()
    patch_embedding = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 4), torch.nn.Flatten(), torch.nn.Linear(8, 8))
    assert precision_module.is_convolutional(model) and not precision_module.is_convolutional(patch_embedding)
    assert Precision.build(make_opt(), torch.device("cpu"), model).channels_last is False
    images = torch.zeros(2, 3, 8, 8)
    assert Precision(CPU, channels_last=True).prepare_images(images).is_contiguous(memory_format=torch.channels_last)


def test_deterministic_kernels_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", torch.backends.cudnn.deterministic)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, warn_only=False: calls.append((mode, warn_only)))
    precision_module.configure_kernels(torch.device("cuda", 0), exact=False)
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic and calls == [(False, True)]
    precision_module.configure_kernels(torch.device("cuda", 0), exact=True)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert calls[-1] == (True, True) and precision_module.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


@pytest.mark.parametrize("amp,expected", [("auto", "fp32"), ("bf16", "bf16"), ("fp16", "fp16")])
def test_precision_build_on_the_cpu(amp, expected):
    built = Precision.build(make_opt("--amp", amp), CPU)
    assert built.name == expected and (built.scaler is not None) == (amp == "fp16")


@pytest.mark.slow
def test_compile_gives_the_eager_loss_and_gradients_and_keeps_the_state_dict_keys():
    """`--compile` (inductor, C++ kernels on the CPU) on S2SD with feature distillation and two heads: the fused
    kernels sum in another order, so the loss and the gradient differ in the last bits only (measured: 2.6e-6 and
    3.3e-6 relative; tolerance 1e-4). The keys stay the same, so checkpoints of compiled runs load eagerly.
    About 15 s, all compilation."""
    from criteria.s2sd import S2SD

    model, _, images, labels = small_parts()
    torch.manual_seed(0)
    criterion = S2SD(feature_dim=16, target_dims=(32, 64), w=10, feat_distill=True, feat_distill_delay=0)
    _, eager_loss, eager_grad = loss_and_gradients(model, criterion, images, labels, Precision(CPU))
    compiled_model, compiled_criterion = copy.deepcopy(model), copy.deepcopy(criterion)
    precision_module.compile_modules(compiled_model, compiled_criterion)
    _, loss, grad = loss_and_gradients(compiled_model, compiled_criterion, images, labels, Precision(CPU))
    assert compiled_model._compiled_call_impl is not None and compiled_criterion._compiled_call_impl is not None
    assert abs(loss.item() - eager_loss.item()) <= 1e-4 * abs(eager_loss.item())
    assert (grad - eager_grad).norm() <= 1e-4 * eager_grad.norm()
    assert list(compiled_model.state_dict()) == list(model.state_dict())
    assert list(compiled_criterion.state_dict()) == list(criterion.state_dict())
