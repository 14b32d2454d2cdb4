"""Exact L2 search at half the memory traffic: a 16-bit first pass whose error
is bounded, checked against the float32 vectors.

An exact search reads every stored vector, and at catalogue sizes that is what
it costs (44k x 768 float32 is 129 MB per query, far more than any cache). A
build therefore also stores its vectors as 16-bit floats (``prescan.faiss``, a
FAISS ``IndexScalarQuantizer``) together with ``max_error``, the largest
distance between a stored vector and its 16-bit copy, measured on the copies
FAISS decodes.

A search scans the 16-bit copy for the ``k + DEPTH_MARGIN`` nearest rows, then
computes those rows' distances from the float32 vectors. By the triangle
inequality a row ``x`` whose copy is ``x'`` lies at least
``||q - x'|| - max_error`` from the query, so every row the first pass left out
lies at least ``b = (largest first-pass distance) - max_error`` away. When the
k-th exact distance among the candidates is at most ``b``, no row left out can
come closer and the candidates' order is the exact answer. When it is not (rows
crowded within a few 1e-4 of each other), that query runs through the float32
``IndexFlatL2`` instead. Either way the answer is the exact one, and the
fallback count says how often the first pass was not enough.
"""

from dataclasses import dataclass

import faiss
import numpy as np

FILE = "prescan.faiss"
DEPTH_MARGIN = 64  # rows beyond k that the first pass hands to the exact check
_CHUNK = 8192
# Relative rounding error of a float32 sum of d squared differences, with room
# to spare: the first pass's distances are trusted only up to this factor.
_UNIT = 2.0**-23


@dataclass
class Prescan:
    index: faiss.Index  # 16-bit copy of the vectors, same row order
    max_error: float  # largest ||x - x'|| over the rows

    def check(self, flat: faiss.Index) -> None:
        if (self.index.ntotal, self.index.d) != (flat.ntotal, flat.d):
            raise ValueError(
                f"16-bit copy has {self.index.ntotal} x {self.index.d} vectors, "
                f"the index {flat.ntotal} x {flat.d}"
            )
        if not np.isfinite(self.max_error) or self.max_error < 0:
            raise ValueError(f"16-bit copy has an invalid max_error {self.max_error}")


def build(vectors: np.ndarray) -> Prescan:
    """The 16-bit copy of ``vectors`` and its largest error, measured row by row
    on what FAISS decodes (in float64, rounded up)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)
    index.train(vectors[:1])  # 16-bit floats need no statistics
    index.add(vectors)
    worst = 0.0
    for start in range(0, count, _CHUNK):
        stop = min(start + _CHUNK, count)
        decoded = index.reconstruct_n(start, stop - start).astype(np.float64)
        residual = np.linalg.norm(vectors[start:stop] - decoded, axis=1)
        worst = max(worst, float(residual.max(initial=0.0)))
    return Prescan(index, float(np.nextafter(worst * (1 + 1e-9), np.inf)))


@dataclass
class Result:
    distances: np.ndarray  # (queries, k) float32 squared L2, as IndexFlatL2 gives
    labels: np.ndarray  # (queries, k) int64 rows, -1 where fewer than k exist
    fallbacks: int  # queries that needed the float32 scan


def search(
    flat: faiss.Index,
    prescan: Prescan,
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    params: faiss.SearchParameters | None = None,
) -> Result:
    """The k nearest rows to each query by exact L2 distance among the rows
    ``params`` selects: what ``flat.search(queries, k, params=params)`` answers,
    up to the order of rows at equal distance. ``vectors`` are ``flat``'s
    float32 vectors."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    depth = min(k + DEPTH_MARGIN, flat.ntotal)
    first_d, first_l = prescan.index.search(queries, depth, params=params)
    distances = np.full((len(queries), k), np.inf, dtype=np.float32)
    labels = np.full((len(queries), k), -1, dtype=np.int64)
    slack = 1.0 + (flat.d + 3) * _UNIT
    unproven = []
    for i, query in enumerate(queries):
        found = first_l[i] >= 0
        rows = first_l[i][found]
        diff = vectors[rows].astype(np.float64) - query.astype(np.float64)
        exact = np.einsum("ij,ij->i", diff, diff)
        order = np.argsort(exact, kind="stable")[:k]
        complete = len(rows) < depth  # the first pass returned every selected row
        if not complete:
            left_out = np.sqrt(max(float(first_d[i][-1]), 0.0) / slack)
            bound = left_out - prescan.max_error
            if len(order) < k or np.sqrt(exact[order[-1]]) > bound:
                unproven.append(i)
                continue
        distances[i, : len(order)] = exact[order]
        labels[i, : len(order)] = rows[order]
    if unproven:
        d, l_ = flat.search(queries[unproven], k, params=params)
        distances[unproven] = d
        labels[unproven] = l_
    return Result(distances, labels, len(unproven))
