"""Exact search through the 16-bit first pass: same answers as the float32 scan."""

import faiss
import numpy as np
import pytest

from app import catalogue as app_catalogue
from app.catalogue import load_catalogue
from embedding.augment import expand_query
from index_builder import prescan, store


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def clustered(count: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors in tight clusters, so that near neighbours crowd together."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count // 50, dim))
    members = centres[rng.integers(0, len(centres), count)]
    return unit(members + 0.3 * rng.standard_normal((count, dim)))


def flat_of(vectors: np.ndarray) -> faiss.IndexFlatL2:
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    return index


def selector(count: int, rows) -> faiss.SearchParameters:
    bitmap = np.zeros(count, dtype=bool)
    bitmap[rows] = True
    packed = np.packbits(bitmap, bitorder="little")
    params = faiss.SearchParameters(
        sel=faiss.IDSelectorBitmap(count, faiss.swig_ptr(packed))
    )
    params.packed = packed  # the selector reads this buffer: keep it alive
    return params


def assert_same_answer(vectors, queries, got: prescan.Result, distances, labels):
    """What the float32 scan answered: the same distances, rows in order of exact
    distance, and the same rows except where two lie at the k-th distance to
    float32 rounding (then either is exact)."""
    np.testing.assert_allclose(got.distances, distances, rtol=0, atol=2e-6)
    for query, mine, theirs, shown in zip(
        queries, got.labels, labels, got.distances, strict=True
    ):
        assert list(mine >= 0) == list(theirs >= 0)
        exact = ((vectors.astype(np.float64) - query) ** 2).sum(axis=1)
        real = mine[mine >= 0]
        np.testing.assert_allclose(shown[: len(real)], exact[real], rtol=0, atol=1e-6)
        assert np.all(np.diff(exact[real]) >= -1e-6)
        for row in set(real) ^ set(theirs[theirs >= 0]):
            assert abs(exact[row] - exact[real[-1]]) < 2e-6, row


def test_build_records_the_largest_error_of_the_16_bit_copy():
    vectors = clustered(3000, 48, seed=1)

    first_pass = prescan.build(vectors)

    decoded = first_pass.index.reconstruct_n(0, len(vectors)).astype(np.float64)
    errors = np.linalg.norm(vectors - decoded, axis=1)
    assert first_pass.index.ntotal == 3000
    assert 0 < errors.max() <= first_pass.max_error <= errors.max() * (1 + 1e-6)
    # 16-bit floats keep about 11 bits: far closer than neighbouring catalogue items
    assert first_pass.max_error < 1e-3


@pytest.mark.parametrize("k", [1, 5, 50])
@pytest.mark.parametrize("filtered", [False, True])
def test_search_answers_as_the_float32_scan(k, filtered):
    vectors = clustered(4000, 48, seed=2)
    rng = np.random.default_rng(3)
    queries = unit(
        vectors[rng.integers(0, 4000, 200)] + 0.2 * rng.standard_normal((200, 48))
    )
    flat = flat_of(vectors)
    params = selector(4000, rng.permutation(4000)[:1500]) if filtered else None

    got = prescan.search(flat, prescan.build(vectors), vectors, queries, k, params)

    distances, labels = flat.search(queries, k, params=params)
    assert_same_answer(vectors, queries, got, distances, labels)
    if filtered:
        assert set(got.labels.ravel()) <= set(np.flatnonzero(_bitmap(params, 4000)))
    # well-spread neighbours: the 16-bit pass proves every answer by itself
    assert got.fallbacks == 0


def _bitmap(params, count: int) -> np.ndarray:
    return np.unpackbits(params.packed, bitorder="little")[:count].astype(bool)


def test_rows_crowded_within_the_error_go_through_the_float32_scan():
    """A hundred rows within 1e-5 of each other: closer together than the 16-bit
    copy can tell apart, so the first pass cannot prove their order."""
    rng = np.random.default_rng(4)
    spread = clustered(2000, 32, seed=5)
    centre = spread[0]
    crowd = unit(centre + 1e-5 * rng.standard_normal((100, 32)))
    vectors = np.concatenate([spread, crowd])
    queries = unit(centre + 0.05 * rng.standard_normal((20, 32)))
    flat = flat_of(vectors)

    first_pass = prescan.build(vectors)

    got = prescan.search(flat, first_pass, vectors, queries, 5)

    distances, labels = flat.search(queries, 5)
    np.testing.assert_array_equal(got.labels, labels)
    np.testing.assert_array_equal(got.distances, distances)
    assert got.fallbacks == 20
    # the 16-bit copy alone would have answered otherwise
    assert not np.array_equal(first_pass.index.search(queries, 5)[1], labels)


def test_fewer_selected_rows_than_k_are_all_returned_then_padding():
    vectors = clustered(500, 16, seed=6)
    flat = flat_of(vectors)
    params = selector(500, [7, 300, 42])
    query = unit(vectors[300:301] + 0.01)

    got = prescan.search(flat, prescan.build(vectors), vectors, query, 5, params)

    distances, labels = flat.search(query, 5, params=params)
    assert sorted(got.labels[0][:3]) == [7, 42, 300]
    assert list(got.labels[0]) == list(labels[0]) and labels[0][3] == -1
    np.testing.assert_allclose(got.distances[0][:3], distances[0][:3], atol=2e-6)
    assert got.fallbacks == 0


def write_build(tmp_path, vectors):
    link = tmp_path / "indexes" / "shop"
    folder = store.build_dir_for(link)
    items = {name: [str(i) for i in range(len(vectors))] for name in ("id", "path")}
    store.write_build(folder, vectors, items, {"embedding_dim": vectors.shape[1]})
    store.publish(folder, link)
    return link, folder


@pytest.mark.parametrize("mmap", [False, True])
def test_a_build_stores_the_16_bit_copy_and_reads_it_back(tmp_path, mmap):
    vectors = clustered(800, 24, seed=7)
    link, folder = write_build(tmp_path, vectors)

    stored = store.read_index(link, mmap=mmap)

    entry = stored.manifest["prescan"]
    assert entry["file"] == prescan.FILE and (folder / prescan.FILE).is_file()
    assert entry["max_error"] == prescan.build(vectors).max_error
    assert stored.first_pass.max_error == entry["max_error"]
    decoded = stored.first_pass.index.reconstruct_n(0, 800)
    np.testing.assert_array_equal(
        decoded, prescan.build(vectors).index.reconstruct_n(0, 800)
    )
    # 16-bit floats: within half a unit of the 11th bit (FAISS rounds its own way,
    # which is why the error is measured on what it decodes)
    np.testing.assert_allclose(decoded, vectors, rtol=2.0**-10, atol=2.0**-24)


def test_the_catalogue_answers_the_same_with_and_without_the_first_pass(tmp_path):
    vectors = clustered(3000, 32, seed=8)
    link, _ = write_build(tmp_path, vectors)
    with_pass = load_catalogue(store.read_index(link, mmap=True))
    older = store.read_index(link)
    older.first_pass = None  # a build from before the 16-bit copy existed
    without = load_catalogue(older)
    queries = unit(vectors[:40] + 0.1)
    rows = with_pass.allowed_rows({})

    for k in (1, 5, 20):
        a = with_pass.search(queries, k, rows)
        b = without.search(queries, k, rows)
        assert [[h.row for h in hits] for hits in a] == [
            [h.row for h in hits] for hits in b
        ]
        for hits_a, hits_b in zip(a, b, strict=True):
            assert [h.distance for h in hits_a] == pytest.approx(
                [h.distance for h in hits_b], abs=2e-6
            )


def test_a_build_without_the_copy_still_loads(tmp_path):
    vectors = clustered(300, 16, seed=9)
    link, folder = write_build(tmp_path, vectors)
    manifest = store.read_manifest(folder)
    del manifest["prescan"]
    (folder / store.MANIFEST_FILE).write_text(__import__("json").dumps(manifest))
    (folder / prescan.FILE).unlink()

    stored = store.read_index(link)

    assert stored.first_pass is None
    assert load_catalogue(stored).search(vectors[:1], 3, np.arange(300))[0][0].row == 0


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda f, m: (f / prescan.FILE).write_bytes(b"IxSQ" + b"\0" * 10),
            "cannot be read",
        ),
        (lambda f, m: (f / prescan.FILE).unlink(), "cannot be read"),
        (lambda f, m: m["prescan"].update(max_error=-1.0), "invalid max_error"),
        (lambda f, m: m["prescan"].update(max_error=float("nan")), "invalid max_error"),
    ],
    ids=["truncated", "missing", "negative-error", "nan-error"],
)
def test_a_damaged_copy_refuses_the_build(tmp_path, damage, message):
    import json

    link, folder = write_build(tmp_path, clustered(300, 16, seed=10))
    manifest = store.read_manifest(folder)
    damage(folder, manifest)
    (folder / store.MANIFEST_FILE).write_text(json.dumps(manifest))

    with pytest.raises(store.IndexReadError, match=message):
        store.read_index(link)


