"""The shared work of one evaluation, computed lazily and at most once.

Queries are the evaluated samples. Without a gallery every query is searched against all the other
queries (leave-one-out, the DML benchmarks' protocol); with a gallery (In-Shop-style splits) against the
gallery only. For each query, R = the number of gallery samples with its label (its relevant items); a
query with R = 0 ("lone query") has nothing to retrieve and is left out of the retrieval metrics.

Spaces: `euclidean` ranks by squared Euclidean distance on the embeddings as given; `cosine` ranks by
cosine similarity, computed as Euclidean distance between the L2-normalised embeddings (same order).
Per space there is one neighbour search, up to the largest k any metric needs in full (MAP@R: the largest
R; mAP_1000: 1000), kept only as a boolean "same label" matrix (N x k bytes), and one k-means of the
queries. Recall@k needs only each query's first relevant rank: queries without a hit in the searched list
are searched again, deeper (see `first_hit`).
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from metrics.backends import BACKENDS


def l2_normalise(x):
    """Rows divided by max(||row||, 1e-12); numpy arrays or tensors (which stay on their device)."""
    if not isinstance(x, np.ndarray):
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


SPACES = {"euclidean": lambda x: x, "cosine": l2_normalise}

#: Neighbour list searched for every query when a metric asks only for first relevant ranks (Recall@k).
SHORT_LIST = 32


def _as_embeddings(x, what: str):
    """float32 N x D, checked finite: a numpy array, or a tensor kept on its device (torch-based backends)."""
    if isinstance(x, np.ndarray) or not hasattr(x, "detach"):
        x = np.ascontiguousarray(x, dtype=np.float32)
        finite = np.isfinite(x).all()
    else:
        x = x.detach().float().contiguous()
        finite = bool(x.isfinite().all())
    if x.ndim != 2:
        raise ValueError(f"{what} must be N x D; got shape {tuple(x.shape)}")
    if not finite:
        raise ValueError(f"{what} contain NaN or infinite values; the model diverged or the input is broken")
    return x


def take_rows(x, rows: np.ndarray):
    """x[rows] for a numpy array or a tensor (indexed on its own device)."""
    if isinstance(x, np.ndarray):
        return x[rows]
    import torch

    return x.index_select(0, torch.as_tensor(rows, device=x.device))


class EvaluationContext:
    """Embeddings, labels, relevant counts, and the lazily computed neighbours and cluster assignments."""

    def __init__(self, query, query_labels, gallery=None, gallery_labels=None, *, n_clusters: Optional[int] = None,
                 seed: int = 0, threads: Optional[int] = None, backend: str = "faiss", device=None):
        self._query = _as_embeddings(query, "embeddings")
        self._query_host: Optional[np.ndarray] = None
        query_labels = np.asarray(query_labels).reshape(-1)
        if len(query_labels) != len(self._query):
            raise ValueError(f"got {len(self._query)} embeddings but {len(query_labels)} labels")
        if (gallery is None) != (gallery_labels is None):
            raise ValueError("pass both gallery and gallery_labels, or neither")
        self.gallery = None if gallery is None else _as_embeddings(gallery, "gallery embeddings")
        if self.gallery is not None:
            gallery_labels = np.asarray(gallery_labels).reshape(-1)
            if len(gallery_labels) != len(self.gallery) or self.gallery.shape[1] != self._query.shape[1]:
                raise ValueError(f"gallery: got {tuple(self.gallery.shape)} embeddings and {len(gallery_labels)} labels "
                                 f"for {self._query.shape[1]}-d queries")
            codes = np.unique(np.concatenate([query_labels, gallery_labels]), return_inverse=True)[1].reshape(-1)
            self.labels, self.gallery_labels = codes[:len(query_labels)], codes[len(query_labels):]
        else:
            self.labels = self.gallery_labels = np.unique(query_labels, return_inverse=True)[1].reshape(-1)
        n_codes = int(max(self.labels.max(initial=-1), self.gallery_labels.max(initial=-1))) + 1
        in_gallery = np.bincount(self.gallery_labels, minlength=n_codes)
        self.relevant = in_gallery[self.labels] - int(self.leave_one_out)
        self.has_relevant = self.relevant > 0
        self.n_clusters = n_clusters if n_clusters is not None else len(np.unique(self.labels))
        self.seed = seed
        self.threads = threads
        self.backend = BACKENDS.lookup(backend)
        self.device = device
        self._k: Dict[str, int] = {}
        self._k_first_hit: Dict[str, int] = {}
        self._points: Dict[tuple, np.ndarray] = {}
        self._matches: Dict[str, np.ndarray] = {}
        self._first_hit: Dict[str, np.ndarray] = {}
        self._clusters: Dict[tuple, np.ndarray] = {}

    @property
    def query(self) -> np.ndarray:
        """The query embeddings as a numpy array (metrics computed on the host read them)."""
        if self._query_host is None:
            self._query_host = self._query if isinstance(self._query, np.ndarray) else self._query.cpu().numpy()
        return self._query_host

    @property
    def leave_one_out(self) -> bool:
        return self.gallery is None

    @property
    def max_relevant(self) -> int:
        return int(self.relevant.max(initial=0))

    def points(self, space: str, role: str = "query") -> np.ndarray:
        """The query (or gallery) embeddings as ranked in `space`."""
        if role == "gallery" and self.leave_one_out:
            role = "query"
        if (space, role) not in self._points:
            self._points[space, role] = SPACES[space](self._query if role == "query" else self.gallery)
        return self._points[space, role]

    def request_neighbours(self, space: str, k: int) -> None:
        """Declare that a metric needs the first k neighbours in `space`; call before the first `matches`."""
        if space in self._matches and k > self._matches[space].shape[1]:
            raise RuntimeError(f"neighbours in {space} space were already searched with a smaller k")
        self._k[space] = max(self._k.get(space, 0), k)

    def request_first_hit(self, space: str, k: int) -> None:
        """Declare that a metric needs each query's first relevant rank when it is below k (Recall@k)."""
        self.request_neighbours(space, min(k, SHORT_LIST))
        self._k_first_hit[space] = max(self._k_first_hit.get(space, 0), k)

    def _search(self, space: str, rows: np.ndarray, k: int) -> np.ndarray:
        """len(rows) x k booleans: whether the j-th nearest gallery sample of query `rows[i]` is relevant."""
        query = self.points(space, "query")
        gallery = query if self.leave_one_out else self.points(space, "gallery")
        subset = query if len(rows) == len(query) else take_rows(query, rows)
        out = np.zeros((len(rows), k), dtype=bool)
        for start, found in self.backend.neighbours(subset, gallery, k, threads=self.threads, device=self.device,
                                                    self_index=rows if self.leave_one_out else None):
            part = slice(start, start + len(found))
            out[part] = (found >= 0) & (self.gallery_labels[np.maximum(found, 0)] == self.labels[rows[part], None])
        return out

    def matches(self, space: str) -> np.ndarray:
        """N_query x k booleans: whether the j-th nearest gallery sample has the query's label (False for the
        -1 padding when fewer than k candidates exist)."""
        if space not in self._matches:
            self._matches[space] = self._search(space, np.arange(len(self._query)), self._k.get(space, 0))
        return self._matches[space]

    def first_hit(self, space: str) -> np.ndarray:
        """0-based rank of each query's first relevant neighbour, exact below the largest requested k (that k
        when there is none).

        Recall@1000 needs no 1000-long list for every query: the lists searched for the other metrics (at
        least `SHORT_LIST` long) settle most queries, and only queries with relevant items but no hit in
        them are searched again, to the full k.
        """
        if space not in self._first_hit:
            m = self.matches(space)
            k = max(m.shape[1], self._k_first_hit.get(space, 0))
            hit = np.where(m.any(1), m.argmax(1), k)
            deeper = np.flatnonzero((hit == k) & self.has_relevant) if k > m.shape[1] else []
            if len(deeper):
                found = self._search(space, deeper, k)
                hit[deeper] = np.where(found.any(1), found.argmax(1), k)
            self._first_hit[space] = hit
        return self._first_hit[space]

    def clusters(self, space: str = "euclidean") -> np.ndarray:
        """k-means assignment of the queries in `space` (spherical k-means for `cosine`), k = `n_clusters`."""
        key = (space, self.n_clusters)
        if key not in self._clusters:
            self._clusters[key] = self.backend.kmeans(self.points(space), self.n_clusters, seed=self.seed,
                                                      spherical=space == "cosine", threads=self.threads,
                                                      device=self.device)
        return self._clusters[key]
