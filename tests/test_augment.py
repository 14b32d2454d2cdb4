"""Database-side augmentation and its honest leave-one-out evaluation."""

import numpy as np
import pytest

from embedding.augment import augment, expand_query, neighbour_lists
from evaluation.augmented import AugmentedSearch
from evaluation.metrics import neighbours

A, B, C = np.array([1.0, 0.0]), np.array([0.6, 0.8]), np.array([0.0, 1.0])


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_each_vector_is_averaged_with_its_nearest_neighbour_by_similarity():
    out = augment(np.stack([A, B, C]).astype(np.float32), k=1, alpha=1.0)
    assert np.allclose(out[0], unit(A + 0.6 * B), atol=1e-6)
    assert np.allclose(out[1], unit(B + 0.8 * C), atol=1e-6)
    assert np.allclose(out[2], unit(C + 0.8 * B), atol=1e-6)


def test_alpha_sharpens_the_neighbour_weights():
    out = augment(np.stack([A, B, C]).astype(np.float32), k=2, alpha=2.0)
    assert np.allclose(out[1], unit(B + 0.64 * C + 0.36 * A), atol=1e-6)


def test_opposite_neighbours_get_no_weight():
    x = np.stack([A, -A]).astype(np.float32)
    assert np.allclose(augment(x, k=1), x)


def test_copies_of_an_item_are_not_its_neighbours():
    x = np.stack([A, A, B, C]).astype(np.float32)
    rows, _ = neighbour_lists(x, 2, groups=np.array([0, 0, 2, 3]))
    assert rows.tolist() == [[2, 3], [2, 3], [3, 0], [2, 0]]


def test_zero_neighbours_leaves_the_vectors_unchanged():
    x = np.stack([A, B]).astype(np.float32)
    assert np.array_equal(augment(x, k=0), x)


def brute_force(x, groups, k, alpha, expand, expand_alpha, answers):
    """For every query: augment the catalogue without the query's group, expand
    the query, rank the rest."""
    rows = []
    for q in range(len(x)):
        keep = np.flatnonzero(groups != groups[q])
        catalogue = augment(x[keep], k, alpha, groups[keep]).astype(np.float64)
        query = x[q].astype(np.float64)
        sim = catalogue @ query
        if expand:
            top = np.lexsort((keep, -sim))[:expand]
            query = unit(
                query + (np.maximum(sim[top], 0) ** expand_alpha) @ catalogue[top]
            )
            sim = catalogue @ query
        rows.append(keep[np.lexsort((keep, -sim))[:answers]])
    return np.array(rows)


@pytest.mark.parametrize("expand", [0, 2])
def test_leave_one_out_search_never_lets_the_query_into_its_candidates(expand):
    rng = np.random.default_rng(3)
    x = unit(rng.standard_normal((30, 6))).astype(np.float32)
    x[7] = x[3]  # a byte-identical copy: same group, same vector
    groups = np.arange(30)
    groups[7] = 3
    search = AugmentedSearch(x, 3, 2.0, groups, expand=expand, expand_alpha=3.0)
    rows, dist = search(x, 5, groups, np.arange(30), np.ones(30, bool))
    assert rows.tolist() == brute_force(x, groups, 3, 2.0, expand, 3.0, 5).tolist()
    assert np.all(np.isfinite(dist))


def test_leaving_the_query_in_the_averages_would_change_the_answers():
    # The check above is not vacuous: augmenting once with the query inside
    # ranks differently for some query on the same data.
    rng = np.random.default_rng(3)
    x = unit(rng.standard_normal((30, 6))).astype(np.float32)
    groups = np.arange(30)
    leaky = augment(x, 3, 2.0)
    sims = x @ leaky.T
    np.fill_diagonal(sims, -np.inf)
    leaky_rows = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    honest = brute_force(x, groups, 3, 2.0, 0, 3.0, 5)
    assert not np.array_equal(leaky_rows, honest)


def test_without_augmentation_the_search_equals_plain_leave_one_out():
    rng = np.random.default_rng(5)
    x = unit(rng.standard_normal((25, 4))).astype(np.float32)
    groups = np.arange(25)
    ours, _ = AugmentedSearch(x, 0, 1.0, groups)(
        x, 4, groups, np.arange(25), np.ones(25, bool)
    )
    plain, _ = neighbours(x, 4, groups)
    assert ours.tolist() == plain.tolist()


def test_query_expansion_adds_answers_weighted_by_similarity_cubed():
    answers = np.stack([B, C])
    out = expand_query(A, answers, np.array([0.5, -0.2]), alpha=3.0)
    assert np.allclose(out, unit(A + 0.125 * B), atol=1e-6)