def test_a_copy_of_another_size_refuses_the_build(tmp_path):
    link, folder = write_build(tmp_path, clustered(300, 16, seed=11))
    faiss.write_index(
        prescan.build(clustered(299, 16, seed=12)).index, str(folder / prescan.FILE)
    )

    with pytest.raises(
        store.IndexReadError, match="299 x 16 vectors, the index 300 x 16"
    ):
        store.read_index(link)


def brute_nearest(vectors, point, rows, k):
    rows = np.asarray(rows)
    squared = ((vectors[rows].astype(np.float64) - point) ** 2).sum(axis=1)
    order = np.argsort(squared, kind="stable")[:k]
    return squared[order], rows[order]


def test_a_neighbourhood_answers_for_nearby_points_or_says_it_cannot():
    """Points up to 0.6 from the query: the neighbourhood's answer is the exact
    one whenever it gives one, and it gives one for the points close enough."""
    vectors = clustered(3000, 32, seed=13)
    rng = np.random.default_rng(14)
    queries = unit(
        vectors[rng.integers(0, 3000, 150)] + 0.1 * rng.standard_normal((150, 32))
    )
    hoods = prescan.neighbourhoods(prescan.build(vectors), queries, 200)
    selected = rng.random(3000) < 0.5
    answered = {}

    for hood, query in zip(hoods, queries, strict=True):
        assert np.isfinite(hood.floor) and len(hood.rows) == 200
        for step in (0.0, 0.02, 0.1, 0.3, 0.6):
            point = query + step * unit(rng.standard_normal((1, 32)))[0]
            found = hood.nearest(vectors, 5, point, selected)
            if found is None:
                continue
            answered[step] = answered.get(step, 0) + 1
            squared, rows = found
            exact_sq, exact_rows = brute_nearest(
                vectors, point, np.flatnonzero(selected), 5
            )
            np.testing.assert_array_equal(rows, exact_rows)
            np.testing.assert_allclose(squared, exact_sq, rtol=1e-12)

    assert answered[0.0] == 150 and answered[0.02] >= 140
    assert answered.get(0.6, 0) < 150  # far points are left to a search of their own


