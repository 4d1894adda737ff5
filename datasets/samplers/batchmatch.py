"""Batch-matching samplers (Roth et al., "Revisiting Training Strategies and Generalization Performance in
Deep Metric Learning", ICML 2020, batch-sampling study): for each batch, draw a class-structured pool of
stored embeddings and `n_candidates` class-structured candidate batches from it, and keep the candidate
whose statistics best match the pool's.

Pool: pool_size // spc class slots of spc images. Classes are drawn without replacement while the split has
enough, so every class appears q = slots // C or q + 1 times (C classes); a class's images in the pool are
distinct where it has enough. Candidate: bs / spc distinct classes of the pool, spc distinct pool images of
each. A candidate's distances are therefore distances within the pool.

Fixed from the reference (REFERENCE.md §3.2, §6 item 16): it drew pool and candidate classes with
replacement (a candidate could hold one pool position twice), `fid_batchmatch` named a missing module, and
`disthist_batchmatch` fed histogram *values* to scipy's wasserstein_distance as if they were samples; here
W1 is the distance between the two histograms as distributions over the bins.
"""
from __future__ import annotations

import numpy as np
import torch

from datasets.samplers import SAMPLERS
from datasets.samplers.storage_based import StorageSampler, batched_squared_distances
from utilities.errors import UsageError
from utilities.flags import Bounded, flag

N_CANDIDATES = flag("--data_batchmatch_ncomps", param="n_candidates", default=10, type=Bounded(int, ge=1),
                    help="batchmatch samplers: candidate batches compared for each batch.")
#: disthist_batchmatch: number of histogram bins and the weight of the histogram term (the reference's).
HISTOGRAM_BINS, HISTOGRAM_WEIGHT = 50, 75.0


