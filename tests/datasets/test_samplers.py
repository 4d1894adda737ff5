"""The batch samplers against brute-force versions of their rules on small pools, the embedding storage they
read, seeds and resumption, and the errors of impossible settings."""
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

import parameters
from datasets.embedding_storage import EmbeddingStorage
from datasets.samplers import (SAMPLERS, D2CoresetSampler, DistHistBatchMatchSampler, FIDBatchMatchSampler,
                               FullRandomSampler, GreedyCoresetSampler, StorageSampler)
from utilities.errors import UsageError

pytestmark = pytest.mark.usefixtures("single_thread")
STORAGE_SAMPLERS = [name for name, cls in SAMPLERS.items() if issubclass(cls, StorageSampler)]


def filled_storage(n, dim, seed=0, **kwargs):
    storage = EmbeddingStorage(n, dim, **kwargs)
    storage.fill(torch.from_numpy(np.random.default_rng(seed).normal(size=(n, dim))).float())
    return storage


def recording(sampler, method):
    """Wrap `sampler.<method>` so that every value it returns is kept in the returned list."""
    seen, original = [], getattr(sampler, method)

    def wrapped(*args):
        seen.append(original(*args))
        return seen[-1]

    setattr(sampler, method, wrapped)
    return seen


def squared_distances(x):
    x = np.asarray(x, dtype=np.float64)
    return ((x[:, None] - x[None]) ** 2).sum(-1)


def assert_class_mates(sampler, batch, spc):
    """Each group of spc: the point first, then distinct other images of its class (enough images here)."""
    for group in np.asarray(batch).reshape(-1, spc):
        assert len(set(sampler.labels[group])) == 1 and len(set(group)) == spc


@pytest.mark.parametrize("softened", [False, True])
def test_greedy_coreset_points_follow_the_k_centre_rule_in_their_own_pool(softened):
    labels = np.repeat(np.arange(40), 5)
    storage = filled_storage(len(labels), 3)
    sampler = GreedyCoresetSampler(labels, 12, 2, storage, seed=1, pool_size=50, softened=softened)
    pools = recording(sampler, "draw_pools")
    batches = list(sampler)
    pools = np.concatenate(pools)
    assert len(batches) == len(pools) == 200 // 12
    x = storage.embeddings.numpy()
    farthest = []
    for pool, batch in zip(pools, batches):
        assert_class_mates(sampler, batch, 2)
        points = batch[::2]
        position = {index: p for p, index in enumerate(pool)}
        chosen = [position[i] for i in points]  # every point is in the pool it was computed on
        d2 = squared_distances(x[pool])
        for j in range(1, len(chosen)):
            min_d2 = d2[:, chosen[:j]].min(1)
            min_d2[chosen[:j]] = -1.0
            farthest.append(min_d2[chosen[j]] == pytest.approx(min_d2.max(), rel=1e-5))
            if softened:  # uniform among the top 3 percent by min-distance
                assert min_d2[chosen[j]] >= np.percentile(min_d2, 97) - 1e-5
    # greedy: always the farthest point from the chosen set; softened: the farthest of the top 2 (of 50) about half the time
    assert np.mean(farthest) == (pytest.approx(0.5, abs=0.2) if softened else 1.0)


def d2_second_point_probabilities(x, first, exponent):
    """p(i) ~ N(x_i; mu, Sigma + ridge I) * ||x_i - x_first||^(2 exponent) over i != first (brute force)."""
    cov = np.cov(x.T)
    cov = cov + 1e-6 * np.diag(cov).mean() * np.eye(len(cov))
    weights = scipy.stats.multivariate_normal.pdf(x, x.mean(0), cov) * squared_distances(x)[first] ** exponent
    weights[first] = 0.0
    return weights / weights.sum()


