"""Query expansion named in an index's manifest: the service searches once for
the query's best answers, adds them to the query and searches again."""

import numpy as np
import pytest
from service_fixtures import make_config, upload
from service_helpers import TEST_RECIPE, build_index

import app.catalogue as catalogue_module
from app import create_app
from embedding.augment import expand_query
from embedding.model import Embedder
from index_builder import store

WHITEN_DIM = 8  # the test catalogue has 40 distinct images
EXPANSION = {"answers": 2, "alpha": 3.0}


@pytest.fixture
def expanded(tmp_path, catalogue_dir, random_model, random_model_dir):
    link = build_index(
        catalogue_dir,
        random_model,
        tmp_path / "shop",
        whiten_dim=WHITEN_DIM,
        manifest_extra={"query_expansion": EXPANSION},
    )
    app = create_app(make_config(link, random_model_dir))
    return store.read_index(link), app.test_client()


def nearest(stored, query, rows, k):
    """``rows`` by squared L2 distance to ``query``, ties by row: (rows, dists)."""
    rows = np.asarray(rows)
    distances = ((stored.vectors()[rows] - query) ** 2).sum(axis=1)
    order = np.lexsort((rows, distances))[:k]
    return rows[order], distances[order]


def expanded_by_hand(stored, query, rows):
    answers, distances = nearest(stored, query, rows, EXPANSION["answers"])
    return expand_query(
        query, stored.vectors()[answers], 1.0 - distances / 2.0, EXPANSION["alpha"]
    )


def firsts(stored, exclude=()):
    """One row per set of byte-identical images, as the service searches."""
    items = stored.items
    return [
        n
        for n, d in enumerate(items["dup_of"])
        if not d and items["id"][n] not in exclude
    ]


def test_a_search_expands_the_query_with_its_unfiltered_answers_then_filters(
    expanded, catalogue_dir, random_model, styles
):
    stored, client = expanded
    query_image = (catalogue_dir / "images" / "10012.jpg").read_bytes()
    category = next(r for r in styles if r["id"] == "10030")["masterCategory"]

    response = client.post(
        "/api/v1/search",
        data={"image": upload(query_image), "k": "5", "masterCategory": category},
        content_type="multipart/form-data",
    )

    embedder = Embedder(random_model, recipe=TEST_RECIPE, threads=1)
    query = stored.whitening.apply(embedder.embed(embedder.load(query_image)[None]))[0]
    query2 = expanded_by_hand(stored, query, firsts(stored))
    allowed = [
        n for n in firsts(stored) if stored.items["masterCategory"][n] == category
    ]
    rows, distances = nearest(stored, query2, allowed, 5)
    _, unexpanded = nearest(stored, query, allowed, 5)
    results = response.get_json()["queries"][0]["results"]
    assert response.status_code == 200
    assert [r["id"] for r in results] == [stored.items["id"][n] for n in rows]
    np.testing.assert_allclose(
        [r["distance"] for r in results], distances, rtol=1e-4, atol=1e-5
    )
    assert not np.allclose(distances, unexpanded, atol=1e-3)


def test_similar_expands_with_answers_that_are_not_the_item_or_its_copies(
    expanded, monkeypatch
):
    stored, client = expanded
    seen = []

    def spy(query, answers, similarities, alpha=3.0):
        seen.append(np.array(answers))
        return expand_query(query, answers, similarities, alpha)

    monkeypatch.setattr(catalogue_module, "expand_query", spy)

    response = client.get("/api/v1/items/10003/similar?k=4")

    row = stored.items["id"].index("10003")
    query = stored.vectors()[row]
    others = firsts(stored, exclude={"10003", "20001", "20002"})
    answers, _ = nearest(stored, query, others, EXPANSION["answers"])
    rows, distances = nearest(
        stored, expanded_by_hand(stored, query, others), others, 4
    )
    results = response.get_json()["results"]
    assert response.status_code == 200
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], stored.vectors()[answers])
    assert [r["id"] for r in results] == [stored.items["id"][n] for n in rows]
    np.testing.assert_allclose(
        [r["distance"] for r in results], distances, rtol=1e-4, atol=1e-5
    )
