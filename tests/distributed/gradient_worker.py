"""Run under torchrun: DDP's loss, gradients and weights against one process on the same global batch.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed/gradient_worker.py OUT.json

For each case (S2SD with multisimilarity source and targets and feature distillation; margin with the
distance miner) every rank builds the same backbone and criterion twice (same seed): one copy is trained
with DistributedDataParallel on this rank's share of each global batch (whole class groups, as RankShare
cuts them), the others, the references, in this process alone on the whole global batch, with no
collective: `TrainingStep` without `global_batch`. All draw the miner's random numbers from a
`SharedRandomness` of the same seed. Per step the worker records the relative difference of the loss and of
every parameter's gradient against the `lockstep` reference, which takes the DDP weights first; at the end
the relative difference of every weight against the `free` reference, which trained on its own.
It also gathers evaluation shares of different lengths, one empty. Rank 0 writes the results to OUT.json
(the test asserts on them).

The backbone is slimresnet18 with frozen BatchNorm: BatchNorm that trains normalises over each process's
rows unless --sync_bn (GPUs only), so only a per-sample backbone makes the two sides the same function.
"""
from __future__ import annotations

import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

import architectures  # noqa: E402
import criteria  # noqa: E402
import parameters  # noqa: E402
from utilities import distributed  # noqa: E402
from utilities.device import resolve_device  # noqa: E402
from utilities.seeding import seed_everything  # noqa: E402
from utilities.training import TrainingStep  # noqa: E402

COMMON = ["--arch", "slimresnet18_frozen_normalize", "--not_pretrained", "--embed_dim", "16", "--device", "cpu",
          "--bs", "8", "--samples_per_class", "2", "--seed", "5"]
CASES = {
    "s2sd_multisimilarity": ["--loss", "s2sd", "--loss_s2sd_target_dims", "12", "20", "--loss_s2sd_feat_distill",
                             "--loss_s2sd_feat_distill_delay", "1"],
    "margin_distance": ["--loss", "margin", "--batch_mining", "distance"],
}
N_CLASSES, STEPS, LR = 6, 4, 0.05


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (absolute where b is all zeros)."""
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


def global_batch(step: int, batch_size: int):
    """The step's global batch: 16 x 16 random images, whole class groups of 2 from N_CLASSES classes."""
    generator = torch.Generator().manual_seed(1000 + step)
    images = torch.randn(batch_size, 3, 16, 16, generator=generator)
    classes = torch.randperm(N_CLASSES, generator=generator)[:batch_size // 2]
    return images, classes.repeat_interleave(2)


def parameters_of(step: torch.nn.Module) -> dict:
    return {name: p for name, p in step.named_parameters() if p.requires_grad}


def compare(case: str, processes) -> dict:
    opt = parameters.parse(COMMON + CASES[case])
    seed_everything(opt.seed)
    model = architectures.select(opt.arch, opt)
    criterion = criteria.from_opt(opt.loss, opt, n_classes=N_CLASSES, feature_dim=model.feature_dim)

    def single(step_model, step_criterion, **kwargs):
        return TrainingStep(step_model, step_criterion, **kwargs,
                            randomness=distributed.SharedRandomness(opt.seed, torch.device("cpu")))

    # `lockstep` takes our weights before each step (the gradients are compared at the same point);
    # `free` trains on its own (the weights are compared after STEPS steps).
    lockstep = single(copy.deepcopy(model), copy.deepcopy(criterion))
    free = single(copy.deepcopy(model), copy.deepcopy(criterion))
    ours = DistributedDataParallel(single(model, criterion, global_batch=True))
    optimizers = [torch.optim.SGD(list(parameters_of(s).values()), lr=LR, momentum=0.9) for s in (free, ours.module)]
    share = opt.bs // processes.world_size
    rows = slice(processes.rank * share, (processes.rank + 1) * share)
    steps = []
    for step in range(STEPS):
        images, labels = global_batch(step, opt.bs)
        lockstep.load_state_dict(ours.module.state_dict())
        for module in (lockstep, free, ours):
            module.zero_grad(set_to_none=True)
        reference_loss, _ = lockstep(images, labels)
        reference_loss.backward()
        free(images, labels)[0].backward()
        loss, _ = ours(images[rows], labels[rows])
        loss.backward()
        reference_grads = {n: p.grad for n, p in parameters_of(lockstep).items()}
        grads = {n: p.grad for n, p in parameters_of(ours.module).items()}
        assert set(grads) == set(reference_grads)
        worst = max(reference_grads, key=lambda n: relative(grads[n], reference_grads[n]))
        steps.append({"loss": loss.item(), "loss_rel": abs(loss.item() - reference_loss.item()) / abs(reference_loss.item()),
                      "grad_rel": relative(grads[worst], reference_grads[worst]), "worst": worst,
                      "n_grads": len(grads), "grad_norm": sum(g.norm() ** 2 for g in grads.values()).sqrt().item()})
        for optimizer in optimizers:
            optimizer.step()
    weights, free_weights = parameters_of(ours.module), parameters_of(free)
    return {"steps": steps, "weights_rel": max(relative(weights[n], free_weights[n]) for n in weights)}


def main(out: str) -> None:
    torch.set_num_threads(1)
    opt = parameters.parse(COMMON)
    processes = distributed.setup(opt, resolve_device)
    results = {case: compare(case, processes) for case in CASES}
    # evaluation shards of different lengths, one of them empty (a split of fewer batches than processes)
    shares = {"uneven": torch.full((processes.rank + 1, 2), float(processes.rank)),
              "one_empty": torch.arange(6.0).reshape(3, 2) if processes.rank == 0 else None}
    results["gathered"] = {name: distributed.gather_uneven_rows(x).tolist() for name, x in shares.items()}
    gathered = distributed.to_main(results)
    if processes.is_main:
        with open(out, "w") as f:
            json.dump({"world_size": processes.world_size, "ranks": gathered}, f, indent=1)
    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1])
