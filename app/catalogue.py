"""A loaded index ready to search: filters, duplicate collapse, exact L2 search."""

import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from embedding.augment import expand_query
from index_builder import prescan
from index_builder.store import STYLE_COLUMNS, StoredIndex

from . import metrics
from .compat import is_demo
from .errors import AppError

FILTERS = ("gender", "masterCategory", "articleType", "baseColour")
MAX_K = 50
FILTER_CACHE = 64  # filter combinations whose rows are kept
# How many rows beyond k the first pass of an expanded search keeps: enough for
# the expanded query's nearest to lie among them in nearly every search.
EXPANSION_DEPTH = 256


@dataclass
class Hit:
    row: int
    distance: float


@dataclass
class Catalogue:
    stored: StoredIndex
    row_of: dict[str, int]
    group: np.ndarray  # rows with byte-identical images share a group number
    columns: dict[str, np.ndarray]  # filter columns as object arrays
    choices: dict[str, list[str]]  # filter -> values present in the index
    demo: bool
    loaded_at: float = field(default_factory=time.time)
    _rows_by_filters: dict = field(default_factory=dict)
    _masks: dict = field(default_factory=dict)

    @property
    def manifest(self) -> dict:
        return self.stored.manifest

    @property
    def ids(self) -> list[str]:
        return self.stored.items["id"]

    def __len__(self) -> int:
        return len(self.stored)

    def metadata(self, row: int) -> dict:
        items = self.stored.items
        return {name: items[name][row] for name in STYLE_COLUMNS if name in items}

    def image_file(self, row: int) -> Path | None:
        """The catalogue image of a row, only if it lies inside the catalogue."""
        source = Path(self.manifest.get("source", "")).resolve()
        relative = self.stored.items["path"][row]
        if not relative:
            return None
        path = (source / relative).resolve()
        if not path.is_relative_to(source) or not path.is_file():
            return None
        return path

    def row(self, item_id: str) -> int:
        try:
            return self.row_of[item_id]
        except KeyError:
            raise AppError(
                404, "unknown_item", f"no item with id {item_id!r} in the index"
            ) from None

    def check_filters(self, filters: dict[str, str]) -> dict[str, str]:
        """Keep the filters that are set; refuse values the index does not have."""
        chosen = {}
        for name in FILTERS:
            value = (filters.get(name) or "").strip()
            if not value:
                continue
            if value not in self.choices[name]:
                raise AppError(
                    400,
                    "unknown_filter_value",
                    f"{name}={value!r} matches no item; choose one of: "
                    + ", ".join(self.choices[name]),
                )
            chosen[name] = value
        return chosen

    def allowed_rows(self, filters: dict, exclude_group: int | None = None):
        """Rows that pass the filters, one per group of identical images. Kept
        for the last filter combinations asked (not for "similar" searches,
        which each leave out their own item)."""
        key = tuple(sorted(filters.items()))
        if exclude_group is None and key in self._rows_by_filters:
            return self._rows_by_filters[key]
        mask = np.ones(len(self), dtype=bool)
        for name, value in filters.items():
            mask &= self.columns[name] == value
        if exclude_group is not None:
            mask &= self.group != exclude_group
        rows = np.flatnonzero(mask)
        _, first = np.unique(self.group[rows], return_index=True)
        rows = np.sort(rows[first])
        rows.flags.writeable = False  # shared between requests
        if exclude_group is None:
            if len(self._rows_by_filters) >= FILTER_CACHE:
                self._rows_by_filters.clear()
                self._masks.clear()
            self._masks[id(rows)] = (self._mask_of(rows), rows)
            self._rows_by_filters[key] = rows
        return rows

    def query_vectors(self, embeddings: np.ndarray) -> np.ndarray:
        """Model embeddings -> vectors to search this index with: through its
        whitening when it has one, as the stored vectors went."""
        whitening = self.stored.whitening
        return whitening.apply(embeddings) if whitening else embeddings

    def find(
        self, queries: np.ndarray, k: int, rows: np.ndarray, expand_rows: np.ndarray
    ) -> list[list[Hit]]:
        """The k nearest of ``rows`` to each query, after query expansion when
        the index's manifest asks for it: the query plus its best ``answers``
        among ``expand_rows`` (stored vectors weighted by similarity ** alpha),
        searched again as a unit vector.

        With the 16-bit first pass, one pass over all rows usually settles both
        searches: its neighbourhood of the query holds the answers, and the
        expanded query lies close enough to the query for the same
        neighbourhood to prove its k nearest too (see prescan.Neighbourhood).
        Whatever it cannot prove goes through an exact search of its own."""
        expansion = self.manifest.get("query_expansion")
        if not expansion:
            return self.search(queries, k, rows)
        stored = self.stored.vectors()
        answers, alpha = int(expansion["answers"]), expansion["alpha"]
        first_pass = self.stored.first_pass
        hoods = (
            prescan.neighbourhoods(first_pass, queries, k + EXPANSION_DEPTH)
            if first_pass is not None
            else [None] * len(queries)
        )
        expand_mask, final_mask = self._mask(expand_rows), self._mask(rows)
        out = []
        for query, hood in zip(queries, hoods, strict=True):
            found = (
                hood.nearest(stored, answers, selected=expand_mask) if hood else None
            )
            if found is None:
                nearest = self.search(query[None], answers, expand_rows)[0]
                found = (
                    np.array([h.distance for h in nearest]),
                    np.array([h.row for h in nearest], dtype=np.int64),
                )
            else:
                metrics.count_search_passes(1, 0)
            squared, found_rows = found
            expanded = expand_query(
                query, stored[found_rows], 1.0 - squared / 2.0, alpha
            )
            final = hood.nearest(stored, k, expanded, final_mask) if hood else None
            if final is None:
                out.extend(self.search(expanded[None], k, rows))
                continue
            metrics.count_search_passes(1, 0)
            out.append(
                [Hit(int(r), float(np.float32(d))) for d, r in zip(*final, strict=True)]
            )
        return out

    def _mask(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` as a boolean mask over the index; the masks of the cached
        filter combinations are made once, when their rows are."""
        cached = self._masks.get(id(rows))
        if cached is not None and cached[1] is rows:
            return cached[0]
        return self._mask_of(rows)

    def _mask_of(self, rows: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(self), dtype=bool)
        mask[rows] = True
        mask.flags.writeable = False
        return mask

    def search(self, queries: np.ndarray, k: int, rows: np.ndarray) -> list[list[Hit]]:
        """Exact L2 search restricted to ``rows``; k hits whenever k rows exist."""
        index = self.stored.index
        params = None
        if len(rows) < len(self):
            bitmap = np.zeros(len(self), dtype=bool)
            bitmap[rows] = True
            packed = np.packbits(bitmap, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(self), faiss.swig_ptr(packed))
            params = faiss.SearchParameters(sel=selector)
        k_eff = min(k, len(rows))
        if k_eff == 0:
            return [[] for _ in queries]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        first_pass = self.stored.first_pass
        if first_pass is None:
            distances, labels = index.search(queries, k_eff, params=params)
        else:
            result = prescan.search(
                index, first_pass, self.stored.vectors(), queries, k_eff, params
            )
            distances, labels = result.distances, result.labels
            metrics.count_search_passes(len(queries), result.fallbacks)
        return [
            [Hit(int(r), float(d)) for d, r in zip(ds, rs, strict=True) if r >= 0]
            for ds, rs in zip(distances, labels, strict=True)
        ]


def group_numbers(ids: list[str], dup_of: list[str]) -> np.ndarray:
    """One number per set of byte-identical images (an item and its copies)."""
    numbers: dict[str, int] = {}
    group = np.empty(len(ids), dtype=np.int64)
    for row, (item_id, original) in enumerate(zip(ids, dup_of, strict=True)):
        key = original or item_id
        group[row] = numbers.setdefault(key, len(numbers))
    return group


def load_catalogue(stored: StoredIndex) -> Catalogue:
    items = stored.items
    count = len(stored)
    ids = [str(i) for i in items["id"]]
    dup_of = items.get("dup_of") or [""] * count
    columns = {
        name: np.asarray(items.get(name) or [""] * count, dtype=object)
        for name in FILTERS
    }
    choices = {
        name: sorted({v for v in column if v}) for name, column in columns.items()
    }
    return Catalogue(
        stored=stored,
        row_of={item_id: row for row, item_id in enumerate(ids)},
        group=group_numbers(ids, [str(d or "") for d in dup_of]),
        columns=columns,
        choices=choices,
        demo=is_demo(stored.manifest),
    )
