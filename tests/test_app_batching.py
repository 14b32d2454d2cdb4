"""Unfiltered search with copies collapsed afterwards, and batched across threads,
answers exactly like a search restricted to one row per set of copies."""

import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from app.batching import SearchBatcher
from app.catalogue import load_catalogue
from index_builder.store import StoredIndex


def catalogue_with_copies(count=60, copies_of_first=20, dim=16, seed=0):
    """Items whose first one has many byte-identical copies (same vector)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.vstack([vectors, np.repeat(vectors[:1], copies_of_first, axis=0)])
    ids = [str(i) for i in range(len(vectors))]
    dup_of = [""] * count + ["0"] * copies_of_first
    index = faiss.IndexFlatL2(dim)
    index.add(vectors)
    items = {"id": ids, "path": [""] * len(ids), "sha256": [""] * len(ids)}
    items["dup_of"] = dup_of
    stored = StoredIndex(Path("."), index, items, {"item_count": len(ids)})
    return load_catalogue(stored), vectors


@pytest.mark.parametrize("k", [1, 5, 30, 60])
def test_collapsing_after_the_search_equals_restricting_it(k):
    catalogue, vectors = catalogue_with_copies()
    rng = np.random.default_rng(1)
    queries = np.vstack([vectors[:1], rng.standard_normal((9, 16))]).astype("float32")

    expected = catalogue.search(queries, k, catalogue.allowed_rows({}))
    got = catalogue.search_all(queries, k)

    assert [[h.row for h in hits] for hits in got] == [
        [h.row for h in hits] for hits in expected
    ]
    assert all(len(hits) == k for hits in got)
    assert got[0][0].row == 0  # the copies of item 0 stand behind row 0


def test_more_copies_than_room_falls_back_to_the_restricted_search():
    # 60 copies of one vector: the nearest 12 hits of its query are all copies.
    catalogue, vectors = catalogue_with_copies(count=10, copies_of_first=60)

    hits = catalogue.search_all(vectors[:1], 2)[0]

    assert [h.row for h in hits][0] == 0
    assert len({h.row for h in hits}) == 2


def test_concurrent_searches_get_their_own_answers():
    catalogue, vectors = catalogue_with_copies()
    calls = []

    def counted(queries, k):
        calls.append(len(queries))
        return catalogue.search_all(queries, k)

    batcher = SearchBatcher(counted)
    results = {}
    start = threading.Barrier(8)

    def ask(i):
        start.wait()
        results[i] = batcher.search(vectors[i : i + 1], 1 + i % 3)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    for i in range(8):
        expected = catalogue.search_all(vectors[i : i + 1], 1 + i % 3)
        assert [[h.row for h in r] for r in results[i]] == [
            [h.row for h in r] for r in expected
        ]
    assert sum(calls) == 8


def test_a_failed_batch_fails_every_request_in_it():
    def broken(queries, k):
        raise RuntimeError("index gone")

    batcher = SearchBatcher(broken)
    with pytest.raises(RuntimeError, match="index gone"):
        batcher.search(np.zeros((1, 4), np.float32), 1)
    with pytest.raises(RuntimeError, match="index gone"):  # and it is not stuck
        batcher.search(np.zeros((1, 4), np.float32), 1)