def members(x: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(P, K, bs, D) embeddings of the candidates' pool positions."""
    rows = torch.arange(len(x), device=x.device)[:, None, None]
    return x[rows, candidates]


def histogram(values: torch.Tensor, low: torch.Tensor, width: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Normalised HISTOGRAM_BINS-bin histograms of each row of `values` (P x groups*V, row p split into `groups`
    rows of V) over [low_p, low_p + HISTOGRAM_BINS width_p] (the top edge falls in the last bin, like numpy):
    P x HISTOGRAM_BINS, or P x groups x HISTOGRAM_BINS."""
    n_pools = len(values)
    bins = ((values - low[:, None]) / width[:, None]).floor().clamp(0, HISTOGRAM_BINS - 1).long()
    bins = bins.view(n_pools, groups, -1)
    counts = torch.zeros(n_pools, groups, HISTOGRAM_BINS, device=values.device)
    counts.scatter_add_(2, bins, torch.ones_like(bins, dtype=counts.dtype))
    counts = counts / counts.sum(-1, keepdim=True)
    return counts[:, 0] if groups == 1 else counts


class BatchMatchSampler(StorageSampler):
    """Pools and candidates as in the module docstring; `costs` scores each candidate against its pool
    (lower is better) and `choose` keeps the lowest (ties: the first candidate)."""

    FLAGS = StorageSampler.FLAGS + (N_CANDIDATES,)

    def __init__(self, labels, batch_size: int, samples_per_class: int, storage, seed: int = 0, pool_size: int = 512,
                 projection_dim: int = -1, n_candidates: int = 10):
        super().__init__(labels, batch_size, samples_per_class, storage, seed, pool_size, projection_dim)
        self.require_classes_per_batch()
        if pool_size < batch_size:
            raise UsageError(f"--data_batchmatch_bigbs {pool_size} is smaller than --bs {batch_size}: the pool must "
                             "hold a batch")
        if n_candidates < 1:
            raise UsageError(f"--data_batchmatch_ncomps {n_candidates}: compare at least 1 candidate")
        self.n_candidates = n_candidates
        repeats, extra = divmod(pool_size // samples_per_class, len(self.classes))
        #: images of each pool class (the first `extra` classes of a pool appear once more), and their offsets
        self.class_counts = samples_per_class * np.array([repeats + 1] * extra + [repeats] * (len(self.classes) - extra)
                                                         if repeats else [1] * extra)
        self.class_offsets = np.concatenate([[0], np.cumsum(self.class_counts)[:-1]])

    def per_pool_elements(self) -> int:
        dim = self.projection_dim if self.projection_dim > 0 else self.storage.embeddings.shape[1]
        return max(self.pool_size**2, self.n_candidates * self.batch_size * max(self.batch_size, dim))

    def pool_classes(self, n: int) -> np.ndarray:
        """(n, U) class positions of n pools: the classes drawn once more first, then (if every class is in
        the pool) the others in ascending order."""
        n_classes, extra = len(self.classes), int((self.class_counts > self.class_counts[-1]).sum())
        if len(self.class_counts) < n_classes:  # fewer slots than classes: distinct classes only
            return np.stack([self.rng.choice(n_classes, len(self.class_counts), replace=False) for _ in range(n)])
        head = np.stack([self.rng.choice(n_classes, extra, replace=False) for _ in range(n)])
        rest = np.ones((n, n_classes), dtype=bool)
        np.put_along_axis(rest, head, False, 1)
        return np.concatenate([head, np.nonzero(rest)[1].reshape(n, -1)], axis=1)

    def draw_pools(self, n: int) -> np.ndarray:
        classes = self.pool_classes(n)
        width = int(self.class_counts.max())
        ranks = self.distinct_ranks(self.class_sizes[classes].ravel(), width).reshape(*classes.shape, width)
        images = self.order[self.class_starts[classes][..., None] + ranks]
        return images[:, np.arange(width)[None, :] < self.class_counts[:, None]]  # row-major: grouped by class

    def candidates(self, n: int) -> np.ndarray:
        """(n, K, bs) pool positions of K candidates per pool: bs / spc distinct pool classes, spc distinct
        pool images of each, grouped by class."""
        keys = self.rng.random((n, self.n_candidates, len(self.class_counts)))
        classes = np.argsort(keys, axis=2)[..., :self.classes_per_batch]
        ranks = self.distinct_ranks(self.class_counts[classes].ravel(), self.samples_per_class)
        positions = self.class_offsets[classes][..., None] + ranks.reshape(*classes.shape, -1)
        return positions.reshape(n, self.n_candidates, -1)

    def costs(self, x: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """(P, K) cost of each candidate (pool positions `candidates`, P x K x bs) against its pool `x` (P x M x D)."""
        raise NotImplementedError

    def choose(self, x: torch.Tensor, pools: np.ndarray) -> np.ndarray:
        candidates = self.candidates(len(pools))
        best = self.costs(x, torch.from_numpy(candidates).to(x.device)).argmin(1).cpu().numpy()
        positions = candidates[np.arange(len(pools)), best]
        return np.take_along_axis(pools, positions, 1)


@SAMPLERS.register("disthist_batchmatch")
class DistHistBatchMatchSampler(BatchMatchSampler):
    """Keeps the candidate b minimising

        ||mu_pool - mu_b||_2 + ||sigma_pool - sigma_b||_2 + 75 (W1(h_pool, h_b) + W1(h_b, h_pool))

    with mu, sigma the per-dimension mean and standard deviation (population) of the embeddings, h the
    normalised 50-bin histogram of the pairwise Euclidean distances (distinct pairs) over the pool's range
    [min, max], and W1(h, g) = width * sum_k |H_k - G_k| (H, G cumulative; width = the bin width), the
    1-Wasserstein distance of the histograms as distributions over the bins (symmetric: the sum is 2 W1).
    """

    def costs(self, x: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        dist = batched_squared_distances(x).sqrt()
        upper = torch.triu_indices(x.shape[1], x.shape[1], 1, device=x.device)
        pool_values = dist[:, upper[0], upper[1]]
        low, high = pool_values.min(1).values, pool_values.max(1).values
        width = ((high - low) / HISTOGRAM_BINS).clamp_min(1e-12)
        rows = torch.arange(len(x), device=x.device)[:, None, None, None]
        cand_dist = dist[rows, candidates[..., :, None], candidates[..., None, :]]
        bs = candidates.shape[-1]
        pair = torch.triu_indices(bs, bs, 1, device=x.device)
        cand_values = cand_dist[..., pair[0], pair[1]]
        h_pool = histogram(pool_values, low, width)
        h_cand = histogram(cand_values.flatten(1), low, width, groups=candidates.shape[1])
        w1 = width[:, None] * (h_pool[:, None] - h_cand).cumsum(-1).abs().sum(-1)
        cand_x = members(x, candidates)
        mean_gap = (x.mean(1)[:, None] - cand_x.mean(2)).norm(dim=-1)
        std_gap = (x.std(1, unbiased=False)[:, None] - cand_x.std(2, unbiased=False)).norm(dim=-1)
        return mean_gap + std_gap + HISTOGRAM_WEIGHT * (w1 + w1)


@SAMPLERS.register("fid_batchmatch")
class FIDBatchMatchSampler(BatchMatchSampler):
    """Keeps the candidate b minimising the Frechet distance between Gaussian fits of pool and candidate
    (Heusel et al., NeurIPS 2017, the FID formula):

        ||mu_pool - mu_b||^2 + tr(S_pool) + tr(S_b) - 2 tr((S_pool S_b)^(1/2))

    with S the sample covariances (n - 1 normalisation). tr((S_pool S_b)^(1/2)) = sum_i sqrt(lambda_i), the
    eigenvalues of S_pool S_b, taken from the symmetric bs x bs matrix X_b S_pool X_b^T / (bs - 1) (X_b the
    centred candidate; same non-zero eigenvalues) when bs <= D, else from S_pool^(1/2) S_b S_pool^(1/2); in
    float64. (The reference added 1e-8 I to both covariances inside scipy's sqrtm.)
    """

    def costs(self, x: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        x = x.double()
        pool_mean = x.mean(1)
        centred = x - pool_mean[:, None]
        pool_cov = centred.transpose(1, 2) @ centred / (x.shape[1] - 1)
        cand = members(x, candidates)
        cand_mean = cand.mean(2)
        cand_centred = cand - cand_mean[:, :, None]
        bs = cand.shape[2]
        if bs <= x.shape[2]:
            product = cand_centred @ pool_cov[:, None] @ cand_centred.transpose(2, 3) / (bs - 1)
        else:
            values, vectors = torch.linalg.eigh(pool_cov)
            root = vectors @ torch.diag_embed(values.clamp_min(0).sqrt()) @ vectors.transpose(1, 2)
            cand_cov = cand_centred.transpose(2, 3) @ cand_centred / (bs - 1)
            product = root[:, None] @ cand_cov @ root[:, None]
        trace_root = torch.linalg.eigvalsh(product).clamp_min(0).sqrt().sum(-1)
        cand_trace = (cand_centred**2).sum((2, 3)) / (bs - 1)
        pool_trace = pool_cov.diagonal(dim1=1, dim2=2).sum(-1)
        fid = ((pool_mean[:, None] - cand_mean) ** 2).sum(-1) + pool_trace[:, None] + cand_trace - 2 * trace_root
        return fid.float()
