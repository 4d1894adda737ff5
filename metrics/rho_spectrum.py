"""Spectral decay rho (Roth et al., ICML 2020): how unevenly the embedding's variance spreads over directions.

s = the singular values of the N x D query embeddings (uncentred, as given), sorted in decreasing order;
for m != 0 keep s[|m|-1:] (m = 2 drops the dominant direction); p = s / sum(s); U uniform over the kept
values. `rho_spectrum@m` = KL(U || p) for m > 0 (the paper's rho) and KL(p || U) for m < 0. Lower = a flatter
spectrum (lower is better for "best"). A zero singular value makes KL(U || p) infinite.

Differs from the reference: exact singular values of all min(N, D) directions (numpy SVD, float64) instead
of a randomised TruncatedSVD with D - 1 components on the CPU and a full SVD on the GPU, which disagreed.
`rho_spectrum@0`, which in the reference returned the spectrum itself (a histogram sent to W&B), is not a
number and is refused.
"""
from __future__ import annotations

import numpy as np

from metrics import REGISTRY, MetricFamily


def rho_spectrum(context, m: int) -> float:
    s = np.linalg.svd(context.query.astype(np.float64), compute_uv=False)
    if abs(m) > len(s):
        raise ValueError(f"rho_spectrum@{m}: the embeddings have only {len(s)} singular values")
    s = s[abs(m) - 1:]
    p = s / s.sum()
    u = np.full(len(s), 1.0 / len(s))
    with np.errstate(divide="ignore"):
        if m > 0:
            return float(np.sum(u * (np.log(u) - np.log(p))))
        return float(np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(u)), 0.0)))


def _nonzero_int(text: str) -> int:
    m = int(text)
    if m == 0:
        raise ValueError("rho_spectrum@0 is the singular-value histogram, not a number; use rho_spectrum@1 "
                         "(all directions) or rho_spectrum@2 (without the dominant one)")
    return m


REGISTRY.register("rho_spectrum")(MetricFamily(compute=rho_spectrum, parse=_nonzero_int, takes_param=True,
                                               param_hint="m", higher_is_better=False))
