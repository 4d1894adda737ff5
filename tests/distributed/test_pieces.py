"""The pieces of utilities/distributed.py that need no second process: the batch shares, the evaluation
shards, the flag checks, the random streams, a plain run's identities, and the DDP wrapper with --sync_bn
(on a one-process gloo group)."""
import numpy as np
import pytest
import torch
import torch.distributed as dist

import parameters
from datasets.samplers import ClassRandomSampler
from tests.conftest import make_opt
from utilities import distributed
from utilities.errors import UsageError
from utilities.training import TrainingStep


@pytest.fixture
def as_rank(monkeypatch):
    """as_rank(rank, world_size): this process believes it is that rank (no process group)."""
    def become(rank: int, world_size: int):
        monkeypatch.setattr(distributed, "_current", distributed.Processes(rank=rank, world_size=world_size))
    return become


@pytest.mark.parametrize("world_size", [2, 4])
def test_the_ranks_shares_are_whole_class_groups_that_make_up_the_global_batch(world_size):
    labels = np.repeat(np.arange(6), 4)
    batches = list(ClassRandomSampler(labels, 8, 2, seed=7))
    shares = [list(distributed.RankShare(ClassRandomSampler(labels, 8, 2, seed=7), rank, world_size))
              for rank in range(world_size)]
    for step, batch in enumerate(batches):
        assert sum((share[step] for share in shares), []) == batch
        for share in shares:
            groups = labels[share[step]].reshape(-1, 2)
            assert len(share[step]) == 8 // world_size and (groups[:, 0] == groups[:, 1]).all()


@pytest.mark.parametrize("n_items", [0, 1, 7, 8, 20, 24, 41])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_evaluation_shards_are_whole_batches_that_cover_the_split_once_in_order(as_rank, n_items, world_size):
    rows = []
    for rank in range(world_size):
        as_rank(rank, world_size)
        shard = distributed.evaluation_rows(n_items, 8)
        assert shard.start % 8 == 0 or shard.start == n_items
        rows.extend(shard)
    assert rows == list(range(n_items))


def test_flags_that_several_processes_cannot_take_stop_with_one_line():
    opt = make_opt("--bs", "12", "--samples_per_class", "3")
    distributed.check_options(opt, 1)
    distributed.check_options(opt, 2)
    distributed.check_options(opt, 4)  # 12 = 4 processes x 3: one class group each
    with pytest.raises(UsageError, match=r"^--bs 12 must be divisible by the number of processes x --samples_per_class "
                                         r"\(8 x 3 = 24\): each process takes whole class groups of the global batch$"):
        distributed.check_options(opt, 8)
    with pytest.raises(UsageError, match="^--data_sampler d2: several processes .torchrun. support class_random only"):
        distributed.check_options(make_opt(data_sampler="d2"), 2)  # a sampler of issue 13
    with pytest.raises(UsageError, match="^--sync_bn: SyncBatchNorm runs on GPUs only; drop it for a CPU run$"):
        distributed.check_options(make_opt("--sync_bn", "--device", "cpu"), 2)


def test_under_torchrun_the_batch_split_is_checked_when_the_flags_are_parsed(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0"), monkeypatch.setenv("LOCAL_RANK", "0"), monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(SystemExit) as stop:
        parameters.parse(["--bs", "12", "--samples_per_class", "2"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "main.py: error: --bs 12 must be divisible by the number of processes x --samples_per_class (4 x 2 = 8): "
        "each process takes whole class groups of the global batch\n")
    assert parameters.parse(["--bs", "16", "--samples_per_class", "2"]).bs == 16


def test_under_torchrun_only_rank_0_prints_a_parse_error_and_every_rank_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("LOCAL_RANK", "1"), monkeypatch.setenv("WORLD_SIZE", "2")
    line = "main.py: error: argument --bs: 'x' is not an integer; must be an integer >= 2\n"
    for rank, printed in (("1", ""), ("0", line)):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as stop:
            parameters.parse(["--bs", "x"])
        assert stop.value.code == 2 and capsys.readouterr().err == printed


def test_each_rank_draws_its_own_augmentations_and_rank_0_draws_a_plain_runs():
    seeds = [distributed.rank_seed(5, rank) for rank in range(4)]
    assert seeds[0] == 5 and len(set(seeds)) == 4
    assert distributed.rank_seed(5, 1) != distributed.rank_seed(6, 1)


def test_the_shared_stream_is_swapped_in_and_out_and_continues_where_it_stopped():
    shared = distributed.SharedRandomness(11, torch.device("cpu"))
    torch.manual_seed(0)
    expected_own = torch.rand(4)
    torch.manual_seed(0)
    with shared():
        first = torch.rand(3)
    own = torch.rand(4)
    with shared():
        second = torch.rand(3)
    assert torch.equal(own, expected_own)  # the process's own stream did not move
    reference = torch.Generator().manual_seed(11)
    assert torch.equal(torch.cat([first, second]), torch.rand(6, generator=reference))
    again = distributed.SharedRandomness(11, torch.device("cpu"))
    again.load_state_dict(shared.state_dict())
    with shared():
        one = torch.rand(2)
    with again():
        other = torch.rand(2)
    assert torch.equal(one, other)


def test_a_plain_run_gathers_nothing_and_agrees_with_itself():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather_rows(x) is x and distributed.gather_uneven_rows(x) is x
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.rank_mean({"loss": 1.5}) == {"loss": 1.5}
    stop = [False]
    ask = distributed.agreed(lambda: stop[0], every=25)
    stop[0] = True
    assert ask()  # one process reads its own flag at every call
    assert distributed.loss_randomness(3, torch.device("cpu")) is None
    assert distributed.from_main("x") == "x" and distributed.to_main("x") == ["x"]


def test_ddp_wraps_backbone_and_criterion_and_sync_bn_converts_the_batchnorm_layers(tmp_path):
    import architectures
    import criteria

    opt = make_opt("--arch", "slimresnet18_normalize", "--not_pretrained", "--embed_dim", "8", "--loss", "margin")
    model = architectures.select(opt.arch, opt)
    criterion = criteria.from_opt("margin", opt, n_classes=4)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    step = TrainingStep(model, criterion)
    assert distributed.parallel(step, sync_bn=True) is step  # no process group: a plain run's step
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        wrapped = distributed.parallel(step)
        with pytest.raises(ValueError, match="SyncBatchNorm layers only work with GPU modules"):
            distributed.parallel(step, sync_bn=True)  # converted, then refused on the CPU by DDP (and by parse)
    finally:
        dist.destroy_process_group()
    assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel) and wrapped.module is step
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules()) == n_bn > 0
    trained = {id(p) for p in wrapped.parameters() if p.requires_grad}
    assert id(criterion.beta) in trained and all(id(p) in trained for p in model.parameters() if p.requires_grad)
