"""Coreset samplers (Roth et al., "Revisiting Training Strategies and Generalization Performance in Deep
Metric Learning", ICML 2020, batch-sampling study): each batch is bs / spc points chosen from a random pool
of stored embeddings to cover it, each followed by spc - 1 other images of its class.

Fixed from the reference (REFERENCE.md §3.2, §6 item 17): the reference computed each coreset on one random
pool and mapped its positions through another (drawn once per epoch), so its batches were not coresets;
here a batch's points come from the pool they were computed on. Its padding drew class mates with
replacement (the point itself included); here they are distinct where the class allows
(`BatchSampler.class_mates`). Two coreset points of one class share that class's images in the batch.
"""
from __future__ import annotations

import numpy as np
import torch

from datasets.samplers import SAMPLERS
from datasets.samplers.storage_based import StorageSampler, batched_squared_distances
from utilities.errors import UsageError
from utilities.flags import Bounded, flag


class CoresetSampler(StorageSampler):
    """Pools of min(pool_size, N) distinct training images drawn uniformly; `coreset` picks the bs / spc
    points of each batch in its pool."""

    def __init__(self, labels, batch_size: int, samples_per_class: int, storage, seed: int = 0, pool_size: int = 512,
                 projection_dim: int = -1):
        super().__init__(labels, batch_size, samples_per_class, storage, seed, pool_size, projection_dim)
        if min(pool_size, len(self.labels)) < self.classes_per_batch:
            raise UsageError(f"--data_batchmatch_bigbs {pool_size} is smaller than the {self.classes_per_batch} coreset "
                             f"points of a batch (--bs / --samples_per_class)")
        self.pool_size = min(pool_size, len(self.labels))

    def draw_pools(self, n: int) -> np.ndarray:
        return np.stack([self.rng.choice(len(self.labels), self.pool_size, replace=False) for _ in range(n)])

    def coreset(self, x: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        """(P, bs / spc) positions in each pool, from its embeddings (P, M, D) and squared distances (P, M, M)."""
        raise NotImplementedError

    def choose(self, x: torch.Tensor, pools: np.ndarray) -> np.ndarray:
        points = np.take_along_axis(pools, self.coreset(x, batched_squared_distances(x)).cpu().numpy(), 1)
        spc = self.samples_per_class
        mates = self.class_mates(points.ravel(), spc - 1).reshape(*points.shape, spc - 1)
        return np.concatenate([points[..., None], mates], axis=2).reshape(len(pools), -1)


@SAMPLERS.register("greedy_coreset")
class GreedyCoresetSampler(CoresetSampler):
    """k-centre greedy coreset (Sener & Savarese, ICLR 2018) of k = bs / spc points on squared Euclidean
    distances: the first point is uniform over the pool; each next one maximises its distance to the nearest
    point chosen so far,

        c_{j+1} = argmax_{i not chosen} min_{l <= j} ||x_i - x_{c_l}||^2     (ties: the lowest position),

    or, with `softened` (--data_gc_softened), is uniform among the points whose min-distance is at or above
    the 97th percentile of all min-distances in the pool (chosen points count as -1).
    """

    FLAGS = StorageSampler.FLAGS + (
        flag("--data_gc_softened", param="softened", action="store_true",
             help="greedy_coreset: each next point is random among the top 3 percent by min-distance, not the farthest."),
    )

    def __init__(self, labels, batch_size: int, samples_per_class: int, storage, seed: int = 0, pool_size: int = 512,
                 projection_dim: int = -1, softened: bool = False):
        super().__init__(labels, batch_size, samples_per_class, storage, seed, pool_size, projection_dim)
        self.softened = softened

    def coreset(self, x: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        n_pools, size = d2.shape[:2]
        rows = torch.arange(n_pools, device=d2.device)
        pick = torch.from_numpy(self.rng.integers(size, size=n_pools)).to(d2.device)
        chosen, min_d2 = [pick], d2[rows, pick].clone()
        for _ in range(self.classes_per_batch - 1):
            min_d2[rows, pick] = -1.0
            if self.softened:
                top = min_d2 >= torch.quantile(min_d2, 0.97, dim=1, keepdim=True)
                pick = self.uniform_noise(min_d2.shape, d2.device).masked_fill(~top | (min_d2 < 0), -1.0).argmax(1)
            else:
                pick = min_d2.argmax(1)
            chosen.append(pick)
            min_d2 = torch.minimum(min_d2, d2[rows, pick])
        return torch.stack(chosen, 1)


@SAMPLERS.register("d2_coreset")
class D2CoresetSampler(CoresetSampler):
    """D^2-style sampling (as k-means++, Arthur & Vassilvitskii 2007) weighted by the pool's Gaussian fit
    N(mu, Sigma) (mean and covariance of the pool, Sigma + 1e-6 mean(diag Sigma) I so that it is invertible):

    * the first point is the pool point nearest to a draw z ~ N(mu, Sigma);
    * each next point is drawn among the points not chosen yet with

        p(i) ~ N(x_i; mu, Sigma) * (sum_{l chosen} ||x_i - x_{c_l}||^2) ^ lambda,

      lambda = `distance_exponent` (--data_d2_coreset_lambda, >= 0), in log space (Gumbel-max); uniform
      among them if every weight is 0 (all remaining points duplicate chosen ones).

    The reference's sampler also carried the greedy sampler's name; its density was scipy's, which fails on
    a singular covariance (a pool smaller than the dimension).
    """

    FLAGS = StorageSampler.FLAGS + (
        flag("--data_d2_coreset_lambda", param="distance_exponent", default=1, type=Bounded(float, ge=0),
             help="d2_coreset: exponent of the summed squared distances to the chosen points."),
    )

    def __init__(self, labels, batch_size: int, samples_per_class: int, storage, seed: int = 0, pool_size: int = 512,
                 projection_dim: int = -1, distance_exponent: float = 1):
        super().__init__(labels, batch_size, samples_per_class, storage, seed, pool_size, projection_dim)
        if distance_exponent < 0:
            raise UsageError(f"--data_d2_coreset_lambda {distance_exponent}: the exponent must be >= 0")
        self.distance_exponent = distance_exponent

    def gaussian_fit(self, x: torch.Tensor):
        """(mean P x D, Cholesky factor P x D x D) of each pool's ridge-regularised covariance, in float64."""
        x = x.double()
        mean = x.mean(1)
        centred = x - mean[:, None]
        cov = centred.transpose(1, 2) @ centred / max(x.shape[1] - 1, 1)
        ridge = 1e-6 * cov.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
        cov = cov + ridge[:, None, None] * torch.eye(x.shape[2], dtype=x.dtype, device=x.device)
        return mean, torch.linalg.cholesky(cov)

    def coreset(self, x: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        n_pools, size = d2.shape[:2]
        rows = torch.arange(n_pools, device=d2.device)
        mean, chol = self.gaussian_fit(x)
        draw = mean + (chol @ torch.from_numpy(self.rng.standard_normal(mean.shape)).to(chol)[..., None])[..., 0]
        pick = ((x.double() - draw[:, None]) ** 2).sum(-1).argmin(1)
        whitened = torch.linalg.solve_triangular(chol, (x.double() - mean[:, None]).transpose(1, 2), upper=False)
        log_density = (-0.5 * (whitened**2).sum(1)).float()
        chosen, summed = [pick], torch.zeros_like(log_density)
        taken = torch.zeros_like(log_density, dtype=torch.bool)
        for _ in range(self.classes_per_batch - 1):
            taken[rows, pick] = True
            summed = summed + d2[rows, pick]
            log_weight = log_density
            if self.distance_exponent:
                log_weight = log_weight + self.distance_exponent * torch.log(summed)
            log_weight = log_weight.masked_fill(taken, float("-inf"))
            none_left = ~torch.isfinite(log_weight).any(1, keepdim=True)
            log_weight = torch.where(none_left, torch.zeros_like(log_weight).masked_fill(taken, float("-inf")), log_weight)
            u = self.uniform_noise(log_weight.shape, d2.device).clamp(1e-12, 1.0 - 1e-7)
            pick = (log_weight - torch.log(-torch.log(u))).argmax(1)
            chosen.append(pick)
        return torch.stack(chosen, 1)
