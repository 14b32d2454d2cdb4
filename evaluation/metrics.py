"""Leave-one-out neighbour search and ranking metrics over labelled items.

Every labelled item is a query against the others. A query's candidates leave
out the query itself and its byte-identical copies (same sha256): finding the
same photo again under another id says nothing about similarity.

Definitions (k is the cut-off, ``rel_i`` is 1 when the answer at rank i has the
query's label):

- precision@k = (sum of rel_i for i <= k) / k. Missing answers (fewer than k
  candidates) count as wrong: the shopper sees fewer than k good answers.
- AP@k = (sum over i <= k of precision@i * rel_i) / min(k, R), where R is the
  number of candidates with the query's label; 0 when R is 0. This is the usual
  "average precision at k" (as in the Kaggle ``apk`` metric): a perfect list of
  min(k, R) relevant answers scores 1. mAP@k is its mean over queries.

Distances are exact squared L2: a float32 matrix product shortlists the
nearest candidates (k plus a margin), whose distances are then recomputed in
float64 as sums of squared differences. Equal distances are ordered by row, so
results never depend on the order of floating-point ties.
"""

import numpy as np

CHUNK = 1024  # queries per block of the distance matrix
MARGIN = 16  # extra shortlisted candidates re-ranked exactly


def group_ids(keys) -> np.ndarray:
    """Small integers naming equal keys (e.g. sha256): rows with the same key
    share an id. An empty key never matches anything, so it gets its own id."""
    ids = np.empty(len(keys), dtype=np.int64)
    seen: dict = {}
    for row, key in enumerate(keys):
        if key == "" or key is None:
            ids[row] = -1 - row
        else:
            ids[row] = seen.setdefault(key, row)
    return ids


def first_of_group(groups: np.ndarray) -> np.ndarray:
    """Boolean mask: the lowest row of each group (the one a collapsed list keeps)."""
    _, first = np.unique(groups, return_index=True)
    mask = np.zeros(len(groups), dtype=bool)
    mask[first] = True
    return mask


def neighbours(
    vectors: np.ndarray,
    k: int,
    groups: np.ndarray | None = None,
    queries: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out k nearest neighbours by exact L2.

    Parameters
    ----------
    vectors: (n, d) embeddings.
    k: answers per query.
    groups: (n,) group id per row (see ``group_ids``); a query's whole group is
        left out of its candidates. Defaults to every row its own group.
    queries: row numbers to search for; defaults to all rows.
    candidates: boolean mask of rows that may be answers; defaults to all rows.

    Returns ``(rows, distances)``, both (len(queries), k); missing answers (fewer
    than k candidates) have row -1 and distance inf.
    """
    x = np.asarray(vectors, dtype=np.float64)
    x32 = x.astype(np.float32)
    n = len(x)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    queries = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    allowed = np.ones(n, bool) if candidates is None else np.asarray(candidates, bool)
    cand_rows = np.flatnonzero(allowed)
    cx = x32[cand_rows]
    c_norms = np.einsum("ij,ij->i", cx, cx)
    c_groups = groups[cand_rows]

    out_rows = np.full((len(queries), k), -1, dtype=np.int64)
    out_dist = np.full((len(queries), k), np.inf)
    for start in range(0, len(queries), CHUNK):
        block = queries[start : start + CHUNK]
        d = c_norms[None, :] - 2 * x32[block] @ cx.T  # + |q|^2, same for the row
        d[groups[block][:, None] == c_groups[None, :]] = np.inf
        for i, (q, approx) in enumerate(zip(block, d, strict=True)):
            shortlist = cand_rows[smallest(approx, k + MARGIN)]
            exact = ((x[shortlist] - x[q]) ** 2).sum(axis=1)
            order = np.lexsort((shortlist, exact))[:k]
            out_rows[start + i, : len(order)] = shortlist[order]
            out_dist[start + i, : len(order)] = exact[order]
    return out_rows, out_dist


def smallest(dist: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k smallest finite values, by (value, position)."""
    finite = np.flatnonzero(np.isfinite(dist))
    if len(finite) > k:
        # Everything up to the k-th value, ties at the boundary included, then a
        # stable sort: equal distances keep row order.
        kth = np.partition(dist[finite], k - 1)[k - 1]
        finite = finite[dist[finite] <= kth]
    order = finite[np.argsort(dist[finite], kind="stable")]
    return order[:k]


def relevance(labels: np.ndarray, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(q, k) booleans: answer has the query's label. Empty labels and missing
    answers (-1) are never relevant."""
    labels = np.asarray(labels, dtype=object)
    padded = np.append(labels, "")  # row -1 reads the empty label
    query_labels = labels[queries][:, None]
    return (padded[rows] == query_labels) & (query_labels != "")


def relevant_counts(
    labels: np.ndarray,
    groups: np.ndarray,
    queries: np.ndarray,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """R per query: candidates with the query's label, outside the query's group."""
    labels = np.asarray(labels, dtype=object)
    allowed = np.ones(len(labels), bool) if candidates is None else candidates
    per_label: dict = {}
    per_group_label: dict = {}
    for row in np.flatnonzero(allowed):
        key = labels[row]
        per_label[key] = per_label.get(key, 0) + 1
        pair = (groups[row], key)
        per_group_label[pair] = per_group_label.get(pair, 0) + 1
    counts = np.empty(len(queries), dtype=np.int64)
    for i, q in enumerate(queries):
        key = labels[q]
        if key == "":
            counts[i] = 0
            continue
        counts[i] = per_label.get(key, 0) - per_group_label.get((groups[q], key), 0)
    return counts


def precision_at(rel: np.ndarray, k: int) -> np.ndarray:
    """Per-query precision@k from (q, >=k) relevance."""
    return rel[:, :k].sum(axis=1) / k


def average_precision_at(rel: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Per-query AP@k, normalised by min(k, R) (see module docstring)."""
    hits = rel[:, :k].astype(np.float64)
    precision_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    norm = np.minimum(k, counts)
    total = (precision_i * hits).sum(axis=1)
    return np.divide(total, norm, out=np.zeros(len(rel)), where=norm > 0)
