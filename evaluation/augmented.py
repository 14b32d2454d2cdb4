"""Leave-one-out search against a catalogue augmented with its neighbours.

With database-side augmentation (``embedding.augment``) every catalogue vector
is averaged with its nearest catalogue neighbours. In a leave-one-out run the
query is itself in the catalogue, so a candidate whose average includes the
query (or a byte-identical copy of it) would carry part of the query and look
closer than it should. Here each query is scored against the catalogue as it
would be augmented without the query: the candidates whose neighbour lists
contain the query's group get their average recomputed from their next
neighbours outside that group. Everything else is exact: queries keep their
own raw vectors, as a shopper's photo would.
"""

import numpy as np

from embedding.augment import combine, expand_query, neighbour_lists

from .metrics import smallest

CHUNK = 512  # queries per block of the similarity matrix


class AugmentedSearch:
    """A ``search`` for ``evaluate`` that is honest about augmentation."""

    def __init__(
        self,
        vectors: np.ndarray,
        k: int,
        alpha: float,
        groups: np.ndarray,
        expand: int = 0,
        expand_alpha: float = 3.0,
    ):
        self.x = np.asarray(vectors, dtype=np.float32)
        self.k, self.alpha = k, alpha
        self.expand, self.expand_alpha = expand, expand_alpha
        self.groups = np.asarray(groups)
        self.users: dict[int, list[int]] = {}  # group -> rows averaging it in
        if k == 0:
            self.augmented = self.x
            return
        _, sizes = np.unique(self.groups, return_counts=True)
        # Deep enough to refill k after dropping a whole group of copies.
        self.rows, self.sims = neighbour_lists(self.x, k + int(sizes.max()), groups)
        self.augmented = combine(
            self.x, self.x, self.rows[:, :k], self.sims[:, :k], alpha
        )
        for row, listed in enumerate(self.rows[:, :k]):
            for g in set(self.groups[listed[listed >= 0]].tolist()):
                self.users.setdefault(g, []).append(row)

    def without(self, group: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows whose average includes ``group`` and their averages without it."""
        affected = np.array(self.users.get(group, []), dtype=np.int64)
        rows = np.full((len(affected), self.k), -1, dtype=np.int64)
        sims = np.zeros((len(affected), self.k), dtype=np.float32)
        for i, row in enumerate(affected):
            listed = self.rows[row]
            keep = (listed >= 0) & (self.groups[np.maximum(listed, 0)] != group)
            refill = np.flatnonzero(keep)[: self.k]
            rows[i, : len(refill)] = listed[refill]
            sims[i, : len(refill)] = self.sims[row, refill]
        return affected, combine(self.x, self.x[affected], rows, sims, self.alpha)

    def similarities(self, queries, vectors, cand_rows, fixes) -> np.ndarray:
        """(len(queries), candidates) similarities of ``vectors`` (one per query)
        to the catalogue as augmented without each query's group."""
        sims = (vectors @ self.augmented.T).astype(np.float64)
        for i, q in enumerate(queries):
            affected, redone = fixes[i]
            sims[i, affected] = redone @ vectors[i]
            sims[i, self.groups == self.groups[q]] = -np.inf
        return sims[:, cand_rows]

    def expand_queries(self, queries, sims, cand_rows, fixes) -> np.ndarray:
        """Each query plus its ``expand`` best answers weighted by similarity **
        expand_alpha, normalised (query expansion)."""
        out = self.x[queries].copy()
        for i in range(len(queries)):
            top = smallest(-sims[i], self.expand)
            rows = cand_rows[top]
            answers = self.augmented[rows].copy()
            affected, redone = fixes[i]
            for j, row in enumerate(rows):
                hit = np.flatnonzero(affected == row)
                if len(hit):
                    answers[j] = redone[hit[0]]
            out[i] = expand_query(out[i], answers, sims[i, top], self.expand_alpha)
        return out

    def __call__(self, vectors, k, groups, queries, candidates):
        """Same contract as ``metrics.neighbours``; ``vectors`` must be the raw
        vectors this search was built on."""
        if vectors is not self.x and not np.array_equal(vectors, self.x):
            raise ValueError("search built on other vectors")
        cand_rows = np.flatnonzero(candidates)
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        out_dist = np.full((len(queries), k), np.inf)
        for start in range(0, len(queries), CHUNK):
            block = np.asarray(queries[start : start + CHUNK])
            fixes = [self.without(self.groups[q]) for q in block]
            query_vectors = self.x[block]
            sims = self.similarities(block, query_vectors, cand_rows, fixes)
            if self.expand:
                query_vectors = self.expand_queries(block, sims, cand_rows, fixes)
                sims = self.similarities(block, query_vectors, cand_rows, fixes)
            for i, sim in enumerate(sims):
                top = smallest(-sim, k)  # equal similarities by row
                out_rows[start + i, : len(top)] = cand_rows[top]
                # Squared L2 between the (unit) query and the candidates.
                out_dist[start + i, : len(top)] = 2.0 - 2.0 * sim[top]
        return out_rows, out_dist
