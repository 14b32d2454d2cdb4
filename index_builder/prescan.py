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

from dataclasses import dataclass, field

import faiss
import numpy as np

FILE = "prescan.faiss"
DEPTH_MARGIN = 64  # rows beyond k that the first pass hands to the exact check
_CHUNK = 2048  # rows decoded at a time when measuring the error
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
class Neighbourhood:
    """The rows a 16-bit pass found nearest a query, and ``floor``: every other
    row the pass looked at lies at least that far (L2, not squared) from the
    query. Exact distances come from the float32 vectors of those rows, read
    once (in float64) however many points are measured against them."""

    query: np.ndarray  # float64
    rows: np.ndarray
    floor: float  # inf when the pass returned every row it looked at
    _block: np.ndarray | None = field(default=None, repr=False)
    _norms: np.ndarray | None = field(default=None, repr=False)

    def nearest(
        self,
        vectors: np.ndarray,
        k: int,
        point: np.ndarray | None = None,
        selected: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The k rows nearest ``point`` (default: the query) among those the
        boolean mask ``selected`` keeps (default: all), as (squared distances,
        rows), when this neighbourhood proves them; None when a row outside it
        might be nearer. A row outside lies at least ``floor - ||point - query||``
        from ``point`` (triangle inequality), so the answer stands when the k-th
        distance found is within that."""
        if point is None:
            point, shift = self.query, 0.0
        else:
            point = np.asarray(point, dtype=np.float64)
            shift = float(np.linalg.norm(point - self.query)) * (1 + 1e-12)
        if self._block is None:
            self._block = vectors[self.rows].astype(np.float64)
            self._norms = np.einsum("ij,ij->i", self._block, self._block)
        squared = self._norms - 2.0 * (self._block @ point) + point @ point
        np.maximum(squared, 0.0, out=squared)
        rows = self.rows
        if selected is not None:
            keep = selected[rows]
            rows, squared = rows[keep], squared[keep]
        order = np.argsort(squared, kind="stable")[:k]
        if np.isinf(self.floor):
            pass  # every row was looked at: fewer than k means fewer exist
        elif len(order) < k or np.sqrt(squared[order[-1]]) > self.floor - shift:
            return None
        return squared[order], rows[order]


def neighbourhoods(
    prescan: Prescan,
    queries: np.ndarray,
    depth: int,
    params: faiss.SearchParameters | None = None,
) -> list[Neighbourhood]:
    """One 16-bit pass: each query's ``depth`` nearest rows by the copy among the
    rows ``params`` selects, and how far every other selected row is at least.
    A row ``x`` whose copy is ``x'`` lies at least ``||q - x'|| - max_error``
    from ``q``; the pass's own float32 rounding is allowed for as well."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    depth = min(depth, prescan.index.ntotal)
    first_d, first_l = prescan.index.search(queries, depth, params=params)
    slack = 1.0 + (prescan.index.d + 3) * _UNIT
    hoods = []
    for query, found_d, found_l in zip(queries, first_d, first_l, strict=True):
        rows = found_l[found_l >= 0]
        if len(rows) < depth:  # the pass returned every selected row
            floor = np.inf
        else:
            left_out = np.sqrt(max(float(found_d[-1]), 0.0) / slack)
            floor = left_out - prescan.max_error
        hoods.append(Neighbourhood(query.astype(np.float64), rows, floor))
    return hoods


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
    hoods = neighbourhoods(prescan, queries, k + DEPTH_MARGIN, params)
    distances = np.full((len(queries), k), np.inf, dtype=np.float32)
    labels = np.full((len(queries), k), -1, dtype=np.int64)
    unproven = []
    for i, hood in enumerate(hoods):
        found = hood.nearest(vectors, k)
        if found is None:
            unproven.append(i)
            continue
        squared, rows = found
        distances[i, : len(rows)] = squared
        labels[i, : len(rows)] = rows
    if unproven:
        d, l_ = flat.search(queries[unproven], k, params=params)
        distances[unproven] = d
        labels[unproven] = l_
    return Result(distances, labels, len(unproven))