@pytest.mark.parametrize("exponent", [1.0, 2.0])
def test_d2_coreset_draws_the_next_point_with_density_times_distance_to_the_lambda(exponent):
    x = torch.tensor([[0.0, 0.0], [1.0, 0.2], [-0.8, 0.5], [0.3, -1.1], [2.0, 1.5], [-1.5, -1.0]])
    labels = np.arange(6)
    sampler = D2CoresetSampler(labels, 2, 1, filled_storage(6, 2), seed=0, pool_size=6, distance_exponent=exponent)
    copies = 6000
    pools = x.expand(copies, 6, 2).contiguous()
    d2 = torch.from_numpy(np.broadcast_to(squared_distances(x), (copies, 6, 6)).copy()).float()
    picks = sampler.coreset(pools, d2).numpy()
    assert (picks[:, 0] != picks[:, 1]).all()
    first = np.bincount(picks[:, 0]).argmax()  # the point nearest the Gaussian draws most often
    second = picks[picks[:, 0] == first, 1]
    assert len(second) > 1000
    frequencies = np.bincount(second, minlength=6) / len(second)
    np.testing.assert_allclose(frequencies, d2_second_point_probabilities(x.numpy(), first, exponent), atol=0.04)


def disthist_cost(pool, candidate):
    """The disthist_batchmatch criterion by numpy: means, stds, and W1 of 50-bin distance histograms."""
    def distances(z):
        d = np.sqrt(squared_distances(z))
        return d[np.triu_indices(len(z), 1)]

    pool_d, cand_d = distances(pool), distances(candidate)
    low, high = pool_d.min(), pool_d.max()
    h_pool = np.histogram(pool_d, 50, (low, high))[0] / len(pool_d)
    h_cand = np.histogram(cand_d, 50, (low, high))[0] / len(cand_d)
    w1 = np.abs(np.cumsum(h_pool - h_cand)).sum() * (high - low) / 50
    return (np.linalg.norm(pool.mean(0) - candidate.mean(0)) + np.linalg.norm(pool.std(0) - candidate.std(0))
            + 75 * (w1 + w1))


def fid_cost(pool, candidate):
    """The Frechet distance of Gaussian fits, with scipy's matrix square root."""
    cov_p, cov_c = np.cov(pool.T), np.cov(candidate.T)
    root = scipy.linalg.sqrtm(cov_p @ cov_c).real
    return ((pool.mean(0) - candidate.mean(0)) ** 2).sum() + np.trace(cov_p) + np.trace(cov_c) - 2 * np.trace(root)


@pytest.mark.parametrize("cls,brute_force,dim", [(DistHistBatchMatchSampler, disthist_cost, 3),
                                                 (FIDBatchMatchSampler, fid_cost, 8),   # bs <= D: bs x bs route
                                                 (FIDBatchMatchSampler, fid_cost, 2)])  # bs > D: D x D route
def test_batchmatch_keeps_the_candidate_that_minimises_its_criterion(cls, brute_force, dim):
    labels = np.repeat(np.arange(12), 6)
    storage = filled_storage(len(labels), dim, seed=2)
    sampler = cls(labels, 6, 2, storage, seed=3, pool_size=24, n_candidates=7)
    pools, candidates = recording(sampler, "draw_pools"), recording(sampler, "candidates")
    batches = list(sampler)
    pools, candidates = np.concatenate(pools), np.concatenate(candidates)
    x = storage.embeddings.numpy().astype(np.float64)
    costs = sampler.costs(torch.from_numpy(x[pools]).float(), torch.from_numpy(candidates))
    for p, batch in enumerate(batches):
        expected = [brute_force(x[pools[p]], x[pools[p][c]]) for c in candidates[p]]
        np.testing.assert_allclose(costs[p].numpy(), expected, rtol=1e-4, atol=1e-5)
        assert list(batch) == list(pools[p][candidates[p][int(np.argmin(expected))]])
        assert_class_mates(sampler, batch, 2)
        assert len(set(sampler.labels[batch])) == 3  # distinct classes


def test_batchmatch_pools_repeat_classes_only_when_the_split_has_too_few():
    labels = np.repeat(np.arange(5), 8)
    sampler = DistHistBatchMatchSampler(labels, 4, 2, filled_storage(40, 2), seed=0, pool_size=24, n_candidates=3)
    pools = sampler.draw_pools(50)  # 12 slots of 2 over 5 classes: two classes 3 times, three twice
    for pool in pools:
        counts = np.bincount(labels[pool], minlength=5)
        assert sorted(counts) == [4, 4, 4, 6, 6] and len(set(pool)) == 24
        assert (np.diff(labels[pool]) != 0).sum() == 4  # grouped by class
    candidates = sampler.candidates(50)
    for pool, cands in zip(pools, candidates):
        for candidate in cands:
            assert len(set(candidate)) == 4 and len(set(labels[pool[candidate]])) == 2
    fewer = DistHistBatchMatchSampler(np.repeat(np.arange(20), 2), 4, 2, filled_storage(40, 2), pool_size=10)
    assert all(len(set(np.repeat(np.arange(20), 2)[p])) == 5 for p in fewer.draw_pools(20))


