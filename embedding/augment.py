"""Database-side augmentation: each catalogue vector moves toward its neighbours.

Every catalogue vector is replaced by the weighted mean of itself (weight 1) and
its ``k`` nearest catalogue neighbours (weight: cosine similarity ** ``alpha``,
negative similarities count as 0), then L2-normalised. Items that look alike
pull together, so a query that lands near one of them lands near all. It is
computed once when the index is built; queries are embedded as before and are
not augmented. Byte-identical copies of an item are not its neighbours (they
would only repeat it).
"""

import numpy as np

CHUNK = 1024  # rows per block of the similarity matrix


def neighbour_lists(
    vectors: np.ndarray, depth: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``depth`` most similar other rows of every row, by inner product.

    ``groups`` (n,) gives rows that are copies of each other the same id; a
    row's own group is never in its list. Returns ``(rows, similarities)``, both
    (n, depth), most similar first, equal similarities by row; rows with fewer
    neighbours are padded with row -1 and similarity 0.
    """
    x = np.asarray(vectors, dtype=np.float32)
    n = len(x)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    rows = np.full((n, depth), -1, dtype=np.int64)
    sims = np.zeros((n, depth), dtype=np.float32)
    for start in range(0, n, CHUNK):
        block = np.arange(start, min(start + CHUNK, n))
        s = x[block] @ x.T
        s[groups[block][:, None] == groups[None, :]] = -np.inf
        for i, row in enumerate(block):
            keep = min(depth, n - 1)
            top = np.argpartition(-s[i], keep - 1)[:keep] if keep else block[:0]
            top = top[np.isfinite(s[i, top])]
            top = top[np.lexsort((top, -s[i, top]))]
            rows[row, : len(top)] = top
            sims[row, : len(top)] = s[i, top]
    return rows, sims


def weights(similarities: np.ndarray, alpha: float) -> np.ndarray:
    """Neighbour weights: max(similarity, 0) ** alpha."""
    return np.maximum(similarities, 0.0) ** alpha


def combine(
    vectors: np.ndarray, own: np.ndarray, rows: np.ndarray, sims: np.ndarray, alpha
) -> np.ndarray:
    """Unit vectors of ``own`` (m, d) plus their neighbours ``rows`` (m, k) of
    ``vectors`` weighted by ``sims``; row -1 contributes nothing."""
    w = weights(sims, alpha) * (rows >= 0)
    # One neighbour rank at a time: gathering all (m, k, d) at once would hold k
    # copies of the catalogue in memory (1.35 GB at 44k items, k=10, 768-d).
    total = np.array(own, dtype=np.float32)
    for j in range(rows.shape[1]):
        total += w[:, j, None] * vectors[np.maximum(rows[:, j], 0)]
    return (total / (np.linalg.norm(total, axis=1, keepdims=True) + 1e-12)).astype(
        np.float32
    )


def augment(
    vectors: np.ndarray, k: int, alpha: float = 1.0, groups: np.ndarray | None = None
) -> np.ndarray:
    """(n, d) unit catalogue vectors -> (n, d) augmented unit vectors."""
    x = np.asarray(vectors, dtype=np.float32)
    if k < 1:
        return x.copy()
    rows, sims = neighbour_lists(x, k, groups)
    return combine(x, x, rows, sims, alpha)


def expand_query(
    query: np.ndarray, answers: np.ndarray, similarities: np.ndarray, alpha=3.0
) -> np.ndarray:
    """Query expansion: the (d,) query plus its first (m, d) answers from the
    index, weighted by max(similarity, 0) ** alpha, as a unit vector to search
    again with. With unit vectors, similarity = 1 - squared L2 distance / 2."""
    total = np.asarray(query, np.float64) + weights(similarities, alpha) @ answers
    return (total / (np.linalg.norm(total) + 1e-12)).astype(np.float32)