def expanded_catalogue(tmp_path, vectors, crowd=None):
    link = tmp_path / "indexes" / "shop"
    folder = store.build_dir_for(link)
    count = len(vectors)
    items = {
        "id": [str(i) for i in range(count)],
        "path": [""] * count,
        "articleType": ["Shoes" if i % 3 else "Bags" for i in range(count)],
    }
    manifest = {"query_expansion": {"answers": 2, "alpha": 3.0}}
    store.write_build(folder, vectors, items, manifest)
    store.publish(folder, link)
    return load_catalogue(store.read_index(link, mmap=True))


def expanded_by_hand(vectors, query, expand_rows, rows, k):
    squared, answers = brute_nearest(vectors, query.astype(np.float64), expand_rows, 2)
    expanded = expand_query(query, vectors[answers], 1.0 - squared / 2.0, 3.0)
    return brute_nearest(vectors, expanded.astype(np.float64), rows, k)


@pytest.mark.parametrize("filters", [{}, {"articleType": "Bags"}])
def test_an_expanded_search_answers_as_two_exact_searches(
    tmp_path, filters, monkeypatch
):
    vectors = clustered(5000, 32, seed=15)
    catalogue = expanded_catalogue(tmp_path, vectors)
    rng = np.random.default_rng(16)
    queries = unit(
        vectors[rng.integers(0, 5000, 60)] + 0.2 * rng.standard_normal((60, 32))
    )
    rows, everything = catalogue.allowed_rows(filters), catalogue.allowed_rows({})
    full_searches = []
    search = catalogue.search
    monkeypatch.setattr(
        catalogue, "search", lambda q, k, r: full_searches.append(k) or search(q, k, r)
    )

    hits = catalogue.find(queries, 7, rows, everything)

    for query, found in zip(queries, hits, strict=True):
        squared, exact_rows = expanded_by_hand(vectors, query, everything, rows, 7)
        assert [h.row for h in found] == list(exact_rows)
        np.testing.assert_allclose([h.distance for h in found], squared, atol=2e-6)
    # one 16-bit pass settled nearly all of the 120 searches
    assert len(full_searches) <= 6