def test_full_random_is_class_balanced_and_always_has_a_positive_pair():
    sizes = [2, 3, 5, 8, 13, 21, 1, 40]  # image-uniform draws would favour the large classes
    labels = np.repeat(np.arange(len(sizes)), sizes)
    sampler = FullRandomSampler(labels, 10, 2, seed=0)
    batches = [b for _ in range(300) for b in sampler]
    draws = np.concatenate([labels[b[:-1]] for b in batches])
    expected = len(draws) / len(sizes)
    assert np.abs(np.bincount(draws) - expected).max() < 4 * np.sqrt(expected)
    for batch in batches:
        partner, owners = batch[-1], labels[batch]
        assert any(i != partner and labels[i] == labels[partner] for i in batch[:-1])
        for c in set(owners):  # distinct images wherever the class has enough
            members = [i for i in batch if labels[i] == c]
            assert len(set(members)) == min(len(members), sizes[c])


def test_full_random_pairs_a_two_image_class_when_every_draw_hits_a_single_image_class():
    labels = np.array([0, 1, 2, 3, 4, 4])
    sampler = FullRandomSampler(labels, 3, 1, seed=0)
    batches = [b for _ in range(200) for b in sampler]
    assert all(sorted(b[-2:]) == [4, 5] or labels[b[-1]] in labels[b[:-1]] for b in batches)
    with pytest.raises(UsageError, match="full_random needs a class with at least 2 images"):
        FullRandomSampler(np.arange(6), 3, 1)


@pytest.mark.parametrize("name", ["class_random", "full_random"] + STORAGE_SAMPLERS)
def test_every_sampler_is_seeded_and_resumable(name):
    labels = np.repeat(np.arange(10), 6)
    cls = SAMPLERS[name]

    def make(seed):
        storage = {"storage": filled_storage(60, 4)} if issubclass(cls, StorageSampler) else {}
        return cls(labels, 8, 2, seed=seed, **storage, **({"pool_size": 20} if storage else {}))

    a, b = make(5), make(5)
    first = list(a)
    assert first == list(b) != list(make(6))
    assert len(first) == len(a) == 60 // 8 and all(len(batch) == 8 for batch in first)
    if a.storage is not None:
        a.storage.update(torch.arange(8), torch.ones(8, 4))
    state = a.state_dict()
    expected = list(a)
    resumed = make(0)
    resumed.load_state_dict(state)
    assert list(resumed) == expected != first


def test_the_storage_keeps_the_last_of_repeated_indices_and_freezes_on_request():
    storage = EmbeddingStorage(5, 2)
    storage.fill(torch.zeros(5, 2))
    storage.update(torch.tensor([3, 1, 3]), torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))
    assert storage.embeddings.tolist() == [[0, 0], [2, 2], [0, 0], [3, 3], [0, 0]]
    frozen = EmbeddingStorage(5, 2, update_each_step=False)
    frozen.fill(torch.zeros(5, 2))
    frozen.update(torch.tensor([1]), torch.ones(1, 2))
    assert frozen.embeddings.abs().sum() == 0
    frozen.refresh(torch.ones(5, 2))  # a full refresh still writes
    assert (frozen.embeddings == 1).all()


