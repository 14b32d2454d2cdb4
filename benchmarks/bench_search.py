"""Exact search on a built index, as the service runs it: how often the 16-bit
first pass settles a search by itself, whether the answers are the float32
scan's, and the time of each way, measured in the same run.

    python benchmarks/bench_search.py INDEX [--queries 1000] [--k 5]

Each query is "more like this" for a catalogue item (its stored vector, the item
and its copies left out, query expansion as the index's manifest says), without
a filter and then within the item's own articleType. The float32 way is the
same catalogue with the 16-bit copy left unused. One FAISS thread.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.catalogue import load_catalogue  # noqa: E402
from index_builder.store import read_index  # noqa: E402


def settled_counts() -> tuple[float, float]:
    def value(way):
        sample = REGISTRY.get_sample_value(
            "fvs_exact_searches_total", {"answered_by": way}
        )
        return sample or 0.0

    return value("first_pass"), value("full_scan")


def timed_find(catalogue, vector, k, rows, others):
    t0 = time.perf_counter()
    hits = catalogue.find(vector[None], k, rows, others)[0]
    return hits, (time.perf_counter() - t0) * 1000


def same_answer(a, b) -> bool:
    """Same rows in the same order, except rows at one distance (to float32
    rounding), which either way may list first."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if abs(x.distance - y.distance) > 1e-5:
            return False
    last = a[-1].distance if a else 0.0
    differing = {h.row for h in a} ^ {h.row for h in b}
    by_row = {h.row: h.distance for h in (*a, *b)}
    return all(abs(by_row[row] - last) <= 1e-5 for row in differing)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("index", type=Path)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)

    with_pass = load_catalogue(read_index(args.index, mmap=True))
    if with_pass.stored.first_pass is None:
        print(f"{args.index} has no 16-bit copy: rebuild it with this version")
        return 1
    plain_stored = read_index(args.index, mmap=True)
    plain_stored.first_pass = None
    plain = load_catalogue(plain_stored)
    stored = with_pass.stored.vectors()
    rng = np.random.default_rng(0)
    distinct = with_pass.allowed_rows({})
    sample = rng.choice(distinct, min(args.queries, len(distinct)), replace=False)
    report = {
        "index": str(args.index.resolve()),
        "items": len(with_pass),
        "dim": int(stored.shape[1]),
        "query_expansion": with_pass.manifest.get("query_expansion"),
        "queries": len(sample),
        "k": args.k,
    }

    for label in ("unfiltered", "same articleType"):
        fast_ms, plain_ms, differ = [], [], 0
        before = settled_counts()
        for row in sample:
            group = with_pass.group[row]
            filters = {}
            if label != "unfiltered":
                filters = {"articleType": with_pass.columns["articleType"][row]}
            others = with_pass.allowed_rows({}, exclude_group=group)
            rows = with_pass.allowed_rows(filters, exclude_group=group)
            vector = stored[row]
            hits, ms = timed_find(with_pass, vector, args.k, rows, others)
            reference, reference_ms = timed_find(plain, vector, args.k, rows, others)
            fast_ms.append(ms)
            plain_ms.append(reference_ms)
            differ += not same_answer(hits, reference)
        after = settled_counts()
        # the float32 catalogue counts nothing: these are the first-pass searches
        first = after[0] - before[0]
        full = after[1] - before[1]
        report[label] = {
            "searches": int(first + full),
            "settled_by_first_pass": round(first / max(first + full, 1), 4),
            "answers_differing_from_float32": differ,
            "ms_p50_first_pass": round(statistics.median(fast_ms), 2),
            "ms_p50_float32": round(statistics.median(plain_ms), 2),
            "speed_up": round(
                statistics.median(plain_ms) / statistics.median(fast_ms), 2
            ),
        }
        print(label, json.dumps(report[label]), flush=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
