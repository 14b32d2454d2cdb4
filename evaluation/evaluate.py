"""Score an index's neighbours against its catalogue labels."""

from collections import Counter

import numpy as np

from . import metrics

K = 10  # answers fetched per query; the metrics cut at 1, 5 and 10
CUTOFFS = (1, 5, 10)
LABELS = ("articleType", "subCategory", "masterCategory", "articleType+baseColour")
MIN_SUPPORT = 5  # queries an articleType needs to be called best or worst
TOP_CONFUSIONS = 20
SAMPLE_TYPES = 3  # best and worst categories shown
SAMPLES_PER_TYPE = 2


def label_column(items: dict, name: str) -> np.ndarray:
    """One label per item; a combined label is empty when any part is."""
    count = len(items["id"])
    parts = [items.get(part, [""] * count) for part in name.split("+")]
    values = ["/".join(p) if all(p) else "" for p in zip(*parts, strict=True)]
    return np.array(values, dtype=object)


def evaluate(
    vectors: np.ndarray, items: dict, collapse: bool = False, search=None
) -> dict:
    """Leave-one-out retrieval quality of ``vectors`` labelled by ``items``.

    Items without an articleType are neither queries nor candidates: nothing
    could say whether they are right. With ``collapse``, byte-identical copies
    appear once among the candidates (the lowest row stands for the group).
    ``search`` replaces the plain nearest-neighbour search when the catalogue
    side is not simply ``vectors`` (same signature as ``metrics.neighbours``).
    """
    ids = list(items["id"])
    article = label_column(items, "articleType")
    labelled = article != ""
    groups = metrics.group_ids(items.get("sha256", [""] * len(ids)))
    candidates = labelled & metrics.first_of_group(groups) if collapse else labelled
    queries = np.flatnonzero(labelled)
    rows, dist = (search or metrics.neighbours)(vectors, K, groups, queries, candidates)

    overall = {}
    per_query = {}
    for name in LABELS:
        labels = label_column(items, name)
        rel = metrics.relevance(labels, queries, rows)
        counts = metrics.relevant_counts(labels, groups, queries, candidates)
        scores = _scores(rel, counts)
        scored = labels[queries] != ""
        overall[name] = _mean(scores, scored)
        per_query[name] = scores

    return {
        "items": len(ids),
        "queries": int(len(queries)),
        "unlabelled": int((~labelled).sum()),
        "duplicate_items": int(len(ids) - len(np.unique(groups))),
        "collapse_duplicates": collapse,
        "definitions": {
            "precision@k": "relevant answers in the top k / k",
            "mAP@k": "mean over queries of AP@k = sum_i P@i*rel_i / min(k, R), "
            "R = relevant candidates",
            "candidates": "every labelled item except the query and its "
            "byte-identical copies",
        },
        "overall": overall,
        "per_article_type": _per_type(article, queries, per_query["articleType"]),
        "confusions": _confusions(article, queries, rows),
        "samples": _samples(article, ids, queries, rows, dist, per_query),
    }


def _scores(rel: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    scores = {f"p@{k}": metrics.precision_at(rel, k) for k in CUTOFFS}
    scores[f"map@{K}"] = metrics.average_precision_at(rel, counts, K)
    return scores


def _mean(scores: dict, mask: np.ndarray) -> dict:
    out = {
        name: _round(values[mask].mean()) if mask.any() else 0.0
        for name, values in scores.items()
    }
    out["queries"] = int(mask.sum())
    return out


def _round(value) -> float:
    return round(float(value), 4)


def _per_type(article, queries, scores) -> list[dict]:
    query_types = article[queries]
    table = []
    for name, support in Counter(query_types).most_common():
        mask = query_types == name
        row = {"articleType": name, "support": support}
        row.update({m: _round(v[mask].mean()) for m, v in scores.items()})
        table.append(row)
    return table


def _confusions(article, queries, rows, top: int = 5) -> list[dict]:
    """Most frequent (query type, wrong answer type) pairs in the top 5."""
    pairs: Counter = Counter()
    answers_per_type: Counter = Counter()
    for q, answer_rows in zip(queries, rows[:, :top], strict=True):
        for r in answer_rows[answer_rows >= 0]:
            answers_per_type[article[q]] += 1
            if article[r] != article[q]:
                pairs[(article[q], article[r])] += 1
    ordered = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
    return [
        {
            "query_type": a,
            "answer_type": b,
            "count": count,
            "share": _round(count / answers_per_type[a]),
        }
        for (a, b), count in ordered[:TOP_CONFUSIONS]
    ]


def _samples(article, ids, queries, rows, dist, per_query) -> dict:
    """A few queries with their answers from the best and worst articleTypes."""
    p5 = per_query["articleType"]["p@5"]
    query_types = article[queries]
    means = {
        name: p5[query_types == name].mean()
        for name, support in Counter(query_types).items()
        if support >= MIN_SUPPORT
    }
    ranked = sorted(means, key=lambda name: (-means[name], name))
    rng = np.random.default_rng(0)
    chosen = {"best": ranked[:SAMPLE_TYPES], "worst": ranked[::-1][:SAMPLE_TYPES]}
    samples = {}
    for side, names in chosen.items():
        samples[side] = []
        for name in names:
            positions = np.flatnonzero(query_types == name)
            picks = np.sort(rng.choice(positions, SAMPLES_PER_TYPE, replace=False))
            for pos in picks:
                samples[side].append(
                    _sample(article, ids, queries[pos], rows[pos], dist[pos], name)
                    | {"type_p@5": _round(means[name])}
                )
    return samples


def _sample(article, ids, query, answer_rows, answer_dist, name) -> dict:
    answers = [
        {
            "row": int(r),
            "id": ids[r],
            "articleType": article[r],
            "distance": _round(d),
            "hit": bool(article[r] == name),
        }
        for r, d in zip(answer_rows[:5], answer_dist[:5], strict=True)
        if r >= 0
    ]
    return {
        "row": int(query),
        "id": ids[query],
        "articleType": name,
        "answers": answers,
    }
