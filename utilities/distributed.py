"""Several processes with `torchrun`: the process group, the global batch's gathers, and what all ranks agree on.

`torchrun --nproc_per_node N main.py ...` starts N processes and sets RANK, WORLD_SIZE and LOCAL_RANK;
`setup(opt)` joins them into one process group (NCCL on GPUs, gloo on CPUs) and picks the device from
LOCAL_RANK. A plain `python main.py` sets none of them: `setup` then makes no process group, every gather
below is the identity and every reduction returns its input, so a single process runs exactly as before.

The global batch is the batch (README "Several GPUs"): each rank holds `--bs / world_size` rows of it, whole
class groups (`RankShare`), and every batch-level computation sees all of them through `gather_rows`, which
carries gradients. Every rank then computes the same loss of the global batch L(x_1..x_B). The gather's
backward sums the W ranks' (identical) gradients into each rank's own rows, dL/dx_i * W, and DDP averages
the parameter gradients over the W ranks, so each parameter gets

    1/W * sum_r W * sum_{i on r} dL/dx_i dx_i/dtheta = dL/dtheta,

the single-process gradient of the same global batch (tests/distributed/ checks it to 1e-5). A parameter
used after the gather (a margin beta, a proxy) gets dL/dtheta on every rank, which the average keeps.

Random draws of the loss (a miner's) must be the same on every rank: under several processes they come
from `SharedRandomness`, one stream seeded alike on all ranks; the augmentations come from per-rank streams
(`rank_seed`), so the ranks' images are not augmented alike.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from utilities.errors import UsageError
from utilities.seeding import seed_everything

#: The variables torchrun sets for every process it starts.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Processes:
    """Where this process stands: its rank among `world_size` processes, its rank on its machine, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run folder and prints."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        """More than one process: batch-level computations need gathers."""
        return self.world_size > 1


#: This process's place, set by `setup` (a plain run keeps the default: rank 0 of 1).
_current = Processes()


def current() -> Processes:
    return _current


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in LAUNCH_VARIABLES)


def launched_world_size() -> int:
    """WORLD_SIZE of a torchrun launch, 1 for a plain run (readable before the process group exists)."""
    return int(os.environ["WORLD_SIZE"]) if launched_by_torchrun() else 1


def check_options(opt, world_size: int) -> None:
    """What several processes need of the flags, checked at parse time: the batch splits into whole class
    groups per process, the sampler is class_random, --sync_bn runs on GPUs."""
    if world_size == 1:
        return
    check_batch_share(opt.bs, opt.samples_per_class, world_size)
    if opt.data_sampler != "class_random":
        raise UsageError(f"--data_sampler {opt.data_sampler}: several processes (torchrun) support class_random only, "
                         "whose global batches every process draws alike; use --data_sampler class_random")
    if opt.sync_bn and (opt.device == "cpu" or not torch.cuda.is_available()):
        raise UsageError("--sync_bn: SyncBatchNorm runs on GPUs only; drop it for a CPU run")


def launch_device(opt, local_rank: int) -> torch.device:
    """The device of the process with `local_rank` under torchrun: cuda:LOCAL_RANK unless --device cpu."""
    if opt.device == "cpu" or (opt.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available on this machine; use --device cpu")
    if local_rank >= torch.cuda.device_count():
        raise UsageError(f"torchrun: process {local_rank} of this machine has no GPU (only "
                         f"{torch.cuda.device_count()} visible); give --nproc_per_node at most that many")
    return torch.device("cuda", local_rank)


def setup(opt, resolve_single) -> Processes:
    """Join the torchrun process group when this process was started by torchrun; returns its `Processes`.

    `resolve_single(opt)` picks the device of a plain single-process run (utilities.device.resolve_device).
    Under torchrun the device comes from LOCAL_RANK (choose GPUs with CUDA_VISIBLE_DEVICES; --gpu is ignored
    with a warning), the backend is NCCL on CUDA and gloo on the CPU, and every collective gives up after
    --dist_timeout seconds, so a rank that died or hangs ends the job instead of blocking it.
    """
    global _current
    if not launched_by_torchrun():
        _current = Processes(device=resolve_single(opt))
        return _current
    rank, world_size, local_rank = (int(os.environ[name]) for name in LAUNCH_VARIABLES)
    device = launch_device(opt, local_rank)
    if opt.gpu is not None and rank == 0:
        warnings.warn(f"--gpu {' '.join(map(str, opt.gpu))}: under torchrun each process uses the GPU of its "
                      "LOCAL_RANK; choose the GPUs with CUDA_VISIBLE_DEVICES")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=opt.dist_timeout),
                                device_id=device if device.type == "cuda" else None)
    _current = Processes(rank=rank, world_size=world_size, local_rank=local_rank, device=device)
    return _current


def lost_contact(err: BaseException) -> bool:
    """Whether `err` is a collective that failed because another process died or hung (gloo raises a plain
    RuntimeError naming itself, NCCL a DistBackendError)."""
    text = str(err)
    return isinstance(err, dist.DistError) or "gloo" in text or "NCCL" in text


def teardown() -> None:
    """Leave the process group (at the end of a torchrun run; nothing for a plain one)."""
    global _current
    if dist.is_initialized():
        dist.destroy_process_group()
    _current = Processes(device=_current.device)


def stream_seed(seed: int, *key: int) -> int:
    """An independent 32-bit seed for the stream named `key` of a run seeded `seed` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([seed, *key]).generate_state(1, np.uint32)[0])


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s own random streams (augmentations, workers, torch's global generator):
    `seed` itself on rank 0, so a one-process torchrun run draws what `python main.py` draws, and an
    independent seed elsewhere."""
    return seed if rank == 0 else stream_seed(seed, 1, rank)


def seed_process(seed: int) -> None:
    """Give this process its own random streams once the (identical) model and criterion are built: ranks
    other than 0 reseed Python, numpy and torch with `rank_seed`, so e.g. an in-memory dataset's
    augmentations, drawn in the main process, differ between processes; rank 0 keeps `seed`'s streams."""
    if _current.rank != 0:
        seed_everything(rank_seed(seed, _current.rank))


# ------------------------------------------------------------------------------------------------ gathers


class _GatherRows(torch.autograd.Function):
    """All ranks' rows in rank order; backward: each rank's rows get the sum over ranks of the gradient
    that arrives for them (a reduce-scatter: NCCL's own, or an all-reduce and this rank's slice on gloo)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return gather_rows_detached(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        rows = grad.shape[0] // _current.world_size
        if dist.get_backend() == "nccl":
            mine = torch.empty((rows, *grad.shape[1:]), dtype=grad.dtype, device=grad.device)
            dist.reduce_scatter_tensor(mine, grad)
            return mine
        dist.all_reduce(grad)
        return grad[_current.rank * rows:(_current.rank + 1) * rows]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows of `x`, in rank order, with gradient (identity for one process). Every rank must pass
    the same number of rows (the batch share of `RankShare`)."""
    if not _current.several:
        return x
    return _GatherRows.apply(x) if x.requires_grad else gather_rows_detached(x)


def gather_rows_detached(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows of `x`, in rank order, without gradient (identity for one process)."""
    if not _current.several:
        return x
    x = x.detach().contiguous()
    parts = [torch.empty_like(x) for _ in range(_current.world_size)]
    dist.all_gather(parts, x)
    return torch.cat(parts)


def gather_uneven_rows(x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """All ranks' rows of `x` in rank order when ranks hold different numbers of rows (an evaluation shard;
    None for a rank whose shard is empty): each pads to the longest share for the collective and the padding
    is cut off again, so no row is repeated. Moves `x` to this process's device for NCCL and returns the
    result where `x` was (an empty share: on this process's kind of device where the first non-empty was)."""
    if not _current.several:
        return x
    shapes = [None] * _current.world_size
    dist.all_gather_object(shapes, None if x is None else (tuple(x.shape), x.dtype, x.device.type))
    shape, dtype, kind = next(s for s in shapes if s is not None)
    home = _current.device if kind == _current.device.type else torch.device(kind)
    counts = [0 if s is None else s[0][0] for s in shapes]
    padded = torch.zeros((max(counts), *shape[1:]), dtype=dtype, device=_current.device)
    if x is not None:
        padded[:x.shape[0]] = x.detach().to(_current.device)
        home = x.device
    parts = gather_rows_detached(padded).split(max(counts))
    return torch.cat([part[:n] for part, n in zip(parts, counts)]).to(home)


# ---------------------------------------------------------------------------------------------- agreement


def any_rank(flag: bool | torch.Tensor) -> bool:
    """Whether `flag` is true on any rank (a collective: every rank must call it at the same point)."""
    if not _current.several:
        return bool(flag)
    value = torch.as_tensor(flag, device=_current.device).to(torch.int32).reshape(1)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def rank_mean(values: dict) -> dict:
    """The mean over ranks of each number in `values` (identity for one process)."""
    if not _current.several or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_current.device)
    dist.all_reduce(tensor)
    return dict(zip(keys, (tensor / _current.world_size).tolist()))


def rank_max(value: float) -> float:
    """The largest `value` over ranks (identity for one process)."""
    if not _current.several:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_current.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def from_main(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (a picklable object; identity for one process)."""
    if not _current.several:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def to_main(obj: Any) -> Optional[List[Any]]:
    """Every rank's `obj`, in rank order, on rank 0 (None elsewhere); `[obj]` for one process."""
    if not _current.several:
        return [obj]
    gathered = [None] * _current.world_size if _current.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def barrier() -> None:
    """Wait for every process (nothing for one)."""
    if _current.several:
        dist.barrier()


def share_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every process, as DDP hands them out at the start of
    each forward: after the last step of an epoch each process has updated its own from its rows, and the
    evaluation, whose shards every process embeds, must use one model (identity for one process)."""
    if _current.several:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


# ---------------------------------------------------------------------------------------------- randomness


class SharedRandomness:
    """torch's random stream for the draws that every rank must make alike: the miners' (distance-weighted
    negatives, random positives), which choose among the rows of the gathered global batch.

    `with shared():` swaps this stream in for torch's CPU generator and the CUDA generator of `device`,
    and swaps the process's own streams back afterwards. Seeded alike on every rank from `seed`, it stays
    alike because every rank makes the same draws on the same global batch. `state_dict()` is what a
    checkpoint keeps of it.
    """

    def __init__(self, seed: int, device: torch.device):
        self.device = torch.device(device)
        self.cpu_state = torch.Generator().manual_seed(seed).get_state()
        self.cuda_state = (torch.Generator(device=self.device).manual_seed(seed).get_state()
                           if self.device.type == "cuda" else None)

    @contextlib.contextmanager
    def __call__(self):
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else [], device_type="cuda"):
            torch.set_rng_state(self.cpu_state)
            if cuda:
                torch.cuda.set_rng_state(self.cuda_state, self.device)
            yield
            self.cpu_state = torch.get_rng_state()
            if cuda:
                self.cuda_state = torch.cuda.get_rng_state(self.device)

    def state_dict(self) -> dict:
        return {"cpu": self.cpu_state, "cuda": self.cuda_state}

    def load_state_dict(self, state: dict) -> None:
        self.cpu_state = state["cpu"]
        if state["cuda"] is not None and self.device.type == "cuda":
            self.cuda_state = state["cuda"]


def loss_randomness(seed: int, device: torch.device) -> Optional[SharedRandomness]:
    """The stream the loss draws from: under several processes a `SharedRandomness` (seeded apart from every
    process's own streams), else None: torch's own streams, so a plain run draws exactly what it always drew."""
    return SharedRandomness(stream_seed(seed, 0), device) if _current.several else None


def agreed(read: Callable[[], bool], every: int = 1) -> Callable[[], bool]:
    """A yes/no question (should the run stop?) that every process answers alike: under several processes
    the answers are combined (any) at every `every`-th call, a collective, and the answer is no in between
    (each process asks at the same steps); for one process `read` itself."""
    if not _current.several:
        return read
    calls = [0]

    def ask() -> bool:
        calls[0] += 1
        return calls[0] % every == 0 and any_rank(read())

    return ask


def parallel(step: nn.Module, sync_bn: bool = False) -> nn.Module:
    """The training step as each process runs it: under torchrun wrapped in DistributedDataParallel (on the
    process's GPU, or the CPU), whose backward averages the gradients of every parameter across processes,
    with the backbone's BatchNorm layers synchronised across processes when `sync_bn`; a plain run's step
    is returned as it is."""
    if not dist.is_initialized():
        return step
    if sync_bn:
        nn.SyncBatchNorm.convert_sync_batchnorm(step.model)
    cuda = _current.device.type == "cuda"
    return DistributedDataParallel(step, device_ids=[_current.device] if cuda else None)


def reduce_epoch_stats(stats: dict) -> dict:
    """An epoch's statistics over the processes: the mean of each loss term (the same global-batch loss on
    every process) and of the degenerate steps (counted on the global batch, so the same everywhere), the
    largest `seconds` (the epoch lasts as long as its slowest process)."""
    reduced = rank_mean({k: v for k, v in stats.items() if k != "seconds"})
    reduced["degenerate_steps"] = round(reduced["degenerate_steps"])
    return {**reduced, "seconds": rank_max(stats["seconds"])}


# ------------------------------------------------------------------------------------------------ batches


def check_batch_share(batch_size: int, samples_per_class: int, world_size: int) -> None:
    """--bs must split into whole class groups per rank: divisible by world_size x samples_per_class."""
    if world_size > 1 and batch_size % (world_size * samples_per_class):
        raise UsageError(f"--bs {batch_size} must be divisible by the number of processes x --samples_per_class "
                         f"({world_size} x {samples_per_class} = {world_size * samples_per_class}): each process "
                         "takes whole class groups of the global batch")


class RankShare:
    """A batch sampler's share for one rank: every rank draws the same global batch (the wrapped sampler is
    seeded alike) and takes its `1 / world_size` slice, whole class groups of `samples_per_class` rows, so
    the ranks' slices concatenated in rank order are the global batch. State is the wrapped sampler's."""

    def __init__(self, batch_sampler, rank: int, world_size: int):
        self.batch_sampler = batch_sampler
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        for indices in self.batch_sampler:
            share = len(indices) // self.world_size
            yield indices[self.rank * share:(self.rank + 1) * share]

    def state_dict(self) -> dict:
        return self.batch_sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.load_state_dict(state)


def evaluation_rows(n_items: int, batch_size: int) -> range:
    """This rank's rows of an evaluated split: a contiguous run of whole evaluation batches (the batches of
    a single process, so each embedding is computed from the same batch, bit for bit), ranks in order."""
    n_batches = -(-n_items // batch_size)
    rank, world = _current.rank, _current.world_size
    first, last = rank * n_batches // world, (rank + 1) * n_batches // world
    return range(min(first * batch_size, n_items), min(last * batch_size, n_items))