def test_an_expanded_search_through_a_crowd_is_still_exact(tmp_path, monkeypatch):
    """A thousand rows within 1e-5 of each other around the queries, more than
    the first pass keeps: it cannot order them, so the searches run on their own."""
    rng = np.random.default_rng(17)
    spread = clustered(3000, 32, seed=18)
    crowd = unit(spread[0] + 1e-5 * rng.standard_normal((1000, 32)))
    vectors = np.concatenate([spread, crowd])
    catalogue = expanded_catalogue(tmp_path, vectors)
    queries = unit(spread[0] + 0.01 * rng.standard_normal((10, 32)))
    rows = catalogue.allowed_rows({})
    full_searches = []
    search = catalogue.search
    monkeypatch.setattr(
        catalogue, "search", lambda q, k, r: full_searches.append(k) or search(q, k, r)
    )

    hits = catalogue.find(queries, 5, rows, rows)

    for query, found in zip(queries, hits, strict=True):
        squared, exact_rows = expanded_by_hand(vectors, query, rows, rows, 5)
        np.testing.assert_allclose([h.distance for h in found], squared, atol=2e-6)
        assert all(row >= 3000 for row in exact_rows)
        assert all(h.row >= 3000 for h in found)
    assert full_searches == [2, 5] * 10


def test_rows_for_a_filter_are_kept_and_read_only(tmp_path):
    catalogue = expanded_catalogue(tmp_path, clustered(600, 16, seed=19))
    bags = catalogue.allowed_rows({"articleType": "Bags"})

    assert catalogue.allowed_rows({"articleType": "Bags"}) is bags
    assert list(bags) == list(range(0, 600, 3))
    assert len(catalogue.allowed_rows({"articleType": "Shoes"})) == 400
    assert len(catalogue.allowed_rows({})) == 600
    with pytest.raises(ValueError):
        bags[0] = 1
    # "similar" searches leave out their own item's group: never kept
    without = catalogue.allowed_rows({"articleType": "Bags"}, exclude_group=0)
    assert list(without) == list(range(3, 600, 3))
    assert catalogue.allowed_rows({"articleType": "Bags"}) is bags


def test_masks_match_their_rows_and_go_with_them(tmp_path, monkeypatch):
    monkeypatch.setattr(app_catalogue, "FILTER_CACHE", 2)
    catalogue = expanded_catalogue(tmp_path, clustered(600, 16, seed=23))
    bags = catalogue.allowed_rows({"articleType": "Bags"})
    mask = catalogue._mask(bags)

    assert catalogue._mask(bags) is mask  # made once, with the rows
    assert np.array_equal(np.flatnonzero(mask), bags)
    with pytest.raises(ValueError):
        mask[1] = True
    # rows not from the cache get a fresh mask each time
    own = np.array([5, 7, 9])
    assert np.flatnonzero(catalogue._mask(own)).tolist() == [5, 7, 9]
    assert catalogue._mask(own) is not catalogue._mask(own)
    # a full cache starts over: rows and masks leave together
    catalogue.allowed_rows({"articleType": "Shoes"})
    catalogue.allowed_rows({})
    assert len(catalogue._rows_by_filters) == 1
    assert len(catalogue._masks) == 1
    assert catalogue._mask(bags) is not mask
    assert np.array_equal(np.flatnonzero(catalogue._mask(bags)), bags)