def test_the_storage_momentum_rule():
    m, eta = 0.5, 2.0
    storage = EmbeddingStorage(2, 1, momentum=m, momentum_lr=eta)
    storage.fill(torch.tensor([[1.0], [5.0]]))
    storage.update([0], torch.tensor([[3.0]]))  # v = 0.5 * 0 + 0.5 * (3 - 1) = 1; e = 3 + 2 * 1
    assert storage.embeddings.flatten().tolist() == [5.0, 5.0]
    storage.refresh(torch.tensor([[4.0], [5.0]]))  # v0 = 0.5 * 1 + 0.5 * (4 - 5) = 0; v1 = 0
    assert storage.embeddings.flatten().tolist() == [4.0, 5.0]
    state = storage.state_dict()
    copy = EmbeddingStorage(2, 1, momentum=m, momentum_lr=eta)
    copy.load_state_dict(state)
    assert torch.equal(copy.embeddings, storage.embeddings) and torch.equal(copy.velocity, storage.velocity)
    plain = EmbeddingStorage(2, 1)
    plain.fill(torch.zeros(2, 1))
    plain.update([0], torch.tensor([[3.0]]))
    assert plain.velocity is None and plain.embeddings.flatten().tolist() == [3.0, 0.0]


def test_impossible_settings_are_refused_with_the_flag():
    labels = np.repeat(np.arange(10), 4)
    storage = filled_storage(40, 2)
    cases = [
        (lambda: DistHistBatchMatchSampler(labels, 8, 2, storage, pool_size=6),
         "--data_batchmatch_bigbs 6 is smaller than --bs 8: the pool must hold a batch"),
        (lambda: FIDBatchMatchSampler(labels, 8, 2, storage, n_candidates=0),
         "--data_batchmatch_ncomps 0: compare at least 1 candidate"),
        (lambda: GreedyCoresetSampler(labels, 8, 2, storage, pool_size=3),
         r"--data_batchmatch_bigbs 3 is smaller than the 4 coreset points of a batch \(--bs / --samples_per_class\)"),
        (lambda: GreedyCoresetSampler(labels, 8, 2, storage, projection_dim=0),
         "--data_sampler_lowproj_dim 0: give a positive dimension, or -1 for none"),
        (lambda: D2CoresetSampler(labels, 8, 2, storage, distance_exponent=-1),
         r"--data_d2_coreset_lambda -1: the exponent must be >= 0"),
        (lambda: EmbeddingStorage(4, 2, momentum=1.0), r"--data_mb_mom 1.0: the momentum must be below 1"),
    ]
    for build, message in cases:
        with pytest.raises(UsageError, match=message):
            build()
    with pytest.raises(RuntimeError, match="the embedding storage is empty; fill it first"):
        list(GreedyCoresetSampler(labels, 8, 2, EmbeddingStorage(40, 2)))


@pytest.mark.parametrize("flag", ["--data_sim_measure", "--data_gc_coreset_lim"])
def test_flags_the_reference_never_read_stop_with_one_line(flag, capsys):
    with pytest.raises(SystemExit) as stop:
        parameters.parse([flag, "1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"main.py: error: {flag} is not supported: ") and err[0].endswith("drop it")


def test_flags_the_chosen_sampler_ignores_are_named(capsys):
    parameters.parse(["--data_sampler", "greedy_coreset", "--data_batchmatch_ncomps", "3", "--data_gc_softened",
                      "--data_mb_lr", "2"])
    assert capsys.readouterr().err.splitlines() == [
        "main.py: warning: --data_batchmatch_ncomps does not apply to --data_sampler greedy_coreset; the flag is ignored",
        "main.py: warning: --data_mb_lr only applies with --data_mb_mom > 0; the flag is ignored"]
    parameters.parse(["--data_storage_no_update", "--data_idx_full_prec"])
    assert capsys.readouterr().err.splitlines() == [
        "main.py: warning: --data_storage_no_update does not apply to --data_sampler class_random; the flag is ignored",
        "main.py: warning: --data_idx_full_prec does not apply to --data_sampler class_random; the flag is ignored"]


def test_projection_maps_each_pool_to_the_requested_dimension():
    labels = np.repeat(np.arange(10), 4)
    sampler = GreedyCoresetSampler(labels, 8, 2, filled_storage(40, 6), pool_size=20, projection_dim=3)
    x = torch.randn(4, 20, 6)
    projected = sampler.project(x)
    assert projected.shape == (4, 20, 3)
    bound = 1 / np.sqrt(6)
    maps = torch.linalg.lstsq(x, projected).solution  # the per-pool maps are recoverable and nn.Linear-sized
    assert maps.abs().max() <= bound + 1e-4 and not torch.allclose(maps[0], maps[1])
